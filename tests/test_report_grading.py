"""The report reaches the TA whole and safe: the parts, one at a time.

Unit tests of the results schema (:mod:`autograder.report`), of placing the kit's cells, of the
sanitizer (:mod:`autograder.sanitize`) and of the kit's feedback page. The whole chain, a class
graded by the real batch grader and opened in a real browser, is ``test_graded_reports.py``.
"""

import base64
import json
import sys

import nbformat
import pytest
from graded_reports import BENIGN_ANSWER, FIGURES, REPORT
from report_results import results_data

from autograder import KIT_ROOT
from autograder.nbgrader_glue.preprocessors import kit_cell_positions, place_kit_cells
from autograder.report import (
    MAX_DEPTH,
    MAX_RESULTS_BYTES,
    RESULTS_FILE,
    KitCode,
    ResultsProblem,
    grade_results,
    load_results,
    validate_records,
)
from autograder.sanitize import clean_markdown, clean_notebook, clean_outputs


@pytest.fixture(scope="module")
def kit():
    return KitCode()


def write(tmp_path, data):
    path = tmp_path / "experiment.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


# ----------------------------------------------------------------------------- the results schema


def test_a_full_results_file_is_valid_and_drawn(kit, tmp_path):
    results = grade_results(write(tmp_path, results_data(kit.engine)), kit)
    assert results.status == "ok" and results.notes == [] and not results.quick
    for marker, count in FIGURES.items():
        assert [("image/png" in output.get("data", {})) for output in results.outputs[marker]] == [True] * count
    assert "(a) finetune accuracy rises with s: HOLDS" in results.outputs["findings.report("][0]["text"]


def test_quick_and_partial_results_are_drawn_with_a_warning(kit, tmp_path):
    data = results_data(kit.engine, pretrain_batches=40, finetune_batches=20, test_every=20, seeds=(0, 1))
    results = grade_results(write(tmp_path, data), kit)
    assert results.status == "ok" and results.quick
    assert any("shortened setting" in note for note in results.notes)
    assert any("126 of the 189 runs" in note for note in results.notes)


@pytest.mark.parametrize(
    "text, reason",
    [
        ("[" * 100_000 + "]" * 100_000, "nested"),
        ('{"runs": [' * 50 + "]}" * 50, "nested"),
        ('{"runs": [NaN]}', "not a number in plain JSON"),
        ('{"runs": [1e999]}', "does not match"),
        ("\xff\xfe", "not UTF-8"),
        ("{'runs': []}", "not a valid JSON"),
        ('{"runs": []}', "holds 0 runs"),
        ('{"runs": [{"s": 1}]}', "missing keys"),
    ],
)
def test_bad_files_get_a_clear_problem(kit, tmp_path, text, reason):
    path = tmp_path / "experiment.json"
    path.write_bytes(text.encode("latin-1") if text == "\xff\xfe" else text.encode())
    with pytest.raises(ResultsProblem, match=reason):
        validate_records(load_results(path), kit.run_key_fields)


@pytest.mark.parametrize(
    "field, value, reason",
    [
        ("finetune_test_accuracy", 1.5, "finetune_test_accuracy must be a number"),
        ("s", True, "s must be a whole number"),
        ("seed", 0.5, "seed must be a whole number"),
        ("augmentation", "<b>none</b>", "augmentation must be one of"),
        ("pretrain", {"train_loss": []}, "pretrain: must be an object"),
    ],
)
def test_records_out_of_schema_are_named(kit, tmp_path, field, value, reason):
    data = results_data(kit.engine, pretrain_batches=40, finetune_batches=20, test_every=20, seeds=(0,))
    data["runs"][3][field] = value
    with pytest.raises(ResultsProblem, match=f"run 3: {reason}"):
        validate_records(data, kit.run_key_fields)


def test_history_values_are_checked(kit):
    data = results_data(kit.engine, pretrain_batches=40, finetune_batches=20, test_every=20, seeds=(0,))
    data["runs"][0]["finetune"]["test_accuracy"][0] = -0.1
    data["runs"][1]["pretrain"]["train_loss"] = data["runs"][1]["pretrain"]["train_loss"][:-1]
    with pytest.raises(ResultsProblem) as problem:
        validate_records(data, kit.run_key_fields)
    assert "run 0: finetune: test_accuracy must hold numbers in [0.0, 1.0]" in str(problem.value)
    assert "run 1: pretrain: train_loss and train_accuracy must both hold 40 values" in str(problem.value)


def test_size_is_capped_before_reading(kit, tmp_path):
    path = tmp_path / "experiment.json"
    with open(path, "wb") as file:
        file.truncate(MAX_RESULTS_BYTES + 1)  # sparse: nothing is written
    with pytest.raises(ResultsProblem, match="more than the limit"):
        load_results(path)
    assert MAX_DEPTH < sys.getrecursionlimit() // 10


def test_missing_file(kit, tmp_path):
    results = grade_results(tmp_path / RESULTS_FILE, kit)
    assert results.status == "missing" and "was not handed in" in results.notes[0]


