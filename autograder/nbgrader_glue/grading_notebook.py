"""Write ``autograder/nbgrader_glue/grading.ipynb`` from :data:`points.POINTS` (one grade cell per check).

``python -m autograder.nbgrader_glue.grading_notebook`` regenerates it; a test checks that the
committed notebook is what this writes, so points cannot drift apart.
"""

import sys
from pathlib import Path

import nbformat

from .. import KIT_ENV
from ..judge.points import POINTS, cell_id

NOTEBOOK_PATH = Path(__file__).resolve().parent / "grading.ipynb"

INTRO = """# Hand-in 3: automatic grading

This notebook is run by the graders; you do not need to hand it in. Each cell below
checks one thing about your modules `handin/augmentations.py`, `handin/network.py` and
`handin/utils.py` on inputs you do not see, and is worth the points in its comment.
Your code runs in a separate process; only its outputs are compared. Use the visible
self-checks in the notebooks (`handin.checks`) while you work."""

DESCRIPTIONS = {
    ("collage", "quarters"): "every quarter comes from the right image (several sizes and channel counts)",
    ("collage", "interpolation"): "the returned interpolation is 0.5",
    ("collage", "shape_dtype"): "the result has the inputs' shape and a float dtype",
    ("collage", "inputs_unmodified"): "batch_i and batch_j are not modified",
    ("mixup", "blend"): "the result is w * batch_i + (1 - w) * batch_j for the returned w",
    ("mixup", "beta"): "over many draws, w follows Beta(alpha, alpha) for the alpha passed in",
    ("mixup", "inputs_unmodified"): "batch_i and batch_j are not modified",
    ("cross_entropy", "soft_targets"): "correct for soft targets",
    ("cross_entropy", "batch_mean"): "averaged over the batch (not summed, not averaged over classes)",
    ("cross_entropy", "nll"): "equals F.nll_loss for one-hot targets",
    ("cross_entropy", "gradient"): "its gradient with respect to pred is correct",
    ("cross_entropy", "value_error"): "raises ValueError for arguments that are not tensors",
    ("network", "shapes"): "output shapes are right and the outputs are log-probabilities",
    ("network", "reference"): "matches a reference computation with the same weights in eval mode",
    ("network", "eval_deterministic"): "eval mode is deterministic (dropout only through the module)",
    ("network", "heads"): "forward uses pretrainer, generalize uses generalizer",
    ("network", "learns"): "training through forward changes every layer on its path (the gradient reaches "
    "the convolutions) and learns a tiny problem",
    ("frozen_finetuning", "parameters"): "finetune_parameters() returns exactly the generalizer's parameters",
    ("frozen_finetuning", "frozen"): "finetuning with finetune_parameters() keeps conv1, conv2 and pretrainer "
    "bit-identical and changes the generalizer",
    ("frozen_finetuning", "improves"): "the kit's finetuning improves the accuracy",
}

HIDDEN_TEST = """### BEGIN HIDDEN TESTS
import os, sys
sys.path.insert(0, os.environ["{kit_env}"])
from autograder.nbgrader_glue.cell import check
check({part!r}, {name!r})
### END HIDDEN TESTS"""


def grade_cell(part, name, points):
    test = HIDDEN_TEST.format(kit_env=KIT_ENV, part=part, name=name)
    source = f"# {part}: {DESCRIPTIONS[part, name]} ({points} points)\n" + test
    cell = nbformat.v4.new_code_cell(source)
    cell.id = cell_id(part, name).replace("_", "-")
    cell.metadata = {
        "deletable": False,
        "editable": False,
        "nbgrader": {
            "cell_type": "code",
            "grade": True,
            "grade_id": cell_id(part, name),
            "locked": True,
            "points": points,
            "schema_version": 3,
            "solution": False,
            "task": False,
        },
    }
    return cell


def grading_notebook():
    notebook = nbformat.v4.new_notebook(
        metadata={
            "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
            "language_info": {"name": "python"},
        }
    )
    intro = nbformat.v4.new_markdown_cell(INTRO)
    intro.id = "intro"
    intro.metadata = {
        "deletable": False,
        "editable": False,
        "nbgrader": {
            "cell_type": "markdown",
            "grade": False,
            "grade_id": "grading_intro",
            "locked": True,
            "schema_version": 3,
            "solution": False,
            "task": False,
        },
    }
    notebook.cells = [intro] + [
        grade_cell(part, name, points) for part, checks in POINTS.items() for name, points in checks.items()
    ]
    nbformat.validate(notebook)
    return nbformat.writes(notebook, version=4) + "\n"


def main(argv=None):
    NOTEBOOK_PATH.write_text(grading_notebook(), encoding="utf-8")
    print(f"wrote {NOTEBOOK_PATH}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
