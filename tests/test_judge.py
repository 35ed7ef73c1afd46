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
from submissions import BY_NAME

from autograder import STUDENT_MODULES
from autograder.examples import SOLUTION_HANDIN, write_handin
from autograder.judge import cache, core
from autograder.judge.core import HiddenInputs, clean_notes, judge_submission, judge_submissions, load_npz
from autograder.judge.points import PARTS, POINTS, part_max
from autograder.nbgrader_glue import cell
from autograder.nbgrader_glue.cell import HiddenTestFailure, check
from autograder.nbgrader_glue.execute import GuardedExecute
from autograder.nbgrader_glue.grading_notebook import NOTEBOOK_PATH, grading_notebook
from autograder.nbgrader_glue.preprocessors import ResetGradingNotebook
from autograder.sandbox import Limits, SandboxFault

QUICK = Limits(wall_seconds=120, cpu_seconds=30, memory_bytes=3 * 2**30)
TEST_SEED = 20240611


@pytest.fixture(scope="module")
def inputs():
    return HiddenInputs(TEST_SEED)


def test_points_are_documented_and_in_the_grading_notebook():
    assert list(PARTS) == ["collage", "mixup", "cross_entropy", "network", "frozen_finetuning"]
    assert sum(part_max(part) for part in PARTS) == 50
    assert all(len(checks) >= 3 for checks in POINTS.values()), "partial credit: several cells per part"
    assert NOTEBOOK_PATH.read_text() == grading_notebook(), (
        "autograder/nbgrader_glue/grading.ipynb is stale: run python -m autograder.nbgrader_glue.grading_notebook"
    )


def test_hidden_inputs_are_seeded():
    first, again, other = HiddenInputs(7), HiddenInputs(7), HiddenInputs(8)
    for part in PARTS:
        assert first.parts[part][1] == again.parts[part][1]
        for key, value in first.parts[part][0].items():
            np.testing.assert_array_equal(value, again.parts[part][0][key])
    assert not np.array_equal(first.parts["collage"][0]["c0_i"], other.parts["collage"][0]["c0_i"])


def test_hidden_inputs_are_made_once_per_course_and_kept_private(tmp_path, inputs, monkeypatch):
    """The course's inputs are stored as plain data (0600) and read back equal, without making them again."""
    stored = core.stored_inputs(tmp_path, TEST_SEED)
    files = sorted((tmp_path / core.STORED_INPUTS).iterdir())
    assert [path.suffix for path in files] == [".json", ".npz"]
    assert all(path.stat().st_mode & 0o777 == 0o600 for path in files)
    monkeypatch.setattr(core.hidden, "make_inputs", lambda seed: pytest.fail("made again instead of read"))
    again = core.stored_inputs(tmp_path, TEST_SEED)
    for part in PARTS:
        assert json.loads(json.dumps(inputs.parts[part][1])) == stored[part][1] == again[part][1]
        assert set(inputs.parts[part][0]) == set(again[part][0])
        for key, value in inputs.parts[part][0].items():
            assert again[part][0][key].dtype == value.dtype
            np.testing.assert_array_equal(again[part][0][key], value)
    files[0].chmod(0o644)  # no longer private: not trusted, made again
    with pytest.raises(pytest.fail.Exception, match="made again"):
        core.stored_inputs(tmp_path, TEST_SEED)


def test_the_seed_comes_from_a_private_course_secret(tmp_path):
    """The seed is not in the kit's source: each verdict folder gets its own secret, made once, mode 0600."""
    seed = cache.course_seed(tmp_path / "course")
    secret = tmp_path / "course" / cache.SECRET_NAME
    assert secret.stat().st_mode & 0o777 == 0o600
    assert cache.course_seed(tmp_path / "course") == seed, "the same secret gives the same seed"
    assert cache.course_seed(tmp_path / "other") != seed
    handin = write_handin(BY_NAME["reference"], tmp_path / "handin")
    assert cache.verdict_key(handin, cache_dir=tmp_path / "course") == cache.verdict_key(handin, seed)
    assert cache.verdict_key(handin, cache_dir=tmp_path / "other") != cache.verdict_key(handin, seed)
    secret.chmod(0o644)
    with pytest.raises(OSError, match="chmod 600"):
        cache.course_seed(tmp_path / "course")


