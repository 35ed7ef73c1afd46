"""Visible self-checks: run them after each step to see whether your code does what it should.

Every check is a plain function that raises ``AssertionError`` with a message
that says what is wrong, e.g. "the top-left quarter should come from batch_j".
They are deterministic (seeded) and fast. Run one or several with :func:`run`::

    from handin import checks
    checks.run("collage", "mixup")       # prints "✓ collage: all checks passed" ...

Passing these checks is a good sign, not a guarantee: the grader runs more
tests on other inputs.
"""
import contextlib

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

from . import augmentations, network, training, utils
from .notebook_help import STUDENT_FUNCTIONS


class NotImplementedYet(AssertionError):
    """The function still raises ``NotImplementedError`` (its YOUR CODE block is untouched)."""


class ChecksFailed(AssertionError):
    """Some checks failed; :func:`run` has printed what is wrong with each."""

    def _render_traceback_(self):
        # IPython shows this instead of a traceback: the printed lines above say it all.
        return [str(self).splitlines()[0]]


@contextlib.contextmanager
def seeded(seed):
    """Seed numpy's and torch's global generators inside the block, and restore them after it."""
    numpy_state = np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        np.random.seed(seed)
        torch.manual_seed(seed)
        try:
            yield
        finally:
            np.random.set_state(numpy_state)


#: The module file in which each student function lives.
STUDENT_FILES = STUDENT_FUNCTIONS


