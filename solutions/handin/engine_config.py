"""What an experiment is: its configuration, the key of each run, and the data a run trains on.

An :class:`ExperimentConfig` lists every setting of one experiment (the defaults are the
assignment's); :meth:`ExperimentConfig.run_keys` expands it into one :class:`RunKey` per
run, and a run's record in the results file is found again by its key. A run's datasets
depend only on its key (:func:`datasets_for`), so the plain loop and the engine train on
the very same images.
"""
import os
from dataclasses import dataclass, fields
from functools import lru_cache

from torch.utils.data import TensorDataset

from .data import data_root, get_dataset

#: Set to 1 for the quick setting: few batches, for tests and a first look.
QUICK_ENV = "HANDIN3_QUICK"


@dataclass(frozen=True)
class ExperimentConfig:
    """Everything that defines a set of runs; the defaults are the assignment's settings.

    Attributes:
        pretrain_dataset: ``D_P`` ("mnist", "fashion-mnist" or "emnist").
        finetune_datasets: every ``D_F`` to finetune on; runs that differ only in ``D_F``
            share their pretraining.
        augmentations: pretraining augmentations to compare.
        samples: pretraining samples per class ``s``.
        seeds: one run per seed for every (augmentation, s).
        pretrain_batches, finetune_batches: SGD steps of each phase.
        finetune_samples: samples per class of the finetuning set.
        batch_size, lr: of both phases.
        test_every: evaluate the test set every this many batches for the curves
            (0: only at the end, which is all the experiment needs).
        curve_test_images: the pretraining test curve uses the first this many test
            images (0: all). Evaluating 21 networks on 10000 images takes longer than
            500 training steps on 2 cores. The finetune accuracy always uses the whole test set.
    """
    pretrain_dataset: str = "mnist"
    finetune_datasets: tuple = ("mnist",)
    augmentations: tuple = ("none", "collage", "mixup")
    samples: tuple = (1, 2, 4, 8, 16, 32, 64)
    seeds: tuple = (0, 1, 2)
    pretrain_batches: int = 5000
    finetune_batches: int = 1000
    finetune_samples: int = 256
    batch_size: int = 8
    lr: float = 0.01
    test_every: int = 0
    curve_test_images: int = 0

    def run_keys(self):
        """One ``RunKey`` per run: every seed, augmentation and ``s``."""
        shared = {f.name: getattr(self, f.name) for f in fields(RunKey) if hasattr(self, f.name)}
        return [RunKey(finetune_dataset=d, augmentation=a, s=s, seed=seed, **shared)
                for d in self.finetune_datasets for seed in self.seeds for a in self.augmentations
                for s in self.samples]


#: The quick setting: the experiment's augmentations on fewer s and seeds, a few batches each and a
#: small finetuning set, to check that everything runs (under 3 minutes on 2 cores). Its numbers are
#: not meaningful. Most of its time goes into the finetune accuracy on the whole test set.
QUICK_SETTINGS = dict(samples=(1, 8, 64), seeds=(0, 1), pretrain_batches=40, finetune_batches=20,
                      finetune_samples=16, test_every=20, curve_test_images=500)
#: The report's settings: the assignment's experiment with test points on the pretraining curves, or the quick one.
REPORT_SETTINGS = {"full": dict(test_every=500, curve_test_images=1000), "quick": QUICK_SETTINGS}
#: Printed on, and drawn into, everything the quick setting produces.
QUICK_BANNER = "quick setting: numbers are not meaningful"


def default_config(**overrides):
    """The assignment's config, or the quick one when ``$HANDIN3_QUICK`` is 1, with overrides."""
    quick = QUICK_SETTINGS if os.environ.get(QUICK_ENV, "0") not in ("", "0") else {}
    return ExperimentConfig(**{**quick, **overrides})


def report_experiments(setting):
    """The report's two experiments: MNIST -> (MNIST, Fashion-MNIST) and Fashion-MNIST -> MNIST.

    Args:
        setting: "full" (the assignment's) or "quick" (see :data:`QUICK_SETTINGS`).

    Returns:
        list of two ``ExperimentConfig``.
    """
    if setting not in REPORT_SETTINGS:
        raise ValueError(f"SETTING must be one of {list(REPORT_SETTINGS)}, got {setting!r}")
    settings = REPORT_SETTINGS[setting]
    return [ExperimentConfig(pretrain_dataset="mnist", finetune_datasets=("mnist", "fashion-mnist"), **settings),
            ExperimentConfig(pretrain_dataset="fashion-mnist", finetune_datasets=("mnist",), **settings)]


@dataclass(frozen=True)
class RunKey:
    """What identifies one run; a record with the same key is the same run."""
    pretrain_dataset: str
    finetune_dataset: str
    augmentation: str
    s: int
    seed: int
    pretrain_batches: int
    finetune_batches: int
    finetune_samples: int
    batch_size: int
    lr: float
    test_every: int
    curve_test_images: int


# ---------------------------------------------------------------------------------------------
# The data of a run


def load_data(name, samples, seed):
    """``data.get_dataset`` once per (dataset, subset sizes, seed, data root); later calls reuse the tensors."""
    return _load_data(name, tuple(samples), seed, str(data_root()))


@lru_cache(maxsize=None)
def _load_data(name, samples, seed, root):
    return get_dataset(name, samples_per_class=samples, root=root, seed=seed)


def datasets_for(key, samples):
    """The pretraining subset, the finetuning set and both test sets of a run.

    Returns:
        (pretrain_set, pretrain_test, finetune_set, finetune_test): ``TensorDataset``s.
    """
    # Every subset size of both phases in one call per dataset (each subset depends only on its
    # size and the seed), so a dataset used for both phases is decoded once.
    sizes = tuple(sorted({*samples, key.finetune_samples}))
    pretrain_subsets, pretrain_test = load_data(key.pretrain_dataset, sizes, key.seed)
    finetune_subsets, finetune_test = load_data(key.finetune_dataset, sizes, key.seed)
    return pretrain_subsets[key.s], pretrain_test, finetune_subsets[key.finetune_samples], finetune_test


def curve_test_set(test_set, n_images):
    """The first ``n_images`` of a test set (all of it for 0): what the pretraining curve is measured on."""
    if not n_images:
        return test_set
    return TensorDataset(*(tensor[:n_images] for tensor in test_set.tensors))
