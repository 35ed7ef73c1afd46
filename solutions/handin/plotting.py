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
from matplotlib.lines import Line2D

from .blending import AUGMENTATION_DICT
from .utils import running_mean

#: Two-sided 95% quantiles of Student's t distribution, by degrees of freedom.
#: Beyond the table the normal quantile 1.96 is close enough.
_T_95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262,
         10: 2.228, 12: 2.179, 15: 2.131, 20: 2.086, 25: 2.060, 30: 2.042}


def _label_name(label, class_names):
    """How a class is written in a title: its name if given, else its index."""
    return str(class_names[label]) if class_names is not None else str(label)


def soft_label_text(interpolation, label_i, label_j, class_names=None):
    """Write a mixed label as text with both weights to 2 decimals, e.g. ``"0.29·3 + 0.71·7"``.

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
    return f"{interpolation:.2f}·{name_i} + {1 - interpolation:.2f}·{name_j}"


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
        # Copies, so that a combine that modifies its inputs cannot change the pictures or the caller's images.
        blends = [combine(images[i].copy(), images[j].copy()) for i, j in pairs]
    finally:
        np.random.set_state(saved_state)

    fig, axes = plt.subplots(n_pairs, 3, figsize=(6, 2.1 * n_pairs + 0.5), squeeze=False)
    for row, ((i, j), (blended, interpolation)) in enumerate(zip(pairs, blends)):
        panels = [
            (images[i], f"batch_i: {_label_name(labels[i], class_names)}"),
            (images[j], f"batch_j: {_label_name(labels[j], class_names)}"),
            (np.asarray(blended), soft_label_text(float(interpolation), labels[i], labels[j], class_names)),
        ]
        for ax, (image, title) in zip(axes[row], panels):
            ax.imshow(image[0], cmap="gray")
            ax.set_title(title, fontsize=10)
            ax.axis("off")
    name = augmentation if isinstance(augmentation, str) else getattr(augmentation, "__name__", "augmentation")
    fig.suptitle(f"{name}: two images and their blend\n"
                 "blend's title: its soft label, λ·label_i + (1 - λ)·label_j", fontsize=10)
    fig.tight_layout()
    return fig


def plot_curves(histories, window=50, title=None):
    """Training and test curves: loss on the left, accuracy on the right.

    The per-batch training values are noisy, so they are drawn as a running mean
    over ``window`` batches (solid lines); the test values are drawn as points
    joined by dashed lines. Colours tell the runs apart; one legend below the
    panels says which is which.

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
    fig, (loss_ax, accuracy_ax) = plt.subplots(1, 2, figsize=(10, 4.4))
    handles = []
    for index, (name, history) in enumerate(histories.items()):
        color = f"C{index % 10}"
        steps = np.arange(1, len(history.train_loss) + 1)
        for ax, train_values, test_values in ((loss_ax, history.train_loss, history.test_loss),
                                              (accuracy_ax, history.train_accuracy, history.test_accuracy)):
            if len(train_values):
                ax.plot(steps, running_mean(train_values, window), color=color, alpha=0.7)
            if len(test_values):
                ax.plot(history.test_steps, test_values, "o--", color=color, markersize=4)
        if name:
            handles.append(Line2D([], [], color=color, linewidth=3, label=name))
    handles += [Line2D([], [], color="grey", label=f"train: running mean over {window} batches"),
                Line2D([], [], color="grey", linestyle="--", marker="o", markersize=4, label="test set")]
    loss_ax.set(xlabel="training batch", ylabel="cross-entropy loss", title="loss")
    accuracy_ax.set(xlabel="training batch", ylabel="accuracy", title="accuracy", ylim=(0, 1.02))
    for ax in (loss_ax, accuracy_ax):
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 5), fontsize=9, frameon=False)
    fig.tight_layout(rect=(0, 0.1, 1, 1))
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


