"""The judge without nbgrader: verdict format, determinism, cache keys, hostile files, cell output,
and the nbgrader preprocessors on real kernels.

The full matrix of buggy, variant and tamper submissions runs through real
``nbgrader autograde`` in ``test_autograde.py``.
"""
import json
import shutil
from concurrent.futures import ThreadPoolExecutor

import nbformat
import numpy as np
import pytest

from autograder import STUDENT_MODULES
from autograder import cell
from autograder.cell import HiddenTestFailure, check
from autograder.judge import cache
from autograder.judge.core import HiddenInputs, judge_submission, load_npz
from autograder.judge.grading_notebook import NOTEBOOK_PATH, grading_notebook
from autograder.judge.points import PARTS, POINTS, part_max
from autograder.judge.preprocessors import GuardedExecute, ResetGradingNotebook
from autograder.sandbox import Limits
from submissions import BY_NAME, SOLUTION_HANDIN, write_handin

QUICK = Limits(wall_seconds=120, cpu_seconds=30, memory_bytes=3 * 2**30)


@pytest.fixture(scope="module")
def inputs():
    return HiddenInputs()


def test_points_are_documented_and_in_the_grading_notebook():
    assert list(PARTS) == ["collage", "mixup", "cross_entropy", "network", "frozen_finetuning"]
    assert sum(part_max(part) for part in PARTS) == 50
    assert all(len(checks) >= 3 for checks in POINTS.values()), "partial credit: several cells per part"
    assert NOTEBOOK_PATH.read_text() == grading_notebook(), \
        "autograder/grading.ipynb is stale: run python -m autograder.judge.grading_notebook"


def test_hidden_inputs_are_seeded():
    first, again, other = HiddenInputs(7), HiddenInputs(7), HiddenInputs(8)
    for part in PARTS:
        assert first.parts[part][1] == again.parts[part][1]
        for key, value in first.parts[part][0].items():
            np.testing.assert_array_equal(value, again.parts[part][0][key])
    assert not np.array_equal(first.parts["collage"][0]["c0_i"], other.parts["collage"][0]["c0_i"])


def test_verdict_is_json_and_identical_when_judged_twice(tmp_path, inputs):
    """A submission whose eval mode is random (dropout always on) still gets the same verdict twice."""
    handin = write_handin(BY_NAME["net_dropout_always_on"], SOLUTION_HANDIN, tmp_path / "handin")
    first = judge_submission(handin, sandbox=True, limits=QUICK, inputs=inputs)
    second = judge_submission(handin, sandbox=True, limits=QUICK, inputs=inputs)
    assert json.loads(json.dumps(first)) == first
    assert first == second
    assert first["parts"]["network"]["score"] < part_max("network")
    assert {"score", "max", "status", "reason", "checks"} <= set(first["parts"]["network"])
    assert {"name", "points", "max", "passed", "message"} <= set(first["parts"]["network"]["checks"][0])


def test_missing_module_costs_only_its_parts(tmp_path, inputs):
    handin = tmp_path / "handin"
    handin.mkdir()
    for name in ("augmentations.py", "utils.py"):
        shutil.copyfile(SOLUTION_HANDIN / name, handin / name)
    verdict = judge_submission(handin, sandbox=False, limits=QUICK, inputs=inputs)
    parts = verdict["parts"]
    assert parts["network"]["status"] == parts["frozen_finetuning"]["status"] == "missing"
    assert "handin/network.py is missing" in parts["network"]["reason"]
    assert [parts[p]["score"] for p in ("collage", "mixup", "cross_entropy")] == [10, 10, 10]


def test_symlinked_module_is_refused_not_followed(tmp_path):
    """A network.py that links to the instructor's solution must not be graded as the student's."""
    handin = tmp_path / "handin"
    handin.mkdir()
    for name in STUDENT_MODULES:
        (handin / name).symlink_to(SOLUTION_HANDIN / name)
    with pytest.raises(cache.SubmissionError, match="submit it as a plain file"):
        cache.read_modules(handin)
    verdict = judge_submission(handin, sandbox=False)
    assert verdict["score"] == 0
    assert {part["status"] for part in verdict["parts"].values()} == {"unreadable"}


