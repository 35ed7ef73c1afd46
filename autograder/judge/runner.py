"""The judge's child process: call the student's functions on hidden inputs, write raw outputs.

This script runs INSIDE the (sandboxed) child, next to a scratch copy of ``handin/``
that holds the student's modules. It imports student code, so nothing it reports
is trusted: it never decides pass or fail, it only writes plain data (``.npz`` of
numeric arrays and ``.json``) that the judge validates and compares outside.

Usage (by the judge only)::

    python -I runner.py PART [PART ...]

The output folder is a fresh random name chosen by the judge at run time; the runner
reads it from ``inputs/out_name`` and deletes that file before any student module is
imported (so it is not in ``sys.argv`` for student code to find). For every part,
in order, the runner writes ``<out>/<part>.json`` (errors and names) and then
``<out>/<part>.npz`` (the arrays), each atomically; a part counts as finished
when its ``.npz`` exists. Student modules are imported only after ``OUT_DIR`` is
created, and each part imports only the modules it needs, so a module that
crashes at import costs only the parts that use it.
"""
import json
import os
import sys
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import numpy as np  # noqa: E402
import torch  # noqa: E402

INPUTS = HERE / "inputs"
MAX_MESSAGE = 300


def describe(error):
    """A short, single-line description of an exception raised by student code."""
    lines = str(error).strip().splitlines()
    return (f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__)[:MAX_MESSAGE]


def to_array(value):
    """Turn a student's return value into a numeric numpy array (a copy).

    Raises:
        TypeError: if the value is not numeric (object or string arrays are refused,
            so nothing that needs pickling is ever written).
    """
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    array = np.array(value)
    if array.dtype.kind not in "biuf":
        raise TypeError(f"returned a value of type {type(value).__name__}, not a numeric array")
    return array


def to_float(value):
    """Turn a returned scalar (float, numpy or torch scalar) into a Python float."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu()
    array = np.asarray(value, dtype=np.float64)
    if array.size != 1:
        raise TypeError(f"returned {array.size} numbers where one number was expected")
    return float(array.reshape(()))


def load_inputs(part):
    with np.load(INPUTS / f"{part}.npz", allow_pickle=False) as data:
        arrays = {key: data[key] for key in data.files}
    plan = json.loads((INPUTS / f"{part}.json").read_text())
    return arrays, plan


def write_atomically(path, write):
    temporary = path.with_name(path.name + ".partial")
    with open(temporary, "wb") as handle:
        write(handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def save_part(out_dir, part, arrays, notes):
    """Write one part's outputs: the notes first, then the arrays that mark it finished."""
    write_atomically(out_dir / f"{part}.json", lambda h: h.write(json.dumps(notes).encode()))
    write_atomically(out_dir / f"{part}.npz", lambda h: np.savez(h, **arrays))


def seed_everything(seed):
    """Seed numpy and torch: a student may draw with either (fixed draws, fixed verdict)."""
    np.random.seed(seed)
    torch.manual_seed(seed)


# --------------------------------------------------------------------------- blends
def run_blend_calls(function, arrays, plan, arrays_out, notes):
    """Call ``function(i, j, *extra)`` for every case; record result, weight, inputs after."""
    for case in plan["cases"]:
        key = case["key"]
        batch_i, batch_j = arrays[f"{key}_i"].copy(), arrays[f"{key}_j"].copy()
        if "seed" in case:
            seed_everything(case["seed"])
        try:
            result, weight = function(batch_i, batch_j, *case.get("args", ()))
            arrays_out[f"{key}_result"] = to_array(result)
            arrays_out[f"{key}_weight"] = np.float64(to_float(weight))
        except BaseException as error:  # noqa: B902 - student code may raise anything
            notes["errors"][key] = describe(error)
        arrays_out[f"{key}_i_after"] = batch_i
        arrays_out[f"{key}_j_after"] = batch_j


def part_collage(arrays, plan):
    from handin.augmentations import collage
    out, notes = {}, {"errors": {}}
    run_blend_calls(collage, arrays, plan, out, notes)
    return out, notes


