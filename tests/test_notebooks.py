"""Notebooks 1 and 2 run top to bottom in a real Jupyter kernel against the solutions, in quick mode."""
import json
import os
import shutil
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from conftest import KIT_ROOT

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


def execute(path, data_root):
    """Run a notebook in a fresh python3 kernel with the quick settings; return the executed notebook."""
    notebook = nbformat.read(path, as_version=4)
    environment = {"HANDIN3_QUICK": "1", "HANDIN3_DATA": str(data_root), "MPLBACKEND": "module://matplotlib_inline.backend_inline",
                   "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])}
    saved = {key: os.environ.get(key) for key in environment}
    os.environ.update(environment)  # the kernel inherits the test process's environment
    try:
        NotebookClient(notebook, timeout=600, kernel_name="python3",
                       resources={"metadata": {"path": str(path.parent)}}).execute()
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
        return "".join(output.get("text", "") for cell in cells for output in cell.outputs
                       if output.output_type == "stream" and output.name == "stdout")
    return sum("image/png" in output.get("data", {}) for cell in cells for output in cell.outputs)


def stream_text(cell):
    """Everything one cell printed: the kernel may split one print into several stream outputs."""
    return "".join(output.get("text", "") for output in cell.outputs if output.output_type == "stream")


def test_augmentations_notebook_runs_and_shows_the_blends(student_layout, tiny_data):
    notebook = execute(student_layout / "notebooks" / NOTEBOOKS[0], tiny_data[0])
    printed = outputs(notebook, "stdout")
    for line in ("✓ collage: all checks passed", "✓ mixup: all checks passed",
                 "✓ augment: shapes and soft labels look right", "samples per class: [8, 8, 8, 8, 8, 8, 8, 8, 8, 8]"):
        assert line in printed
    assert outputs(notebook, "png") == 2, "one grid for collage and one for mixup"


def test_network_notebook_runs_checks_and_the_training_sanity_check(student_layout, tiny_data):
    notebook = execute(student_layout / "notebooks" / NOTEBOOKS[1], tiny_data[0])
    printed = outputs(notebook, "stdout")
    for line in ("apply_convs (2, 256) expected (2, 256)", "finetuning updates 6939 of 12933 parameters",
                 "✓ network: all checks passed", "✓ cross_entropy: all checks passed",
                 "✓ training: train accuracy 1.00 on one sample per class"):
        assert line in printed
    assert outputs(notebook, "png") == 1, "the training curves"


def test_source_notebooks_have_stable_cell_ids_and_no_outputs():
    for name in NOTEBOOKS:
        notebook = json.loads((KIT_ROOT / "solutions" / "notebooks" / name).read_text())
        assert all(cell.get("id") for cell in notebook["cells"]), f"{name}: every cell needs a fixed id"
        assert all(not cell.get("outputs") for cell in notebook["cells"]), f"{name}: clear the outputs before committing"


def test_edits_to_a_module_show_up_without_a_kernel_restart(tmp_path):
    """%autoreload 2: a student fills in collage while the kernel runs, and the check sees it at once."""
    shutil.copytree(KIT_ROOT / "handin", tmp_path / "handin", ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "notebooks").mkdir()
    notebook = nbformat.read(KIT_ROOT / "notebooks" / NOTEBOOKS[0], as_version=4)
    setup_cells = [cell for cell in notebook.cells if cell.cell_type == "code"][:2]
    probe = nbformat.v4.new_code_cell('try:\n    checks.run("collage")\nexcept AssertionError:\n    pass')
    notebook.cells = setup_cells + [probe]
    client = NotebookClient(notebook, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path / "notebooks")}})
    with client.setup_kernel():
        for index in range(3):
            client.execute_cell(notebook.cells[index], index)
        assert "✗ collage: collage is not implemented yet" in stream_text(probe)
        shutil.copyfile(KIT_ROOT / "solutions" / "handin" / "augmentations.py", tmp_path / "handin" / "augmentations.py")
        probe.outputs = []
        client.execute_cell(probe, 2)
        assert stream_text(probe) == "✓ collage: all checks passed\n"
