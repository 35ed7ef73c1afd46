"""The provided plots: they draw what they claim, under the non-interactive Agg backend."""

import matplotlib
import matplotlib.pyplot

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from conftest import KIT_ROOT  # noqa: E402
from packages import load_module  # noqa: E402

SOLUTIONS = KIT_ROOT / "solutions" / "handin"
plotting = load_module(SOLUTIONS, "handin_solutions", "plotting")
training = load_module(SOLUTIONS, "handin_solutions", "training")


@pytest.fixture(autouse=True)
def close_figures():
    yield
    matplotlib.pyplot.close("all")


def images_and_labels():
    generator = torch.Generator().manual_seed(0)
    return torch.rand(12, 1, 28, 28, generator=generator), torch.arange(12) % 10


@pytest.mark.parametrize("augmentation, blend_title", [("collage", "0.50·1 + 0.50·2"), ("none", "1")])
def test_augmentation_grid_titles_show_inputs_and_soft_labels(augmentation, blend_title):
    images, labels = images_and_labels()
    figure = plotting.show_augmentations(images, labels, augmentation, n_classes=10, n_pairs=3, seed=0)
    titles = [axes.get_title() for axes in figure.axes]
    assert len(titles) == 9
    first_i, first_j = (title.split(": ")[1] for title in titles[:2])
    expected = blend_title.replace("1", "{i}").replace("2", "{j}").format(i=first_i, j=first_j)
    assert titles[:3] == [f"batch_i: {first_i}", f"batch_j: {first_j}", expected]


def test_augmentation_grid_is_seeded_and_leaves_numpy_state_alone():
    images, labels = images_and_labels()
    np.random.seed(5)
    expected = np.random.rand()
    np.random.seed(5)
    titles = [
        [axes.get_title() for axes in plotting.show_augmentations(images, labels, "mixup", 10, n_pairs=2, seed=3).axes]
        for _ in range(2)
    ]
    assert titles[0] == titles[1]
    assert np.random.rand() == expected


def test_soft_label_text_shows_both_weights_with_two_decimals():
    assert plotting.soft_label_text(0.5, 3, 7) == "0.50·3 + 0.50·7"
    assert plotting.soft_label_text(0.2934, 3, 7) == "0.29·3 + 0.71·7"
    assert plotting.soft_label_text(1e-9, 6, 1) == "0.00·6 + 1.00·1"  # an extreme Beta(0.3, 0.3) draw
    assert plotting.soft_label_text(1.0, 3, 7) == "3"
    assert plotting.soft_label_text(0.5, 1, 2, class_names="-ab") == "0.50·a + 0.50·b"


def test_augmentation_grid_hands_copies_to_the_augmentation():
    """A buggy augmentation that overwrites its inputs changes neither the caller's images nor the other panels."""

    def vandal(batch_i, batch_j):
        blended = batch_i.copy()
        batch_i[...] = -1.0
        batch_j[...] = -1.0
        return blended, 1.0

    images, labels = images_and_labels()
    before = images.clone()
    figure = plotting.show_augmentations(images, labels, vandal, n_classes=10, n_pairs=3, seed=0)
    assert torch.equal(images, before)
    shown = [axes.get_images()[0].get_array() for axes in figure.axes]
    assert all(panel.min() >= 0 for panel in shown), "every panel shows the original pixels in [0, 1)"


def test_curves_draw_running_means_and_test_points():
    history = training.History(
        train_loss=[2.0, 1.0, 0.0, 1.0],
        train_accuracy=[0.0, 0.5, 1.0, 0.5],
        test_steps=[2, 4],
        test_loss=[1.5, 0.5],
        test_accuracy=[0.4, 0.8],
    )
    figure = plotting.plot_curves({"none": history, "mixup": history}, window=2)
    loss_axes, accuracy_axes = figure.axes
    train_line = loss_axes.get_lines()[0]
    assert np.allclose(train_line.get_ydata(), [2.0, 1.5, 0.5, 0.5])
    assert np.allclose(accuracy_axes.get_lines()[1].get_ydata(), [0.4, 0.8])
    assert len(loss_axes.get_lines()) == 4
    legend = [text.get_text() for text in figure.legends[0].get_texts()]
    assert legend == ["none", "mixup", "train: running mean over 2 batches", "test set"]
    assert loss_axes.get_ylabel() == "cross-entropy loss" and accuracy_axes.get_xlabel() == "training batch"


