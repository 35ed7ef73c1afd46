"""Stacked training: your ``Net`` for many runs at once, as one function of stacked parameters.

:class:`StackedRuns` stacks the parameters of ``R`` networks of the same architecture
(``torch.func.stack_module_state``: every tensor gets a leading run dimension ``R``) and
takes one SGD step of all of them with ``vmap`` over ``grad`` of a ``functional_call`` of
your network. :class:`FeatureHead` does the same for ``generalize`` on cached features,
which is how the engine finetunes when :func:`features_are_cacheable` says it is exact.

``vmap`` works for any network. The faster :class:`~.engine_grouped.GroupedRuns` (your
network with the runs' channels side by side) takes over the steps and evaluations once
its first result equals ``vmap``'s, or running the runs one after the other for evaluation.

Dropout inside a vmapped call cannot draw its own masks run by run, so ``conv2_drop`` is
swapped for :class:`MaskedDropout`, which multiplies by a mask drawn beforehand with each
run's own random stream (:func:`dropout_noise`): the very masks ``Dropout2d`` would draw.
"""
import copy

import torch
from torch import nn
from torch.func import functional_call, grad_and_value, stack_module_state, vmap

from .engine_grouped import GroupedRuns
from .utils import cross_entropy, one_hot


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


#: Images per evaluation batch with ``GroupedRuns``: small enough that the activations of all runs stay in cache.
GROUPED_EVAL_BATCH = 50


