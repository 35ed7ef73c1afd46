"""The provided data module: real loaders, EMNIST orientation, exact balanced subsampling, clear errors."""

import numpy as np
import pytest
import torch
from conftest import KIT_ROOT
from packages import load_module

data = load_module(KIT_ROOT / "solutions" / "handin", "handin_solutions", "data")


@pytest.mark.parametrize("name, n_train", [("mnist", 60000), ("fashion-mnist", 60000)])
def test_real_datasets_load_from_shared_data(shared_data, name, n_train):
    subsets, test_set = data.get_dataset(name, samples_per_class=(1, 64), root=shared_data, download=False)
    test_images, test_labels = test_set.tensors
    assert tuple(test_images.shape) == (10000, 1, 28, 28)
    assert test_labels.unique().tolist() == list(range(10))
    for s, subset in subsets.items():
        images, labels = subset.tensors
        assert tuple(images.shape) == (10 * s, 1, 28, 28)
        assert data.class_counts(labels, 10).tolist() == [s] * 10

    raw_images, raw_labels = data.load_split(name, train=True, root=shared_data, download=False)
    assert tuple(raw_images.shape) == (n_train, 28, 28) and raw_images.dtype == torch.uint8
    normalized = data.normalize(raw_images, *_statistics(raw_images))
    assert abs(normalized.mean().item()) < 1e-3 and abs(normalized.std().item() - 1) < 1e-3


def _statistics(images):
    pixels = images.float() / 255
    return pixels.mean().item(), pixels.std().item()


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist", "emnist"])
def test_images_are_upright_and_labels_match(tiny_data, name):
    root, written = tiny_data
    for split, train in (("train", True), ("test", False)):
        images, labels = data.load_split(name, train=train, root=root, download=False)
        upright, written_labels = written[name][split]
        assert np.array_equal(images.numpy(), upright), f"{name} {split} images are not upright"
        assert np.array_equal(labels.numpy(), written_labels)


def test_emnist_letters_has_27_classes_with_class_0_empty(tiny_data):
    root, _ = tiny_data
    subsets, test_set = data.get_dataset("emnist", samples_per_class=(1, 4), root=root, download=False)
    assert data.N_CLASSES["emnist"] == 27
    for s, subset in subsets.items():
        counts = data.class_counts(subset.tensors[1], data.N_CLASSES["emnist"])
        assert counts[0] == 0 and counts[1:].tolist() == [s] * 26
    assert data.class_counts(test_set.tensors[1], 27)[0] == 0


def test_subsampling_is_exact_balanced_distinct_and_nested():
    labels = torch.from_numpy(np.random.default_rng(0).integers(0, 10, size=3000))
    previous = None
    for s in data.SAMPLES_PER_CLASS:
        indices = data.subsample(labels, s, torch.Generator().manual_seed(7))
        assert len(set(indices.tolist())) == len(indices) == 10 * s, "indices must be distinct"
        assert data.class_counts(labels[indices], 10).tolist() == [s] * 10, "exactly s per class"
        if previous is not None:
            assert set(previous.tolist()) <= set(indices.tolist()), f"the subset for s={s} must contain the smaller one"
        previous = indices

    again = data.subsample(labels, 8, torch.Generator().manual_seed(7))
    other = data.subsample(labels, 8, torch.Generator().manual_seed(8))
    assert torch.equal(again, data.subsample(labels, 8, torch.Generator().manual_seed(7)))
    assert not torch.equal(again, other), "the seed must change which samples are drawn"


def test_subsets_of_get_dataset_are_nested(tiny_data):
    root, _ = tiny_data
    subsets, _ = data.get_dataset("mnist", samples_per_class=(2, 8), root=root, download=False)
    small = {image.numpy().tobytes() for image in subsets[2].tensors[0]}
    large = {image.numpy().tobytes() for image in subsets[8].tensors[0]}
    assert small <= large


def test_subsampling_more_than_a_class_holds_is_an_error():
    labels = torch.tensor([0, 0, 1, 1, 1])
    with pytest.raises(ValueError, match="class 0 has 2 samples, fewer than 3"):
        data.subsample(labels, 3, torch.Generator().manual_seed(0))


def test_missing_dataset_error_names_dataset_path_and_fix(tmp_path):
    with pytest.raises(data.DatasetNotFoundError) as error:
        data.get_dataset("fashion-mnist", root=tmp_path, download=False)
    message = str(error.value)
    assert "fashion-mnist" in message
    assert str(tmp_path / "FashionMNIST" / "raw") in message
    assert "Fix:" in message and data.DATA_ROOT_ENV in message


def test_data_root_comes_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(data.DATA_ROOT_ENV, str(tmp_path))
    assert data.data_root() == tmp_path
    monkeypatch.delenv(data.DATA_ROOT_ENV)
    assert data.data_root() == data.DEFAULT_DATA_ROOT
