"""Compare the runner's raw outputs with the judge's references, part by part.

Every ``check_<part>(inputs, plan, outputs, notes)`` returns ``{check: [failure, ...]}``
for the checks of :data:`points.POINTS`; an empty list means the check passed.
Failure messages describe the mistake (which quarter, which head, sum vs mean...)
but never print hidden inputs or reference code.

The runner's outputs come from a process that ran student code, so student code may
have written any of them. Every check is therefore computed here, from the judge's own
inputs and the raw arrays that came back: a result is compared with the judge's
reference, or a property is derived from raw tensors (which head produced an output,
which weights finetuning changed, which tensors ``finetune_parameters()`` returned).
Checks that a trivial answer could pass (the returned interpolation, the dtype, the
inputs left alone, the heads) count only for calls whose result is verifiably made
from the inputs, so made-up outputs earn nothing.
"""

import math

import numpy as np
import torch
import torch.nn.functional as F

from . import reference
from .points import POINTS


def shape_text(shape):
    return "×".join(str(size) for size in shape)


def close(got, expected, rtol=1e-5, atol=1e-5):
    return got is not None and got.shape == expected.shape and bool(np.allclose(got, expected, rtol=rtol, atol=atol))


class Failures(dict):
    """``{check: [messages]}`` that keeps only the first few distinct messages of each check."""

    def __init__(self, part):
        super().__init__({check: [] for check in POINTS[part]})

    def add(self, check, message):
        if message not in self[check] and len(self[check]) < 3:
            self[check].append(message)

    def add_all(self, message):
        for check in self:
            self.add(check, message)


def quarter_slices(half):
    """``(name, index, source)`` of the four quarters of an image with side ``2 * half``."""
    low, high = slice(None, half), slice(half, None)
    return (
        ("top-left", np.s_[:, low, low], "batch_j"),
        ("top-right", np.s_[:, low, high], "batch_i"),
        ("bottom-left", np.s_[:, high, low], "batch_i"),
        ("bottom-right", np.s_[:, high, high], "batch_j"),
    )


def blend_calls(plan, outputs, notes, failures, name):
    """Shared by collage and mixup: report raised errors; returns the keys of the calls that returned."""
    returned = []
    for case in plan["cases"]:
        key = case["key"]
        error = notes.get("errors", {}).get(key)
        if error or f"{key}_result" not in outputs or f"{key}_weight" not in outputs:
            failures.add_all(f"{name} raised {error or 'an error'}")
        else:
            returned.append(key)
    return returned


def check_unmodified(key, inputs, outputs, failures, name):
    """The copies of ``batch_i`` and ``batch_j`` that the function received must be unchanged after the call."""
    for side in ("i", "j"):
        after, before = outputs.get(f"{key}_{side}_after"), inputs[f"{key}_{side}"]
        if after is None or after.shape != before.shape or not np.array_equal(after, before):
            failures.add(
                "inputs_unmodified", f"{name} modified batch_{side} (a {shape_text(before.shape)} image) in place"
            )