class StackedRuns:
    """Your ``Net`` for many runs at once: stacked parameters, and vmapped steps over them.

    Args:
        nets: one ``Net`` per run, all with the same architecture.

    Attributes:
        params, buffers: ``{name: tensor [R, *shape]}``, run ``r``'s ``name`` at index ``r``
            (names as in ``net.named_parameters()``); the SGD steps update ``params`` in place.
        template: a copy of the first net with ``conv2_drop`` swapped for :class:`MaskedDropout`;
            it only gives the architecture, ``functional_call`` supplies the tensors.
    """

    def __init__(self, nets):
        template = copy.deepcopy(nets[0])
        self.dropout_p = template.conv2_drop.p
        template.conv2_drop = MaskedDropout()
        self.template = template
        self.params, self.buffers = stack_module_state(nets)
        self.params = {name: value.detach().clone() for name, value in self.params.items()}
        self.n_runs = len(nets)
        self.device = next(iter(self.params.values())).device
        self.grouped = None  # a GroupedRuns, built when first needed (grouped_network)
        self.grouped_agrees = {}  # (method, trainable) -> whether GroupedRuns gave vmap's first step

    def head(self, method):
        """The network as a module whose forward is ``method`` ("forward", "generalize", ...)."""
        return MethodCall(self.template, method)

    def sgd_step(self, method, trainable, images, soft_labels, noise, lr):
        """One SGD step of every run on its own batch.

        The first step of each (method, trainable) computes the gradients with ``vmap`` and
        with :class:`GroupedRuns`; when they agree, later steps use the faster grouped network.

        Args:
            method: the head to train, "forward" (pretrainer) or "generalize".
            trainable: parameter names the optimizer may change (as in ``net.named_parameters()``).
            images: ``[R, B, 1, 28, 28]``; soft_labels: ``[R, B, K]``; noise: ``[R, B, C, 1, 1]``.
            lr: learning rate.

        Returns:
            (loss ``[R]``, log_probs ``[R, B, K]``).
        """
        phase = (method, tuple(trainable))
        if self.grouped_agrees.get(phase):
            grads, loss, log_probs = self.grouped_gradients(method, trainable, images, soft_labels, noise)
        else:
            grads, loss, log_probs = self.vmap_gradients(method, trainable, images, soft_labels, noise)
            if phase not in self.grouped_agrees:
                self.grouped_agrees[phase] = self.grouped_gives(grads, loss, method, trainable, images,
                                                                soft_labels, noise)
        with torch.no_grad():
            for name in trainable:
                self.params[name].add_(grads[name], alpha=-lr)  # what torch.optim.SGD does
        return loss.detach(), log_probs.detach()

    def vmap_gradients(self, method, trainable, images, soft_labels, noise):
        """Every run's gradients, loss and log-probs with ``vmap`` over ``grad`` of your network.

        Returns:
            (grads ``{name: [R, *shape]}`` of ``trainable``, loss ``[R]``, log_probs ``[R, B, K]``).
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
        return grads, loss, log_probs

    def grouped_gradients(self, method, trainable, images, soft_labels, noise):
        """The same as :meth:`vmap_gradients`, with :class:`GroupedRuns` and plain autograd."""
        params = {name: value.detach().requires_grad_(name in trainable) for name, value in self.params.items()}
        log_probs = self.grouped_network()(method, params, runs_innermost(images), noise)
        loss = vmap(cross_entropy)(log_probs, soft_labels)  # [R]: your loss, run by run
        grads = torch.autograd.grad(loss.sum(), [params[name] for name in trainable], materialize_grads=True)
        return dict(zip(trainable, grads)), loss, log_probs

    def grouped_network(self):
        """The :class:`GroupedRuns` of these runs (raises ``ValueError`` when your network cannot be grouped)."""
        if self.grouped is None:
            self.grouped = GroupedRuns(self.template, self.n_runs)
        return self.grouped

    def grouped_gives(self, grads, loss, *step):
        """Whether :class:`GroupedRuns` gives these gradients and losses of one step (to float rounding).

        False also when your network cannot be grouped (a layer with weights that is not
        ``Conv2d`` or ``Linear``) or fails on grouped tensors (it then only works with ``vmap``).
        """
        try:
            grouped_grads, grouped_loss, _ = self.grouped_gradients(*step)
        except Exception:  # noqa: BLE001 - any failure means: keep using vmap
            return False
        return torch.allclose(grouped_loss, loss, rtol=1e-4, atol=1e-5) and all(
            torch.allclose(grouped_grads[name], grads[name], rtol=1e-3, atol=1e-5) for name in grads)

    @torch.no_grad()
    def apply(self, method, images):
        """Every run's ``method`` on the same images, in eval mode, a batch of images at a time.

        With :class:`GroupedRuns` when it gives the same values as running your network
        run after run on the first batch (checked once per method). Measured on 2 cores for
        21 runs: grouped in batches of 50 images, 0.7 s per 1000 images; run after run in
        batches of 250, 1.1 s (larger tensors leave the cache and page-fault).

        Args:
            images: ``[N, 1, 28, 28]``, shared by all runs.

        Returns:
            ``[R, N, ...]``.
        """
        images = images.to(self.device)
        check = ("apply", method)
        if check not in self.grouped_agrees:
            separate = self.apply_run_by_run(method, images[:GROUPED_EVAL_BATCH])
            try:
                grouped = self.apply_grouped(method, images[:GROUPED_EVAL_BATCH])
                same = torch.allclose(grouped, separate, rtol=1e-4, atol=1e-5)
            except Exception:  # noqa: BLE001 - any failure means: keep running run after run
                same = False
            self.grouped_agrees[check] = same
        if self.grouped_agrees[check]:
            apply_batch, batch_size = self.apply_grouped, GROUPED_EVAL_BATCH
        else:
            apply_batch, batch_size = self.apply_run_by_run, 250
        return torch.cat([apply_batch(method, images[start:start + batch_size])
                          for start in range(0, len(images), batch_size)], dim=1)

    def apply_grouped(self, method, images):
        """``method`` of every run at once with :class:`GroupedRuns`, in eval mode: ``[R, N, ...]``."""
        return self.grouped_network()(method, self.params, images)

    def apply_run_by_run(self, method, images):
        """``method`` of one run after the other (``functional_call`` of your network), in eval mode."""
        module = self.head(method)
        module.eval()
        return torch.stack([functional_call(module, state, (images,)) for state in map(_prefixed, self.run_states())])

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
        return [{name: value[run] for name, value in state.items()} for run in range(self.n_runs)]


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
    labels = labels.to(log_probs.device)
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


def spread_noise(noise, n_features):
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
    cached = FeatureHead(probe).apply(features * spread_noise(noise[None], features.shape[-1]))
    return torch.allclose(full, cached, atol=1e-6, rtol=1e-5)
