"""Figures for the notebooks: augmentation examples, training curves, accuracy against s.

Every function builds its figure with ``plt.subplots`` and returns the
``Figure`` without calling ``plt.show()``, so it works with any backend,
including the non-interactive ``Agg`` that tests and scripts use. In a
notebook the figure appears below the cell; assign the result
(``fig = plot_curves(...)``) to avoid drawing it twice, and call
``fig.savefig(path)`` to keep it.
"""
import math

import matplotlib.pyplot as plt
import numpy as np

from .augmentations import AUGMENTATION_DICT
from .utils import running_mean

#: Two-sided 95% quantiles of Student's t distribution, by degrees of freedom.
#: Beyond the table the normal quantile 1.96 is close enough.
_T_95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262,
         10: 2.228, 12: 2.179, 15: 2.131, 20: 2.086, 25: 2.060, 30: 2.042}


def _weight_texts(weight):
    """Both weights of a blend as short text, precise enough that neither reads as 0 or 1.

    ``0.5 -> ("0.5", "0.5")``, ``0.2934 -> ("0.29", "0.71")``, ``0.003 -> ("0.003", "0.997")``.
    """
    smaller = min(weight, 1 - weight)
    decimals = 2
    while decimals < 6 and round(smaller, decimals) == 0:
        decimals += 1
    return tuple(f"{value:.{decimals}f}".rstrip("0").rstrip(".") for value in (weight, 1 - weight))


def _label_name(label, class_names):
    """How a class is written in a title: its name if given, else its index."""
    return str(class_names[label]) if class_names is not None else str(label)


def soft_label_text(interpolation, label_i, label_j, class_names=None):
    """Write a mixed label as text, e.g. ``"0.5·3 + 0.5·7"``.

    Args:
        interpolation: the weight of ``label_i``, in [0, 1].
        label_i, label_j: class indices of the two blended images.
        class_names: optional sequence that maps class indices to names.

    Returns:
        str; a single class when one weight is 1 (or both labels agree).
    """
    name_i, name_j = _label_name(label_i, class_names), _label_name(label_j, class_names)
    if label_i == label_j or interpolation >= 1.0:
        return name_i
    if interpolation <= 0.0:
        return name_j
    weight_i, weight_j = _weight_texts(interpolation)
    return f"{weight_i}·{name_i} + {weight_j}·{name_j}"


def show_augmentations(images, labels, augmentation, n_classes, n_pairs=4, seed=0, class_names=None):
    """Show pairs of images next to their blend, with the (soft) labels as titles.

    Each row shows ``batch_i``, ``batch_j`` and ``augmentation(batch_i, batch_j)``.
    Pairs are drawn at random (seeded), always from two different images.

    Args:
        images: float tensor or array ``[N, 1, H, W]``, ``N >= 2``.
        labels: class indices ``[N]``.
        augmentation: a key of ``AUGMENTATION_DICT`` or a function with the
            signature of ``augmentations.collage``.
        n_classes: number of classes; labels must lie in ``0 .. n_classes - 1``.
        n_pairs: rows of the grid.
        seed: fixes the pairs and the random interpolation of mixup.
        class_names: optional sequence that maps class indices to names.

    Returns:
        matplotlib ``Figure`` with ``n_pairs`` rows and 3 columns.
    """
    combine = AUGMENTATION_DICT[augmentation] if isinstance(augmentation, str) else augmentation
    images = np.asarray(images, dtype=np.float32)
    labels = np.asarray(labels).astype(int)
    if len(images) < 2:
        raise ValueError(f"show_augmentations needs at least 2 images, got {len(images)}")
    if labels.min() < 0 or labels.max() >= n_classes:
        raise ValueError(f"labels must lie in 0..{n_classes - 1}, got {labels.min()}..{labels.max()}")

    # Mixup draws its weight from numpy's global generator: seed it, then put it back.
    saved_state = np.random.get_state()
    np.random.seed(seed)
    try:
        rng = np.random.default_rng(seed)
        pairs = [rng.choice(len(images), size=2, replace=False) for _ in range(n_pairs)]
        blends = [combine(images[i], images[j]) for i, j in pairs]
    finally:
        np.random.set_state(saved_state)

    fig, axes = plt.subplots(n_pairs, 3, figsize=(6, 2.1 * n_pairs), squeeze=False)
    for row, ((i, j), (blended, interpolation)) in enumerate(zip(pairs, blends)):
        panels = [
            (images[i], f"batch_i: {_label_name(labels[i], class_names)}"),
            (images[j], f"batch_j: {_label_name(labels[j], class_names)}"),
            (np.asarray(blended), soft_label_text(float(interpolation), labels[i], labels[j], class_names)),
        ]
        for ax, (image, title) in zip(axes[row], panels):
            ax.imshow(image[0], cmap="gray")
            ax.set_title(title, fontsize=9)
            ax.axis("off")
    name = augmentation if isinstance(augmentation, str) else getattr(augmentation, "__name__", "augmentation")
    fig.suptitle(f"{name}: two images and their blend")
    fig.tight_layout()
    return fig


