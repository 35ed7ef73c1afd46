"""Train and evaluate the network: pretraining, finetuning and test curves.

Both phases are the same loop, :func:`train`, with two differences:

* ``forward_call`` chooses the head: ``net.forward`` (pretrainer) or
  ``net.generalize`` (generalizer);
* ``parameters`` chooses what the optimizer may change: everything for
  pretraining, only ``net.finetune_parameters()`` for finetuning.
"""
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

from .blending import augment
from .utils import cross_entropy, one_hot


@dataclass
class History:
    """What one training run measured.

    Attributes:
        train_loss, train_accuracy: one value per batch ``[n_batches]``.
        test_steps: after how many batches the test set was evaluated.
        test_loss, test_accuracy: one value per entry of ``test_steps``.
    """
    train_loss: list = field(default_factory=list)
    train_accuracy: list = field(default_factory=list)
    test_steps: list = field(default_factory=list)
    test_loss: list = field(default_factory=list)
    test_accuracy: list = field(default_factory=list)


def seed_everything(seed):
    """Seed every random source a run uses: numpy (augmentations) and torch (init, dropout)."""
    np.random.seed(seed)
    torch.manual_seed(seed)


def batch_indices(n_samples, n_batches, batch_size, generator):
    """Indices of every batch of a run, drawn like a shuffling data loader.

    The indices form a stream of random permutations of ``0 .. n_samples - 1``,
    one per epoch, cut into batches of exactly ``batch_size``; a batch may span
    two epochs. Every sample is seen equally often, and every batch has the
    same size even when ``n_samples`` is small (10 images for s = 1).

    Args:
        n_samples: size of the training set.
        n_batches: how many batches to draw.
        batch_size: images per batch.
        generator: ``torch.Generator`` that fixes the order.

    Returns:
        long tensor ``[n_batches, batch_size]``.
    """
    n_epochs = -(-n_batches * batch_size // n_samples)  # ceiling division
    stream = torch.cat([torch.randperm(n_samples, generator=generator) for _ in range(n_epochs)])
    return stream[: n_batches * batch_size].view(n_batches, batch_size)


@torch.inference_mode()
def evaluate(model, forward_call, dataset, n_classes, batch_size=2000):
    """Mean loss and accuracy of a head on a whole dataset, in eval mode.

    Args:
        model: the ``Net``; it is put in eval mode and back in its previous mode.
        forward_call: ``model.forward`` or ``model.generalize``.
        dataset: ``TensorDataset(images [N, 1, 28, 28], labels [N])``.
        n_classes: number of outputs of the head.
        batch_size: images per forward pass; large, since no gradients are kept.

    Returns:
        (loss, accuracy): two floats.
    """
    was_training = model.training
    model.eval()
    images, labels = dataset.tensors
    total_loss, correct = 0.0, 0
    for start in range(0, len(labels), batch_size):
        log_probs = forward_call(images[start:start + batch_size])
        batch_labels = labels[start:start + batch_size]
        total_loss += cross_entropy(log_probs, one_hot(batch_labels, n_classes)).item() * len(batch_labels)
        correct += (log_probs.argmax(dim=1) == batch_labels).sum().item()
    model.train(was_training)
    return total_loss / len(labels), correct / len(labels)


def train(model, forward_call, parameters, train_set, n_classes, n_batches, *, batch_size=8, lr=0.01,
          augmentation="none", test_set=None, test_every=500, seed=0, progress=True, description="train"):
    """Train with SGD on soft-label cross-entropy, optionally with an augmentation.

    Args:
        model: the ``Net`` that ``forward_call`` belongs to; kept in train mode.
        forward_call: the head to train, ``model.forward`` or ``model.generalize``.
        parameters: what the optimizer may update.
        train_set: ``TensorDataset(images [N, 1, 28, 28], labels [N])``.
        n_classes: number of outputs of the head.
        n_batches: how many SGD steps to take.
        batch_size: images per step.
        lr: SGD learning rate.
        augmentation: "none", "collage" or "mixup" (see ``blending.augment``).
        test_set: evaluated every ``test_every`` batches and at the end, if given.
        test_every: batches between two test evaluations.
        seed: fixes the batch order; seed numpy and torch separately for the rest.
        progress: show a tqdm progress bar.
        description: the progress bar's label.

    Returns:
        History of per-batch training loss/accuracy and the test curve.
    """
    optimizer = torch.optim.SGD(parameters, lr=lr)
    images, labels = train_set.tensors
    batches = batch_indices(len(labels), n_batches, batch_size, torch.Generator().manual_seed(seed))
    history = History()
    model.train()
    for step, index in enumerate(tqdm(batches, desc=description, disable=not progress, leave=False), start=1):
        batch, soft_labels = augment(augmentation, images[index], labels[index], n_classes)
        log_probs = forward_call(batch)
        loss = cross_entropy(log_probs, soft_labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

        history.train_loss.append(loss.item())
        history.train_accuracy.append((log_probs.argmax(dim=1) == soft_labels.argmax(dim=1)).float().mean().item())
        if test_set is not None and (step % test_every == 0 or step == n_batches):
            test_loss, test_accuracy = evaluate(model, forward_call, test_set, n_classes)
            history.test_steps.append(step)
            history.test_loss.append(test_loss)
            history.test_accuracy.append(test_accuracy)
    return history


def pretrain(net, train_set, n_classes, augmentation="none", n_batches=5000, **options):
    """Train the whole network through the pretrainer head. See :func:`train` for ``options``."""
    return train(net, net.forward, net.parameters(), train_set, n_classes, n_batches,
                 augmentation=augmentation, description=f"pretrain ({augmentation})", **options)


def finetune(net, train_set, n_classes, n_batches=1000, **options):
    """Train only ``net.finetune_parameters()`` through the generalizer head, without augmentation.

    The convolutions and the pretrainer are not in the optimizer, so they keep
    their pretrained values. See :func:`train` for ``options``.
    """
    return train(net, net.generalize, net.finetune_parameters(), train_set, n_classes, n_batches,
                 description="finetune", **options)
