"""The original course's training pipeline, rewritten as the baseline for bench_engine.py.

What made it slow, kept on purpose:

* every image goes through torchvision's per-sample transforms (``ToTensor``,
  ``Normalize``) each time it is drawn, through ``torchvision.datasets``' PIL path;
* each epoch builds a fresh ``DataLoader(batch_size=8, shuffle=True)``;
* the augmentation runs in numpy, batch by batch (``handin.blending.augment``);
* the test set is evaluated through a ``DataLoader`` with batches of 8.

The math of a run is the assignment's: a new ``Net``, SGD with lr 0.01 on the
soft-label cross-entropy, pretraining through ``forward`` on ``s`` samples per class,
finetuning ``finetune_parameters()`` through ``generalize`` on 256 samples per class.
"""

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset
from torchvision import datasets, transforms

from handin.blending import augment
from handin.data import N_CLASSES, data_root
from handin.network import Net
from handin.utils import cross_entropy, one_hot

_DATASETS = {"mnist": datasets.MNIST, "fashion-mnist": datasets.FashionMNIST}
_STATISTICS = {"mnist": (0.1307, 0.3081), "fashion-mnist": (0.2860, 0.3530)}


def torchvision_split(name, train):
    """A torchvision dataset that converts and normalizes every image when it is drawn."""
    mean, std = _STATISTICS[name]
    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((mean,), (std,))])
    return _DATASETS[name](str(data_root()), train=train, download=False, transform=transform)


def per_class_subset(dataset, samples_per_class, seed):
    """``Subset`` with ``samples_per_class`` random samples of every class."""
    generator = np.random.default_rng(seed)
    labels = dataset.targets.numpy()
    indices = [
        generator.choice(np.flatnonzero(labels == label), samples_per_class, replace=False)
        for label in np.unique(labels)
    ]
    return Subset(dataset, np.concatenate(indices).tolist())


def train_loop(forward_call, parameters, train_set, n_classes, n_batches, augmentation="none", lr=0.01):
    """SGD for ``n_batches`` batches of 8, a fresh shuffling DataLoader every epoch."""
    optimizer = torch.optim.SGD(parameters, lr=lr)
    step = 0
    while step < n_batches:
        for images, labels in DataLoader(train_set, batch_size=8, shuffle=True):
            batch, soft_labels = augment(augmentation, images, labels, n_classes)
            loss = cross_entropy(forward_call(batch), soft_labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            step += 1
            if step == n_batches:
                break


@torch.no_grad()
def test_accuracy(net, forward_call, test_set, n_classes):
    """Loss and accuracy on the test set, in batches of 8."""
    net.eval()
    total_loss, correct = 0.0, 0
    for images, labels in DataLoader(test_set, batch_size=8):
        log_probs = forward_call(images)
        total_loss += cross_entropy(log_probs, one_hot(labels, n_classes)).item() * len(labels)
        correct += (log_probs.argmax(dim=1) == labels).sum().item()
    net.train()
    return total_loss / len(test_set), correct / len(test_set)


def run(
    pretrain_dataset, finetune_dataset, augmentation, s, seed, pretrain_batches, finetune_batches, test_images=None
):
    """One run of the experiment with the original pipeline; returns the finetune test accuracy."""
    torch.manual_seed(seed)
    np.random.seed(seed)
    net = Net(N_CLASSES[pretrain_dataset], N_CLASSES[finetune_dataset])
    pretrain_set = per_class_subset(torchvision_split(pretrain_dataset, train=True), s, seed)
    finetune_set = per_class_subset(torchvision_split(finetune_dataset, train=True), 256, seed)
    test_set = torchvision_split(finetune_dataset, train=False)
    if test_images:
        test_set = Subset(test_set, range(test_images))
    train_loop(net.forward, net.parameters(), pretrain_set, N_CLASSES[pretrain_dataset], pretrain_batches, augmentation)
    train_loop(net.generalize, net.finetune_parameters(), finetune_set, N_CLASSES[finetune_dataset], finetune_batches)
    return test_accuracy(net, net.generalize, test_set, N_CLASSES[finetune_dataset])[1]