def plot_accuracy_vs_samples(accuracies, title=None, ylabel="finetune test accuracy", ax=None,
                             legend_title="augmentation"):
    """Accuracy against samples per class ``s``: one line per entry, with a 95% band over seeds.

    Args:
        accuracies: dict ``{name: {s: [accuracy of every seed]}}``, one line per name,
            e.g. ``{"none": {1: [0.41, 0.45, 0.43], 2: [...]}, "mixup": {...}}``.
        title: optional axes title, e.g. "MNIST → Fashion-MNIST".
        ylabel: label of the y axis.
        ax: draw into these axes instead of a new figure (for side-by-side panels).
        legend_title: what the names are, e.g. "augmentation" or "dataset pair".

    Returns:
        matplotlib ``Figure`` (the one ``ax`` belongs to, if given).
    """
    if ax is None:
        fig, ax = plt.subplots(figsize=(7, 4.5))
    else:
        fig = ax.figure
    all_samples = set()
    for index, (name, by_samples) in enumerate(accuracies.items()):
        samples = sorted(by_samples)
        all_samples.update(samples)
        means, half_widths = np.array([mean_and_interval(by_samples[s]) for s in samples]).T
        color = f"C{index % 10}"
        n_seeds = max(len(by_samples[s]) for s in samples)
        ax.plot(samples, means, "o-", color=color, label=f"{name} (mean of {n_seeds} seed{'s' if n_seeds > 1 else ''})")
        # An accuracy lies in [0, 1]; with few seeds the interval can reach past that.
        ax.fill_between(samples, np.clip(means - half_widths, 0, 1), np.clip(means + half_widths, 0, 1),
                        color=color, alpha=0.2)
    ax.set_xscale("log", base=2)
    ax.set_xticks(sorted(all_samples), [str(s) for s in sorted(all_samples)])
    ax.minorticks_off()
    ax.set(xlabel="pretraining samples per class s", ylabel=ylabel)
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(title=f"{legend_title}; band: 95% interval", fontsize=8, title_fontsize=8)
    fig.tight_layout()
    return fig


def plot_accuracy_panels(panels, ylabel="finetune test accuracy", legend_title="augmentation", columns=2,
                         title="finetune test accuracy against pretraining samples per class"):
    """Several :func:`plot_accuracy_vs_samples` panels side by side, two per row, with a shared y axis.

    Args:
        panels: dict ``{panel title: accuracies}``, each ``accuracies`` as in
            :func:`plot_accuracy_vs_samples`, e.g. one panel per dataset pair.
        ylabel, legend_title: as in :func:`plot_accuracy_vs_samples`.
        columns: panels per row.
        title: the figure's title.

    Returns:
        matplotlib ``Figure``.
    """
    columns = min(columns, len(panels))
    rows = math.ceil(len(panels) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(5 * columns, 4.2 * rows), squeeze=False, sharey=True)
    for ax, (panel_title, accuracies) in zip(axes.flat, panels.items(), strict=False):  # spare axes stay empty
        plot_accuracy_vs_samples(accuracies, title=panel_title, ylabel=ylabel, ax=ax, legend_title=legend_title)
    legend = axes.flat[0].get_legend()
    handles, labels = axes.flat[0].get_legend_handles_labels()
    for ax in list(axes.flat)[:len(panels)]:
        ax.get_legend().remove()  # the panels share one legend
    spare = list(axes.flat)[len(panels):]
    for ax in spare:
        ax.axis("off")
    fig.suptitle(title)
    if spare:
        spare[0].legend(handles, labels, title=legend.get_title().get_text(), loc="center", fontsize=10)
    else:
        fig.legend(handles, labels, title=legend.get_title().get_text(), loc="lower center", ncol=len(labels))
    fig.tight_layout(rect=(0, 0 if spare else 0.12, 1, 1))
    return fig


def watermark(fig, text):
    """Write ``text`` in large red letters across every panel of ``fig`` (e.g. the quick setting's banner).

    Returns:
        ``fig``.
    """
    for ax in fig.axes:
        if ax.get_visible() and ax.axison:  # panels, not a legend's slot
            ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", rotation=20, wrap=True,
                    fontsize=13, fontweight="bold", color="#c0392b", alpha=0.45, zorder=4)  # below a legend
    title = fig.get_suptitle()
    if title:  # a figure without a title has no room above its panels
        fig.suptitle(f"{title}   [{text}]", color="#c0392b")
    return fig
