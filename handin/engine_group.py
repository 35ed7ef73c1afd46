"""One group of runs: the runs of one seed, trained together with the same math as the plain loop.

A :class:`RunGroup` builds one ``Net`` per run exactly as the plain loop does, stacks them
(:class:`~.engine_stacked.StackedRuns`), and pretrains and finetunes them step by step. Each
run keeps its own random state, so it sees the plain loop's batches, augmentations and
dropout masks (see the docstring of :mod:`.engine` for the four random sources).
"""
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from .blending import AUGMENTATION_DICT, blend_batch, blended_soft_labels
from .data import N_CLASSES
from .engine_config import curve_test_set, datasets_for
from .engine_stacked import (
    FeatureHead,
    StackedRuns,
    dropout_noise,
    dropout_noise_shape,
    evaluate_log_probs,
    features_are_cacheable,
    finetune_parameter_names,
    runs_innermost,
    spread_noise,
)
from .network import Net
from .training import batch_indices, seed_everything
from .utils import one_hot

#: Held while a thread uses numpy's global random state for one run (groups may train in parallel threads).
NUMPY_RANDOM_STATE = threading.Lock()


class RunGroup:
    """The runs of one seed, trained together. See the module docstring for the randomness.

    Pretraining does not depend on ``D_F`` (as long as it has the same number of
    classes, which fixes the initial weights), so a group pretrains once and then
    finetunes a copy of the pretrained runs on each ``D_F``.

    Args:
        keys: runs with the same seed and settings, one per (augmentation, s); their
            ``finetune_dataset`` only gives the number of finetuning classes.
        samples: all subset sizes of the experiment.
        device: where the runs train ("cpu", "cuda", ...). Every random draw (initial weights,
            batches, augmentations, dropout masks) stays on the CPU, as in the plain loop;
            only the arithmetic moves.
    """

    def __init__(self, keys, samples, device="cpu"):
        self.keys = keys
        self.device = torch.device(device)
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
        self.runs = StackedRuns([net.to(self.device) for net in self.nets])

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
        with NUMPY_RANDOM_STATE:
            saved = np.random.get_state()
            np.random.set_state(self.numpy_states[run])
            try:
                blended, weights, partners = zip(*(blend_batch(combine, pixels[index])
                                                   for index in indices.numpy()))
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
        return tuple(tensor.to(self.device) for tensor in (images, torch.stack(soft_labels, dim=1),
                                                           torch.stack(noise, dim=1)))

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
                    progress.update(len(self.keys))
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
        images, labels = (tensor.to(self.device) for tensor in finetune_set.tensors)
        n_runs = len(self.keys)
        indices = batch_indices(len(labels), n_batches, self.batch_size,
                                torch.Generator().manual_seed(self.seed)).to(self.device)
        noise = torch.stack([dropout_noise(stream, n_batches, self.noise_shape, self.runs.dropout_p)
                             for stream in self.dropout_streams], dim=1).to(self.device)
        soft_labels = one_hot(labels[indices], self.finetune_classes)  # the same batches for every run
        trainable = finetune_parameter_names(self.nets[0])
        cached = features_are_cacheable(self.nets[0], trainable, images[:self.batch_size], noise[0, 0])
        if cached:
            drawn, positions = indices.unique(return_inverse=True)  # only the images the batches draw
            train_features = self.runs.apply("apply_convs", images[drawn])  # [R, len(drawn), 256]
            test_features = self.runs.apply("apply_convs", finetune_test.tensors[0])
            head = FeatureHead(self.runs)

        histories = [_empty_history() for _ in self.keys]
        for step in range(n_batches):
            if cached:
                batch = train_features[:, positions[step]] * spread_noise(noise[step], train_features.shape[-1])
                loss, log_probs = head.sgd_step(trainable, batch, soft_labels[step], self.lr)
            else:
                loss, log_probs = self.runs.sgd_step(
                    "generalize", trainable, images[indices[step]].expand(n_runs, -1, -1, -1, -1),
                    soft_labels[step].expand(n_runs, -1, -1), noise[step], self.lr)
            _append_train(histories, loss, log_probs, soft_labels[step].expand(n_runs, -1, -1))
            progress.update(len(self.keys))
            if (step + 1) % test_every == 0 or step + 1 == n_batches:
                log_probs = head.apply(test_features) if cached else self.runs.apply(
                    "generalize", finetune_test.tensors[0])
                _append_test(histories, step + 1,
                             *evaluate_log_probs(log_probs, finetune_test.tensors[1], self.finetune_classes))
        return histories


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
