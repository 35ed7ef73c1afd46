"""The fast experiment engine: many pretrain/finetune runs trained at once, with the same math as one run.

The experiment (the assignment's settings are the defaults of :class:`ExperimentConfig`):
for every augmentation and every ``s``, create a new ``Net``, pretrain it for 5000
batches of 8 on ``s`` samples per class of ``D_P``, finetune only
``finetune_parameters()`` for 1000 batches of 8 on 256 samples per class of ``D_F``,
and measure the finetune test accuracy on the whole ``D_F`` test set.

:func:`plain_run` does one run with the plain loop of ``training.py``.
:func:`run_experiment` does the same runs with the engine. Both use *your* ``Net``,
``augment`` (with your ``collage`` and ``mixup``) and ``cross_entropy``. The engine is
faster because it

1. decodes and normalizes each dataset once (``data.get_dataset``) and picks batches by index;
2. prepares the augmented batches of every run with the numpy half of ``augment``
   (``blend_batch``, which calls your ``collage`` or ``mixup``) and that run's own
   numpy random state, exactly as the plain loop would, in a thread, while the runs
   train on the previous chunk of batches;
3. trains all runs of one seed together: ``torch.func.stack_module_state`` stacks
   their parameters, ``vmap`` over ``grad`` of a ``functional_call`` of your network
   computes every run's gradient in one pass, and an SGD step updates them;
4. finetunes on cached features: the convolutions are frozen, so their output for
   each training and test image is computed once;
5. evaluates with large batches without gradients, one run after the other.

Randomness, and why a run matches the plain loop step for step. A run with seed
``seed`` draws from four sources, in this order, in both implementations:

* ``torch.manual_seed(seed)``, then ``Net(...)``: the initial weights;
* the torch random stream that continues after that: one dropout mask per step
  (``Dropout2d`` draws ``[B, C, 1, 1]`` Bernoulli values); the engine copies the
  stream's state into a per-run ``torch.Generator`` and draws the very same masks;
* ``np.random.seed(seed)``: the augmentation partners and mixup weights;
* ``torch.Generator().manual_seed(seed)``: the batch order (``training.batch_indices``).

So the engine sees the same batches, augmentations and dropout masks as the plain
loop. The only difference is floating-point rounding (a batched convolution sums
in another order), so losses and parameters agree to about 1e-5 rather than bit for bit;
``tests/test_engine.py`` checks this for every augmentation, for pretraining and finetuning.

Finetuning on cached features is exact, dropout included: dropout multiplies whole
channels of the second convolution by 0 or 2, and max-pool and relu commute with
multiplying by a non-negative number, so the features with dropout are the cached
features times the mask. The engine checks this on a probe batch with your network
and falls back to running the convolutions at every step when it does not hold.

Results go to a JSON file, one record per run with its config and seed; a rerun
skips the runs that are already there. Run ``python -m handin.engine --help``.
"""
import argparse
import copy
import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, fields, replace
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, grad_and_value, stack_module_state, vmap
from torch.utils.data import TensorDataset
from tqdm.auto import tqdm

from .augmentations import AUGMENTATION_DICT, blend_batch, blended_soft_labels
from .data import N_CLASSES, data_root, get_dataset
from .network import Net
from .training import batch_indices, finetune, pretrain, seed_everything
from .utils import cross_entropy, one_hot

#: Set to 1 for the quick setting: few batches, for tests and a first look.
QUICK_ENV = "HANDIN3_QUICK"
#: nbgrader sets this while it autogrades; the report then loads saved results instead of training.
GRADING_ENV = "NBGRADER_EXECUTION"


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
# Data


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
    pretrain_subsets, pretrain_test = load_data(key.pretrain_dataset, tuple(samples), key.seed)
    finetune_subsets, finetune_test = load_data(key.finetune_dataset, (key.finetune_samples,), key.seed)
    return pretrain_subsets[key.s], pretrain_test, finetune_subsets[key.finetune_samples], finetune_test


def curve_test_set(test_set, n_images):
    """The first ``n_images`` of a test set (all of it for 0): what the pretraining curve is measured on."""
    if not n_images:
        return test_set
    return TensorDataset(*(tensor[:n_images] for tensor in test_set.tensors))