def plot_curves(histories, window=50, title=None):
    """Training and test curves: loss on the left, accuracy on the right.

    The per-batch training values are noisy, so they are drawn as a running mean
    over ``window`` batches; the test values are drawn as points joined by lines.

    Args:
        histories: one ``training.History``, or a dict ``{name: History}`` to
            compare several runs (e.g. one per augmentation).
        window: batches in the running mean of the training curves.
        title: optional figure title.

    Returns:
        matplotlib ``Figure`` with two axes.
    """
    if not isinstance(histories, dict):
        histories = {"": histories}
    fig, (loss_ax, accuracy_ax) = plt.subplots(1, 2, figsize=(11, 4))
    for index, (name, history) in enumerate(histories.items()):
        color = f"C{index % 10}"
        prefix = f"{name} " if name else ""
        steps = np.arange(1, len(history.train_loss) + 1)
        for ax, train_values, test_values in ((loss_ax, history.train_loss, history.test_loss),
                                              (accuracy_ax, history.train_accuracy, history.test_accuracy)):
            if len(train_values):
                ax.plot(steps, running_mean(train_values, window), color=color, alpha=0.6,
                        label=f"{prefix}train (mean of {window})")
            if len(test_values):
                ax.plot(history.test_steps, test_values, "o--", color=color, label=f"{prefix}test")
    loss_ax.set(xlabel="batch", ylabel="cross-entropy", title="loss")
    accuracy_ax.set(xlabel="batch", ylabel="accuracy", title="accuracy", ylim=(0, 1.02))
    for ax in (loss_ax, accuracy_ax):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def mean_and_interval(values):
    """Mean and half-width of the 95% confidence interval of the mean.

    Uses Student's t distribution, which is right for the few seeds of an
    experiment; a single value has no interval (half-width 0).

    Args:
        values: sequence of numbers, e.g. one accuracy per seed.

    Returns:
        (mean, half_width): two floats.
    """
    values = np.asarray(values, dtype=float)
    n = len(values)
    if n == 0:
        raise ValueError("mean_and_interval needs at least one value")
    if n == 1:
        return float(values[0]), 0.0
    degrees = n - 1
    known = [d for d in _T_95 if d <= degrees]
    t = _T_95[max(known)] if degrees <= 30 else 1.96
    return float(values.mean()), float(t * values.std(ddof=1) / math.sqrt(n))


def plot_accuracy_vs_samples(accuracies, title=None, ylabel="finetune test accuracy", ax=None):
    """Accuracy against samples per class ``s``: one line per augmentation, with a 95% band over seeds.

    Args:
        accuracies: dict ``{augmentation: {s: [accuracy of every seed]}}``, e.g.
            ``{"none": {1: [0.41, 0.45, 0.43], 2: [...]}, "mixup": {...}}``.
        title: optional axes title, e.g. "MNIST → Fashion-MNIST".
        ylabel: label of the y axis.
        ax: draw into these axes instead of a new figure (for side-by-side panels).

    Returns:
        matplotlib ``Figure`` (the one ``ax`` belongs to, if given).
    """
    if ax is None:
        fig, ax = plt.subplots(figsize=(6, 4))
    else:
        fig = ax.figure
    for index, (augmentation, by_samples) in enumerate(accuracies.items()):
        samples = sorted(by_samples)
        means, half_widths = np.array([mean_and_interval(by_samples[s]) for s in samples]).T
        color = f"C{index % 10}"
        ax.plot(samples, means, "o-", color=color, label=augmentation)
        ax.fill_between(samples, means - half_widths, means + half_widths, color=color, alpha=0.2)
    ax.set_xscale("log", base=2)
    ax.set(xlabel="pretraining samples per class s", ylabel=ylabel)
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(title="augmentation (mean, 95% CI)", fontsize=8)
    fig.tight_layout()
    return fig
