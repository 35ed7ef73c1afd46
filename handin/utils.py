"""Small helpers: the soft-target cross-entropy, one-hot labels, running means."""
import numpy as np
import torch


def cross_entropy(pred, target):
    """Cross-entropy between predicted log-probabilities and soft target labels.

    For one sample, ``-sum_k target[k] * pred[k]``; the loss is the mean of that
    over the batch. With one-hot targets it equals ``F.nll_loss(pred, labels)``.

    Args:
        pred: log-probabilities, float tensor ``[B, C]`` (e.g. from ``log_softmax``).
        target: soft labels, float tensor ``[B, C]``; every row sums to 1.

    Returns:
        loss: scalar tensor, differentiable with respect to ``pred``.

    Raises:
        ValueError: if ``pred`` or ``target`` is not a ``torch.Tensor``.
    """
    if not isinstance(pred, torch.Tensor) or not isinstance(target, torch.Tensor):
        raise ValueError(
            f"cross_entropy expects two torch.Tensor arguments, got "
            f"{type(pred).__name__} and {type(target).__name__}")
    # *****START OF YOUR CODE*****
    # YOUR CODE HERE
    raise NotImplementedError()
    # *****END OF YOUR CODE*****


def one_hot(labels, n_classes, dtype=torch.float32):
    """Turn class indices into one-hot rows.

    Args:
        labels: long tensor ``[B]`` with values in ``0 .. n_classes - 1``.
        n_classes: ``C``.
        dtype: dtype of the result.

    Returns:
        tensor ``[B, C]`` with a single 1 per row, at column ``labels[b]``.
    """
    return torch.nn.functional.one_hot(labels, n_classes).to(dtype)


def running_mean(values, window):
    """Mean of the last ``window`` values at every position (a trailing window).

    The first ``window - 1`` positions average over the values seen so far, so
    the result has the same length as the input and no startup gap.

    Args:
        values: sequence of ``N`` numbers, e.g. the loss of every batch.
        window: how many values to average, at least 1.

    Returns:
        float array ``[N]``.
    """
    values = np.asarray(values, dtype=float)
    sums = np.cumsum(np.concatenate([[0.0], values]))
    ends = np.arange(1, len(values) + 1)
    starts = np.maximum(ends - window, 0)
    return (sums[ends] - sums[starts]) / (ends - starts)