# ---------------------------------------------------------------------------------------------
# The reference: one run with the plain loop of training.py


def history_record(history):
    """A ``training.History`` as a JSON-ready dict."""
    return {name: list(values) for name, values in asdict(history).items()}


def plain_run(key, samples=None, progress=False):
    """One run with the plain single-run loop of ``training.py``: the definition of a run.

    Args:
        key: the ``RunKey``.
        samples: all subset sizes of the experiment (the subsets depend on the seed only);
            defaults to ``(key.s,)``.
        progress: show tqdm bars.

    Returns:
        (net, record): the trained ``Net`` and the run's record (as :func:`run_experiment` writes).
    """
    pretrain_set, pretrain_test, finetune_set, finetune_test = datasets_for(key, samples or (key.s,))
    pretrain_test = curve_test_set(pretrain_test, key.curve_test_images)
    pretrain_classes, finetune_classes = N_CLASSES[key.pretrain_dataset], N_CLASSES[key.finetune_dataset]
    seed_everything(key.seed)
    net = Net(pretrain_classes, finetune_classes)
    options = dict(batch_size=key.batch_size, lr=key.lr, seed=key.seed, progress=progress)
    pretrain_history = pretrain(net, pretrain_set, pretrain_classes, key.augmentation, key.pretrain_batches,
                                test_set=pretrain_test if key.test_every else None,
                                test_every=key.test_every or key.pretrain_batches, **options)
    finetune_history = finetune(net, finetune_set, finetune_classes, key.finetune_batches, test_set=finetune_test,
                                test_every=key.test_every or key.finetune_batches, **options)
    return net, make_record(key, history_record(pretrain_history), history_record(finetune_history))


def make_record(key, pretrain_history, finetune_history):
    """One run's JSON record: its key, both histories, and the final finetune test numbers."""
    return {**asdict(key),
            "finetune_test_accuracy": finetune_history["test_accuracy"][-1],
            "finetune_test_loss": finetune_history["test_loss"][-1],
            "pretrain": pretrain_history, "finetune": finetune_history}


# ---------------------------------------------------------------------------------------------
# Your network as a function of its parameters


class MaskedDropout(nn.Module):
    """Stands in for ``Dropout2d``: multiplies by a given noise tensor instead of drawing one.

    ``noise`` (``[B, C, 1, 1]``, values 0 or ``1 / (1 - p)``) is set right before each call.
    In eval mode it does nothing, like dropout.
    """

    def __init__(self):
        super().__init__()
        self.noise = None

    def forward(self, x):
        return x * self.noise if self.training else x


class MethodCall(nn.Module):
    """Calls one method of a network, so that ``functional_call`` can use ``generalize`` or ``apply_convs``."""

    def __init__(self, net, method):
        super().__init__()
        self.net, self.method = net, method

    def forward(self, x):
        return getattr(self.net, self.method)(x)


def dropout_noise(generator, n_steps, noise_shape, p):
    """Draw ``n_steps`` dropout masks exactly as ``Dropout2d`` does with this random stream.

    Returns:
        float tensor ``[n_steps, *noise_shape]`` with values 0 and ``1 / (1 - p)``.
    """
    masks = [torch.empty(noise_shape).bernoulli_(1 - p, generator=generator).div_(1 - p) for _ in range(n_steps)]
    return torch.stack(masks)