@contextlib.contextmanager
def single_thread():
    """Run torch on one thread inside the block.

    Batches of 8 small images are too small to split across threads; on a busy
    machine several threads wait for each other and the check gets many times slower.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def call(function_name, owner, *args):
    """Call ``owner.function_name(*args)``, turning a missing implementation into a clear message.

    Args:
        function_name: a key of :data:`STUDENT_FILES`.
        owner: the module (``augmentations``, ``utils``) or the ``Net`` instance.

    The function is looked up at call time, so edits reloaded by ``%autoreload`` are used.
    """
    function = getattr(owner, function_name)
    try:
        return function(*args)
    except NotImplementedError as error:
        file_name = STUDENT_FILES[function_name]
        raise NotImplementedYet(f"{function_name} is not implemented yet: fill in the YOUR CODE block "
                                f"in handin/{file_name}") from error


def expect(condition, message):
    """Raise ``AssertionError(message)`` unless ``condition`` holds."""
    if not condition:
        raise AssertionError(message)


def expect_pair(output, function_name):
    """Check that an augmentation returned ``(result, interpolation)`` and return the two."""
    expect(isinstance(output, tuple) and len(output) == 2,
           f"{function_name} should return a pair (result, interpolation), got {type(output).__name__}")
    result, interpolation = output
    return np.asarray(result), interpolation


def two_images(shape=(1, 6, 6), seed=0):
    """Two distinct deterministic images ``[C, H, W]``: i holds values in [0, 1), j in [2, 3)."""
    rng = np.random.RandomState(seed)
    return rng.rand(*shape).astype(np.float32), (2 + rng.rand(*shape)).astype(np.float32)


# ----------------------------------------------------------------------------- augmentations.py

def check_collage():
    """collage: quarters from the right image, interpolation 0.5, shape kept, inputs untouched."""
    for shape in ((1, 6, 6), (3, 28, 28)):
        batch_i, batch_j = two_images(shape)
        original_i, original_j = batch_i.copy(), batch_j.copy()
        result, interpolation = expect_pair(call("collage", augmentations, batch_i, batch_j), "collage")
        expect(result.shape == shape, f"collage returned shape {list(result.shape)}, expected {list(shape)} "
                                      "(the [C, H, W] shape of the inputs)")
        expect(np.array_equal(batch_i, original_i), "collage modified batch_i in place; work on a copy")
        expect(np.array_equal(batch_j, original_j), "collage modified batch_j in place; work on a copy")
        half = shape[-1] // 2
        quarters = {
            "top-left": (slice(None, half), slice(None, half), batch_j, "batch_j"),
            "top-right": (slice(None, half), slice(half, None), batch_i, "batch_i"),
            "bottom-left": (slice(half, None), slice(None, half), batch_i, "batch_i"),
            "bottom-right": (slice(half, None), slice(half, None), batch_j, "batch_j"),
        }
        for name, (rows, cols, source, source_name) in quarters.items():
            expect(np.allclose(result[:, rows, cols], source[:, rows, cols]),
                   f"the {name} quarter should come from {source_name} (image shape {list(shape)})")
        expect(np.isclose(float(interpolation), 0.5),
               f"interpolation should be 0.5 (each image covers half of the pixels), got {interpolation}")


def check_mixup(n_draws=400):
    """mixup: result = t * batch_i + (1 - t) * batch_j for the returned t, t ~ Beta(alpha, alpha), inputs untouched.

    The weight is random, so its distribution is checked over ``n_draws`` seeded
    calls per alpha: a Beta(alpha, alpha) weight has mean 1/2 and variance
    1 / (4 (2 alpha + 1)).
    """
    batch_i, batch_j = two_images((1, 5, 5))
    original_i, original_j = batch_i.copy(), batch_j.copy()
    for alpha in (0.3, 2.0):
        weights = []
        with seeded(0):
            for _ in range(n_draws):
                result, interpolation = expect_pair(call("mixup", augmentations, batch_i, batch_j, alpha), "mixup")
                expect(np.array_equal(batch_i, original_i), "mixup modified batch_i in place; work on a copy")
                expect(np.array_equal(batch_j, original_j), "mixup modified batch_j in place; work on a copy")
                expect(np.ndim(interpolation) == 0,
                       f"interpolation should be a single number, got {type(interpolation).__name__}")
                interpolation = float(interpolation)
                expect(0 <= interpolation <= 1, f"interpolation should lie in [0, 1], got {interpolation}")
                expect(result.shape == batch_i.shape,
                       f"mixup returned shape {list(result.shape)}, expected {list(batch_i.shape)}")
                expect(np.allclose(result, interpolation * batch_i + (1 - interpolation) * batch_j, atol=1e-5),
                       "result should be interpolation * batch_i + (1 - interpolation) * batch_j, with the "
                       "interpolation that mixup returns")
                weights.append(interpolation)
        mean, variance, expected_variance = np.mean(weights), np.var(weights), 1 / (4 * (2 * alpha + 1))
        expect(abs(mean - 0.5) < 0.1 and abs(variance - expected_variance) < 0.25 * expected_variance,
               f"interpolation should be drawn from Beta(alpha, alpha) (the provided np.random.beta line): over "
               f"{n_draws} calls with alpha={alpha} its mean is {mean:.3f} and its variance {variance:.4f}, "
               f"expected about 0.5 and {expected_variance:.4f}")


# ----------------------------------------------------------------------------- utils.py

def check_cross_entropy():
    """cross_entropy: equals F.nll_loss for one-hot targets, -mean(sum(t * p)) for soft ones, differentiable."""
    generator = torch.Generator().manual_seed(0)
    pred = torch.randn(6, 5, generator=generator).log_softmax(dim=1).requires_grad_()
    labels = torch.tensor([0, 3, 1, 4, 4, 2])
    loss = call("cross_entropy", utils, pred, F.one_hot(labels, 5).float())
    expect(isinstance(loss, torch.Tensor), f"cross_entropy should return a torch.Tensor, got {type(loss).__name__}")
    expect(loss.dim() == 0, f"cross_entropy should return a scalar (0-dim tensor), got shape {list(loss.shape)}")
    # Compare in float64: a float64 loss is as right as a float32 one.
    loss, reference = loss.double(), F.nll_loss(pred, labels).double()
    expect(torch.allclose(loss, reference, atol=1e-5),
           f"cross_entropy should equal F.nll_loss for one-hot targets: got {loss.item():.5f}, "
           f"expected {reference.item():.5f}"
           + (" (did you sum over the batch instead of taking the mean?)"
              if torch.isclose(loss, reference * len(labels)) else ""))

    soft = torch.rand(6, 5, generator=generator)
    soft = soft / soft.sum(dim=1, keepdim=True)
    expected = -(soft * pred).sum(dim=1).mean()
    got = call("cross_entropy", utils, pred, soft)
    expect(torch.allclose(got.double(), expected.double(), atol=1e-5),
           f"cross_entropy with soft targets should be the batch mean of -sum(target * pred): "
           f"got {got.item():.5f}, expected {expected.item():.5f}")
    expect(got.requires_grad, "cross_entropy must stay differentiable: compute it with torch operations on pred")


# ----------------------------------------------------------------------------- network.py

def check_network():
    """Net: feature and output shapes, log-probabilities, the right head for each method, finetune_parameters."""
    with seeded(0):
        net = network.Net(10, 27)
        images = torch.randn(4, 1, 28, 28)
    net.eval()  # dropout off, so that two calls can be compared
    with torch.no_grad():
        features = call("apply_convs", net, images)
        expect(tuple(features.shape) == (4, net.lin_size),
               f"apply_convs should return [B, 256] features, got shape {list(features.shape)}")
        expect(bool((features >= 0).all()), "apply_convs should end with a relu: features must be non-negative")
        for method, n_classes, head in (("forward", 10, "pretrainer"), ("generalize", 27, "generalizer")):
            log_probs = call(method, net, images)
            expect(tuple(log_probs.shape) == (4, n_classes),
                   f"{method} should return [B, {n_classes}] for Net(10, 27), got shape {list(log_probs.shape)} "
                   f"(use self.{head})")
            expect(torch.allclose(log_probs.exp().sum(dim=1), torch.ones(4), atol=1e-4),
                   f"{method} should return log-probabilities (log_softmax over dim=1): exp() must sum to 1 per row")
            expect(torch.allclose(log_probs, call(method, net, images)),
                   f"{method} gives different outputs for the same input in eval mode")
        _check_heads(net, images)
    _check_finetune_parameters(net)


def _check_heads(net, images):
    """forward must depend on the pretrainer only, generalize on the generalizer only."""
    before = {method: call(method, net, images) for method in ("forward", "generalize")}
    with torch.no_grad():
        net.pretrainer.bias.add_(torch.arange(10.0))
    expect(not torch.allclose(call("forward", net, images), before["forward"]),
           "forward should classify with self.pretrainer")
    expect(torch.allclose(call("generalize", net, images), before["generalize"]),
           "generalize should not use self.pretrainer; use self.generalizer")
    with torch.no_grad():
        net.pretrainer.bias.sub_(torch.arange(10.0))
        net.generalizer.bias.add_(torch.arange(27.0))
    expect(not torch.allclose(call("generalize", net, images), before["generalize"]),
           "generalize should classify with self.generalizer")
    with torch.no_grad():
        net.generalizer.bias.sub_(torch.arange(27.0))


def _check_finetune_parameters(net):
    returned = list(call("finetune_parameters", net))
    expected = {id(parameter) for parameter in net.generalizer.parameters()}
    names = {id(parameter): name for name, parameter in net.named_parameters()}
    extra = [names.get(id(parameter), "a parameter that is not part of the net") for parameter in returned
             if id(parameter) not in expected]
    expect(not extra, f"finetune_parameters() must return only the generalizer's parameters; it also returned {extra}")
    missing = [name for name, parameter in net.generalizer.named_parameters() if id(parameter) not in map(id, returned)]
    expect(not missing, f"finetune_parameters() must return all of the generalizer's parameters; missing {missing}")


# ----------------------------------------------------------------------------- training

def toy_dataset(n_classes=10, samples_per_class=1, seed=0):
    """A small seeded dataset of ``[N, 1, 28, 28]`` images: class k is a bright bar at a row given by k."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(n_classes).repeat_interleave(samples_per_class)
    images = torch.rand(len(labels), 1, 28, 28, generator=generator) * 0.3
    for index, label in enumerate(labels.tolist()):
        row = 2 + (label * 23) // n_classes
        images[index, 0, row:row + 3, 4:24] = 1.0
    return TensorDataset((images - 0.2) / 0.3, labels)


