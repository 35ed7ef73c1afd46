"""Shared fixtures: paths of the kit, the real data when present, small IDX datasets, one nbgrader course."""

import fcntl
import os
import shutil
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


@pytest.fixture(scope="session")
def course_template(tmp_path_factory, worker_id):
    """A RESULTS folder that ``grade`` has prepared and not yet used: the nbgrader course (real
    ``generate_assignment``) and, in ``verdicts/``, the course secret and the hidden inputs.

    Preparing takes 10-30 s; many modules grade a class, each in a copy of this one
    (:func:`results_with_course`). It is prepared once per test session: the xdist workers share
    it through a lock in their common temporary folder. ``test_batch`` still lets ``grade``
    prepare its own, so that path stays tested.
    """
    from autograder.batch import Results, prepare_course

    shared = tmp_path_factory.getbasetemp()
    if worker_id != "master":
        shared = shared.parent  # the folder that holds every worker's basetemp
    template = shared / "results-template"
    with open(shared / "results-template.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (template / "ready").is_file():
            shutil.rmtree(template, ignore_errors=True)
            prepare_course(Results(template))
            (template / "ready").touch()
    return template


@pytest.fixture(scope="session")
def results_with_course(course_template):
    """``results_with_course(out)``: make ``out`` a RESULTS folder holding a copy of the template's
    course, secret and hidden inputs (the rest ``grade`` writes itself)."""

    def copy(out):
        for name in ("course", "verdicts"):
            shutil.copytree(course_template / name, Path(out) / name, symlinks=True)
        return Path(out)

    return copy


#: Test modules that finish in seconds: `make check` runs these (every other module is marked ``slow``).
FAST_MODULES = {"test_data", "test_docs", "test_examples", "test_plotting", "test_visible_checks"}


def pytest_itemcollected(item):
    if item.module.__name__ not in FAST_MODULES:
        item.add_marker(pytest.mark.slow)