class StackedRuns:
    """Your ``Net`` for many runs at once: stacked parameters, and vmapped steps over them.

    Args:
        nets: one ``Net`` per run, all with the same architecture.
    """

    def __init__(self, nets):
        template = copy.deepcopy(nets[0])
        self.dropout_p = template.conv2_drop.p
        template.conv2_drop = MaskedDropout()
        self.template = template
        self.params, self.buffers = stack_module_state(nets)
        self.params = {name: value.detach().clone() for name, value in self.params.items()}

    def head(self, method):
        """The network as a module whose forward is ``method`` ("forward", "generalize", ...)."""
        return MethodCall(self.template, method)

    def sgd_step(self, method, trainable, images, soft_labels, noise, lr):
        """One SGD step of every run on its own batch.

        Args:
            method: the head to train, "forward" (pretrainer) or "generalize".
            trainable: parameter names the optimizer may change (as in ``net.named_parameters()``).
            images: ``[R, B, 1, 28, 28]``; soft_labels: ``[R, B, K]``; noise: ``[R, B, C, 1, 1]``.
            lr: learning rate.

        Returns:
            (loss ``[R]``, log_probs ``[R, B, K]``).
        """
        module = self.head(method)
        dropout = self.template.conv2_drop

        def loss_of(trainable_params, frozen_params, buffers, x, y, mask):
            dropout.noise = mask
            state = {**_prefixed(trainable_params), **_prefixed(frozen_params), **_prefixed(buffers)}
            log_probs = functional_call(module, state, (x,))
            return cross_entropy(log_probs, y), log_probs

        trainable_params = {name: self.params[name] for name in trainable}
        frozen_params = {name: value for name, value in self.params.items() if name not in trainable}
        module.train()
        try:
            grads, (loss, log_probs) = vmap(grad_and_value(loss_of, has_aux=True))(
                trainable_params, frozen_params, self.buffers, runs_innermost(images), soft_labels, noise)
        finally:
            dropout.noise = None  # it holds a vmap-internal tensor, which cannot be copied
        with torch.no_grad():
            for name in trainable:
                self.params[name].add_(grads[name], alpha=-lr)  # what torch.optim.SGD does
        return loss.detach(), log_probs.detach()

    @torch.no_grad()
    def apply(self, method, images, batch_size=250):
        """Every run's ``method`` on the same images, in eval mode.

        Without gradients, one run after the other is faster than vmap (measured
        0.8 s against 1.5 s per 1000 images for 21 runs on 2 cores).

        Args:
            images: ``[N, 1, 28, 28]``, shared by all runs.

        Returns:
            ``[R, N, ...]``.
        """
        module = self.head(method)
        module.eval()
        return torch.stack([torch.cat([functional_call(module, state, (images[start:start + batch_size],))
                                       for start in range(0, len(images), batch_size)])
                            for state in map(_prefixed, self.run_states())])

    @torch.no_grad()
    def apply_with_noise(self, method, images, noise):
        """Every run's ``method`` on the same images, in train mode with the given dropout noise.

        Args:
            images: ``[N, 1, 28, 28]``, shared by all runs.
            noise: ``[R, N, C, 1, 1]``.

        Returns:
            ``[R, N, ...]``.
        """
        module = self.head(method)
        module.train()
        dropout = self.template.conv2_drop

        def call(params, buffers, x, mask):
            dropout.noise = mask
            return functional_call(module, {**_prefixed(params), **_prefixed(buffers)}, (x,))

        try:
            return vmap(call, in_dims=(0, 0, None, 0))(self.params, self.buffers, images, noise)
        finally:
            dropout.noise = None  # it holds a vmap-internal tensor, which cannot be copied

    def run_states(self):
        """The parameters and buffers of each run, as one dict per run (views, not copies)."""
        state = {**self.params, **self.buffers}
        n_runs = len(next(iter(self.params.values())))
        return [{name: value[run] for name, value in state.items()} for run in range(n_runs)]


def runs_innermost(images, run_dim=0):
    """The same images, stored with the run index (dimension ``run_dim``) varying fastest in memory.

    The values do not change, only the memory layout. vmap turns the runs into the
    channels of one grouped convolution, and with the runs innermost that input is
    channels-last, which the CPU convolution handles faster (about 16 % less time per step).
    A tensor that is already laid out so is returned as it is, without a copy.
    """
    return images.movedim(run_dim, -1).contiguous().movedim(-1, run_dim)


def _prefixed(named_tensors):
    """Names as ``MethodCall`` sees them: ``conv1.weight`` -> ``net.conv1.weight``."""
    return {f"net.{name}": value for name, value in named_tensors.items()}