def part_mixup(arrays, plan):
    from handin.augmentations import mixup
    out, notes = {}, {"errors": {}}
    run_blend_calls(mixup, arrays, plan, out, notes)
    for draw in plan["draws"]:
        key, alpha = draw["key"], draw["alpha"]
        seed_everything(draw["seed"])
        results, weights = [], []
        try:
            for _ in range(draw["n"]):
                result, weight = mixup(arrays["draw_i"].copy(), arrays["draw_j"].copy(), alpha)
                results.append(to_array(result).astype(np.float64))
                weights.append(to_float(weight))
            out[f"{key}_results"] = np.stack(results)
            out[f"{key}_weights"] = np.array(weights, dtype=np.float64)
        except BaseException as error:  # noqa: B902
            notes["errors"][key] = describe(error)
    return out, notes


# --------------------------------------------------------------------------- cross-entropy
def part_cross_entropy(arrays, plan):
    from handin.utils import cross_entropy
    out, notes = {}, {"errors": {}, "raised": {}, "is_tensor": {}}
    for case in plan["cases"]:
        key = case["key"]
        pred = torch.from_numpy(arrays[f"{key}_pred"].copy()).requires_grad_(case.get("grad", False))
        target = torch.from_numpy(arrays[f"{key}_target"].copy())
        try:
            loss = cross_entropy(pred, target)
            notes["is_tensor"][key] = isinstance(loss, torch.Tensor)
            out[f"{key}_loss"] = np.float64(to_float(loss))
            if case.get("grad"):
                loss.backward()
                if pred.grad is None:
                    raise RuntimeError("no gradient reached pred")
                out[f"{key}_grad"] = pred.grad.detach().numpy().copy()
        except BaseException as error:  # noqa: B902
            notes["errors"][key] = describe(error)
    valid = torch.from_numpy(arrays[plan["not_tensor_like"] + "_pred"].copy())
    wrong_inputs = {
        "numpy_pred": lambda: (valid.numpy().copy(), valid.clone()),
        "list_target": lambda: (valid.clone(), valid.tolist()),
    }
    for key, make in wrong_inputs.items():
        try:
            cross_entropy(*make())
            notes["raised"][key] = None
        except BaseException as error:  # noqa: B902
            notes["raised"][key] = "ValueError" if isinstance(error, ValueError) else describe(error)
    return out, notes


# --------------------------------------------------------------------------- network
def make_net(Net, arrays, prefix, sizes):
    """A student ``Net`` with the judge's weights ``<prefix>.<parameter name>`` loaded."""
    net = Net(*sizes)
    state = {name[len(prefix) + 1:]: torch.from_numpy(arrays[name].copy())
             for name in arrays if name.startswith(prefix + ".")}
    net.load_state_dict(state, strict=True)
    return net


def state_arrays(net, prefix):
    return {f"{prefix}.{name}": value.detach().cpu().numpy().copy() for name, value in net.state_dict().items()}


def as_output(value):
    return to_array(value).astype(np.float64)


def part_network(arrays, plan):
    from handin.network import Net
    out, notes = {}, {"errors": {}}
    x = torch.from_numpy(arrays["x"].copy())
    for config in plan["configs"]:
        key, sizes = config["key"], config["sizes"]
        try:
            net = make_net(Net, arrays, key, sizes).eval()
            with torch.no_grad():
                out[f"{key}_features"] = as_output(net.apply_convs(x))
                torch.manual_seed(config["seeds"][0])
                out[f"{key}_forward"] = as_output(net.forward(x))
                torch.manual_seed(config["seeds"][1])
                out[f"{key}_forward_again"] = as_output(net.forward(x))
                out[f"{key}_generalize"] = as_output(net.generalize(x))
                torch.manual_seed(config["seeds"][2])
                out[f"{key}_generalize_again"] = as_output(net.generalize(x))
                # Swap one head for other weights: the other head's output must not move.
                net.pretrainer.load_state_dict(
                    {"weight": torch.from_numpy(arrays[f"{key}_swap.pretrainer.weight"].copy()),
                     "bias": torch.from_numpy(arrays[f"{key}_swap.pretrainer.bias"].copy())})
                out[f"{key}_forward_swapped_pretrainer"] = as_output(net.forward(x))
                out[f"{key}_generalize_swapped_pretrainer"] = as_output(net.generalize(x))
                net.generalizer.load_state_dict(
                    {"weight": torch.from_numpy(arrays[f"{key}_swap.generalizer.weight"].copy()),
                     "bias": torch.from_numpy(arrays[f"{key}_swap.generalizer.bias"].copy())})
                out[f"{key}_forward_swapped_both"] = as_output(net.forward(x))
                out[f"{key}_generalize_swapped_both"] = as_output(net.generalize(x))
        except BaseException as error:  # noqa: B902
            notes["errors"][key] = describe(error)
    try:
        out.update(learn_tiny_problem(Net, arrays, plan["learn"]))
    except BaseException as error:  # noqa: B902
        notes["errors"]["learn"] = describe(error)
    return out, notes


