"""Your ``Net`` for many runs at once as one network: the runs' channels side by side.

``vmap`` (in ``engine_stacked.py``) works for any network, but it moves the run
dimension back and forth between the batch and the channels around every layer:
a grouped convolution wants the runs in the channels, max-pool wants them in the
batch. Those copies cost as much as the arithmetic.

:class:`GroupedRuns` keeps every activation of ``R`` runs in one tensor
``[B, R * C, H, W]``: run ``r``'s channels are the ``r``-th block of ``C`` channels.
It is a copy of your ``Net`` in which each layer with weights is swapped for one
that computes that layer for all runs at once:

* ``nn.Conv2d`` -> :class:`RunsConv2d`, a convolution with ``groups=R`` (group ``r`` sees
  only run ``r``'s channels and uses run ``r``'s weights);
* ``nn.Linear`` -> :class:`RunsLinear`, one matrix product per run (``torch.baddbmm``);
* ``conv2_drop`` is already the engine's ``MaskedDropout``; its noise is ``[B, R * C, 1, 1]``.

Everything else in your ``apply_convs``, ``forward`` and ``generalize`` (max-pool, relu,
dropout, flatten, log-softmax) acts on each channel or each row by itself, so it runs
unchanged on the grouped tensors, and your code decides what the network computes.
The engine uses this network only after checking, on the first step of each phase, that
it gives the same losses and gradients as ``vmap``; otherwise it keeps using ``vmap``.
"""
import copy

import torch
import torch.nn.functional as F
from torch import nn


class RunsConv2d(nn.Module):
    """One ``nn.Conv2d`` of every run: a grouped convolution, run ``r``'s channels in group ``r``.

    Input ``[B, R * C_in, H, W]``, output ``[B, R * C_out, H', W']``. The weights
    (``[R, C_out, C_in, k, k]`` and ``[R, C_out]``) are set before each call.

    An input ``[B, C_in, H, W]`` is the same images for every run (evaluation): then one
    ordinary convolution with ``R * C_out`` filters gives the same output, without copying
    the images ``R`` times.
    """

    def __init__(self, conv, n_runs):
        super().__init__()
        if conv.groups != 1 or conv.padding_mode != "zeros":
            raise ValueError("only plain convolutions (groups=1, zero padding) can be grouped")
        self.stride, self.padding, self.dilation = conv.stride, conv.padding, conv.dilation
        self.n_runs = n_runs
        self.weight = self.bias = None

    def forward(self, x):
        bias = None if self.bias is None else self.bias.flatten()
        shared = x.shape[1] == self.weight.shape[2]  # C_in channels: the same images for every run
        return F.conv2d(x, self.weight.flatten(0, 1), bias, self.stride, self.padding, self.dilation,
                        groups=1 if shared else self.n_runs)


class RunsLinear(nn.Module):
    """One ``nn.Linear`` of every run: a matrix product per run.

    Input: every run's features of each image, ``[B, R * F]`` (what ``flatten`` makes of
    ``[B, R * C, H, W]``) or ``[B * R, F]``. Output ``[B * R, K]``: one row per (image, run),
    so that a softmax over ``dim=1`` is a softmax over the classes. The weights
    (``[R, K, F]`` and ``[R, K]``) are set before each call.
    """

    def __init__(self, linear, n_runs):
        super().__init__()
        self.in_features, self.n_runs = linear.in_features, n_runs
        self.weight = self.bias = None

    def forward(self, x):
        per_run = x.reshape(-1, self.n_runs, self.in_features).transpose(0, 1)  # [R, B, F]
        if self.bias is None:
            out = torch.bmm(per_run, self.weight.transpose(1, 2))
        else:
            out = torch.baddbmm(self.bias.unsqueeze(1), per_run, self.weight.transpose(1, 2))  # [R, B, K]
        return out.transpose(0, 1).flatten(0, 1)


class GroupedRuns:
    """A copy of your network that computes ``R`` runs at once on ``[B, R * C, H, W]`` tensors.

    Args:
        template: the network (with ``conv2_drop`` already a ``MaskedDropout``).
        n_runs: ``R``.

    Raises:
        ValueError: when the network has a layer with weights that is not ``nn.Conv2d`` or ``nn.Linear``.
    """

    def __init__(self, template, n_runs):
        self.net = copy.deepcopy(template)
        self.n_runs = n_runs
        self.layers = {}  # name in the network -> the layer standing in for it
        for name, module in list(self.net.named_modules()):
            if isinstance(module, nn.Conv2d):
                self.layers[name] = RunsConv2d(module, n_runs)
            elif isinstance(module, nn.Linear):
                self.layers[name] = RunsLinear(module, n_runs)
            elif any(True for _ in module.parameters(recurse=False)) or any(True for _ in module.buffers(False)):
                raise ValueError(f"{name} ({type(module).__name__}) cannot be grouped")
        for name, layer in self.layers.items():
            parent, _, attribute = name.rpartition(".")
            setattr(self.net.get_submodule(parent), attribute, layer)

    def __call__(self, method, params, images, noise=None):
        """Every run's ``method`` ("forward", "generalize", "apply_convs") on its own images.

        Args:
            params: ``{name: [R, *shape]}`` as in ``net.named_parameters()`` (may require grad).
            images: ``[R, B, C, H, W]``, or ``[B, C, H, W]``: the same images for every run.
            noise: ``[R, B, C', 1, 1]``, each run's dropout noise (train mode), or None (eval mode).

        Returns:
            ``[R, B, ...]``, e.g. log-probs ``[R, B, K]`` or features ``[R, B, 256]``.
        """
        runs, batch = self.n_runs, images.shape[-4]
        for name, layer in self.layers.items():
            layer.weight, layer.bias = params[f"{name}.weight"], params.get(f"{name}.bias")
        self.net.train(noise is not None)
        if noise is not None:
            self.net.conv2_drop.noise = noise.movedim(0, 1).flatten(1, 2)  # [B, R * C', 1, 1]
        try:
            if images.dim() == 5:
                images = images.movedim(0, 1).flatten(1, 2)  # [B, R * C, H, W]
            out = getattr(self.net, method)(channels_last(images))
        finally:
            for layer in self.layers.values():
                layer.weight = layer.bias = None
            self.net.conv2_drop.noise = None
        return out.reshape(batch, runs, -1).transpose(0, 1)


def channels_last(images):
    """The same images stored channels-last (``[B, H, W, C]`` in memory), copied unless they already are.

    Convolutions then give channels-last outputs, on which max-pool is about 10 times faster
    here than on ``[B, C, H, W]``. The strides are checked directly: for one channel, torch's
    ``contiguous(memory_format=torch.channels_last)`` sees no difference and copies nothing.
    """
    if images.stride(1) == 1:
        return images
    return torch.empty_like(images, memory_format=torch.channels_last).copy_(images)