def evaluate_log_probs(log_probs, labels, n_classes):
    """Mean loss and accuracy of every run from its log-probs, as ``training.evaluate`` computes them.

    Args:
        log_probs: ``[R, N, K]``; labels: ``[N]``.

    Returns:
        (losses, accuracies): two lists of ``R`` floats.
    """
    targets = one_hot(labels, n_classes)
    losses = [cross_entropy(run, targets).item() for run in log_probs]
    accuracies = ((log_probs.argmax(dim=2) == labels).sum(dim=1).double() / len(labels)).tolist()
    return losses, accuracies


def dropout_noise_shape(net, images):
    """The shape of the noise that ``net.conv2_drop`` draws for ``images``: ``[B, C, 1, 1]``."""
    seen = {}

    def record_shape(module, args):
        seen["shape"] = args[0].shape  # returns None: the input stays as it is

    hook = net.conv2_drop.register_forward_pre_hook(record_shape)
    try:
        with torch.no_grad():
            net(images)
    finally:
        hook.remove()
    if "shape" not in seen:
        raise RuntimeError("The engine needs Net.apply_convs to use self.conv2_drop for dropout; "
                           "it was never called. Use engine.plain_run, or fix apply_convs.")
    shape = seen["shape"]
    return (shape[0], shape[1]) + (1,) * (len(shape) - 2)


# ---------------------------------------------------------------------------------------------
# One group of runs: same seed and datasets, every augmentation and s