def test_blend_inputs_are_digits_with_distinguishable_quarters(inputs):
    """The feedback pictures show digits; a quarter taken from the wrong image must still be detectable."""
    for part in ("collage", "mixup"):
        arrays, plan = inputs.parts[part]
        for case in plan["cases"]:
            batch_i, batch_j = arrays[f"{case['key']}_i"], arrays[f"{case['key']}_j"]
            assert 0 <= batch_i.min() and batch_i.max() <= 1
            half = batch_i.shape[-1] // 2
            for rows in (slice(None, half), slice(half, None)):
                for columns in (slice(None, half), slice(half, None)):
                    assert not np.allclose(batch_i[:, rows, columns], batch_j[:, rows, columns], atol=1e-3)
    digit = inputs.parts["collage"][0]["c0_i"][0]
    assert digit.shape == (28, 28)
    assert 0.05 < (digit > 0.5).mean() < 0.5, "ink on a dark background, like MNIST"


def test_verdict_is_json_and_identical_when_judged_twice(tmp_path, inputs):
    """A submission whose eval mode is random (dropout always on) still gets the same verdict twice."""
    handin = write_handin(BY_NAME["net_dropout_always_on"], tmp_path / "handin")
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


def test_running_out_of_memory_is_a_memory_limit_even_where_python_can_catch_it(tmp_path, inputs):
    """Without a cgroup (a grader without root) the memory limit is RLIMIT_DATA: an allocation raises
    MemoryError rather than the OOM killer ending the child. It must still be the part's memory_limit,
    with the other parts graded, as with cgroups (here the refusal is raised directly)."""
    handin = write_handin(BY_NAME["reference"], tmp_path / "handin")
    source = (handin / "augmentations.py").read_text()
    start = "def collage(batch_i, batch_j):\n"
    assert source.count(start) == 1
    (handin / "augmentations.py").write_text(source.replace(start, start + "    raise MemoryError()\n"))
    parts = judge_submission(handin, sandbox=True, limits=QUICK, inputs=inputs)["parts"]
    assert parts["collage"]["status"] == "memory_limit" and parts["collage"]["score"] == 0, parts["collage"]
    assert [parts[p]["score"] for p in PARTS if p != "collage"] == [part_max(p) for p in PARTS if p != "collage"]


def test_the_kits_finetuning_blends_with_the_kits_augment(tmp_path, inputs):
    """Provided code in a student's augmentations.py (a broken augment, no_aug) is never what the judge runs."""
    handin = write_handin(BY_NAME["reference"], tmp_path / "handin")
    with open(handin / "augmentations.py", "a") as module:
        module.write(
            "\n\ndef augment(*args, **kwargs):\n    raise RuntimeError('a student copy of augment')\n\n\n"
            "no_aug = augment\nAUGMENTATION_DICT = {}\n"
        )
    verdict = judge_submission(handin, sandbox=False, limits=QUICK, inputs=inputs)
    assert verdict["parts"]["frozen_finetuning"]["status"] == "ok", verdict["parts"]["frozen_finetuning"]
    assert verdict["score"] == sum(part_max(part) for part in PARTS)


def test_symlinked_module_is_refused_not_followed(tmp_path):
    """A network.py that links to the instructor's solution must not be graded as the student's."""
    handin = tmp_path / "handin"
    handin.mkdir()
    for name in STUDENT_MODULES:
        (handin / name).symlink_to(SOLUTION_HANDIN / name)
    with pytest.raises(cache.SubmissionError, match="submit it as a plain file"):
        cache.read_modules(handin)
    verdict = judge_submission(handin, sandbox=False, seed=TEST_SEED)
    assert verdict["score"] == 0
    assert {part["status"] for part in verdict["parts"].values()} == {"unreadable"}


def test_cache_key_follows_the_student_modules_only(tmp_path):
    handin = write_handin(BY_NAME["reference"], tmp_path / "handin")
    key = cache.verdict_key(handin, TEST_SEED)
    (handin / "data.py").write_text("# not a student module\n")
    assert cache.verdict_key(handin, TEST_SEED) == key
    (handin / "utils.py").write_text((handin / "utils.py").read_text() + "\n# changed\n")
    assert cache.verdict_key(handin, TEST_SEED) != key
    assert cache.verdict_key(handin, seed=1) != cache.verdict_key(handin, TEST_SEED)


