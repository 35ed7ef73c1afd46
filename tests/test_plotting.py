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


@pytest.mark.parametrize("augmentation, blend_title", [("collage", "0.5·1 + 0.5·2"), ("none", "1")])
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
    titles = [[axes.get_title() for axes in
               plotting.show_augmentations(images, labels, "mixup", 10, n_pairs=2, seed=3).axes] for _ in range(2)]
    assert titles[0] == titles[1]
    assert np.random.rand() == expected


def test_soft_label_text():
    assert plotting.soft_label_text(0.5, 3, 7) == "0.5·3 + 0.5·7"
    assert plotting.soft_label_text(0.2934, 3, 7) == "0.29·3 + 0.71·7"
    assert plotting.soft_label_text(0.003, 3, 7) == "0.003·3 + 0.997·7"
    assert plotting.soft_label_text(1.0, 3, 7) == "3"
    assert plotting.soft_label_text(0.5, 1, 2, class_names="-ab") == "0.5·a + 0.5·b"


def test_curves_draw_running_means_and_test_points():
    history = training.History(train_loss=[2.0, 1.0, 0.0, 1.0], train_accuracy=[0.0, 0.5, 1.0, 0.5],
                               test_steps=[2, 4], test_loss=[1.5, 0.5], test_accuracy=[0.4, 0.8])
    figure = plotting.plot_curves({"none": history, "mixup": history}, window=2)
    loss_axes, accuracy_axes = figure.axes
    train_line = loss_axes.get_lines()[0]
    assert np.allclose(train_line.get_ydata(), [2.0, 1.5, 0.5, 0.5])
    assert np.allclose(accuracy_axes.get_lines()[1].get_ydata(), [0.4, 0.8])
    assert len(loss_axes.get_lines()) == 4


def test_accuracy_vs_samples_draws_means_and_95_percent_bands():
    accuracies = {"none": {1: [0.4, 0.5, 0.6], 4: [0.7, 0.7, 0.7]}, "mixup": {1: [0.5], 4: [0.8]}}
    figure = plotting.plot_accuracy_vs_samples(accuracies, title="MNIST → MNIST")
    axes = figure.axes[0]
    assert axes.get_xscale() == "log"
    assert np.allclose(axes.get_lines()[0].get_ydata(), [0.5, 0.7])
    band = axes.collections[0].get_paths()[0].vertices[:, 1]
    half_width = 4.303 * 0.1 / np.sqrt(3)  # t(0.975, 2) * sd / sqrt(n)
    assert np.isclose(band.max(), 0.5 + half_width) and np.isclose(band.min(), 0.5 - half_width)


def test_mean_and_interval():
    assert plotting.mean_and_interval([0.3]) == (0.3, 0.0)
    mean, half_width = plotting.mean_and_interval([1.0, 2.0, 3.0])
    assert mean == 2.0 and np.isclose(half_width, 4.303 / np.sqrt(3))
    with pytest.raises(ValueError):
        plotting.mean_and_interval([])
