"""Write small datasets in the exact raw IDX format that torchvision reads.

Tests use these instead of downloads: MNIST and Fashion-MNIST store images
upright with labels 0..9; EMNIST-letters stores every image transposed, with
labels 1..26.
"""

import struct
from pathlib import Path

import numpy as np

_LAYOUT = {
    # name: (folder, file prefix per split, labels, stored transposed)
    "mnist": ("MNIST", {"train": "train", "test": "t10k"}, range(10), False),
    "fashion-mnist": ("FashionMNIST", {"train": "train", "test": "t10k"}, range(10), False),
    "emnist": ("EMNIST", {"train": "emnist-letters-train", "test": "emnist-letters-test"}, range(1, 27), True),
}


def write_idx(path, array):
    """Write a uint8 array as an IDX file: magic (0, 0, 0x08, ndim), big-endian sizes, then the bytes."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    Path(path).write_bytes(header + array.tobytes())


def class_images(labels, rng):
    """Upright 28x28 uint8 images whose content depends on the label: a bar whose position is the label.

    Returns:
        uint8 array ``[N, 28, 28]``; an image of class k has a bright horizontal
        bar at a row that depends on k and a vertical bar only in its left half,
        so that it is not symmetric under transposition.
    """
    images = rng.integers(0, 40, size=(len(labels), 28, 28), dtype=np.uint8)
    for image, label in zip(images, labels, strict=False):
        row = 2 + (int(label) * 23) // 27
        image[row : row + 3, 4:24] = 250
        image[4:24, 3:5] = 200
    return images


def write_dataset(root, name, per_class_train, per_class_test, seed=0):
    """Write a small dataset under ``root/<Folder>/raw`` and return the upright arrays written.

    Returns:
        dict split -> (upright images uint8 [N, 28, 28], labels int [N]).
    """
    folder, prefixes, classes, transposed = _LAYOUT[name]
    raw = Path(root) / folder / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    written = {}
    for split, per_class in (("train", per_class_train), ("test", per_class_test)):
        labels = rng.permutation(np.repeat(np.array(list(classes)), per_class))
        images = class_images(labels, rng)
        stored = images.transpose(0, 2, 1) if transposed else images
        write_idx(raw / f"{prefixes[split]}-images-idx3-ubyte", stored)
        write_idx(raw / f"{prefixes[split]}-labels-idx1-ubyte", labels)
        written[split] = (images, labels)
    return written