def test_cache_key_follows_the_student_modules_only(tmp_path):
    handin = write_handin(BY_NAME["reference"], SOLUTION_HANDIN, tmp_path / "handin")
    key = cache.verdict_key(handin)
    (handin / "data.py").write_text("# not a student module\n")
    assert cache.verdict_key(handin) == key
    (handin / "utils.py").write_text((handin / "utils.py").read_text() + "\n# changed\n")
    assert cache.verdict_key(handin) != key
    assert cache.verdict_key(handin, seed=1) != cache.verdict_key(handin)


def test_outputs_with_pickles_are_refused(tmp_path):
    np.savez(tmp_path / "objects.npz", x=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ValueError):
        load_npz(tmp_path / "objects.npz")
    np.savez(tmp_path / "text.npz", x=np.array(["passed"]))
    with pytest.raises(ValueError, match="not numeric"):
        load_npz(tmp_path / "text.npz")


def fake_verdict(handin, folder, passed):
    checks = [{"name": name, "points": points if passed else 0, "max": points, "passed": passed,
               "message": "passed" if passed else "for a 3×8×8 image the top-left quarter comes from batch_i"}
              for name, points in POINTS["collage"].items()]
    verdict = {"parts": {"collage": {"score": 0, "max": 10, "status": "ok", "reason": "", "checks": checks}}}
    cache.store(verdict, handin, cache_dir=folder)


def test_cell_check_prints_or_raises_a_message_only_failure(tmp_path, monkeypatch, capsys):
    handin = write_handin(BY_NAME["reference"], SOLUTION_HANDIN, tmp_path / "handin")
    monkeypatch.setenv(cache.VERDICTS_ENV, str(tmp_path / "verdicts"))
    fake_verdict(handin, tmp_path / "verdicts", passed=True)
    check("collage", "quarters", handin)
    assert "collage · quarters: 4/4 points. Passed." in capsys.readouterr().out

    fake_verdict(handin, tmp_path / "verdicts", passed=False)
    with pytest.raises(HiddenTestFailure) as failure:
        check("collage", "quarters", handin)
    rendered = "\n".join(failure.value._render_traceback_())
    assert rendered == "collage · quarters: 0/4 points.\nfor a 3×8×8 image the top-left quarter comes from batch_i"


def test_cell_check_judges_an_uncached_submission_in_a_subprocess(tmp_path, monkeypatch, capsys):
    handin = write_handin(BY_NAME["ce_sum"], SOLUTION_HANDIN, tmp_path / "handin")
    monkeypatch.setenv(cache.VERDICTS_ENV, str(tmp_path / "verdicts"))
    check("cross_entropy", "soft_targets", handin)  # one-sample batches: sum == mean
    assert "cross_entropy · soft_targets: 3/3 points. Passed." in capsys.readouterr().out
    with pytest.raises(HiddenTestFailure, match="summed over the batch"):
        check("cross_entropy", "batch_mean", handin)
    assert len(list((tmp_path / "verdicts").glob("*.json"))) == 1, "judged once, then served from the cache"


def test_a_missing_verdict_under_the_batch_grader_fails_the_cell_at_once(tmp_path, monkeypatch):
    """The batch grader judged everybody before nbgrader started: the cell neither waits nor judges."""
    handin = write_handin(BY_NAME["reference"], SOLUTION_HANDIN, tmp_path / "handin")
    monkeypatch.setenv(cache.VERDICTS_ENV, str(tmp_path / "verdicts"))
    monkeypatch.setenv(cell.CELL_JUDGES_ENV, "0")

    def no_judging(handin_dir, cache_dir):
        raise AssertionError("the cell judged although the batch grader said every verdict was ready")

    monkeypatch.setattr(cell, "run_judge", no_judging)
    with pytest.raises(HiddenTestFailure, match="collage · quarters: could not be graded: the grader has no verdict"):
        check("collage", "quarters", handin)
    fake_verdict(handin, tmp_path / "verdicts", passed=True)
    check("collage", "quarters", handin)