def check_training(train_set=None, n_classes=10, n_batches=300, seed=0):
    """Training sanity: pretraining on 1 sample per class must fit it (train accuracy > 0.9).

    A network this size memorizes ten images easily; if it cannot, the loss,
    the forward pass or the gradients are broken.

    Args:
        train_set: ``TensorDataset`` with 1 sample per class; a seeded toy set if None.
        n_classes: number of classes of ``train_set``.
        n_batches: SGD steps.
        seed: fixes initialization, batch order and dropout.

    Returns:
        the train accuracy reached, a float in [0, 1].
    """
    train_set = train_set if train_set is not None else toy_dataset(n_classes, seed=seed)
    with seeded(seed), single_thread():
        net = network.Net(n_classes, n_classes)
        try:
            training.pretrain(net, train_set, n_classes, n_batches=n_batches, lr=0.05, seed=seed, progress=False)
        except NotImplementedError as error:
            raise NotImplementedYet("training needs every YOUR CODE block of handin/network.py and "
                                    "handin/utils.py; run the other checks to see which one is missing") from error
        loss, accuracy = training.evaluate(net, net.forward, train_set, n_classes)
    expect(accuracy > 0.9, f"after {n_batches} batches on {len(train_set)} images the train accuracy is "
                           f"{accuracy:.2f} (loss {loss:.3f}); it should be > 0.9. Check cross_entropy, forward "
                           "and apply_convs")
    return accuracy


#: The checks by name, in the order of the notebooks.
CHECKS = {
    "collage": check_collage,
    "mixup": check_mixup,
    "cross_entropy": check_cross_entropy,
    "network": check_network,
    "training": check_training,
}


def run(*names):
    """Run checks by name (all if none given), print one line per check, and fail if any failed.

    Prints "✓ collage: all checks passed" for a passing check and
    "✗ collage: <what is wrong>" for a failing one.

    Raises:
        ChecksFailed: an ``AssertionError`` listing every failed check, after all of them ran.
    """
    failures = []
    for name in names or CHECKS:
        if name not in CHECKS:
            raise ValueError(f"unknown check {name!r}; choose from {list(CHECKS)}")
        try:
            CHECKS[name]()
        except AssertionError as error:
            failures.append(f"{name}: {error}")
            print(f"✗ {name}: {error}")
        else:
            print(f"✓ {name}: all checks passed")
    if failures:
        raise ChecksFailed(f"{len(failures)} of {len(names or CHECKS)} checks failed (see the ✗ lines above)\n"
                           + "\n".join(failures))
