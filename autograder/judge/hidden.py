"""Seeded hidden inputs: what the runner receives, per part, as ``<part>.npz`` + ``<part>.json``.

Everything derives from one seed (the course's secret seed, see :func:`.cache.course_seed`),
so grading is reproducible. The collage and mixup inputs are digit images
(:mod:`.digits`) of several shapes and dtypes; the network inputs are random weights
and images. The student never sees them.
"""

import numpy as np
import torch

from . import reference
from .digits import digit_batch

#: (key, shape, dtype) of the collage calls: even sizes, several channel counts, float32 and float64.
COLLAGE_CASES = [
    ("c0", (1, 28, 28), np.float32),
    ("c1", (3, 8, 8), np.float32),
    ("c2", (2, 6, 6), np.float64),
    ("c3", (4, 2, 2), np.float32),
    ("c4", (1, 10, 10), np.float64),
]
#: (key, shape, dtype, alpha) of the single mixup calls.
MIXUP_CASES = [
    ("m0", (1, 28, 28), np.float32, 0.3),
    ("m1", (3, 5, 7), np.float64, 1.0),
    ("m2", (2, 4, 4), np.float32, 0.2),
]
#: (key, alpha, draws) for the distribution of the returned weight.
MIXUP_DRAWS = [("beta_small", 0.2, 2000), ("beta_large", 2.0, 2000)]
#: Network sizes (pre_train_classes, generalization_classes): different sizes catch swapped heads by shape,
#: equal sizes by value.
NETWORK_CONFIGS = [("n0", (10, 27)), ("n1", (27, 10)), ("n2", (10, 10))]
LEARN = {"sizes": (4, 3), "n": 64, "batch_size": 16, "steps": 60, "lr": 0.1}
#: The reference network must reach this accuracy on a drawn problem; the check asks 90 % of students.
LEARN_MARGIN = 0.97
#: ``max_returned``: how many tensors of ``finetune_parameters()`` the runner writes back at most.
FINETUNE = {"sizes": (5, 3), "n": 48, "batch_size": 8, "n_batches": 60, "lr": 0.1, "max_returned": 32}


def _images(rng, shape, dtype):
    return rng.normal(size=shape).astype(dtype)


def _net_state(seed, sizes, prefix):
    torch.manual_seed(seed)
    net = reference.ReferenceNet(*sizes)
    return {f"{prefix}.{name}": value.detach().numpy().copy() for name, value in net.state_dict().items()}


def _class_images(rng, n, n_classes):
    """A tiny separable problem: one random template per class plus noise, ``[n, 1, 28, 28]``."""
    templates = rng.normal(size=(n_classes, 1, 28, 28))
    labels = np.arange(n) % n_classes
    images = templates[labels] + 0.5 * rng.normal(size=(n, 1, 28, 28))
    return images.astype(np.float32), labels.astype(np.int64)


def collage(rng):
    arrays, cases = {}, []
    for key, shape, dtype in COLLAGE_CASES:
        arrays[f"{key}_i"], arrays[f"{key}_j"] = digit_batch(rng, shape, dtype), digit_batch(rng, shape, dtype)
        cases.append({"key": key})
    return arrays, {"cases": cases}


def mixup(rng):
    arrays, cases = {}, []
    for key, shape, dtype, alpha in MIXUP_CASES:
        arrays[f"{key}_i"], arrays[f"{key}_j"] = digit_batch(rng, shape, dtype), digit_batch(rng, shape, dtype)
        cases.append({"key": key, "args": [alpha], "seed": int(rng.integers(2**31))})
    arrays["draw_i"], arrays["draw_j"] = _images(rng, (1, 2, 2), np.float64), _images(rng, (1, 2, 2), np.float64)
    draws = [{"key": key, "alpha": alpha, "n": n, "seed": int(rng.integers(2**31))} for key, alpha, n in MIXUP_DRAWS]
    return arrays, {"cases": cases, "draws": draws}


def _log_probs(rng, batch, classes, dtype):
    logits = 2 * rng.normal(size=(batch, classes))
    return (logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))).astype(dtype)


def _soft_targets(rng, batch, classes, dtype):
    weights = rng.exponential(size=(batch, classes))
    return (weights / weights.sum(axis=1, keepdims=True)).astype(dtype)


