"""Load MNIST, Fashion-MNIST and EMNIST-letters as normalized tensors, and subsample them.

Each dataset is decoded once through ``torchvision.datasets`` into one float
tensor of images ``[N, 1, 28, 28]`` and one long tensor of labels ``[N]``.
Training then picks batches by index, which is much faster than running a
per-sample transform for every image of every batch.

The data root is ``$HANDIN3_DATA`` if set, else ``data/`` next to ``handin/``.
"""
import os
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import TensorDataset
from torchvision import datasets

DATA_ROOT_ENV = "HANDIN3_DATA"
DEFAULT_DATA_ROOT = Path(__file__).resolve().parent.parent / "data"

#: Sample sizes (samples per class) of the experiment: s for pretraining, 256 for finetuning.
SAMPLES_PER_CLASS = (1, 2, 4, 8, 16, 32, 64, 256)

#: Number of output classes of each dataset. EMNIST-letters labels are 1..26, so
#: its networks have 27 outputs and class 0 never occurs.
N_CLASSES = {"mnist": 10, "fashion-mnist": 10, "emnist": 27}

_TORCHVISION_DATASETS = {
    "mnist": (datasets.MNIST, {}),
    "fashion-mnist": (datasets.FashionMNIST, {}),
    "emnist": (datasets.EMNIST, {"split": "letters"}),
}


class DatasetNotFoundError(FileNotFoundError):
    """The dataset is not on disk and could not be downloaded."""


def data_root():
    """The folder that holds the datasets in torchvision's layout.

    Returns:
        ``Path`` from ``$HANDIN3_DATA``, or ``data/`` next to ``handin/``.
    """
    return Path(os.environ.get(DATA_ROOT_ENV) or DEFAULT_DATA_ROOT)


def load_split(name, train, root=None, download=True):
    """Decode one split of a dataset into raw tensors, with images upright.

    Args:
        name: "mnist", "fashion-mnist" or "emnist" (letters).
        train: the training split if True, else the test split.
        root: data root; defaults to :func:`data_root`.
        download: try to download the dataset if it is not on disk.

    Returns:
        images: uint8 tensor ``[N, 28, 28]``.
        labels: long tensor ``[N]``.

    Raises:
        DatasetNotFoundError: the files are absent and could not be downloaded.
    """
    if name not in _TORCHVISION_DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {sorted(_TORCHVISION_DATASETS)}")
    dataset_class, options = _TORCHVISION_DATASETS[name]
    root = Path(root) if root is not None else data_root()
    try:
        dataset = dataset_class(str(root), train=train, download=download, **options)
    except Exception as error:  # torchvision raises RuntimeError or URLError subclasses
        raw_folder = root / dataset_class.__name__ / "raw"
        raise DatasetNotFoundError(
            f"The {name} dataset is not in {raw_folder} and could not be downloaded "
            f"({type(error).__name__}: {str(error).strip().splitlines()[0]}).\n"
            f"Fix: put the uncompressed raw IDX files there, or point ${DATA_ROOT_ENV} "
            f"at a folder that holds {dataset_class.__name__}/raw/, or rerun with internet access."
        ) from error
    images = dataset.data
    if name == "emnist":
        # EMNIST stores every image transposed relative to MNIST.
        images = images.transpose(1, 2)
    return images.contiguous(), dataset.targets.long()


def normalize(images, mean, std):
    """Scale uint8 images to floats with the given mean and standard deviation.

    Args:
        images: uint8 tensor ``[N, 28, 28]``.
        mean, std: statistics of the pixel values in [0, 1] (from the training split).

    Returns:
        float tensor ``[N, 1, 28, 28]``.
    """
    return ((images.float() / 255 - mean) / std).unsqueeze(1)


def subsample(labels, samples_per_class, generator):
    """Pick exactly ``samples_per_class`` distinct indices of every class present.

    Every class gets one random order; a size-``s`` subset takes its first ``s``
    entries, so a smaller subset is always contained in a larger one.

    Args:
        labels: long tensor ``[N]``.
        samples_per_class: the ``s`` to draw for every class.
        generator: ``torch.Generator`` that fixes the random order.

    Returns:
        sorted long tensor of ``s * n_present_classes`` indices into ``labels``.

    Raises:
        ValueError: if a present class has fewer than ``s`` samples.
    """
    chosen = []
    for label in labels.unique():
        members = torch.nonzero(labels == label).squeeze(1)
        if len(members) < samples_per_class:
            raise ValueError(f"class {int(label)} has {len(members)} samples, fewer than {samples_per_class}")
        order = torch.randperm(len(members), generator=generator)
        chosen.append(members[order[:samples_per_class]])
    return torch.cat(chosen).sort().values


def get_dataset(name, samples_per_class=SAMPLES_PER_CLASS, root=None, seed=0, download=True):
    """Load a dataset once and cut it into balanced training subsets.

    Args:
        name: "mnist", "fashion-mnist" or "emnist" (letters, 27 classes, class 0 empty).
        samples_per_class: the subset sizes ``s`` to build.
        root: data root; defaults to :func:`data_root`.
        seed: fixes which samples the subsets hold.
        download: try to download the dataset if it is not on disk.

    Returns:
        subsets: dict ``{s: TensorDataset(images [s*K, 1, 28, 28], labels [s*K])}``
            with exactly ``s`` samples of every class present (K classes).
        test_set: ``TensorDataset`` of the whole test split, normalized the same way.
    """
    train_images, train_labels = load_split(name, train=True, root=root, download=download)
    test_images, test_labels = load_split(name, train=False, root=root, download=download)
    pixels = train_images.float() / 255
    mean, std = pixels.mean().item(), pixels.std().item()

    train_x = normalize(train_images, mean, std)
    subsets = {}
    for s in samples_per_class:
        # Restarting from the same seed for every s makes the subsets nested.
        indices = subsample(train_labels, s, torch.Generator().manual_seed(seed))
        subsets[s] = TensorDataset(train_x[indices], train_labels[indices])
    return subsets, TensorDataset(normalize(test_images, mean, std), test_labels)


def class_counts(labels, n_classes):
    """How many samples every class has.

    Args:
        labels: long tensor ``[N]``.
        n_classes: ``K``.

    Returns:
        int array ``[K]``.
    """
    return np.bincount(labels.numpy(), minlength=n_classes)