class RunGroup:
    """The runs of one seed, trained together. See the module docstring for the randomness.

    Pretraining does not depend on ``D_F`` (as long as it has the same number of
    classes, which fixes the initial weights), so a group pretrains once and then
    finetunes a copy of the pretrained runs on each ``D_F``.

    Args:
        keys: runs with the same seed and settings, one per (augmentation, s); their
            ``finetune_dataset`` only gives the number of finetuning classes.
        samples: all subset sizes of the experiment.
    """

    def __init__(self, keys, samples):
        self.keys = keys
        first = keys[0]
        self.batch_size, self.lr, self.seed = first.batch_size, first.lr, first.seed
        self.pretrain_classes = N_CLASSES[first.pretrain_dataset]
        self.finetune_classes = N_CLASSES[first.finetune_dataset]
        self.pretrain_sets = [datasets_for(key, samples)[0] for key in keys]
        self.pretrain_test = curve_test_set(datasets_for(first, samples)[1], first.curve_test_images)
        self.nets, self.dropout_streams, self.numpy_states = [], [], []
        for key in keys:
            seed_everything(key.seed)  # the plain loop's order: seed, then build the net
            self.nets.append(Net(self.pretrain_classes, self.finetune_classes))
            stream = torch.Generator()
            stream.set_state(torch.get_rng_state())
            self.dropout_streams.append(stream)
            self.numpy_states.append(np.random.get_state())
        self.noise_shape = dropout_noise_shape(self.nets[0], self.pretrain_sets[0].tensors[0][:self.batch_size])
        self.runs = StackedRuns(self.nets)

    def augmented_batches(self, run, images, labels, indices, augmentation, n_classes):
        """The batches the plain loop would train run ``run`` on, with that run's numpy state.

        Calls the numpy half of ``augment`` (``blend_batch``, which calls your
        ``collage`` or ``mixup``) batch by batch, in the plain loop's order, and
        builds the tensors and soft labels of all batches at once.

        Args:
            indices: ``[n, B]`` batch indices.

        Returns:
            (images ``[n, B, 1, 28, 28]``, soft labels ``[n, B, K]``).
        """
        if augmentation == "none":  # augment() would copy the images and give one-hot labels
            return images[indices], one_hot(labels[indices], n_classes)
        combine = AUGMENTATION_DICT[augmentation]
        pixels = images.numpy()
        saved = np.random.get_state()
        np.random.set_state(self.numpy_states[run])
        try:
            blended, weights, partners = zip(*(blend_batch(combine, pixels[index]) for index in indices.numpy()))
        finally:
            self.numpy_states[run] = np.random.get_state()
            np.random.set_state(saved)
        partner_indices = torch.gather(indices, 1, torch.from_numpy(np.stack(partners)))
        soft_labels = blended_soft_labels(labels[indices], labels[partner_indices], np.stack(weights), n_classes,
                                          images.dtype)
        return torch.as_tensor(np.stack(blended), dtype=images.dtype), soft_labels

    def pretraining_batches(self, all_indices, start, stop):
        """What every run trains on in steps ``start`` to ``stop`` (``n = stop - start`` steps).

        Args:
            all_indices: one ``[n_batches, B]`` index tensor per run.

        Returns:
            (images ``[n, R, B, 1, 28, 28]``, soft labels ``[n, R, B, K]``, dropout noise ``[n, R, B, C, 1, 1]``).
        """
        images, soft_labels = zip(*(self.augmented_batches(r, *train_set.tensors, all_indices[r][start:stop],
                                                           key.augmentation, self.pretrain_classes)
                                    for r, (key, train_set) in enumerate(zip(self.keys, self.pretrain_sets))))
        noise = [dropout_noise(stream, stop - start, self.noise_shape, self.runs.dropout_p)
                 for stream in self.dropout_streams]
        images = runs_innermost(torch.stack(images, dim=1), run_dim=1)  # so sgd_step need not copy them
        return images, torch.stack(soft_labels, dim=1), torch.stack(noise, dim=1)

    def pretrain(self, n_batches, progress, test_every):
        """Pretrain every run through the pretrainer head, with its augmentation.

        Returns:
            one history dict per run.
        """
        histories = [_empty_history() for _ in self.keys]
        all_indices = [batch_indices(len(train_set.tensors[1]), n_batches, self.batch_size,
                                     torch.Generator().manual_seed(self.seed)) for train_set in self.pretrain_sets]
        trainable = [name for name, _ in self.nets[0].named_parameters()]
        chunk = test_every or 250  # prepare augmented batches and noise this many steps at a time
        chunks = [(start, min(start + chunk, n_batches)) for start in range(0, n_batches, chunk)]
        # A thread prepares the next chunk while the runs train on this one. Only that
        # thread draws augmentations and dropout masks, chunk after chunk, so every run
        # still draws them in the plain loop's order.
        with ThreadPoolExecutor(max_workers=1) as preparer:
            upcoming = preparer.submit(self.pretraining_batches, all_indices, *chunks[0])
            for number, (start, stop) in enumerate(chunks):
                images, soft_labels, noise = upcoming.result()
                if number + 1 < len(chunks):
                    upcoming = preparer.submit(self.pretraining_batches, all_indices, *chunks[number + 1])
                for step in range(stop - start):
                    loss, log_probs = self.runs.sgd_step("forward", trainable, images[step], soft_labels[step],
                                                         noise[step], self.lr)
                    _append_train(histories, loss, log_probs, soft_labels[step])
                    progress.update(1)
                if test_every and (stop % test_every == 0 or stop == n_batches):
                    log_probs = self.runs.apply("forward", self.pretrain_test.tensors[0])
                    _append_test(histories, stop, *evaluate_log_probs(log_probs, self.pretrain_test.tensors[1],
                                                                      self.pretrain_classes))
        return histories

    def finetune(self, finetune_set, finetune_test, n_batches, progress, test_every):
        """Finetune a copy of the pretrained runs on one ``D_F``; the pretrained runs stay as they are.

        Trains ``finetune_parameters()`` through the generalizer head, on cached
        features when that is exact (see :func:`features_are_cacheable`).

        Returns:
            one history dict per run.
        """
        saved_params = {name: value.clone() for name, value in self.runs.params.items()}
        saved_streams = [stream.get_state() for stream in self.dropout_streams]
        try:
            return self._finetune(finetune_set, finetune_test, n_batches, progress, test_every or n_batches)
        finally:
            self.runs.params = saved_params
            for stream, state in zip(self.dropout_streams, saved_streams):
                stream.set_state(state)

    def _finetune(self, finetune_set, finetune_test, n_batches, progress, test_every):
        images, labels = finetune_set.tensors
        n_runs = len(self.keys)
        indices = batch_indices(len(labels), n_batches, self.batch_size, torch.Generator().manual_seed(self.seed))
        noise = torch.stack([dropout_noise(stream, n_batches, self.noise_shape, self.runs.dropout_p)
                             for stream in self.dropout_streams], dim=1)
        soft_labels = one_hot(labels[indices], self.finetune_classes)  # the same batches for every run
        trainable = finetune_parameter_names(self.nets[0])
        cached = features_are_cacheable(self.nets[0], trainable, images[:self.batch_size], noise[0, 0])
        if cached:
            train_features = self.runs.apply("apply_convs", images)  # [R, N, 256]
            test_features = self.runs.apply("apply_convs", finetune_test.tensors[0])
            head = FeatureHead(self.runs)

        histories = [_empty_history() for _ in self.keys]
        for step in range(n_batches):
            if cached:
                batch = train_features[:, indices[step]] * _spread(noise[step], train_features.shape[-1])
                loss, log_probs = head.sgd_step(trainable, batch, soft_labels[step], self.lr)
            else:
                loss, log_probs = self.runs.sgd_step(
                    "generalize", trainable, images[indices[step]].expand(n_runs, -1, -1, -1, -1),
                    soft_labels[step].expand(n_runs, -1, -1), noise[step], self.lr)
            _append_train(histories, loss, log_probs, soft_labels[step].expand(n_runs, -1, -1))
            progress.update(1)
            if (step + 1) % test_every == 0 or step + 1 == n_batches:
                log_probs = head.apply(test_features) if cached else self.runs.apply(
                    "generalize", finetune_test.tensors[0])
                _append_test(histories, step + 1,
                             *evaluate_log_probs(log_probs, finetune_test.tensors[1], self.finetune_classes))
        return histories


