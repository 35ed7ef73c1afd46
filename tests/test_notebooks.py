"""The notebooks in a real Jupyter kernel: 1 and 2 run top to bottom against the solutions; on the untouched
release every notebook stops at the first unwritten function with one line that names it."""

import json
import os
import shutil
import sys
from pathlib import Path

import nbformat
import pytest
from conftest import KIT_ROOT
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

NOTEBOOKS = ("1_augmentations.ipynb", "2_network_and_loss.ipynb")


@pytest.fixture(scope="module")
def student_layout(tmp_path_factory):
    """A student-like folder: the solutions as ``handin/`` and the source notebooks in ``notebooks/``."""
    root = tmp_path_factory.mktemp("kit")
    shutil.copytree(KIT_ROOT / "solutions" / "handin", root / "handin", ignore=shutil.ignore_patterns("__pycache__"))
    (root / "notebooks").mkdir()
    for name in NOTEBOOKS:
        shutil.copyfile(KIT_ROOT / "solutions" / "notebooks" / name, root / "notebooks" / name)
    return root


#: Edits a student would make for a shorter run: (notebook, line in it, replacement).
SHORTER_RUNS = {"2_network_and_loss.ipynb": ("n_batches = 1500", "n_batches = 60")}
#: The first function that Run All reaches in each notebook of the untouched release.
FIRST_UNWRITTEN = {
    "1_augmentations.ipynb": ("collage", "augmentations.py"),
    "2_network_and_loss.ipynb": ("Net.apply_convs", "network.py"),
    "3_report.ipynb": ("Net.forward", "network.py"),
}


def write_this(function, file_name):
    return f"Write `{function}` in handin/{file_name} (between the YOUR CODE markers), then run this cell again."


def edit_line(notebook, old, new):
    """Change one line of a code cell, as a student would; fail if the line is not there."""
    cells = [cell for cell in notebook.cells if cell.cell_type == "code" and old in cell.source]
    assert len(cells) == 1, f"the notebook should have one cell with {old!r}"
    cells[0].source = cells[0].source.replace(old, new)


def execute(path, data_root, allow_errors=False):
    """Run a notebook in a fresh python3 kernel, with a shorter run where it has one; return it with its outputs."""
    notebook = nbformat.read(path, as_version=4)
    if path.name in SHORTER_RUNS:
        edit_line(notebook, *SHORTER_RUNS[path.name])
    environment = {
        "HANDIN3_DATA": str(data_root),
        "MPLBACKEND": "module://matplotlib_inline.backend_inline",
        "OMP_NUM_THREADS": "1",
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
    }
    saved = {key: os.environ.get(key) for key in environment}
    os.environ.update(environment)  # the kernel inherits the test process's environment
    try:
        NotebookClient(
            notebook,
            timeout=600,
            kernel_name="python3",
            allow_errors=allow_errors,
            resources={"metadata": {"path": str(path.parent)}},
        ).execute()
    except CellExecutionError:
        pass  # Run All stops at the failing cell; the caller looks at the outputs
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return notebook


def outputs(notebook, kind):
    """All text printed to stdout, or the number of PNG figures shown."""
    cells = [cell for cell in notebook.cells if cell.cell_type == "code"]
    if kind == "stdout":
        return "".join(
            output.get("text", "")
            for cell in cells
            for output in cell.outputs
            if output.output_type == "stream" and output.name == "stdout"
        )
    return sum("image/png" in output.get("data", {}) for cell in cells for output in cell.outputs)


def stream_text(cell):
    """Everything one cell printed: the kernel may split one print into several stream outputs."""
    return "".join(output.get("text", "") for output in cell.outputs if output.output_type == "stream")


def test_augmentations_notebook_runs_and_shows_the_blends(student_layout, tiny_data):
    notebook = execute(student_layout / "notebooks" / NOTEBOOKS[0], tiny_data[0])
    printed = outputs(notebook, "stdout")
    for line in (
        "✓ collage: all checks passed",
        "✓ mixup: all checks passed",
        "✓ augment: shapes and soft labels look right",
        "samples per class: [8, 8, 8, 8, 8, 8, 8, 8, 8, 8]",
    ):
        assert line in printed
    assert outputs(notebook, "png") == 2, "one grid for collage and one for mixup"


