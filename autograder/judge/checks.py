"""Compare the runner's raw outputs with the judge's references, part by part.

Every ``check_<part>(inputs, plan, outputs, notes)`` returns ``{check: [failure, ...]}``
for the checks of :data:`points.POINTS`; an empty list means the check passed.
Failure messages describe the mistake (which quarter, which head, sum vs mean...)
but never print hidden inputs or reference code.
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
    return (("top-left", np.s_[:, low, low], "batch_j"), ("top-right", np.s_[:, low, high], "batch_i"),
            ("bottom-left", np.s_[:, high, low], "batch_i"), ("bottom-right", np.s_[:, high, high], "batch_j"))


def blend_calls(part, inputs, plan, outputs, notes, failures, name):
    """Shared by collage and mixup: report raised errors; check the inputs stayed unmodified.

    Returns the keys of the calls that returned normally.
    """
    returned = []
    for case in plan["cases"]:
        key = case["key"]
        shape = shape_text(inputs[f"{key}_i"].shape)
        error = notes.get("errors", {}).get(key)
        if error or f"{key}_result" not in outputs:
            failures.add_all(f"{name} raised {error or 'an error'}")
            continue
        returned.append(key)
        for side in ("i", "j"):
            after = outputs.get(f"{key}_{side}_after")
            if after is None or after.shape != inputs[f"{key}_{side}"].shape \
                    or not np.array_equal(after, inputs[f"{key}_{side}"]):
                failures.add("inputs_unmodified", f"{name} modified batch_{side} (a {shape} image) in place")
    return returned


# --------------------------------------------------------------------------- collage
def check_collage(inputs, plan, outputs, notes):
    failures = Failures("collage")
    for key in blend_calls("collage", inputs, plan, outputs, notes, failures, "collage"):
        batch_i, batch_j = inputs[f"{key}_i"], inputs[f"{key}_j"]
        shape = shape_text(batch_i.shape)
        result, weight = outputs[f"{key}_result"], float(outputs[f"{key}_weight"])
        if weight != 0.5:
            failures.add("interpolation", f"the returned interpolation is {weight:g}, expected 0.5")
        if result.shape != batch_i.shape:
            failures.add("shape_dtype", f"the result has shape {shape_text(result.shape)} for {shape} inputs")
            failures.add("quarters", f"the result has shape {shape_text(result.shape)} for {shape} inputs")
            continue
        if result.dtype.kind != "f":
            failures.add("shape_dtype", f"the result has dtype {result.dtype}, expected a float dtype")
        sources = {"batch_i": batch_i.astype(np.float64), "batch_j": batch_j.astype(np.float64)}
        for quarter, index, source in quarter_slices(batch_i.shape[-1] // 2):
            got = result[index].astype(np.float64)
            if close(got, sources[source][index]):
                continue
            other = "batch_i" if source == "batch_j" else "batch_j"
            found = f"comes from {other}" if close(got, sources[other][index]) else "matches neither input"
            failures.add("quarters", f"for a {shape} image the {quarter} quarter {found}; it should come from {source}")
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
        return [f"with alpha = {alpha:g} the returned weights have mean {mean:.3f} and variance {variance:.3f}; "
                f"Beta({alpha:g}, {alpha:g}) has mean 0.5 and variance {expected_variance:.3f}"]
    # Two-sample Kolmogorov-Smirnov distance to the judge's own Beta sample (critical value for p = 0.001).
    grid = np.sort(np.concatenate([weights, reference_sample]))
    distance = np.abs(np.searchsorted(np.sort(weights), grid, side="right") / n
                      - np.searchsorted(np.sort(reference_sample), grid, side="right") / len(reference_sample)).max()
    if distance > 1.95 * math.sqrt((n + len(reference_sample)) / (n * len(reference_sample))):
        return [f"with alpha = {alpha:g} the returned weights are not distributed like Beta({alpha:g}, {alpha:g})"]
    return []


def check_mixup(inputs, plan, outputs, notes):
    failures = Failures("mixup")
    for key in blend_calls("mixup", inputs, plan, outputs, notes, failures, "mixup"):
        batch_i, batch_j = inputs[f"{key}_i"], inputs[f"{key}_j"]
        result, weight = outputs[f"{key}_result"], float(outputs[f"{key}_weight"])
        if not 0 <= weight <= 1:
            failures.add("blend", f"the returned weight {weight:g} is not in [0, 1]")
        elif close(result, reference.mixup(batch_i, batch_j, weight)):
            continue
        elif close(result, reference.mixup(batch_i, batch_j, 1 - weight)):
            failures.add("blend", "the result weights batch_j by the returned weight w; batch_i should get w")
        else:
            failures.add("blend", f"for a {shape_text(batch_i.shape)} image the result is not "
                                  "w * batch_i + (1 - w) * batch_j for the returned weight w")
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
            failures.add("value_error", f"cross_entropy({what}) should raise ValueError; "
                                        f"it {'returned normally' if raised is None else 'raised ' + raised}")
    if not computed_correctly:
        first_error = next(iter(notes.get("errors", {}).values()), None)
        failures.add("value_error", "this counts once cross_entropy computes a correct loss for tensors"
                                    + (f"; it raised {first_error}" if first_error else ""))
    return failures


# --------------------------------------------------------------------------- network
def log_probability_failure(name, values):
    if not np.all(np.isfinite(values)):
        return f"{name} returns non-finite values"
    if values.max() > 1e-5 or not np.allclose(np.logaddexp.reduce(values, axis=1), 0, atol=1e-4):
        return f"{name} does not return log-probabilities (apply log_softmax over the classes)"
    return None


def check_network_config(config, inputs, outputs, notes, failures):
    key, sizes = config["key"], tuple(config["sizes"])
    error = notes.get("errors", {}).get(key)
    label = f"Net{sizes}"
    if error or f"{key}_generalize_swapped_both" not in outputs:
        failures.add_all(f"Net raised {error or 'an error'}")
        return
    x = inputs["x"]
    expected = reference.network_outputs(inputs, key, sizes, x)
    shapes = {"features": (len(x), 256), "forward": (len(x), sizes[0]), "generalize": (len(x), sizes[1])}
    names = {"features": "apply_convs", "forward": "forward", "generalize": "generalize"}
    for output, shape in shapes.items():
        got = outputs[f"{key}_{output}"]
        if got.shape != shape:
            failures.add("shapes", f"{label}.{names[output]} returns shape {shape_text(got.shape)}, "
                                   f"expected {shape_text(shape)}")
            failures.add("reference", f"{label}.{names[output]} has the wrong shape")
            continue
        if output != "features" and (message := log_probability_failure(f"{label}.{names[output]}", got)):
            failures.add("shapes", message)
        if not close(got, expected[output], rtol=1e-4, atol=1e-4):
            failures.add("reference", f"{label}.{names[output]} differs from the reference computation "
                                      "with the same weights in eval mode")
    for output in ("forward", "generalize"):
        if not np.array_equal(outputs[f"{key}_{output}"], outputs[f"{key}_{output}_again"]):
            failures.add("eval_deterministic", f"{label}.{output} gives different outputs in eval mode: "
                                               "use dropout only through self.conv2_drop (or not at all)")
    same = lambda a, b: outputs[f"{key}_{a}"].shape == outputs[f"{key}_{b}"].shape and np.allclose(
        outputs[f"{key}_{a}"], outputs[f"{key}_{b}"], rtol=0, atol=1e-6)
    if same("forward", "forward_swapped_pretrainer"):
        failures.add("heads", "forward does not use self.pretrainer")
    if not same("forward_swapped_pretrainer", "forward_swapped_both"):
        failures.add("heads", "forward depends on self.generalizer")
    if same("generalize_swapped_pretrainer", "generalize_swapped_both"):
        failures.add("heads", "generalize does not use self.generalizer")
    if not same("generalize", "generalize_swapped_pretrainer"):
        failures.add("heads", "generalize depends on self.pretrainer")


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
    if after < 0.9 or after <= before:
        failures.add("learns", f"after {learn['steps']} SGD steps through forward, Net{sizes} classifies "
                               f"{after:.0%} of a tiny separable training set (needs 90%)")
    return failures


# --------------------------------------------------------------------------- frozen finetuning
FINETUNED = ("generalizer.weight", "generalizer.bias")
FROZEN = ("conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias", "pretrainer.weight", "pretrainer.bias")


def check_frozen_finetuning(inputs, plan, outputs, notes):
    failures = Failures("frozen_finetuning")
    errors = notes.get("errors", {})
    returned = notes.get("returned")
    if errors.get("parameters") or not isinstance(returned, list):
        failures.add("parameters", f"finetune_parameters() raised {errors.get('parameters', 'an error')}")
    else:
        extra = [str(name)[:80] for name in returned if name not in FINETUNED]
        missing = [name for name in FINETUNED if name not in returned]
        if extra:
            failures.add("parameters", "finetune_parameters() also returns " + ", ".join(extra[:6]))
        if missing:
            failures.add("parameters", "finetune_parameters() misses " + ", ".join(missing))
        if not extra and not missing and len(returned) != len(FINETUNED):
            failures.add("parameters", "finetune_parameters() returns a parameter twice")
    if errors.get("finetune") or "outputs_after" not in outputs:
        message = f"the kit's finetune() with this Net raised {errors.get('finetune', 'an error')}"
        failures.add("frozen", message)
        failures.add("improves", message)
        return failures
    changed = [name for name in FROZEN if not np.array_equal(outputs[f"before.{name}"], outputs[f"after.{name}"])]
    if changed:
        failures.add("frozen", "finetuning changed " + ", ".join(changed) + "; only the generalizer may change")
    if all(np.array_equal(outputs[f"before.{name}"], outputs[f"after.{name}"]) for name in FINETUNED):
        failures.add("frozen", "finetuning did not change the generalizer")
    labels = inputs["y"]
    before, after = outputs["outputs_before"], outputs["outputs_after"]
    if before.shape != (len(labels), plan["sizes"][1]) or after.shape != before.shape:
        failures.add("improves", "generalize returns the wrong shape")
        return failures
    accuracy_before = float((before.argmax(axis=1) == labels).mean())
    accuracy_after = float((after.argmax(axis=1) == labels).mean())
    if not accuracy_after > accuracy_before:
        failures.add("improves", f"finetuning did not improve the accuracy ({accuracy_before:.0%} before, "
                                 f"{accuracy_after:.0%} after)")
    return failures


CHECKS = {"collage": check_collage, "mixup": check_mixup, "cross_entropy": check_cross_entropy,
          "network": check_network, "frozen_finetuning": check_frozen_finetuning}
