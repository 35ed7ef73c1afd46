"""The report notebook: runs top to bottom in a real kernel, and only loads saved results under nbgrader.

The notebook runs in its default, quick setting on tiny IDX datasets that the tests write,
with the solutions copied as ``handin/`` next to it (the student release layout).
"""

import json
import shutil

import nbformat
import pytest
from conftest import KIT_ROOT
from nbclient import NotebookClient

NOTEBOOK = KIT_ROOT / "solutions" / "notebooks" / "3_report.ipynb"
#: 2 experiments: MNIST -> (MNIST, Fashion-MNIST) and Fashion-MNIST -> MNIST; quick: 2 seeds x 3 augmentations x 3 s.
N_RUNS = 3 * 2 * 3 * 3
#: The full setting: 3 seeds x 3 augmentations x 7 s per dataset pair.
N_FULL_RUNS = 3 * 3 * 3 * 7
QUICK_BANNER = "QUICK SETTING: NUMBERS ARE NOT MEANINGFUL"
#: 2 augmentation grids, pretrain and finetune curves for 2 values of s, accuracy vs s, same vs cross.
N_FIGURES = 2 + 4 + 1 + 1


def make_kit(root):
    """The student layout: ``handin/`` (the solutions) and ``notebooks/3_report.ipynb``."""
    shutil.copytree(KIT_ROOT / "solutions" / "handin", root / "handin", ignore=shutil.ignore_patterns("__pycache__"))
    (root / "notebooks").mkdir()
    shutil.copy(NOTEBOOK, root / "notebooks" / NOTEBOOK.name)
    return root / "notebooks" / NOTEBOOK.name


def execute(path, monkeypatch, setting="quick", **env):
    """Run the notebook in a fresh kernel with its ``SETTING`` line set as a student would, and these
    environment variables; return it with outputs."""
    for name in ("NBGRADER_EXECUTION", "HANDIN3_QUICK", "HANDIN3_DATA", "HANDIN3_RESULTS"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, str(value))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    notebook = nbformat.read(path, as_version=4)
    setup = notebook.cells[1]
    assert 'SETTING = "quick"\n' in setup.source, "the first code cell chooses the setting"
    setup.source = setup.source.replace('SETTING = "quick"\n', f'SETTING = "{setting}"\n')
    NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    ).execute()
    return notebook


def outputs_text(notebook):
    return "\n".join(
        output.get("text", "")
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.get("outputs", [])
    )


def n_figures(notebook):
    return sum(
        "image/png" in output.get("data", {})
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.get("outputs", [])
    )


@pytest.fixture(scope="module")
def trained_report(tiny_data, tmp_path_factory):
    """The report run once in the quick setting, training every run; its kit folder and executed notebook."""
    root = tmp_path_factory.mktemp("kit")
    path = make_kit(root)
    with pytest.MonkeyPatch.context() as patch:
        notebook = execute(path, patch, HANDIN3_DATA=tiny_data[0])
    return root, notebook


def test_report_runs_the_experiment_in_the_quick_setting_and_says_so(trained_report):
    root, notebook = trained_report
    assert not (root / "results" / "experiment.json").exists(), "the quick setting never writes the hand-in file"
    records = json.loads((root / "results" / "quick.json").read_text())["runs"]
    assert len(records) == N_RUNS
    assert {(r["pretrain_dataset"], r["finetune_dataset"]) for r in records} == {
        ("mnist", "mnist"),
        ("mnist", "fashion-mnist"),
        ("fashion-mnist", "mnist"),
    }
    assert {r["pretrain_batches"] for r in records} == {40}  # the quick setting
    assert n_figures(notebook) == N_FIGURES
    text = outputs_text(notebook)
    for letter in "abcd":
        assert f"({letter}) " in text
    assert any(verdict in text for verdict in ("HOLDS", "DOES NOT HOLD", "INCONCLUSIVE"))
    assert text.count(QUICK_BANNER) == 2, "before the experiment and above the findings"
    assert "(quick setting: numbers are not meaningful)" in text


def test_the_progress_bar_names_the_experiment_seed_and_phase(trained_report):
    _, notebook = trained_report
    bars = [
        output
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.get("outputs", [])
        if "application/vnd.jupyter.widget-view+json" in output.get("data", {})
    ]
    assert len(bars) == 2, "one bar per experiment, left in view"
    # The bars' last state, as saved with the notebook; tqdm writes spaces as U+2007 in a widget.
    text = json.dumps(notebook.metadata.get("widgets", {}), ensure_ascii=False).replace("\u2007", " ")
    for description in (
        "mnist → mnist and fashion-mnist, seed 1: finetuning on fashion-mnist",
        "fashion-mnist → mnist, seed 1: finetuning on mnist",
    ):
        assert description in text


def test_under_nbgrader_the_report_loads_saved_results_instead_of_training(trained_report, tmp_path, monkeypatch):
    root, trained = trained_report
    results = root / "results" / "quick.json"
    before = results.read_bytes()
    # No datasets at all: training would fail, so every figure must come from the saved results.
    notebook = execute(
        root / "notebooks" / NOTEBOOK.name,
        monkeypatch,
        NBGRADER_EXECUTION="autograde",
        HANDIN3_DATA=tmp_path / "no-data",
    )
    assert results.read_bytes() == before
    assert f"{N_RUNS} runs from" in outputs_text(notebook)
    assert n_figures(notebook) == N_FIGURES - 2  # the augmentation examples need the images
    assert "Note: no augmentation examples, the dataset is missing" in outputs_text(notebook)


def test_under_nbgrader_without_results_the_report_says_so_and_does_not_crash(tiny_data, tmp_path, monkeypatch):
    path = make_kit(tmp_path)
    notebook = execute(path, monkeypatch, setting="full", NBGRADER_EXECUTION="autograde", HANDIN3_DATA=tiny_data[0])
    text = outputs_text(notebook)
    assert f"experiment.json holds 0 of the {N_FULL_RUNS} runs" in text and "hand in that file" in text
    assert QUICK_BANNER not in text
    assert "no results yet" in text
    assert not (tmp_path / "results").exists()


def test_answer_cells_are_manually_graded_with_points_and_model_answers():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    graded = [cell for cell in notebook.cells if cell.metadata.get("nbgrader", {}).get("grade")]
    ids = [cell.metadata.nbgrader.grade_id for cell in notebook.cells if "nbgrader" in cell.metadata]
    assert len(ids) == len(set(ids)), "grade_ids must be unique"
    assert len(graded) == 10  # 5 code explanations, 2 predictions, 3 report questions
    for cell in graded:
        meta = cell.metadata.nbgrader
        assert cell.cell_type == "markdown" and meta.solution and not meta.locked and meta.points > 0
        assert cell.source.startswith("### BEGIN SOLUTION\n") and cell.source.endswith("\n### END SOLUTION")
    code = "\n".join(cell.source for cell in notebook.cells if cell.cell_type == "code")
    assert "BEGIN SOLUTION" not in code, "the report's code is provided, not a solution"
