"""Augmentations that blend two images into one training sample: you write both.

An augmentation takes two single images, each a numpy array ``[C, H, W]``, and
returns ``(result, interpolation)``: the blended image and the weight that the
first image's label gets in the soft label. ``blending.augment`` (provided) applies
one to a whole batch and builds the soft labels.
"""
import numpy as np
import torch  # noqa: F401 - yours to use in collage and mixup


def collage(batch_i, batch_j):
    """Glue the quarters of two square images into one image.

    The top-left and bottom-right quarters come from ``batch_j``; the top-right
    and bottom-left quarters come from ``batch_i``::

        +-----+-----+
        |  j  |  i  |
        +-----+-----+
        |  i  |  j  |
        +-----+-----+

    Args:
        batch_i: image ``[C, H, W]`` with ``H == W`` and ``H`` even. Not modified.
        batch_j: image ``[C, H, W]``, same shape. Not modified.

    Returns:
        result: float array ``[C, H, W]``, a new array.
        interpolation: 0.5, since each image covers half of the pixels.
    """
    # *****START OF YOUR CODE*****
    # YOUR CODE HERE
    raise NotImplementedError()
    # *****END OF YOUR CODE*****
    return result, interpolation


def mixup(batch_i, batch_j, alpha=0.3):
    """Blend two images pixel by pixel with a random weight.

    The weight ``interpolation`` is drawn from Beta(alpha, alpha) for you;
    with alpha < 1 it is usually close to 0 or 1.

    Args:
        batch_i: image ``[C, H, W]``. Not modified.
        batch_j: image ``[C, H, W]``, same shape. Not modified.
        alpha: both shape parameters of the Beta distribution.

    Returns:
        result: ``interpolation * batch_i + (1 - interpolation) * batch_j``, ``[C, H, W]``.
        interpolation: the weight of ``batch_i``, a float in [0, 1].
    """
    interpolation = np.random.beta(alpha, alpha)
    # *****START OF YOUR CODE*****
    # YOUR CODE HERE
    raise NotImplementedError()
    # *****END OF YOUR CODE*****
    return result, interpolation