def test_network_notebook_runs_checks_and_the_training_sanity_check(student_layout, tiny_data):
    notebook = execute(student_layout / "notebooks" / NOTEBOOKS[1], tiny_data[0])
    printed = outputs(notebook, "stdout")
    for line in (
        "apply_convs (2, 256) expected (2, 256)",
        "finetuning updates 6939 of 12933 parameters",
        "✓ network: all checks passed",
        "✓ cross_entropy: all checks passed",
        "✓ training: train accuracy 1.00 on one sample per class",
    ):
        assert line in printed
    assert outputs(notebook, "png") == 1, "the training curves"


@pytest.fixture(scope="module")
def release_layout(tmp_path_factory):
    """A student's fresh copy of the generated release: untouched stubs in ``handin/``, the ``notebooks/``."""
    root = tmp_path_factory.mktemp("release")
    for folder in ("handin", "notebooks"):
        shutil.copytree(KIT_ROOT / folder, root / folder, ignore=shutil.ignore_patterns("__pycache__"))
    return root


@pytest.mark.parametrize("name", sorted(FIRST_UNWRITTEN))
def test_run_all_on_the_untouched_release_stops_with_one_line_naming_the_first_function(
    release_layout, tiny_data, name
):
    notebook = execute(release_layout / "notebooks" / name, tiny_data[0])
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    failed = [index for index, cell in enumerate(code) if any(o.output_type == "error" for o in cell.outputs)]
    assert len(failed) == 1, "Run All stops at the first failing cell"
    assert not any(cell.outputs for cell in code[failed[0] + 1 :]), "no cell after it ran"
    error = code[failed[0]].outputs[-1]
    assert error.output_type == "error" and error.ename == "NotImplementedError"
    assert error.traceback == [write_this(*FIRST_UNWRITTEN[name])], "one line, no traceback through provided code"


def test_other_errors_keep_their_traceback(release_layout):
    """Only an untouched YOUR CODE block is shortened; a NotImplementedError from anywhere else is shown in full."""
    notebook = nbformat.read(KIT_ROOT / "notebooks" / NOTEBOOKS[0], as_version=4)
    setup = [cell for cell in notebook.cells if cell.cell_type == "code"][0]
    elsewhere = nbformat.v4.new_code_cell('def helper():\n    raise NotImplementedError("a helper of mine")\nhelper()')
    notebook.cells = [setup, elsewhere]
    with pytest.raises(CellExecutionError):
        NotebookClient(
            notebook,
            timeout=600,
            kernel_name="python3",
            resources={"metadata": {"path": str(release_layout / "notebooks")}},
        ).execute()
    traceback = "\n".join(elsewhere.outputs[-1].traceback)
    assert len(elsewhere.outputs[-1].traceback) > 1 and "a helper of mine" in traceback and "helper()" in traceback


def test_source_notebooks_have_stable_cell_ids_and_no_outputs():
    for name in NOTEBOOKS:
        notebook = json.loads((KIT_ROOT / "solutions" / "notebooks" / name).read_text())
        assert all(cell.get("id") for cell in notebook["cells"]), f"{name}: every cell needs a fixed id"
        assert all(not cell.get("outputs") for cell in notebook["cells"]), (
            f"{name}: clear the outputs before committing"
        )


def test_edits_to_a_module_show_up_without_a_kernel_restart(tmp_path):
    """%autoreload 2: a student fills in collage while the kernel runs, and the check sees it at once."""
    shutil.copytree(KIT_ROOT / "handin", tmp_path / "handin", ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "notebooks").mkdir()
    notebook = nbformat.read(KIT_ROOT / "notebooks" / NOTEBOOKS[0], as_version=4)
    setup_cells = [cell for cell in notebook.cells if cell.cell_type == "code"][:2]
    probe = nbformat.v4.new_code_cell('try:\n    checks.run("collage")\nexcept AssertionError:\n    pass')
    notebook.cells = setup_cells + [probe]
    client = NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path / "notebooks")}}
    )
    with client.setup_kernel():
        for index in range(3):
            client.execute_cell(notebook.cells[index], index)
        assert "✗ collage: collage is not implemented yet" in stream_text(probe)
        shutil.copyfile(
            KIT_ROOT / "solutions" / "handin" / "augmentations.py", tmp_path / "handin" / "augmentations.py"
        )
        probe.outputs = []
        client.execute_cell(probe, 2)
        assert stream_text(probe) == "✓ collage: all checks passed\n"