def test_accuracy_vs_samples_draws_means_and_95_percent_bands():
    accuracies = {"none": {1: [0.4, 0.5, 0.6], 4: [0.7, 0.7, 0.7]}, "mixup": {1: [0.5], 4: [0.8]}}
    figure = plotting.plot_accuracy_vs_samples(accuracies, title="MNIST → MNIST")
    axes = figure.axes[0]
    assert axes.get_xscale() == "log"
    assert np.allclose(axes.get_lines()[0].get_ydata(), [0.5, 0.7])
    band = axes.collections[0].get_paths()[0].vertices[:, 1]
    half_width = 4.303 * 0.1 / np.sqrt(3)  # t(0.975, 2) * sd / sqrt(n)
    assert np.isclose(band.max(), 0.5 + half_width) and np.isclose(band.min(), 0.5 - half_width)
    legend = axes.get_legend()
    assert [text.get_text() for text in legend.get_texts()] == ["none (mean of 3 seeds)", "mixup (mean of 1 seed)"]
    assert legend.get_title().get_text() == "augmentation; band: 95% interval"
    assert [tick.get_text() for tick in axes.get_xticklabels()] == ["1", "4"]


def test_accuracy_panels_two_per_row_with_a_legend_that_names_what_the_lines_are():
    accuracies = {"none": {1: [0.4, 0.5], 4: [0.7, 0.8]}}
    panels = {"MNIST → MNIST": accuracies, "MNIST → Fashion-MNIST": accuracies, "Fashion-MNIST → MNIST": accuracies}
    figure = plotting.plot_accuracy_panels(panels)
    assert [axes.get_title() for axes in figure.axes[:3]] == list(panels)
    assert figure.get_suptitle() == "finetune test accuracy against pretraining samples per class"
    assert len(figure.axes) == 4 and figure.get_size_inches()[0] <= 10
    shared = figure.axes[3].get_legend()  # the fourth slot holds the one legend of all panels
    assert [text.get_text() for text in shared.get_texts()] == ["none (mean of 2 seeds)"]
    assert all(axes.get_legend() is None for axes in figure.axes[:3])
    pairs = plotting.plot_accuracy_vs_samples({"MNIST → MNIST": accuracies["none"]}, legend_title="dataset pair")
    assert pairs.axes[0].get_legend().get_title().get_text() == "dataset pair; band: 95% interval"


def test_watermark_marks_every_panel_and_the_title():
    figure = plotting.plot_curves(training.History(train_loss=[1.0], train_accuracy=[0.5]), window=1, title="run")
    plotting.watermark(figure, "quick setting: numbers are not meaningful")
    assert figure.get_suptitle() == "run   [quick setting: numbers are not meaningful]"
    for axes in figure.axes:
        assert "quick setting: numbers are not meaningful" in [text.get_text() for text in axes.texts]
    untitled = plotting.plot_accuracy_vs_samples({"none": {1: [0.5]}})
    plotting.watermark(untitled, "quick")
    assert [text.get_text() for text in untitled.axes[0].texts] == ["quick"] and not untitled.get_suptitle()


def test_mean_and_interval():
    assert plotting.mean_and_interval([0.3]) == (0.3, 0.0)
    mean, half_width = plotting.mean_and_interval([1.0, 2.0, 3.0])
    assert mean == 2.0 and np.isclose(half_width, 4.303 / np.sqrt(3))
    with pytest.raises(ValueError):
        plotting.mean_and_interval([])
