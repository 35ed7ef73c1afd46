"""The example submissions' TOML format (``autograder/examples.py``): both files fit the kit, mistakes are named.

Every student of ``examples/examples.toml`` and ``tests/submissions.toml`` is assembled from
the current solutions and stubs (each edit's text occurs exactly once), and each kind of
mistake in a file stops with the file, the student and what to change.
"""

import pytest
from submissions import ALL, TOML

from autograder import KIT_ROOT, STUDENT_MODULES
from autograder.examples import EXAMPLES, Edit, Example, ExampleError, assemble, load, module_texts


@pytest.mark.parametrize("path", [EXAMPLES, TOML], ids=lambda path: path.name)
def test_every_example_fits_the_current_modules(path):
    examples = load(path)
    assert examples, f"{path} is empty"
    for example in examples.values():
        texts = module_texts(example)
        assert set(texts) == set(STUDENT_MODULES)
        for edit in example.edit:
            assert edit.new in texts[edit.file], example.name


def test_the_test_submissions_cover_every_kind_and_part():
    kinds = {submission.kind for submission in ALL}
    assert kinds == {"reference", "stub", "bug", "variant", "tamper"}
    lost = {part for submission in ALL if submission.kind == "bug" for part in submission.lose}
    assert lost == {"collage", "mixup", "cross_entropy", "network", "frozen_finetuning"}


def test_assemble_writes_the_modules_and_the_report(tmp_path):
    example = Example("quarter", edit=[Edit("augmentations.py", "interpolation = 0.5\n", "interpolation = 0.25\n")])
    folder = assemble(example, tmp_path)
    assert "interpolation = 0.25\n" in (folder / "handin" / "augmentations.py").read_text()
    solution_utils = (KIT_ROOT / "solutions" / "handin" / "utils.py").read_bytes()
    assert (folder / "handin" / "utils.py").read_bytes() == solution_utils
    assert (folder / "3_report.ipynb").is_file()


GOOD = """
[ann]
kind = "bug"
about = "sums instead of averaging"
lose = ["cross_entropy"]
[[ann.edit]]
file = "utils.py"
old = "return -(target * pred).sum(dim=1).mean()"
new = "return -(target * pred).sum()"
"""

MISTAKES = [
    ('lose = ["cross_entropy"]', 'lose = ["cross_entropy"]\nloose = ["mixup"]', "unknown key 'loose'", "the keys are"),
    ('lose = ["cross_entropy"]', 'lose = ["crossentropy"]', "'crossentropy', which is not a part", "use one of"),
    ('lose = ["cross_entropy"]', 'status = { colage = "timeout" }', "'colage', which is not a part", "use one of"),
    ('kind = "bug"', 'kind = "bugs"', "unknown kind 'bugs'", "use one of reference, stub"),
    ('about = "sums instead of averaging"\n', "", "about is missing", 'write about = "..."'),
    ('file = "utils.py"', 'file = "util.py"', "names the file 'util.py'", "use one of augmentations.py"),
    ('new = "return', 'neww = "return', "an edit has the keys", "exactly file, old, new"),
    ("[[ann.edit]]", '[ann.prepend]\n"losses.py" = "import os"\n[[ann.edit]]', "the file 'losses.py'", "use one of"),
    (
        "[[ann.edit]]",
        '[ann.notebooks]\n"grade.ipynb" = "pass"\n[[ann.edit]]',
        "the file 'grade.ipynb'",
        "grading.ipynb",
    ),
]


@pytest.mark.parametrize("old, new, problem, fix", MISTAKES, ids=[mistake[2] for mistake in MISTAKES])
def test_a_mistake_names_the_file_the_student_and_the_fix(tmp_path, old, new, problem, fix):
    path = tmp_path / "class.toml"
    assert GOOD.count(old) == 1
    path.write_text(GOOD.replace(old, new))
    with pytest.raises(ExampleError) as error:
        load(path)
    message = str(error.value)
    assert message.startswith(f"{path}: [ann]: "), message
    assert problem in message and fix in message, message


@pytest.mark.parametrize("old", ["return -(target * pred).sum(dim=2).mean()", "return "], ids=["absent", "several"])
def test_an_edit_whose_text_is_not_there_once_names_the_file_the_student_and_the_fix(tmp_path, old):
    count = (KIT_ROOT / "solutions" / "handin" / "utils.py").read_text().count(old)
    assert count != 1
    path = tmp_path / "class.toml"
    path.write_text(GOOD.replace('old = "return -(target * pred).sum(dim=1).mean()"', f'old = "{old}"'))
    (example,) = load(path).values()
    with pytest.raises(ExampleError) as error:
        module_texts(example)
    message = str(error.value)
    assert message.startswith(f"{path}: [ann]: the text to replace occurs {count} times in utils.py"), message
    assert "update the edit's old" in message and old in message, message


def test_invalid_toml_names_the_file(tmp_path):
    path = tmp_path / "class.toml"
    path.write_text(GOOD.replace('kind = "bug"', "kind = bug"))
    with pytest.raises(ExampleError, match=f"{path}: not valid TOML"):
        load(path)
