"""The release generator: real nbgrader, byte-identical regeneration, and a gate that catches leaks."""

import ast
import json
import shutil
import sqlite3
import subprocess
import sys

import pytest
from conftest import KIT_ROOT

sys.path.insert(0, str(KIT_ROOT))
from autograder import ASSIGNMENT, STUDENT_MODULES  # noqa: E402
from autograder.gate import MARKERS, ReleaseLeakError, check_release, secret_and_public_lines  # noqa: E402
from autograder.nbgrader_glue.course import (  # noqa: E402
    gradebook_path,
    release_dir,
    source_dir,
    strip_module,
)
from autograder.release import compare_release, stage_release  # noqa: E402

SOLUTIONS = KIT_ROOT / "solutions"
GRADING = KIT_ROOT / "autograder" / "nbgrader_glue" / "grading.ipynb"


@pytest.fixture(scope="session")
def course(course_template):
    """The session's real nbgrader course, built from solutions/ by ``prepare_course`` (conftest); read only here."""
    return course_template / "course"


def test_committed_release_equals_a_fresh_regeneration(course, tmp_path):
    staging = stage_release(course, tmp_path / "staging")
    differences = compare_release(staging, KIT_ROOT)
    assert differences == [], "run `make release` and commit handin/ and notebooks/:\n" + "\n".join(differences)


