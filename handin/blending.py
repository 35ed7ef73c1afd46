"""Augmenting a batch: every image blended with a random partner, and the soft labels.

Provided code: training and the engine call :func:`augment`, which applies one of
the augmentations of ``augmentations.py`` (your ``collage`` and ``mixup``) to a whole
batch. An augmentation takes two single images, each a numpy array ``[C, H, W]``, and
returns ``(result, interpolation)``: the blended image and the weight that the first
image's label gets in the soft label.
"""
import numpy as np
import torch

from .augmentations import collage, mixup
from .utils import one_hot


def no_aug(batch_i, batch_j):
    """Return ``batch_i`` unchanged: its label gets all the weight.

    Args:
        batch_i: image ``[C, H, W]``.
        batch_j: image ``[C, H, W]``, ignored.

    Returns:
        result: a copy of ``batch_i``, ``[C, H, W]``.
        interpolation: 1.0.
    """
    return np.copy(batch_i), 1.0


AUGMENTATION_DICT = {"none": no_aug, "collage": collage, "mixup": mixup}


def random_partners(batch_size):
    """Pick, for every position of a batch, a *different* random position.

    Args:
        batch_size: ``B``.

    Returns:
        partners: int array ``[B]`` with ``partners[b] != b`` whenever ``B > 1``.
        A batch of one image has no other image, so it is its own partner.
    """
    if batch_size == 1:
        return np.zeros(1, dtype=np.int64)
    # A shift in 1..B-1 (mod B) can never land on the position itself.
    shifts = np.random.randint(1, batch_size, size=batch_size)
    return (np.arange(batch_size) + shifts) % batch_size


def blend_batch(combine, images):
    """Blend every image with a random partner from the same batch: the numpy half of :func:`augment`.

    Args:
        combine: an augmentation function such as :func:`collage`.
        images: float array ``[B, C, H, W]``.

    Returns:
        blended: array ``[B, C, H, W]``, ``combine(images[b], images[partners[b]])`` for every ``b``.
        weights: float array ``[B]``, the interpolation ``combine`` returned for each image.
        partners: int array ``[B]`` from :func:`random_partners`.
    """
    partners = random_partners(len(images))
    # Copies: an image is used several times per batch, and a combine that modified
    # its inputs in place would change the batch for the pairs after it.
    blended, weights = zip(*(combine(images[b].copy(), images[p].copy()) for b, p in enumerate(partners)))
    return np.stack(blended), np.asarray(weights, dtype=float), partners


def blended_soft_labels(labels, partner_labels, weights, n_classes, dtype=torch.float32):
    """Soft labels of blended images: ``w * one_hot(label) + (1 - w) * one_hot(partner's label)``.

    Args:
        labels, partner_labels: long tensors of any shape ``[...]``.
        weights: float array or tensor ``[...]``, the weight of ``labels``.
        n_classes: ``K``.

    Returns:
        tensor ``[..., K]``.
    """
    weight = torch.as_tensor(weights, dtype=dtype).unsqueeze(-1)
    return (weight * one_hot(labels, n_classes, dtype=dtype)
            + (1 - weight) * one_hot(partner_labels, n_classes, dtype=dtype))


def augment(augmentation, batch, labels, n_classes):
    """Blend every image of a batch with another random image of the same batch.

    Args:
        augmentation: a key of ``AUGMENTATION_DICT`` ("none", "collage" or
            "mixup"), or a function with the same signature as :func:`collage`.
        batch: images, float tensor ``[B, C, H, W]``.
        labels: class indices, long tensor ``[B]``.
        n_classes: ``K``, the number of classes of the soft labels.

    Returns:
        new_batch: blended images, tensor ``[B, C, H, W]`` with ``batch``'s dtype.
        soft_labels: tensor ``[B, K]``; row ``b`` is
            ``t_b * one_hot(labels[b]) + (1 - t_b) * one_hot(labels[partner_b])``
            where ``t_b`` is the interpolation returned for image ``b``.
    """
    combine = AUGMENTATION_DICT[augmentation] if isinstance(augmentation, str) else augmentation
    blended, weights, partners = blend_batch(combine, batch.detach().cpu().numpy())
    new_batch = torch.as_tensor(blended, dtype=batch.dtype)
    soft_labels = blended_soft_labels(labels, labels[torch.from_numpy(partners)], weights, n_classes, batch.dtype)
    return new_batch, soft_labels
