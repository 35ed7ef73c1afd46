"""The judge's child process: call the student's functions on hidden inputs, write raw outputs.

This script runs INSIDE the (sandboxed) child, next to a scratch copy of ``handin/``
that holds the student's modules. It imports student code, so nothing it reports
is trusted: it never decides pass or fail, it only writes raw data (``.npz`` of
numeric arrays and ``.json``) that the judge validates and checks outside against
its own copy of the inputs, recomputing everything it grades (see :mod:`.checks`).

Usage (by the judge only)::

    python -I runner.py PART [PART ...]

Before any student module is imported, the runner reads ALL its inputs
(``inputs/<part>.npz`` and ``.json``, and ``inputs/out_name``, the random name of the
output folder), deletes the ``inputs`` folder, creates the output folder and opens it.
Student code therefore never sees an input file it could rewrite, and the name of the
output folder is not in ``sys.argv``. For every part, in order, the runner writes
``<out>/<part>.json`` (errors and counts) and then ``<out>/<part>.npz`` (the arrays),
each atomically, relative to the folder it opened; a part counts as finished when its
``.npz`` exists. Each part imports only the modules it needs, so a module that crashes
at import costs only the parts that use it.
"""

import json
import os
import shutil
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


def end_if_out_of_memory(error):
    """End this child when student code ran out of memory, as the cgroup's OOM killer would have.

    Where no cgroup holds the memory limit (a grader without root), RLIMIT_DATA makes the
    allocation raise ``MemoryError`` instead, which student code could otherwise turn into an
    ordinary failed check. Ending here makes the part a ``memory_limit`` on every machine: the
    judge reads "MemoryError" on stderr and runs the remaining parts in a fresh child.
    """
    if isinstance(error, MemoryError):
        traceback.print_exception(error)
        sys.stderr.flush()
        os._exit(1)


def record_error(notes, key, error):
    """Note an exception of student code under ``key``; a NotImplementedError also names the function."""
    end_if_out_of_memory(error)
    notes["errors"][key] = describe(error)
    if isinstance(error, NotImplementedError):
        frames = traceback.extract_tb(error.__traceback__)
        names = [frame.name for frame in frames if Path(frame.filename).parent.name == "handin"]
        notes.setdefault("not_implemented", []).append(names[-1] if names else "")


def load_inputs(parts):
    """``{part: (arrays, plan)}`` for every part, and the output folder's name, read before any student code."""
    inputs = {}
    for part in parts:
        with np.load(INPUTS / f"{part}.npz", allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
        inputs[part] = arrays, json.loads((INPUTS / f"{part}.json").read_text())
    out_name = (INPUTS / "out_name").read_text().strip()
    shutil.rmtree(INPUTS)
    return inputs, out_name


def write_atomically(out_fd, name, write):
    """Write ``name`` inside the open folder ``out_fd`` through a temporary file and a rename."""
    temporary = name + ".partial"
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644, dir_fd=out_fd)
    with os.fdopen(descriptor, "wb") as handle:
        write(handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, name, src_dir_fd=out_fd, dst_dir_fd=out_fd)


def save_part(out_fd, part, arrays, notes):
    """Write one part's outputs: the notes first, then the arrays that mark it finished."""
    write_atomically(out_fd, f"{part}.json", lambda h: h.write(json.dumps(notes).encode()))
    write_atomically(out_fd, f"{part}.npz", lambda h: np.savez(h, **arrays))


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
        except BaseException as error:  # student code may raise anything
            record_error(notes, key, error)
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
        except BaseException as error:
            record_error(notes, key, error)
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
        except BaseException as error:
            record_error(notes, key, error)
    valid = torch.from_numpy(arrays[plan["not_tensor_like"] + "_pred"].copy())
    wrong_inputs = {
        "numpy_pred": lambda: (valid.numpy().copy(), valid.clone()),
        "list_target": lambda: (valid.clone(), valid.tolist()),
    }
    for key, make in wrong_inputs.items():
        try:
            cross_entropy(*make())
            notes["raised"][key] = None
        except BaseException as error:
            end_if_out_of_memory(error)
            notes["raised"][key] = "ValueError" if isinstance(error, ValueError) else describe(error)
            if isinstance(error, NotImplementedError):
                record_error(notes, key, error)
    return out, notes