def test_check_command_lists_exactly_the_differing_files(course, tmp_path):
    kit = stage_release(course, tmp_path / "kit")  # a fresh release, then two edits by hand
    with open(kit / "handin" / "utils.py", "a") as module:
        module.write("# an edit by hand\n")
    (kit / "notebooks" / "stale.ipynb").write_text("{}")
    done = subprocess.run(
        [sys.executable, "-m", "autograder", "release", "--check", "--kit-root", str(kit)],
        cwd=KIT_ROOT,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 1
    listed = [line.strip() for line in done.stderr.splitlines() if line.startswith("  ")]
    assert listed == ["differs: handin/utils.py", "not generated (stale): notebooks/stale.ipynb"], done.stderr


def test_course_layout_and_gradebook(course):
    source, release = source_dir(course), release_dir(course)
    assert sorted(path.name for path in (source / "handin").glob("*.py")) == sorted(
        path.name for path in (SOLUTIONS / "handin").glob("*.py")
    )
    for notebook in (SOLUTIONS / "notebooks").glob("*.ipynb"):
        assert (release / notebook.name).is_file()
    assert (source / "grading.ipynb").is_file() == GRADING.is_file()
    with sqlite3.connect(gradebook_path(course)) as database:
        assert database.execute("select name from assignment").fetchall() == [(ASSIGNMENT,)]


def test_release_has_stubs_where_solutions_were(course):
    for name in STUDENT_MODULES:
        released = (KIT_ROOT / "handin" / name).read_text()
        assert "raise NotImplementedError()" in released
        assert not any(marker in released for marker in MARKERS)
        # The stub keeps the API: the same classes, functions and methods as the solution.
        assert _definitions(released) == _definitions((SOLUTIONS / "handin" / name).read_text())
    assert not (KIT_ROOT / "notebooks" / "grading.ipynb").exists()


def test_the_students_augmentations_file_holds_only_what_they_write():
    """The provided batch code (augment, partners, soft labels) lives in blending.py, which the grader and
    the engine take from the kit; the student's augmentations.py defines their two functions and nothing else."""
    released = (KIT_ROOT / "handin" / "augmentations.py").read_text()
    assert _definitions(released) == ["collage", "mixup"]
    blending = (SOLUTIONS / "handin" / "blending.py").read_text()
    assert {"augment", "blend_batch", "blended_soft_labels", "no_aug", "random_partners"} <= set(_definitions(blending))
    assert "blending.py" not in STUDENT_MODULES


def _definitions(source):
    return sorted(
        node.name for node in ast.walk(ast.parse(source)) if isinstance(node, (ast.FunctionDef, ast.ClassDef))
    )


def test_stub_is_indented_like_the_solution_region(tmp_path):
    module = tmp_path / "module.py"
    module.write_text(
        "class A:\n    def f(self):\n        # *****START OF YOUR CODE*****\n"
        "        ### BEGIN SOLUTION\n        return 42\n        ### END SOLUTION\n"
        "        # *****END OF YOUR CODE*****\n"
    )
    strip_module(module)
    assert module.read_text() == (
        "class A:\n    def f(self):\n        # *****START OF YOUR CODE*****\n"
        "        # YOUR CODE HERE\n        raise NotImplementedError()\n"
        "        # *****END OF YOUR CODE*****\n"
    )


def test_released_notebooks_have_no_outputs_and_stable_metadata():
    for path in sorted((KIT_ROOT / "notebooks").glob("*.ipynb")):
        notebook = json.loads(path.read_text())
        assert set(notebook["metadata"]) <= {"kernelspec", "language_info"}, path
        for cell in notebook["cells"]:
            assert cell.get("outputs", []) == [] and cell.get("execution_count") is None, path
            assert set(cell["metadata"]) <= {"nbgrader", "tags", "editable", "deletable"}, path


@pytest.fixture()
def release_copy(tmp_path):
    """A copy of the committed release to plant leaks in."""
    for folder in ("handin", "notebooks"):
        shutil.copytree(KIT_ROOT / folder, tmp_path / folder, ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


def test_the_committed_release_passes_the_gate(release_copy):
    assert check_release([release_copy / "handin", release_copy / "notebooks"], SOLUTIONS, GRADING) > 0


def test_gate_rejects_a_planted_solution_line(release_copy):
    utils = release_copy / "handin" / "utils.py"
    lines = utils.read_text().split("\n")
    stub = lines.index("    raise NotImplementedError()")
    lines.insert(stub, "    return -(target * pred).sum(dim=1).mean()")  # the solution, differently spaced
    utils.write_text("\n".join(lines))
    with pytest.raises(ReleaseLeakError) as error:
        check_release([release_copy / "handin", release_copy / "notebooks"], SOLUTIONS, GRADING)
    assert f"{utils}, line {stub + 1}: solution line" in str(error.value)


def test_gate_rejects_markers_and_solution_lines_in_notebooks(release_copy):
    notebook_path = sorted((release_copy / "notebooks").glob("*.ipynb"))[0]
    notebook = json.loads(notebook_path.read_text())
    notebook["cells"][0]["source"] = "intro\n### END SOLUTION"
    notebook["cells"][1]["source"] = "half = batch_i.shape[-1] // 2"
    notebook_path.write_text(json.dumps(notebook))
    with pytest.raises(ReleaseLeakError) as error:
        check_release([release_copy / "notebooks"], SOLUTIONS, GRADING)
    message = str(error.value)
    assert f"{notebook_path}, cell 0, line 2: marker 'END SOLUTION'" in message
    assert f"{notebook_path}, cell 1, line 1: solution line" in message


def test_gate_rejects_hidden_test_text(tmp_path):
    grading = tmp_path / "grading.ipynb"
    grading.write_text(
        json.dumps(
            {
                "cells": [
                    {
                        "cell_type": "code",
                        "metadata": {},
                        "source": [
                            "from autograder.nbgrader_glue.cell import check\n",
                            "### BEGIN HIDDEN TESTS\n",
                            "check('collage', 'quarters')\n",
                            "### END HIDDEN TESTS\n",
                        ],
                    }
                ]
            }
        )
    )
    release = tmp_path / "release"
    release.mkdir()
    leak = "from autograder.nbgrader_glue.cell import check\ncheck( 'collage', 'quarters' )\n"
    (release / "leak.py").write_text(leak)
    with pytest.raises(ReleaseLeakError, match=r"leak.py, line 2: hidden-test line"):
        check_release([release], SOLUTIONS, grading)


def test_trivial_and_public_lines_are_not_secrets():
    secrets, public = secret_and_public_lines(SOLUTIONS, GRADING)
    assert "returnresult,interpolation" in public and "returnresult,interpolation" not in secrets
    assert "interpolation=0.5" in secrets and "returnlist(self.generalizer.parameters())" in secrets
    assert not any(line in secrets for line in ("pass", ")", "else:", ""))


def test_release_command_fails_loudly_on_a_broken_marker(tmp_path):
    """End to end through nbgrader: a misspelled BEGIN marker leaves the region in the release."""
    from autograder.release import generate

    solutions = tmp_path / "solutions"
    shutil.copytree(SOLUTIONS, solutions, ignore=shutil.ignore_patterns("__pycache__"))
    utils = solutions / "handin" / "utils.py"
    utils.write_text(utils.read_text().replace("### BEGIN SOLUTION", "### BEGIN SOLUTON"))
    kit = tmp_path / "kit"
    kit.mkdir()
    with pytest.raises(ReleaseLeakError) as error:
        generate(kit, solutions_dir=solutions, grading_notebook=GRADING)
    line = utils.read_text().split("\n").index("    ### END SOLUTION") + 1
    assert f"unbalanced markers in {utils}, line {line}: 'END SOLUTION' without a 'BEGIN SOLUTION'" in str(error.value)
    assert not (kit / "handin").exists(), "a gated release must not be written"