def cross_entropy(rng):
    """Cases by group: ``soft`` single samples, ``batch`` means, ``onehot``, ``grad``."""
    arrays, cases = {}, []
    specs = [
        ("soft0", 1, 5, np.float32, "soft"),
        ("soft1", 1, 10, np.float64, "soft"),
        ("soft2", 1, 27, np.float32, "soft"),
        ("batch0", 8, 10, np.float32, "batch"),
        ("batch1", 5, 4, np.float64, "batch"),
        ("onehot0", 6, 10, np.float32, "onehot"),
        ("onehot1", 9, 27, np.float64, "onehot"),
        ("grad0", 5, 4, np.float64, "grad"),
        ("grad1", 3, 10, np.float32, "grad"),
    ]
    for key, batch, classes, dtype, group in specs:
        arrays[f"{key}_pred"] = _log_probs(rng, batch, classes, dtype)
        if group == "onehot":
            labels = rng.integers(classes, size=batch)
            arrays[f"{key}_target"] = np.eye(classes, dtype=dtype)[labels]
        else:
            arrays[f"{key}_target"] = _soft_targets(rng, batch, classes, dtype)
        cases.append({"key": key, "group": group, "grad": group == "grad"})
    return arrays, {"cases": cases, "not_tensor_like": "batch0"}


def network(rng, seed):
    arrays, configs = {"x": rng.normal(size=(6, 1, 28, 28)).astype(np.float32)}, []
    for index, (key, sizes) in enumerate(NETWORK_CONFIGS):
        arrays.update(_net_state(seed + 10 * index, sizes, key))
        configs.append({"key": key, "sizes": sizes, "seeds": [int(s) for s in rng.integers(2**31, size=4)]})
    learn, learn_arrays = learn_problem(rng, seed)
    arrays.update(learn_arrays)
    return arrays, {"configs": configs, "learn": learn}


def learn_problem(rng, seed):
    """The tiny training problem of the ``learns`` check: one that correct code always solves.

    Some draws (about 1 in 30) leave even the reference network stuck at chance, which would
    cost every correct student the point. So a draw is kept only when the reference network
    reaches :data:`LEARN_MARGIN` under several dropout streams (a correct ``Net`` may place
    its dropout elsewhere and so draw other masks); otherwise the next draw is tried.
    """
    for attempt in range(100):
        learn = dict(LEARN, seed=int(rng.integers(2**31)))
        arrays = _net_state(seed + 99 + 1000 * attempt, learn["sizes"], "learn")
        arrays["learn_x"], arrays["learn_y"] = _class_images(rng, learn["n"], learn["sizes"][0])
        arrays["learn_order"] = np.stack(
            [rng.permutation(learn["n"])[: learn["batch_size"]] for _ in range(learn["steps"])]
        ).astype(np.int64)
        if all(
            reference.learned_accuracy(
                arrays,
                "learn",
                learn["sizes"],
                arrays["learn_x"],
                arrays["learn_y"],
                arrays["learn_order"],
                learn["lr"],
                dropout_seed,
            )
            >= LEARN_MARGIN
            for dropout_seed in (learn["seed"], learn["seed"] + 1, learn["seed"] + 2)
        ):
            return learn, arrays
    raise RuntimeError("no tiny training problem that the reference network solves: check hidden.LEARN")


def frozen_finetuning(rng, seed):
    plan = dict(FINETUNE, seed=int(rng.integers(2**31)))
    arrays = _net_state(seed + 77, plan["sizes"], "net")
    arrays["x"], arrays["y"] = _class_images(rng, plan["n"], plan["sizes"][1])
    return arrays, plan


def make_inputs(seed):
    """All hidden inputs: ``{part: (arrays, plan)}``; the same seed gives the same inputs.

    Torch runs on one thread here: the reference trainings of :func:`learn_problem` then round
    the same way whatever the machine's core count, and on a busy machine a tiny network
    trains about five times faster than with threads that wait for each other.
    """
    rng = np.random.default_rng(seed)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return {
            "collage": collage(rng),
            "mixup": mixup(rng),
            "cross_entropy": cross_entropy(rng),
            "network": network(rng, seed),
            "frozen_finetuning": frozen_finetuning(rng, seed),
        }
    finally:
        torch.set_num_threads(threads)
