"""The judge's own reference computations. Never shipped to students, never shown in feedback."""

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def collage(batch_i, batch_j):
    """Reference collage ``[C, H, W]`` in float64: top-left and bottom-right from ``batch_j``."""
    half = batch_i.shape[-1] // 2
    result = batch_i.astype(np.float64)
    result[:, :half, :half] = batch_j[:, :half, :half]
    result[:, half:, half:] = batch_j[:, half:, half:]
    return result


def mixup(batch_i, batch_j, weight):
    """Reference blend for a given weight, float64."""
    return weight * batch_i.astype(np.float64) + (1 - weight) * batch_j.astype(np.float64)


def cross_entropy(pred, target):
    """Reference soft-target cross-entropy and its gradient with respect to ``pred`` (float64 numpy)."""
    pred, target = np.asarray(pred, np.float64), np.asarray(target, np.float64)
    loss = -(target * pred).sum(axis=1).mean()
    return loss, -target / len(pred)


class ReferenceNet(nn.Module):
    """The reference network with the parameter names of the students' ``Net``."""

    def __init__(self, pre_train_classes, generalization_classes):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, kernel_size=5)
        self.conv2 = nn.Conv2d(8, 16, kernel_size=5)
        self.pretrainer = nn.Linear(256, pre_train_classes)
        self.generalizer = nn.Linear(256, generalization_classes)

    def apply_convs(self, x):
        x = F.relu(F.max_pool2d(self.conv1(x), 2))
        x = F.relu(F.max_pool2d(self.conv2(x), 2))
        return x.flatten(start_dim=1)

    def forward(self, x):
        return F.log_softmax(self.pretrainer(self.apply_convs(x)), dim=1)

    def generalize(self, x):
        return F.log_softmax(self.generalizer(self.apply_convs(x)), dim=1)


def reference_net(state, prefix, sizes):
    """A ``ReferenceNet`` in eval mode with the arrays ``<prefix>.<name>`` of ``state`` loaded."""
    net = ReferenceNet(*sizes)
    net.load_state_dict(
        {
            name[len(prefix) + 1 :]: torch.from_numpy(np.array(value))
            for name, value in state.items()
            if name.startswith(prefix + ".")
        }
    )
    return net.eval()


@torch.no_grad()
def network_outputs(state, prefix, sizes, x):
    """Reference ``apply_convs``, ``forward`` and ``generalize`` as float64 numpy arrays."""
    net = reference_net(state, prefix, sizes)
    x = torch.from_numpy(x)
    return {
        "features": net.apply_convs(x).double().numpy(),
        "forward": net.forward(x).double().numpy(),
        "generalize": net.generalize(x).double().numpy(),
    }


@torch.no_grad()
def accuracy(state, prefix, sizes, x, y, head="forward"):
    """Accuracy of the reference network with the given weights on ``(x, y)``."""
    net = reference_net(state, prefix, sizes)
    log_probs = getattr(net, head)(torch.from_numpy(x))
    return float((log_probs.argmax(dim=1).numpy() == y).mean())


def learned_accuracy(state, prefix, sizes, x, y, order, lr, seed):
    """Accuracy on ``(x, y)`` after training the reference network as the runner trains the student's.

    Plain SGD through ``forward`` on the batches ``x[order[step]]``, the NLL of ``y``, with the
    students' ``Dropout2d`` after conv2 (the reference network has none: it is used in eval mode);
    ``seed`` seeds torch's global generator before the network is built, as the runner does, so
    that a ``Net`` built like the reference one draws the same dropout masks.
    """
    torch.manual_seed(seed)
    net = reference_net(state, prefix, sizes)
    images, labels = torch.from_numpy(x), torch.from_numpy(y)
    optimizer = torch.optim.SGD(net.parameters(), lr=lr)

    def forward_with_dropout(batch):
        features = F.relu(F.max_pool2d(net.conv1(batch), 2))
        features = F.relu(F.max_pool2d(F.dropout2d(net.conv2(features), 0.5, training=True), 2))
        return F.log_softmax(net.pretrainer(features.flatten(start_dim=1)), dim=1)

    for batch in torch.from_numpy(order):
        loss = -forward_with_dropout(images[batch]).gather(1, labels[batch].unsqueeze(1)).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return accuracy(
        {f"{prefix}.{name}": value.detach().numpy() for name, value in net.state_dict().items()}, prefix, sizes, x, y
    )
