"""The data of the feedback pictures: one hidden input of collage and mixup, expected against got.

The judge puts these arrays into the verdict (``parts[part]["picture"]``);
:mod:`autograder.feedback` only draws them. The inputs shown are digit images
(:mod:`.digits`); showing one hidden input example is accepted.
"""

import numpy as np

from . import reference

#: The hidden case shown in the picture of each part.
PICTURE_CASE = {"collage": "c0", "mixup": "m0"}


def picture_arrays(part, part_inputs, outputs):
    """The arrays of the picture for ``part`` (collage, mixup), as JSON-able lists; None for other parts.

    Args:
        part: the part's name.
        part_inputs: the hidden inputs of the part (``{name: array}``), e.g. ``c0_i``, ``c0_j``.
        outputs: the runner's arrays for the part, e.g. ``c0_result`` and ``c0_weight``.

    Returns:
        ``{"i", "j", "expected", "got", "note"}`` with images ``[H, W]`` (first channel) as
        nested lists; ``got`` is None (and ``note`` says why) when there is nothing to show.
    """
    key = PICTURE_CASE.get(part)
    if key is None or f"{key}_i" not in part_inputs:
        return None
    first, second = part_inputs[f"{key}_i"], part_inputs[f"{key}_j"]
    got, note = outputs.get(f"{key}_result"), ""
    weight = outputs.get(f"{key}_weight")
    if part == "collage":
        expected = reference.collage(first, second)
    elif weight is not None and weight.size == 1:
        weight = float(weight.reshape(()))
        expected = reference.mixup(first, second, weight)
        note = f"with the weight your mixup returned, {weight:.3f}"
    else:
        expected, note = None, "your mixup returned no weight"
    if got is None:
        note = "your function raised an error or returned nothing usable"
    elif expected is not None and np.shape(got) != np.shape(expected):
        note, got = f"your result has shape {list(np.shape(got))}, expected {list(np.shape(expected))}", None

    def image(array):
        return None if array is None else np.asarray(array, dtype=np.float64)[0].round(4).tolist()

    return {"i": image(first), "j": image(second), "expected": image(expected), "got": image(got), "note": note}