class FeatureHead:
    """Your ``generalize`` on cached features: ``apply_convs`` is replaced by the identity.

    Shares the parameters of a ``StackedRuns``, so steps here update those runs.
    """

    def __init__(self, runs):
        self.runs = runs
        self.template = copy.deepcopy(runs.template)
        self.template.apply_convs = lambda features: features

    def sgd_step(self, trainable, features, soft_labels, lr):
        """One SGD step of every run.

        Args:
            features: ``[R, B, 256]``, already multiplied by each run's dropout noise.
            soft_labels: ``[B, K]``, the same for every run (runs of a group share the finetuning batches).
        """
        module = MethodCall(self.template, "generalize")

        def loss_of(trainable_params, x, y):
            log_probs = functional_call(module, _prefixed(trainable_params), (x,), strict=False)
            return cross_entropy(log_probs, y), log_probs

        trainable_params = {name: self.runs.params[name] for name in trainable}
        grads, (loss, log_probs) = vmap(grad_and_value(loss_of, has_aux=True), in_dims=(0, 0, None))(
            trainable_params, features, soft_labels)
        with torch.no_grad():
            for name in trainable:
                self.runs.params[name].add_(grads[name], alpha=-lr)
        return loss.detach(), log_probs.detach()

    @torch.no_grad()
    def apply(self, features):
        """Every run's ``generalize`` log-probs on its cached features ``[R, N, 256]``."""
        module = MethodCall(self.template, "generalize")
        params = {name: value for name, value in self.runs.params.items() if name.startswith("generalizer.")}
        return vmap(lambda p, x: functional_call(module, _prefixed(p), (x,), strict=False))(params, features)


def _spread(noise, n_features):
    """Channel noise ``[R, B, C, 1, 1]`` as a multiplier of flattened features ``[R, B, n_features]``."""
    runs, batch, channels = noise.shape[:3]
    return noise.reshape(runs, batch, channels, 1).expand(-1, -1, -1, n_features // channels).reshape(
        runs, batch, n_features)


def finetune_parameter_names(net):
    """The names of the parameters that ``net.finetune_parameters()`` returns."""
    chosen = {id(parameter) for parameter in net.finetune_parameters()}
    return [name for name, parameter in net.named_parameters() if id(parameter) in chosen]


def features_are_cacheable(net, trainable, images, noise):
    """Whether finetuning on cached features gives the same log-probs as the full network.

    True when finetuning leaves the convolutions alone (only generalizer parameters
    are trainable) and, on a probe batch, ``generalize`` with dropout noise equals
    ``generalize`` on the noise-free features times the noise.
    """
    if not all(name.startswith("generalizer.") for name in trainable):
        return False
    probe = StackedRuns([net])
    full = probe.apply_with_noise("generalize", images, noise[None])
    features = probe.apply("apply_convs", images)
    if features.dim() != 3 or features.shape[-1] % noise.shape[1]:
        return False
    cached = FeatureHead(probe).apply(features * _spread(noise[None], features.shape[-1]))
    return torch.allclose(full, cached, atol=1e-6, rtol=1e-5)


