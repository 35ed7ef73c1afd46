"""Shared fixtures: paths of the kit, the real data when present, small IDX datasets."""

import os
import sys
from pathlib import Path

import pytest

KIT_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("HANDIN3_SHARED_DATA", KIT_ROOT.parent / "shared" / "data"))

sys.path.insert(0, str(KIT_ROOT / "tests"))


@pytest.fixture(scope="session")
def kit_root():
    return KIT_ROOT


@pytest.fixture(scope="session")
def shared_data():
    """The real MNIST/Fashion-MNIST folder; tests that need it skip on a fresh machine."""
    if not (SHARED_DATA / "MNIST" / "raw").is_dir():
        pytest.skip(f"real datasets not found in {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """A data root with small MNIST, Fashion-MNIST and EMNIST-letters in raw IDX format."""
    from idx import write_dataset

    root = tmp_path_factory.mktemp("data")
    written = {
        name: write_dataset(root, name, per_class_train=300, per_class_test=20, seed=i)
        for i, name in enumerate(("mnist", "fashion-mnist", "emnist"))
    }
    return root, written


#: Test modules that finish in seconds: `make check` runs these (every other module is marked ``slow``).
FAST_MODULES = {"test_data", "test_docs", "test_examples", "test_plotting", "test_visible_checks"}


def pytest_itemcollected(item):
    if item.module.__name__ not in FAST_MODULES:
        item.add_marker(pytest.mark.slow)