def test_outputs_with_pickles_are_refused(tmp_path):
    np.savez(tmp_path / "objects.npz", x=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ValueError):
        load_npz(tmp_path / "objects.npz")
    np.savez(tmp_path / "text.npz", x=np.array(["passed"]))
    with pytest.raises(ValueError, match="not numeric"):
        load_npz(tmp_path / "text.npz")


@pytest.mark.parametrize(
    "name", ["tamper_patch_runner", "tamper_rewrite_files", "tamper_finetune_patch", "net_features_detached"]
)
def test_forged_outputs_earn_no_more_than_the_real_code(tmp_path, inputs, name):
    """Student code that rewrites the runner's files, replaces its functions or wraps the kit's finetune.

    Stub-based forgers must score 0; a bug hidden by a forgery keeps its cost. (Also graded
    through nbgrader in test_autograde.py, with every other submission.)
    """
    submission = BY_NAME[name]
    handin = write_handin(submission, tmp_path / "handin")
    verdict = judge_submission(handin, sandbox=True, limits=QUICK, inputs=inputs)
    scores = {part: verdict["parts"][part]["score"] for part in PARTS}
    lost = {part for part in PARTS if scores[part] < part_max(part)}
    if submission.max_total is not None:
        assert verdict["score"] <= submission.max_total, scores
    else:
        assert set(submission.lose) <= lost <= set(submission.lose) | set(submission.may_lose), scores
    if name == "net_features_detached":
        learns = next(c for c in verdict["parts"]["network"]["checks"] if c["name"] == "learns")
        assert "conv1.weight" in learns["message"] and "no gradient" in learns["message"]
    if name == "tamper_finetune_patch":
        assert scores["frozen_finetuning"] <= POINTS["frozen_finetuning"]["improves"]


def test_untouched_stubs_are_not_implemented_and_name_the_function(tmp_path, inputs):
    handin = write_handin(BY_NAME["stub"], tmp_path / "handin")
    parts = judge_submission(handin, sandbox=True, limits=QUICK, inputs=inputs)["parts"]
    assert {part: (parts[part]["status"], parts[part]["reason"]) for part in PARTS} == {
        "collage": ("not_implemented", "write `collage` in handin/augmentations.py"),
        "mixup": ("not_implemented", "write `mixup` in handin/augmentations.py"),
        "cross_entropy": ("not_implemented", "write `cross_entropy` in handin/utils.py"),
        "network": ("not_implemented", "write `apply_convs` in handin/network.py"),
        "frozen_finetuning": ("not_implemented", "write `finetune_parameters` in handin/network.py"),
    }
    assert all(check["points"] == 0 for part in parts.values() for check in part["checks"])
    assert parts["collage"]["picture"]["got"] is None and len(parts["collage"]["picture"]["i"]) == 28


def test_a_sandbox_fault_propagates_and_is_never_cached(tmp_path, inputs, monkeypatch):
    def broken_sandbox(*args, **kwargs):
        raise SandboxFault("the cgroup memory limit could not be set")

    monkeypatch.setattr(core, "run_isolated", broken_sandbox)
    handin = write_handin(BY_NAME["reference"], tmp_path / "handin")
    with pytest.raises(SandboxFault):
        judge_submission(handin, limits=QUICK, inputs=inputs)
    with pytest.raises(SandboxFault):
        judge_submissions([handin], cache_dir=tmp_path / "verdicts", seed=TEST_SEED, limits=QUICK)
    assert not list((tmp_path / "verdicts").glob("*.json"))


def test_the_childs_notes_are_reduced_to_typed_fields():
    hostile = {
        "errors": ["not", "a", "dict"],
        "returned": True,
        "not_implemented": "collage",
        "passed": True,
        "raised": {"numpy_pred": {"nested": 1}},
        "import_error": None,
    }
    assert clean_notes(hostile) == {"errors": {}, "raised": {"numpy_pred": "{'nested': 1}"}, "not_implemented": []}
    with pytest.raises(ValueError):
        clean_notes(["not", "an", "object"])