def _empty_history():
    return {"train_loss": [], "train_accuracy": [], "test_steps": [], "test_loss": [], "test_accuracy": []}


def _append_train(histories, loss, log_probs, soft_labels):
    """Add one step's loss and accuracy of every run, computed as ``training.train`` does."""
    accuracy = (log_probs.argmax(dim=2) == soft_labels.argmax(dim=2)).float().mean(dim=1)
    for history, run_loss, run_accuracy in zip(histories, loss.tolist(), accuracy.tolist()):
        history["train_loss"].append(run_loss)
        history["train_accuracy"].append(run_accuracy)


def _append_test(histories, step, losses, accuracies):
    for history, loss, accuracy in zip(histories, losses, accuracies):
        history["test_steps"].append(step)
        history["test_loss"].append(loss)
        history["test_accuracy"].append(accuracy)


# ---------------------------------------------------------------------------------------------
# The experiment: groups of runs, results in a JSON file


def load_results(path):
    """The records in a results file (an empty list if it does not exist).

    Raises:
        ValueError: naming the file, if it is not a results file.
    """
    path = Path(path)
    if not path.exists():
        return []
    try:
        records = json.loads(path.read_text())["runs"]
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise ValueError(f"{path} is not a results file of handin.engine ({error}); "
                         f"delete it or pick another --results path") from error
    return records