# --------------------------------------------------------------------------- collage
def check_collage(inputs, plan, outputs, notes):
    failures = Failures("collage")
    gated = "counts once collage returns an image made of the quarters of batch_i and batch_j"
    for key in blend_calls(plan, outputs, notes, failures, "collage"):
        batch_i, batch_j = inputs[f"{key}_i"], inputs[f"{key}_j"]
        shape = shape_text(batch_i.shape)
        result, weight = outputs[f"{key}_result"], float(outputs[f"{key}_weight"])
        if result.shape != batch_i.shape:
            failures.add("shape_dtype", f"the result has shape {shape_text(result.shape)} for {shape} inputs")
            failures.add("quarters", f"the result has shape {shape_text(result.shape)} for {shape} inputs")
            failures.add("interpolation", gated)
            failures.add("inputs_unmodified", gated)
            continue
        sources = {"batch_i": batch_i.astype(np.float64), "batch_j": batch_j.astype(np.float64)}
        made_of_inputs = True
        for quarter, index, source in quarter_slices(batch_i.shape[-1] // 2):
            got = result[index].astype(np.float64)
            if close(got, sources[source][index]):
                continue
            other = "batch_i" if source == "batch_j" else "batch_j"
            if close(got, sources[other][index]):
                found = f"comes from {other}"
            else:
                found, made_of_inputs = "matches neither input", False
            failures.add("quarters", f"for a {shape} image the {quarter} quarter {found}; it should come from {source}")
        if not made_of_inputs:
            for check in ("interpolation", "shape_dtype", "inputs_unmodified"):
                failures.add(check, gated)
            continue
        if result.dtype.kind != "f":
            failures.add("shape_dtype", f"the result has dtype {result.dtype}, expected a float dtype")
        if weight != 0.5:
            failures.add("interpolation", f"the returned interpolation is {weight:g}, expected 0.5")
        check_unmodified(key, inputs, outputs, failures, "collage")
    return failures


# --------------------------------------------------------------------------- mixup
def beta_failures(alpha, weights, reference_sample):
    """Why ``weights`` do not look like draws from Beta(alpha, alpha); empty if they do."""
    n = len(weights)
    if not np.all(np.isfinite(weights)) or weights.min() < 0 or weights.max() > 1:
        return [f"with alpha = {alpha:g} some returned weights are outside [0, 1]"]
    expected_variance = 1 / (4 * (2 * alpha + 1))
    mean, variance = weights.mean(), weights.var()
    if abs(mean - 0.5) > 5 * math.sqrt(expected_variance / n) or abs(variance / expected_variance - 1) > 0.25:
        return [
            f"with alpha = {alpha:g} the returned weights have mean {mean:.3f} and variance {variance:.3f}; "
            f"Beta({alpha:g}, {alpha:g}) has mean 0.5 and variance {expected_variance:.3f}"
        ]
    # Two-sample Kolmogorov-Smirnov distance to the judge's own Beta sample (critical value for p = 0.001).
    grid = np.sort(np.concatenate([weights, reference_sample]))
    distance = np.abs(
        np.searchsorted(np.sort(weights), grid, side="right") / n
        - np.searchsorted(np.sort(reference_sample), grid, side="right") / len(reference_sample)
    ).max()
    if distance > 1.95 * math.sqrt((n + len(reference_sample)) / (n * len(reference_sample))):
        return [f"with alpha = {alpha:g} the returned weights are not distributed like Beta({alpha:g}, {alpha:g})"]
    return []


def check_mixup(inputs, plan, outputs, notes):
    failures = Failures("mixup")
    for key in blend_calls(plan, outputs, notes, failures, "mixup"):
        batch_i, batch_j = inputs[f"{key}_i"], inputs[f"{key}_j"]
        result, weight = outputs[f"{key}_result"], float(outputs[f"{key}_weight"])
        if not 0 <= weight <= 1:
            failures.add("blend", f"the returned weight {weight:g} is not in [0, 1]")
        elif close(result, reference.mixup(batch_i, batch_j, weight)):
            check_unmodified(key, inputs, outputs, failures, "mixup")
            continue
        elif close(result, reference.mixup(batch_i, batch_j, 1 - weight)):
            failures.add("blend", "the result weights batch_j by the returned weight w; batch_i should get w")
            check_unmodified(key, inputs, outputs, failures, "mixup")
            continue
        else:
            failures.add(
                "blend",
                f"for a {shape_text(batch_i.shape)} image the result is not "
                "w * batch_i + (1 - w) * batch_j for the returned weight w",
            )
        failures.add("inputs_unmodified", "counts once mixup returns a blend of batch_i and batch_j")
    rng = np.random.default_rng(12345)
    for draw in plan["draws"]:
        key, alpha = draw["key"], draw["alpha"]
        error = notes.get("errors", {}).get(key)
        results, weights = outputs.get(f"{key}_results"), outputs.get(f"{key}_weights")
        if error or results is None or weights is None or len(weights) != draw["n"]:
            failures.add("beta", f"mixup raised {error or 'an error'}")
            continue
        blends = np.stack([reference.mixup(inputs["draw_i"], inputs["draw_j"], w) for w in weights])
        if results.shape != blends.shape or not np.allclose(results, blends, rtol=1e-5, atol=1e-6):
            failures.add("beta", f"with alpha = {alpha:g} the returned weight is not the one used for the blend")
            continue
        for message in beta_failures(alpha, weights, rng.beta(alpha, alpha, size=4 * draw["n"])):
            failures.add("beta", message)
    return failures


# --------------------------------------------------------------------------- cross-entropy
def check_cross_entropy(inputs, plan, outputs, notes):
    failures = Failures("cross_entropy")
    group_check = {"soft": "soft_targets", "batch": "batch_mean", "onehot": "nll", "grad": "gradient"}
    computed_correctly = False
    for case in plan["cases"]:
        key, check = case["key"], group_check[case["group"]]
        pred, target = inputs[f"{key}_pred"], inputs[f"{key}_target"]
        batch, classes = pred.shape
        error = notes.get("errors", {}).get(key)
        if error or f"{key}_loss" not in outputs:
            failures.add(check, f"cross_entropy raised {error or 'an error'}")
            continue
        got = float(outputs[f"{key}_loss"])
        expected, gradient = reference.cross_entropy(pred, target)
        if case["group"] == "onehot":
            expected = float(F.nll_loss(torch.from_numpy(pred).double(), torch.from_numpy(target.argmax(axis=1))))
        tolerance = 1e-4 if pred.dtype == np.float32 else 1e-7
        if math.isclose(got, expected, rel_tol=tolerance, abs_tol=tolerance):
            computed_correctly = True
        elif case["group"] == "batch" and math.isclose(got, expected * batch, rel_tol=1e-4):
            failures.add(check, "the loss is summed over the batch; it should be the mean over the batch")
        elif math.isclose(got, expected / classes, rel_tol=1e-4):
            failures.add(check, "the loss is also averaged over the classes; sum over classes, average over the batch")
        elif case["group"] == "onehot":
            failures.add(check, "for one-hot targets the loss differs from F.nll_loss")
        else:
            failures.add(check, f"wrong value for a {batch}×{classes} batch of soft targets")
        if case["grad"]:
            got_gradient = outputs.get(f"{key}_grad")
            if not close(got_gradient, gradient, rtol=1e-4, atol=1e-6):
                failures.add(check, "the gradient with respect to pred is wrong")
    for wrong_input, raised in notes.get("raised", {}).items():
        if raised != "ValueError":
            what = "a numpy array as pred" if wrong_input == "numpy_pred" else "a list as target"
            failures.add(
                "value_error",
                f"cross_entropy({what}) should raise ValueError; "
                f"it {'returned normally' if raised is None else 'raised ' + raised}",
            )
    if not computed_correctly:
        first_error = next(iter(notes.get("errors", {}).values()), None)
        failures.add(
            "value_error",
            "this counts once cross_entropy computes a correct loss for tensors"
            + (f"; it raised {first_error}" if first_error else ""),
        )
    return failures


# --------------------------------------------------------------------------- network
def log_probability_failure(name, values):
    if not np.all(np.isfinite(values)):
        return f"{name} returns non-finite values"
    if values.max() > 1e-5 or not np.allclose(np.logaddexp.reduce(values, axis=1), 0, atol=1e-4):
        return f"{name} does not return log-probabilities (apply log_softmax over the classes)"
    return None


HEADS = {"forward": "pretrainer", "generalize": "generalizer"}
#: The layers on forward's path: pretraining through forward must change every one of them.
FORWARD_PATH = ("conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias", "pretrainer.weight", "pretrainer.bias")


def heads_used(output, features, state, prefix):
    """The heads (``pretrainer``, ``generalizer``) of which ``output`` is the log_softmax (or the raw scores).

    Computed from raw tensors: the scores ``features @ W.T + b`` of a head with the
    judge's weights, from the features the student's ``apply_convs`` returned; an output
    of that head differs from them by one constant per row (log_softmax subtracts the
    row's log-sum-exp). Float32 arithmetic in the child: tolerance 1e-4 of the scale.
    """
    used = []
    for head in HEADS.values():
        scores = features @ state[f"{prefix}.{head}.weight"].astype(np.float64).T + state[f"{prefix}.{head}.bias"]
        if output.shape != scores.shape:
            continue
        shift = output - scores
        if np.all(np.isfinite(shift)) and np.abs(shift - shift.mean(axis=1, keepdims=True)).max() <= 1e-4 * (
            1 + np.abs(scores).max()
        ):
            used.append(head)
    return used


def check_network_config(config, inputs, outputs, notes, failures):
    key, sizes = config["key"], tuple(config["sizes"])
    error = notes.get("errors", {}).get(key)
    label = f"Net{sizes}"
    names = ("features", "forward", "forward_again", "generalize", "generalize_again")
    if error or any(f"{key}_{name}" not in outputs for name in names):
        failures.add_all(f"Net raised {error or 'an error'}")
        return
    x = inputs["x"]
    expected = reference.network_outputs(inputs, key, sizes, x)
    shapes = {"features": (len(x), 256), "forward": (len(x), sizes[0]), "generalize": (len(x), sizes[1])}
    methods = {"features": "apply_convs", "forward": "forward", "generalize": "generalize"}
    for output, shape in shapes.items():
        got = outputs[f"{key}_{output}"]
        if got.shape != shape:
            failures.add(
                "shapes",
                f"{label}.{methods[output]} returns shape {shape_text(got.shape)}, expected {shape_text(shape)}",
            )
            failures.add("reference", f"{label}.{methods[output]} has the wrong shape")
        elif not close(got, expected[output], rtol=1e-4, atol=1e-4):
            failures.add(
                "reference",
                f"{label}.{methods[output]} differs from the reference computation with the same weights in eval mode",
            )
    features = outputs[f"{key}_features"]
    if features.shape != shapes["features"] or not np.ptp(features, axis=0).max() > 1e-6:
        for check in ("shapes", "eval_deterministic", "heads"):
            failures.add(check, f"counts once {label}.apply_convs returns features [B, 256] that depend on the image")
        return
    computed = False  # does at least one output come from a head? (made-up outputs earn nothing)
    for method, head in HEADS.items():
        used = heads_used(outputs[f"{key}_{method}"], features, inputs, key)
        computed = computed or bool(used)
        if used != [head]:
            wrong = [other for other in used if other != head]
            failures.add(
                "heads",
                f"{method} uses self.{wrong[0]}; it should use self.{head}"
                if wrong
                else f"{label}.{method} is not self.{head} applied to the features of apply_convs "
                "(then log_softmax) in eval mode",
            )
    if not computed:
        gated = "counts once forward or generalize computes its head from the features of apply_convs"
        failures.add("shapes", gated)
        failures.add("eval_deterministic", gated)
        return
    for method in HEADS:
        got = outputs[f"{key}_{method}"]
        if got.shape == shapes[method] and (message := log_probability_failure(f"{label}.{method}", got)):
            failures.add("shapes", message)
        if not np.array_equal(got, outputs[f"{key}_{method}_again"]):
            failures.add(
                "eval_deterministic",
                f"{label}.{method} gives different outputs in eval mode: "
                "use dropout only through self.conv2_drop (or not at all)",
            )


def check_network(inputs, plan, outputs, notes):
    failures = Failures("network")
    for config in plan["configs"]:
        check_network_config(config, inputs, outputs, notes, failures)
    learn = plan["learn"]
    sizes = tuple(learn["sizes"])
    learned = {name: value for name, value in outputs.items() if name.startswith("learned.")}
    try:
        before = reference.accuracy(inputs, "learn", sizes, inputs["learn_x"], inputs["learn_y"])
        after = reference.accuracy(learned, "learned", sizes, inputs["learn_x"], inputs["learn_y"])
    except (RuntimeError, KeyError, ValueError):
        error = notes.get("errors", {}).get("learn", "an error")
        failures.add("learns", f"training Net{sizes} through forward failed: {error}")
        return failures
    frozen = [name for name in FORWARD_PATH if np.array_equal(learned[f"learned.{name}"], inputs[f"learn.{name}"])]
    if frozen:
        failures.add(
            "learns",
            f"training Net{sizes} through forward left {', '.join(frozen)} unchanged: no "
            "gradient reaches them (are the features detached, or computed without them?)",
        )
    elif after < 0.9 or after <= before:
        failures.add(
            "learns",
            f"after {learn['steps']} SGD steps through forward, Net{sizes} classifies "
            f"{after:.0%} of a tiny separable training set (needs 90%)",
        )
    return failures


# --------------------------------------------------------------------------- frozen finetuning
FINETUNED = ("generalizer.weight", "generalizer.bias")
FROZEN = ("conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias", "pretrainer.weight", "pretrainer.bias")
NOT_A_PARAMETER = "<a tensor that is not a parameter of the net>"


def returned_parameters(weights, plan, outputs, notes):
    """Names of the tensors ``finetune_parameters()`` returned, found by value among the judge's weights.

    Every weight the judge hands out is a distinct random array, so a returned tensor
    equal to one of them is that parameter. None if the call raised.
    """
    count = notes.get("returned")
    if notes.get("errors", {}).get("parameters") or not isinstance(count, int) or isinstance(count, bool) or count < 0:
        return None
    count, names = min(count, plan["max_returned"] + 1), []
    for index in range(min(count, plan["max_returned"])):
        value = outputs.get(f"returned_{index}")
        names.append(
            next(
                (
                    name
                    for name, weight in weights.items()
                    if value is not None and value.shape == weight.shape and np.array_equal(value, weight)
                ),
                NOT_A_PARAMETER,
            )
        )
    return names + [NOT_A_PARAMETER] * (count - len(names))


def check_returned(names, errors, failures):
    if names is None:
        failures.add("parameters", f"finetune_parameters() raised {errors.get('parameters', 'an error')}")
        return
    extra = [name for name in names if name not in FINETUNED]
    missing = [name for name in FINETUNED if name not in names]
    if extra:
        failures.add("parameters", "finetune_parameters() also returns " + ", ".join(dict.fromkeys(extra[:6])))
    if missing:
        failures.add("parameters", "finetune_parameters() misses " + ", ".join(missing))
    if not extra and not missing and len(names) != len(FINETUNED):
        failures.add("parameters", "finetune_parameters() returns a parameter twice")


def check_frozen_finetuning(inputs, plan, outputs, notes):
    """Which parameters finetuning may change, and what it changed, from the raw weights.

    The runner returns the tensors of ``finetune_parameters()`` and the weights after the
    kit's finetuning. The judge names the returned tensors by value, derives from those
    names what finetuning may change, checks that the weights that came back changed
    nothing else (it chose the weights before), and measures the accuracy itself, with
    its reference network, before and after.
    """
    failures = Failures("frozen_finetuning")
    errors = notes.get("errors", {})
    weights = {name[len("net.") :]: value for name, value in inputs.items() if name.startswith("net.")}
    names = returned_parameters(weights, plan, outputs, notes)
    check_returned(names, errors, failures)
    after = {name: outputs.get(f"after.{name}") for name in weights}
    if errors.get("finetune") or any(value is None for value in after.values()):
        message = f"the kit's finetune() with this Net raised {errors.get('finetune', 'an error')}"
        failures.add("frozen", message)
        failures.add("improves", message)
        return failures
    if names is None:
        gated = "counts once finetune_parameters() returns the parameters to finetune"
        failures.add("frozen", gated)
        failures.add("improves", gated)
        return failures
    # What finetuning may change follows from the returned set (the kit's optimizer gets exactly it);
    # the weights that came back must agree with it, or something else changed them.
    outside = [name for name in dict.fromkeys(names) if name in weights and name not in FINETUNED]
    if outside:
        failures.add(
            "frozen", "finetuning would change " + ", ".join(outside[:6]) + "; only the generalizer may change"
        )
    changed = [name for name in weights if not np.array_equal(after[name], weights[name])]
    unexplained = [name for name in changed if name not in names]
    if unexplained:
        message = (
            f"finetuning changed {', '.join(unexplained)}, which finetune_parameters() does not return "
            "(does generalize modify weights?)"
        )
        failures.add("frozen", message)
        failures.add("improves", message)
        return failures
    if not any(name in changed for name in FINETUNED):
        failures.add("frozen", "finetuning did not change the generalizer")
    sizes, labels = tuple(plan["sizes"]), inputs["y"]
    accuracy_before = reference.accuracy(inputs, "net", sizes, inputs["x"], labels, head="generalize")
    try:
        accuracy_after = reference.accuracy(
            {f"after.{n}": v for n, v in after.items()}, "after", sizes, inputs["x"], labels, head="generalize"
        )
    except (RuntimeError, ValueError):
        failures.add("improves", "the finetuned weights have the wrong shapes")
        return failures
    if not accuracy_after > accuracy_before:
        failures.add(
            "improves",
            f"finetuning did not improve the accuracy ({accuracy_before:.0%} before, {accuracy_after:.0%} after)",
        )
    return failures


CHECKS = {
    "collage": check_collage,
    "mixup": check_mixup,
    "cross_entropy": check_cross_entropy,
    "network": check_network,
    "frozen_finetuning": check_frozen_finetuning,
}