def learn_tiny_problem(Net, arrays, learn):
    """Train the whole student net through ``forward`` with plain SGD; return the weights."""
    torch.manual_seed(learn["seed"])
    net = make_net(Net, arrays, "learn", learn["sizes"]).train()
    images, labels = torch.from_numpy(arrays["learn_x"].copy()), torch.from_numpy(arrays["learn_y"].copy())
    optimizer = torch.optim.SGD(net.parameters(), lr=learn["lr"])
    order = torch.from_numpy(arrays["learn_order"].copy())
    for batch in order:
        log_probs = net.forward(images[batch])
        loss = -log_probs.gather(1, labels[batch].unsqueeze(1)).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return state_arrays(net, "learned")


# --------------------------------------------------------------------------- frozen finetuning
def soft_cross_entropy(pred, target):
    """The loss for the kit's finetuning, so that this part does not depend on the student's loss."""
    return -(target * pred).sum(dim=1).mean()


def part_frozen_finetuning(arrays, plan):
    from handin.network import Net
    out, notes = {}, {"errors": {}}
    sizes = plan["sizes"]
    try:
        net = make_net(Net, arrays, "net", sizes)
        names = {id(parameter): name for name, parameter in net.named_parameters()}
        returned = list(net.finetune_parameters())
        notes["returned"] = [names.get(id(item), f"<a {type(item).__name__} that is not a parameter of the net>")
                             for item in returned]
    except BaseException as error:  # noqa: B902
        notes["errors"]["parameters"] = describe(error)
    try:
        from handin import training
        training.cross_entropy = soft_cross_entropy
        net = make_net(Net, arrays, "net", sizes)
        images, labels = torch.from_numpy(arrays["x"].copy()), torch.from_numpy(arrays["y"].copy())
        out.update(state_arrays(net, "before"))
        out["outputs_before"] = eval_outputs(net, images)
        torch.manual_seed(plan["seed"])
        np.random.seed(plan["seed"])
        training.finetune(net, torch.utils.data.TensorDataset(images, labels), sizes[1],
                          n_batches=plan["n_batches"], batch_size=plan["batch_size"], lr=plan["lr"],
                          seed=plan["seed"], progress=False)
        out.update(state_arrays(net, "after"))
        out["outputs_after"] = eval_outputs(net, images)
    except BaseException as error:  # noqa: B902
        notes["errors"]["finetune"] = describe(error)
    return out, notes


def eval_outputs(net, images):
    net.eval()
    with torch.no_grad():
        outputs = as_output(net.generalize(images))
    net.train()
    return outputs


PARTS = {
    "collage": part_collage,
    "mixup": part_mixup,
    "cross_entropy": part_cross_entropy,
    "network": part_network,
    "frozen_finetuning": part_frozen_finetuning,
}


def main(argv):
    name_file = INPUTS / "out_name"
    out_dir, parts = HERE / name_file.read_text().strip(), argv
    name_file.unlink()
    out_dir.mkdir()
    torch.set_num_threads(1)
    for part in parts:
        arrays, plan = load_inputs(part)
        try:
            outputs, notes = PARTS[part](arrays, plan)
        except BaseException as error:  # noqa: B902 - e.g. the module fails to import
            outputs, notes = {}, {"import_error": describe(error)}
            traceback.print_exc()
        save_part(out_dir, part, outputs, notes)


if __name__ == "__main__":
    main(sys.argv[1:])