def test_report_cells_are_found_in_the_kit_notebook():
    notebook = nbformat.read(KIT_ROOT / "solutions" / "notebooks" / REPORT, as_version=4)
    positions = kit_cell_positions(notebook)
    assert list(positions.values()) == sorted(positions.values())  # in notebook order


def test_kit_cells_replace_edited_ones_and_come_back_when_deleted():
    kit_notebook = nbformat.read(KIT_ROOT / "solutions" / "notebooks" / REPORT, as_version=4)
    positions = kit_cell_positions(kit_notebook)
    student = nbformat.read(KIT_ROOT / "solutions" / "notebooks" / REPORT, as_version=4)
    findings_id = kit_notebook.cells[positions["findings.report("]].id
    curves_id = kit_notebook.cells[positions["plot_curves("]].id
    for cell in student.cells:
        if cell.get("id") == findings_id:
            cell.source = "print('every claim holds')"
    student.cells = [cell for cell in student.cells if cell.get("id") != curves_id]
    outputs = {marker: [{"output_type": "stream", "name": "stdout", "text": marker}] for marker in positions}
    place_kit_cells(student, kit_notebook, outputs)
    ids = [cell.get("id") for cell in student.cells]
    assert ids == [cell.get("id") for cell in kit_notebook.cells]  # the deleted cell is back in its place
    for marker, index in positions.items():
        assert student.cells[index].source == kit_notebook.cells[index].source
        assert student.cells[index].outputs[0]["text"] == marker


# ----------------------------------------------------------------------------- the sanitizer


def test_markdown_keeps_its_formatting_and_loses_its_scripts():
    assert clean_markdown(BENIGN_ANSWER).replace("a &lt; b", "a < b") == BENIGN_ANSWER
    dirty = (
        '<b onclick="x()">bold</b> <script>alert(1)</script><img src=x onerror=alert(1)>'
        "<details open ontoggle=alert(1)>d</details><svg onload=alert(1)></svg>"
        "[a](javascript:alert(1)) [b](JaVaScRiPt:alert(1)) [ok](https://example.org)\n[r]: vbscript:x"
    )
    clean = clean_markdown(dirty)
    assert clean.startswith("<b>bold</b>") and "[ok](https://example.org)" in clean
    for active in ("script", "onerror", "ontoggle", "onload", "onclick", "<img", "<svg", "avascript:", "vbscript:"):
        assert active not in clean.lower(), active


def test_only_inert_outputs_survive():
    png = base64.b64encode(b"\x89PNG").decode()
    outputs = [
        {
            "output_type": "display_data",
            "metadata": {"image/png": {"width": "1 onload=x"}},
            "data": {"image/png": png, "text/html": "<script>x</script>"},
        },
        {"output_type": "display_data", "metadata": {}, "data": {"application/javascript": "x()"}},
        {
            "output_type": "execute_result",
            "metadata": {},
            "data": {"image/svg+xml": "<svg onload=x>"},
            "execution_count": 1,
        },
        {"output_type": "stream", "name": "stdout", "text": "<b>text</b>"},
    ]
    kept = clean_outputs(outputs)
    assert kept == [
        {"output_type": "display_data", "metadata": {}, "data": {"image/png": png}},
        {"output_type": "stream", "name": "stdout", "text": "<b>text</b>"},
    ]


def test_notebook_metadata_and_attachments_are_cleaned():
    notebook = nbformat.v4.new_notebook(
        metadata={"widgets": {"x": "<script>"}, "kernelspec": {"name": "python3", "display_name": "Python 3"}}
    )
    cell = nbformat.v4.new_markdown_cell(
        "![p](attachment:p.svg)",
        metadata={"tags": ["<img onerror=x>"], "nbgrader": {"grade_id": "<script>", "grade": True}},
    )
    cell.attachments = {"p.svg": {"image/svg+xml": "<svg onload=x>"}, "q.png": {"image/png": "AAAA"}}
    notebook.cells = [cell, nbformat.v4.new_raw_cell("<script>x()</script>", metadata={"format": "text/html"})]
    clean_notebook(notebook)
    assert notebook.metadata == {"kernelspec": {"name": "python3", "display_name": "Python 3"}}
    assert notebook.cells[0].metadata == {} and notebook.cells[0].attachments == {"q.png": {"image/png": "AAAA"}}
    assert notebook.cells[1].source == "" and notebook.cells[1].metadata == {}


def test_kit_feedback_escapes_names_and_messages(tmp_path):
    from autograder.collect import Submission
    from autograder.feedback import PARTS, feedback_html

    planted = "<img src=x onerror=alert(1)>"
    submission = Submission(f"id{planted}", origins=[f"{planted}.zip"], status="ok", notes=[f"file {planted}"])
    row = {"status": f"crashed:{planted}", "total": 0, "max_total": 50, **dict.fromkeys(PARTS, 0)}
    verdict = {
        "parts": {
            "collage": {
                "max": 10,
                "reason": planted,
                "checks": [{"name": planted, "points": 0, "max": 4, "passed": False, "message": planted}],
            }
        }
    }
    page = feedback_html(submission, row, verdict, tmp_path / "no-report.ipynb")
    assert "<img" not in page and page.count("&lt;img src=x onerror=alert(1)&gt;") >= 6