def fake_verdict(handin, folder, passed):
    checks = [
        {
            "name": name,
            "points": points if passed else 0,
            "max": points,
            "passed": passed,
            "message": "passed" if passed else "for a 3×8×8 image the top-left quarter comes from batch_i",
        }
        for name, points in POINTS["collage"].items()
    ]
    verdict = {"parts": {"collage": {"score": 0, "max": 10, "status": "ok", "reason": "", "checks": checks}}}
    cache.store(verdict, handin, cache_dir=folder)


def test_cell_check_prints_or_raises_a_message_only_failure(tmp_path, monkeypatch, capsys):
    handin = write_handin(BY_NAME["reference"], tmp_path / "handin")
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
    handin = write_handin(BY_NAME["ce_sum"], tmp_path / "handin")
    monkeypatch.setenv(cache.VERDICTS_ENV, str(tmp_path / "verdicts"))
    check("cross_entropy", "soft_targets", handin)  # one-sample batches: sum == mean
    assert "cross_entropy · soft_targets: 3/3 points. Passed." in capsys.readouterr().out
    with pytest.raises(HiddenTestFailure, match="summed over the batch"):
        check("cross_entropy", "batch_mean", handin)
    assert len(list((tmp_path / "verdicts").glob("*.json"))) == 1, "judged once, then served from the cache"


def test_a_missing_verdict_under_the_batch_grader_fails_the_cell_at_once(tmp_path, monkeypatch):
    """The batch grader judged the student before nbgrader grades it: the cell neither waits nor judges."""
    handin = write_handin(BY_NAME["reference"], tmp_path / "handin")
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
    handin = write_handin(BY_NAME["reference"], tmp_path / "handin")
    verdicts = [{"parts": {}, "writer": n, "padding": "x" * 200_000} for n in range(8)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        paths = set(pool.map(lambda v: cache.store(v, handin, cache_dir=tmp_path / "verdicts"), verdicts * 10))
    assert len(paths) == 1
    assert cache.load_cached(handin, cache_dir=tmp_path / "verdicts") in verdicts
    left = sorted(p.name for p in (tmp_path / "verdicts").iterdir())
    assert left == sorted([paths.pop().name, cache.SECRET_NAME]), "no temporary file is left"


# ----------------------------------------------------------------------------- nbgrader preprocessors
def grade_cell(source, grade_id):
    cell = nbformat.v4.new_code_cell(source)
    cell.metadata["nbgrader"] = {
        "grade": True,
        "solution": False,
        "locked": True,
        "grade_id": grade_id,
        "points": 1,
        "schema_version": 3,
        "cell_type": "code",
        "task": False,
    }
    return cell


def new_notebook(cells):
    notebook = nbformat.v4.new_notebook(
        metadata={"kernelspec": {"name": "python3", "language": "python", "display_name": "Python 3"}}
    )
    notebook.cells = cells
    return notebook


#: Ignores SIGINT outright, then loops; nbclient's interrupt after the timeout cannot stop it.
SWALLOW = (
    "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\n"
    "while True:\n    try:\n        pass\n    except KeyboardInterrupt:\n        pass"
)


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
    submitted = new_notebook(
        [
            nbformat.v4.new_code_cell("get_ipython().input_transformers_post.append(0)"),
            grade_cell("pass", "collage_quarters"),
        ]
    )
    reset = ResetGradingNotebook(source_notebook=str(tmp_path / "grading.ipynb"))
    result, _ = reset.preprocess(submitted, {"nbgrader": {"notebook": "grading"}})
    assert [cell.source for cell in result.cells] == ["check()"]
    other, _ = reset.preprocess(new_notebook([nbformat.v4.new_code_cell("x")]), {"nbgrader": {"notebook": "3_report"}})
    assert [cell.source for cell in other.cells] == ["x"]


def test_a_child_killed_by_a_signal_is_crashed_unless_a_limit_stopped_it():
    from autograder.judge.core import child_status
    from autograder.sandbox import RunResult

    assert child_status(RunResult(returncode=-9)) == "crashed"  # e.g. os.kill(os.getpid(), 9)
    assert child_status(RunResult(returncode=-24, timed_out=True)) == "timeout"  # SIGXCPU: the sandbox sets timed_out
    assert child_status(RunResult(returncode=-9, memory_exceeded=True)) == "memory_limit"
