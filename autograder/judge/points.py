"""Points of every graded part and check (standard library only: the grading kernel imports it).

Each check is one grade cell of ``grading.ipynb`` with id ``<part>_<check>``; a cell
scores its points when every sub-test of that check passes, else 0. A part's CSV
column is the sum of its cells. 50 points in all, 10 per part.
"""

POINTS = {
    "collage": {
        "quarters": 4,  # every quarter from the right image, several even sizes and channel counts
        "interpolation": 2,  # the returned interpolation is 0.5
        "shape_dtype": 2,  # same shape as the inputs, a float dtype
        "inputs_unmodified": 2,  # batch_i and batch_j unchanged
    },
    "mixup": {
        "blend": 4,  # result == w * i + (1 - w) * j for the returned w
        "beta": 4,  # the returned w follows Beta(alpha, alpha) for two alphas
        "inputs_unmodified": 2,
    },
    "cross_entropy": {
        "soft_targets": 3,  # one sample: -sum_k t_k p_k
        "batch_mean": 2,  # averaged over the batch (not summed, not averaged over classes)
        "nll": 2,  # equals F.nll_loss for one-hot targets
        "gradient": 2,  # d loss / d pred == -target / B
        "value_error": 1,  # ValueError for non-tensors (and it still computes for tensors)
    },
    "network": {
        "shapes": 2,  # output shapes, log-probabilities
        "reference": 3,  # matches the reference under copied weights in eval mode
        "eval_deterministic": 2,  # eval mode is deterministic (dropout only through the module)
        "heads": 2,  # forward is pretrainer(features), generalize is generalizer(features)
        "learns": 1,  # training through forward changes conv1, conv2, pretrainer and learns a tiny problem
    },
    "frozen_finetuning": {
        "parameters": 4,  # finetune_parameters() is exactly the generalizer's weight and bias
        "frozen": 4,  # finetuning may change only the generalizer, and does change it
        "improves": 2,  # finetune accuracy improved
    },
}

PARTS = tuple(POINTS)


def part_max(part):
    return sum(POINTS[part].values())


def cell_id(part, check):
    return f"{part}_{check}"