def test_cache_writes_from_many_threads_at_once_stay_whole(tmp_path):
    """Identical submissions share a key, so two judge threads may store the same verdict at once."""
    handin = write_handin(BY_NAME["reference"], SOLUTION_HANDIN, tmp_path / "handin")
    verdicts = [{"parts": {}, "writer": n, "padding": "x" * 200_000} for n in range(8)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        paths = set(pool.map(lambda v: cache.store(v, handin, cache_dir=tmp_path / "verdicts"), verdicts * 10))
    assert len(paths) == 1
    assert cache.load_cached(handin, cache_dir=tmp_path / "verdicts") in verdicts
    assert [p.name for p in (tmp_path / "verdicts").iterdir()] == [paths.pop().name], "no temporary file is left"


# ----------------------------------------------------------------------------- nbgrader preprocessors
def grade_cell(source, grade_id):
    cell = nbformat.v4.new_code_cell(source)
    cell.metadata["nbgrader"] = {"grade": True, "solution": False, "locked": True, "grade_id": grade_id,
                                 "points": 1, "schema_version": 3, "cell_type": "code", "task": False}
    return cell


def new_notebook(cells):
    notebook = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "language": "python",
                                                                 "display_name": "Python 3"}})
    notebook.cells = cells
    return notebook


#: Ignores SIGINT outright, then loops; nbclient's interrupt after the timeout cannot stop it.
SWALLOW = ("import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\n"
           "while True:\n    try:\n        pass\n    except KeyboardInterrupt:\n        pass")


def test_swallowed_interrupt_ends_as_an_error_and_later_cells_still_run(tmp_path):
    notebook = new_notebook([grade_cell(SWALLOW, "loop"), grade_cell("print('still graded')", "after")])
    executor = GuardedExecute(timeout=3, notebook_timeout=600, shutdown_kernel="immediate")
    notebook, _ = executor.preprocess(notebook, {"metadata": {"path": str(tmp_path)}})
    assert {output.output_type for output in notebook.cells[0].outputs} == {"error"}
    assert "".join(output.get("text", "") for output in notebook.cells[1].outputs) == "still graded\n"


def test_whole_notebook_deadline(tmp_path):
    notebook = new_notebook([grade_cell("import time\ntime.sleep(600)", "slow"), grade_cell("print(1)", "late")])
    executor = GuardedExecute(timeout=600, notebook_timeout=4, shutdown_kernel="immediate")
    notebook, _ = executor.preprocess(notebook, {"metadata": {"path": str(tmp_path)}})
    assert notebook.cells[0].outputs[-1].output_type == "error"
    assert notebook.cells[1].outputs[0].ename == "NotebookTimeoutError"


def test_notebooks_without_autograded_tests_are_not_executed(tmp_path):
    notebook = new_notebook([nbformat.v4.new_code_cell("open('ran', 'w').write('student code ran')")])
    GuardedExecute().preprocess(notebook, {"metadata": {"path": str(tmp_path)}})
    assert not (tmp_path / "ran").exists()
    assert notebook.cells[0].outputs == []


def test_reset_grading_notebook_drops_added_cells(tmp_path):
    source = new_notebook([grade_cell("check()", "collage_quarters")])
    nbformat.write(source, tmp_path / "grading.ipynb")
    submitted = new_notebook([nbformat.v4.new_code_cell("get_ipython().input_transformers_post.append(0)"),
                              grade_cell("pass", "collage_quarters")])
    reset = ResetGradingNotebook(source_notebook=str(tmp_path / "grading.ipynb"))
    result, _ = reset.preprocess(submitted, {"nbgrader": {"notebook": "grading"}})
    assert [cell.source for cell in result.cells] == ["check()"]
    other, _ = reset.preprocess(new_notebook([nbformat.v4.new_code_cell("x")]), {"nbgrader": {"notebook": "3_report"}})
    assert [cell.source for cell in other.cells] == ["x"]


def test_a_child_killed_by_a_signal_is_crashed_unless_a_limit_stopped_it():
    from autograder.judge.core import child_status
    from autograder.sandbox import RunResult

    assert child_status(RunResult(-9, False, False, "", "")) == "crashed"  # e.g. os.kill(os.getpid(), 9)
    assert child_status(RunResult(-24, True, False, "", "")) == "timeout"  # SIGXCPU: the sandbox sets timed_out
    assert child_status(RunResult(-9, False, True, "", "")) == "memory_limit"