# --------------------------------------------------------------------------- network
def make_net(Net, arrays, prefix, sizes):
    """A student ``Net`` with the judge's weights ``<prefix>.<parameter name>`` loaded."""
    net = Net(*sizes)
    state = {
        name[len(prefix) + 1 :]: torch.from_numpy(arrays[name].copy())
        for name in arrays
        if name.startswith(prefix + ".")
    }
    net.load_state_dict(state, strict=True)
    return net


def state_arrays(net, prefix):
    return {f"{prefix}.{name}": value.detach().cpu().numpy().copy() for name, value in net.state_dict().items()}


def as_output(value):
    return to_array(value).astype(np.float64)


def part_network(arrays, plan):
    """Features and both heads in eval mode, twice with different torch seeds; then a short training."""
    from handin.network import Net

    out, notes = {}, {"errors": {}}
    x = torch.from_numpy(arrays["x"].copy())
    for config in plan["configs"]:
        key, sizes = config["key"], config["sizes"]
        try:
            net = make_net(Net, arrays, key, sizes).eval()
            with torch.no_grad():
                out[f"{key}_features"] = as_output(net.apply_convs(x))
                for output, seed in zip(
                    ("forward", "forward_again", "generalize", "generalize_again"), config["seeds"], strict=False
                ):
                    torch.manual_seed(seed)
                    out[f"{key}_{output}"] = as_output(getattr(net, output.removesuffix("_again"))(x))
        except BaseException as error:
            record_error(notes, key, error)
    try:
        out.update(learn_tiny_problem(Net, arrays, plan["learn"]))
    except BaseException as error:
        record_error(notes, "learn", error)
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
    """The values of what ``finetune_parameters()`` returns, and the weights after the kit's finetuning.

    The judge identifies the returned tensors by their values (it chose every weight) and
    evaluates the finetuned weights with its own reference network: nothing here is a verdict.
    """
    from handin.network import Net

    out, notes = {}, {"errors": {}}
    sizes = plan["sizes"]
    try:
        returned = list(make_net(Net, arrays, "net", sizes).finetune_parameters())
        notes["returned"] = len(returned)
        for index, item in enumerate(returned[: plan["max_returned"]]):
            out[f"returned_{index}"] = to_array(item)
    except BaseException as error:
        record_error(notes, "parameters", error)
    try:
        from handin import training

        training.cross_entropy = soft_cross_entropy
        net = make_net(Net, arrays, "net", sizes)
        images, labels = torch.from_numpy(arrays["x"].copy()), torch.from_numpy(arrays["y"].copy())
        torch.manual_seed(plan["seed"])
        np.random.seed(plan["seed"])
        training.finetune(
            net,
            torch.utils.data.TensorDataset(images, labels),
            sizes[1],
            n_batches=plan["n_batches"],
            batch_size=plan["batch_size"],
            lr=plan["lr"],
            seed=plan["seed"],
            progress=False,
        )
        out.update(state_arrays(net, "after"))
    except BaseException as error:
        record_error(notes, "finetune", error)
    return out, notes


PARTS = {
    "collage": part_collage,
    "mixup": part_mixup,
    "cross_entropy": part_cross_entropy,
    "network": part_network,
    "frozen_finetuning": part_frozen_finetuning,
}


def main(parts):
    inputs, out_name = load_inputs(parts)
    os.mkdir(HERE / out_name, 0o755)
    out_fd = os.open(HERE / out_name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    del out_name
    torch.set_num_threads(1)
    for part in parts:
        arrays, plan = inputs.pop(part)
        try:
            outputs, notes = PARTS[part](arrays, plan)
        except BaseException as error:  # e.g. the module fails to import
            end_if_out_of_memory(error)
            outputs, notes = {}, {"import_error": describe(error)}
            traceback.print_exc()
        save_part(out_fd, part, outputs, notes)


if __name__ == "__main__":
    main(sys.argv[1:])