def save_results(path, records):
    """Write all records, atomically (a crash never leaves half a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(path.suffix + ".tmp")
    temporary.write_text(json.dumps({"runs": records}))
    temporary.replace(path)


def record_key(record):
    """The ``RunKey`` of a saved record."""
    return RunKey(**{f.name: record[f.name] for f in fields(RunKey)})


def run_experiment(config, results_path, progress=True, curves=True):
    """Run every run of ``config`` that ``results_path`` does not hold yet, and save after each group.

    Runs of one seed are trained together; runs that differ only in ``D_F`` share
    their pretraining (see :class:`RunGroup`).

    Args:
        config: an ``ExperimentConfig``.
        results_path: JSON file of records; created if absent, extended otherwise.
        progress: show one tqdm bar with an ETA over all steps.
        curves: keep the per-batch training curves in the records (they make the file larger).

    Returns:
        the records of ``config``'s runs, in ``config.run_keys()`` order.
    """
    records = load_results(results_path)
    done = {record_key(record) for record in records}
    groups = {}
    for key in config.run_keys():
        if key not in done:
            group = groups.setdefault((key.seed, N_CLASSES[key.finetune_dataset]), {})
            group.setdefault((key.augmentation, key.s), []).append(key)
    steps = sum(config.pretrain_batches + config.finetune_batches * len({k.finetune_dataset for ks in g.values()
                                                                         for k in ks}) for g in groups.values())
    n_runs = sum(len(keys) for group in groups.values() for keys in group.values())
    experiment = f"{config.pretrain_dataset} → {' and '.join(config.finetune_datasets)}"
    # One bar for the whole experiment (a widget in a notebook, text in a terminal): it names the
    # experiment, the seed and the phase, shows the time left, and stays below the cell when done.
    with tqdm(total=steps, desc=f"{experiment}: {n_runs} runs", unit="step", disable=not progress,
              leave=True) as bar:
        for (seed, _), group in groups.items():
            pretrain_keys = [keys[0] for keys in group.values()]
            bar.set_description(f"{experiment}, seed {seed}: pretraining {len(pretrain_keys)} runs")
            runs = RunGroup(pretrain_keys, config.samples)
            pretrain_histories = runs.pretrain(config.pretrain_batches, bar, config.test_every)
            for finetune_dataset in dict.fromkeys(k.finetune_dataset for keys in group.values() for k in keys):
                bar.set_description(f"{experiment}, seed {seed}: finetuning on {finetune_dataset}")
                keys = [replace(key, finetune_dataset=finetune_dataset) for key in pretrain_keys]
                _, _, finetune_set, finetune_test = datasets_for(keys[0], config.samples)
                finetune_histories = runs.finetune(finetune_set, finetune_test, config.finetune_batches, bar,
                                                   config.test_every)
                for key, pre, fine in zip(keys, pretrain_histories, finetune_histories):
                    if key in done:
                        continue
                    record = make_record(key, pre, fine)
                    if not curves:
                        for phase in ("pretrain", "finetune"):
                            record[phase] = {**record[phase], "train_loss": [], "train_accuracy": []}
                    records.append(record)
                    done.add(key)
            save_results(results_path, records)
    by_key = {record_key(record): record for record in records}
    return [by_key[key] for key in config.run_keys()]


def report_records(configs, results_path, grading=None):
    """The records the report shows: run what is missing, or, under nbgrader, only load them.

    Args:
        configs: one ``ExperimentConfig`` or a list of them.
        results_path: the results file (hand it in with the report).
        grading: load only, never train; defaults to whether ``$NBGRADER_EXECUTION`` is set.

    Returns:
        list of records; under grading, those of ``configs`` found in the file (maybe none),
        after printing a note about what is missing.
    """
    configs = [configs] if isinstance(configs, ExperimentConfig) else list(configs)
    grading = GRADING_ENV in os.environ if grading is None else grading
    if not grading:
        return [record for config in configs for record in run_experiment(config, results_path)]
    wanted = [key for config in configs for key in config.run_keys()]
    try:
        saved = {record_key(record): record for record in load_results(results_path)}
    except ValueError as error:
        print(f"Note: {error}. The figures below stay empty.")
        return []
    records = [saved[key] for key in wanted if key in saved]
    if len(records) < len(wanted):
        print(f"Note: {results_path} holds {len(records)} of the {len(wanted)} runs of this experiment; "
              f"the figures and findings below use those. (While grading, the report loads saved "
              f"results instead of training; run the notebook yourself and hand in that file.)")
    return records


def main(argv=None):
    """``python -m handin.engine``: run the experiment and save the results."""
    parser = argparse.ArgumentParser(prog="python -m handin.engine", description=__doc__.split("\n\n")[0])
    defaults = default_config()
    parser.add_argument("--results", default="results.json", help="JSON file of run records (rerun skips done runs)")
    parser.add_argument("--pretrain", default=defaults.pretrain_dataset, help="D_P: mnist, fashion-mnist or emnist")
    parser.add_argument("--finetune", nargs="+", default=list(defaults.finetune_datasets),
                        help="one or more D_F: mnist, fashion-mnist or emnist (they share the pretraining)")
    parser.add_argument("--seeds", type=int, nargs="+", default=list(defaults.seeds))
    parser.add_argument("--samples", type=int, nargs="+", default=list(defaults.samples))
    parser.add_argument("--augmentations", nargs="+", default=list(defaults.augmentations))
    parser.add_argument("--pretrain-batches", type=int, default=defaults.pretrain_batches)
    parser.add_argument("--finetune-batches", type=int, default=defaults.finetune_batches)
    parser.add_argument("--test-every", type=int, default=defaults.test_every,
                        help="test evaluation every N batches for the curves (0: only at the end)")
    parser.add_argument("--curve-test-images", type=int, default=defaults.curve_test_images,
                        help="test images for the pretraining curve (0: all)")
    parser.add_argument("--no-curves", action="store_true", help="do not keep per-batch training curves")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch threads (0: torch's default); 1 is faster on a busy machine")
    options = parser.parse_args(argv)
    config = replace(defaults, pretrain_dataset=options.pretrain, finetune_datasets=tuple(options.finetune),
                     seeds=tuple(options.seeds), samples=tuple(options.samples),
                     augmentations=tuple(options.augmentations), pretrain_batches=options.pretrain_batches,
                     finetune_batches=options.finetune_batches, test_every=options.test_every,
                     curve_test_images=options.curve_test_images)
    if options.threads:
        torch.set_num_threads(options.threads)
    records = run_experiment(config, options.results, curves=not options.no_curves)
    print(f"{len(records)} runs in {options.results}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
