"""Test submissions as small declarative patches of the solution (or stub) modules.

Each :class:`Submission` starts from the reference modules (``base="solution"``) or
from the released stubs (``base="stub"``), applies text replacements (each ``old``
must occur exactly once) and prepends code to modules. ``lose`` lists the parts that
must lose points; ``may_lose`` the parts that may lose points too because they use
the same code (e.g. the kit's finetuning calls the student's ``generalize``); every
other part must score full marks. Tamper submissions are built on the stubs, so
``max_total`` is what they may score at most.
"""

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from autograder import KIT_ROOT, STUDENT_MODULES
from autograder.judge.points import PARTS

SOLUTION_HANDIN = KIT_ROOT / "solutions" / "handin"


@dataclass
class Submission:
    name: str
    kind: str  # "reference", "stub", "bug", "variant" or "tamper"
    why: str
    base: str = "solution"  # "solution" or "stub"
    replace: list = field(default_factory=list)  # [(module, old, new)]
    prepend: dict = field(default_factory=dict)  # {module: code run first at import}
    lose: tuple = ()
    may_lose: tuple = ()
    max_total: float = None  # tamper: the score may not exceed this
    status: dict = field(default_factory=dict)  # {part: expected status}, e.g. "timeout"
    notebooks: dict = field(default_factory=dict)  # {notebook file name: extra first code cell}


def sol(module, old, new):
    return (module, old, new)


AUG, NET, UTL = "augmentations.py", "network.py", "utils.py"

BUGS = [
    Submission(
        "collage_wrong_quadrant",
        "bug",
        "top-right instead of top-left from batch_j",
        replace=[
            sol(
                AUG,
                "result[:, :half, :half] = batch_j[:, :half, :half]",
                "result[:, :half, half:] = batch_j[:, :half, half:]",
            )
        ],
        lose=("collage",),
    ),
    Submission(
        "collage_interpolation_quarter",
        "bug",
        "returns interpolation 0.25",
        replace=[sol(AUG, "interpolation = 0.5\n", "interpolation = 0.25\n")],
        lose=("collage",),
    ),
    Submission(
        "collage_in_place",
        "bug",
        "writes the quarters into batch_i itself",
        replace=[
            sol(AUG, "result = batch_i.astype(float)  # a new float array; batch_i stays as it was", "result = batch_i")
        ],
        lose=("collage",),
    ),
    Submission(
        "collage_hardcoded_28",
        "bug",
        "assumes 28×28 images (half = 14)",
        replace=[sol(AUG, "half = batch_i.shape[-1] // 2", "half = 14")],
        lose=("collage",),
    ),
    Submission(
        "collage_integer_canvas",
        "bug",
        "a fresh integer array truncates the pixels",
        replace=[
            sol(
                AUG,
                "result = batch_i.astype(float)  # a new float array; batch_i stays as it was",
                "result = np.zeros(batch_i.shape, dtype=int)\n"
                "    result[:, :half, half:] = batch_i[:, :half, half:]\n"
                "    result[:, half:, :half] = batch_i[:, half:, :half]",
            )
        ],
        lose=("collage",),
    ),
    Submission(
        "mixup_lambda_not_returned",
        "bug",
        "blends with a second draw, returns the first",
        replace=[
            sol(
                AUG,
                "result = interpolation * batch_i + (1 - interpolation) * batch_j",
                "lam = np.random.beta(alpha, alpha)\n    result = lam * batch_i + (1 - lam) * batch_j",
            )
        ],
        lose=("mixup",),
    ),
    Submission(
        "mixup_swapped_weights",
        "bug",
        "gives the weight to batch_j",
        replace=[
            sol(
                AUG,
                "result = interpolation * batch_i + (1 - interpolation) * batch_j",
                "result = (1 - interpolation) * batch_i + interpolation * batch_j",
            )
        ],
        lose=("mixup",),
    ),
    Submission(
        "mixup_ignores_alpha",
        "bug",
        "redraws the weight from Beta(0.3, 0.3) whatever alpha is",
        replace=[
            sol(
                AUG,
                "result = interpolation * batch_i + (1 - interpolation) * batch_j",
                "interpolation = np.random.beta(0.3, 0.3)\n"
                "    result = interpolation * batch_i + (1 - interpolation) * batch_j",
            )
        ],
        lose=("mixup",),
    ),
    Submission(
        "mixup_constant_half",
        "bug",
        "always blends half and half",
        replace=[
            sol(
                AUG,
                "result = interpolation * batch_i + (1 - interpolation) * batch_j",
                "interpolation = 0.5\n    result = interpolation * batch_i + (1 - interpolation) * batch_j",
            )
        ],
        lose=("mixup",),
    ),
    Submission(
        "mixup_in_place",
        "bug",
        "accumulates the blend in batch_i",
        replace=[
            sol(
                AUG,
                "result = interpolation * batch_i + (1 - interpolation) * batch_j",
                "batch_i *= interpolation\n    batch_i += (1 - interpolation) * batch_j\n    result = batch_i",
            )
        ],
        lose=("mixup",),
    ),
    Submission(
        "ce_sum",
        "bug",
        "sums over the batch instead of averaging",
        replace=[sol(UTL, "return -(target * pred).sum(dim=1).mean()", "return -(target * pred).sum()")],
        lose=("cross_entropy",),
    ),
    Submission(
        "ce_mean_over_classes",
        "bug",
        "averages over batch and classes",
        replace=[sol(UTL, "return -(target * pred).sum(dim=1).mean()", "return -(target * pred).mean()")],
        lose=("cross_entropy",),
    ),
    Submission(
        "ce_nll_of_argmax",
        "bug",
        "nll of the argmax of the soft target",
        replace=[
            sol(
                UTL,
                "return -(target * pred).sum(dim=1).mean()",
                "return torch.nn.functional.nll_loss(pred, target.argmax(dim=1))",
            )
        ],
        lose=("cross_entropy",),
    ),
    Submission(
        "ce_item",
        "bug",
        "returns a Python float: no gradient",
        replace=[
            sol(UTL, "return -(target * pred).sum(dim=1).mean()", "return -(target * pred).sum(dim=1).mean().item()")
        ],
        lose=("cross_entropy",),
    ),
    Submission(
        "net_wrong_head",
        "bug",
        "forward uses the generalizer head",
        replace=[
            sol(
                NET,
                "return F.log_softmax(self.pretrainer(self.apply_convs(x)), dim=1)",
                "return F.log_softmax(self.generalizer(self.apply_convs(x)), dim=1)",
            )
        ],
        lose=("network",),
    ),
    Submission(
        "net_missing_relu",
        "bug",
        "no relu after the second convolution",
        replace=[
            sol(
                NET,
                "x = F.relu(F.max_pool2d(self.conv2_drop(self.conv2(x)), 2))",
                "x = F.max_pool2d(self.conv2_drop(self.conv2(x)), 2)",
            )
        ],
        lose=("network",),
        may_lose=("frozen_finetuning",),
    ),
    Submission(
        "net_dropout_always_on",
        "bug",
        "F.dropout2d without training=self.training",
        replace=[
            sol(
                NET,
                "x = F.relu(F.max_pool2d(self.conv2_drop(self.conv2(x)), 2))",
                "x = F.relu(F.max_pool2d(F.dropout2d(self.conv2(x)), 2))",
            )
        ],
        lose=("network",),
        may_lose=("frozen_finetuning",),
    ),
    Submission(
        "net_no_log_softmax",
        "bug",
        "forward returns raw scores",
        replace=[
            sol(
                NET,
                "return F.log_softmax(self.pretrainer(self.apply_convs(x)), dim=1)",
                "return self.pretrainer(self.apply_convs(x))",
            )
        ],
        lose=("network",),
    ),
    Submission(
        "net_softmax_over_batch",
        "bug",
        "log_softmax over dim 0",
        replace=[
            sol(
                NET,
                "return F.log_softmax(self.generalizer(self.apply_convs(x)), dim=1)",
                "return F.log_softmax(self.generalizer(self.apply_convs(x)), dim=0)",
            )
        ],
        lose=("network",),
        may_lose=("frozen_finetuning",),
    ),
    Submission(
        "net_features_detached",
        "bug",
        "apply_convs detaches its features: the convolutions never learn",
        replace=[sol(NET, "return x.flatten(start_dim=1)", "return x.flatten(start_dim=1).detach()")],
        lose=("network",),
    ),
    Submission(
        "finetune_all_parameters",
        "bug",
        "finetunes every parameter",
        replace=[sol(NET, "return list(self.generalizer.parameters())", "return list(self.parameters())")],
        lose=("frozen_finetuning",),
    ),
    Submission(
        "finetune_pretrainer",
        "bug",
        "returns the pretrainer's parameters",
        replace=[sol(NET, "return list(self.generalizer.parameters())", "return list(self.pretrainer.parameters())")],
        lose=("frozen_finetuning",),
    ),
    Submission(
        "finetune_weight_only",
        "bug",
        "forgets the generalizer's bias",
        replace=[sol(NET, "return list(self.generalizer.parameters())", "return [self.generalizer.weight]")],
        lose=("frozen_finetuning",),
    ),
]

VARIANTS = [
    Submission(
        "relu_before_pool",
        "variant",
        "relu before max-pool (they commute)",
        replace=[
            sol(NET, "x = F.relu(F.max_pool2d(self.conv1(x), 2))", "x = F.max_pool2d(F.relu(self.conv1(x)), 2)"),
            sol(
                NET,
                "x = F.relu(F.max_pool2d(self.conv2_drop(self.conv2(x)), 2))",
                "x = F.max_pool2d(F.relu(self.conv2_drop(self.conv2(x))), 2)",
            ),
        ],
    ),
    Submission(
        "dropout_after_pool",
        "variant",
        "dropout after the pool, view instead of flatten",
        replace=[
            sol(
                NET,
                "x = F.relu(F.max_pool2d(self.conv2_drop(self.conv2(x)), 2))\n        return x.flatten(start_dim=1)",
                "x = F.relu(self.conv2_drop(F.max_pool2d(self.conv2(x), 2)))\n        return x.view(x.size(0), -1)",
            )
        ],
    ),
    Submission(
        "no_dropout",
        "variant",
        "no dropout at all",
        replace=[
            sol(
                NET,
                "x = F.relu(F.max_pool2d(self.conv2_drop(self.conv2(x)), 2))",
                "x = F.relu(F.max_pool2d(self.conv2(x), 2))",
            )
        ],
    ),
    Submission(
        "functional_dropout_training_flag",
        "variant",
        "F.dropout2d(training=self.training)",
        replace=[
            sol(
                NET,
                "x = F.relu(F.max_pool2d(self.conv2_drop(self.conv2(x)), 2))",
                "x = F.relu(F.max_pool2d(F.dropout2d(self.conv2(x), training=self.training), 2))",
            )
        ],
    ),
    Submission(
        "finetune_explicit_list",
        "variant",
        "[weight, bias] written out",
        replace=[
            sol(
                NET,
                "return list(self.generalizer.parameters())",
                "return [self.generalizer.weight, self.generalizer.bias]",
            )
        ],
    ),
    Submission(
        "collage_ellipsis",
        "variant",
        "`...` indexing, float32 result",
        replace=[
            sol(
                AUG,
                "result = batch_i.astype(float)  # a new float array; batch_i stays as it was\n"
                "    result[:, :half, :half] = batch_j[:, :half, :half]\n"
                "    result[:, half:, half:] = batch_j[:, half:, half:]",
                "result = np.array(batch_i, dtype=np.float32)\n"
                "    result[..., :half, :half] = batch_j[..., :half, :half]\n"
                "    result[..., half:, half:] = batch_j[..., half:, half:]",
            )
        ],
    ),
    Submission(
        "collage_fresh_array",
        "variant",
        "all four quarters copied into a fresh float64 array",
        replace=[
            sol(
                AUG,
                "result = batch_i.astype(float)  # a new float array; batch_i stays as it was\n"
                "    result[:, :half, :half] = batch_j[:, :half, :half]\n"
                "    result[:, half:, half:] = batch_j[:, half:, half:]",
                "result = np.empty(batch_i.shape, dtype=np.float64)\n"
                "    result[:, :half, :half] = batch_j[:, :half, :half]\n"
                "    result[:, :half, half:] = batch_i[:, :half, half:]\n"
                "    result[:, half:, :half] = batch_i[:, half:, :half]\n"
                "    result[:, half:, half:] = batch_j[:, half:, half:]",
            )
        ],
    ),
    Submission(
        "collage_torch_blocks",
        "variant",
        "torch.cat of quarters inside the function",
        replace=[
            sol(
                AUG,
                "result = batch_i.astype(float)  # a new float array; batch_i stays as it was\n"
                "    result[:, :half, :half] = batch_j[:, :half, :half]\n"
                "    result[:, half:, half:] = batch_j[:, half:, half:]",
                "ti, tj = torch.as_tensor(batch_i), torch.as_tensor(batch_j)\n"
                "    top = torch.cat([tj[:, :half, :half], ti[:, :half, half:]], dim=2)\n"
                "    bottom = torch.cat([ti[:, half:, :half], tj[:, half:, half:]], dim=2)\n"
                "    result = torch.cat([top, bottom], dim=1).numpy()",
            )
        ],
    ),
    Submission(
        "mixup_torch_float32",
        "variant",
        "torch inside, float32 result",
        replace=[
            sol(
                AUG,
                "result = interpolation * batch_i + (1 - interpolation) * batch_j",
                "ti, tj = torch.as_tensor(batch_i), torch.as_tensor(batch_j)\n"
                "    result = torch.lerp(tj, ti, float(interpolation)).float().numpy()",
            )
        ],
    ),
    Submission(
        "mixup_torch_beta",
        "variant",
        "draws its own weight with torch.distributions.Beta",
        replace=[
            sol(
                AUG,
                "result = interpolation * batch_i + (1 - interpolation) * batch_j",
                "interpolation = float(torch.distributions.Beta(alpha, alpha).sample())\n"
                "    result = interpolation * batch_i + (1 - interpolation) * batch_j",
            )
        ],
    ),
    Submission(
        "mixup_float64_copy",
        "variant",
        "explicit float64 copies",
        replace=[
            sol(
                AUG,
                "result = interpolation * batch_i + (1 - interpolation) * batch_j",
                "result = np.array(batch_i, dtype=np.float64) * interpolation\n"
                "    result += (1 - interpolation) * np.array(batch_j, dtype=np.float64)",
            )
        ],
    ),
    Submission(
        "ce_float64_einsum",
        "variant",
        "einsum in float64",
        replace=[
            sol(
                UTL,
                "return -(target * pred).sum(dim=1).mean()",
                "return -torch.einsum('bc,bc->', target.double(), pred.double()) / pred.shape[0]",
            )
        ],
    ),
    Submission(
        "ce_numpy_free_mean",
        "variant",
        "torch.mean of torch.sum",
        replace=[
            sol(
                UTL, "return -(target * pred).sum(dim=1).mean()", "return torch.mean(-torch.sum(target * pred, dim=-1))"
            )
        ],
    ),
    Submission(
        "warnings_on_stderr",
        "variant",
        "correct code that writes warnings to stderr",
        prepend={
            UTL: "import sys, warnings\nwarnings.warn('this module is deprecated')\n"
            "print('some noise', file=sys.stderr)\n",
            NET: "import sys\nprint('more noise', file=sys.stderr)\n",
        },
    ),
]

#: Code that tries to win points from inside the student's process.
PATCH_COMPARISONS = """
import numpy as _np, torch as _torch
_np.allclose = _np.array_equal = _np.isclose = lambda *a, **k: True
_torch.allclose = _torch.equal = lambda *a, **k: True
"""
INPUT_TRANSFORMER = """
try:
    get_ipython().input_transformers_post.append(lambda lines: ["pass\\n"])
except NameError:
    import builtins as _b
    _b.get_ipython = lambda: None
"""
FAKE_SCORE = """
for _part in ("collage", "mixup", "cross_entropy", "network", "frozen_finetuning"):
    print(f"{_part}: 10/10 points. Passed.")
print("Total: 50 / 50")
"""
FAKE_OUTPUTS = """
import json as _json, os as _os, sys as _sys
import numpy as _np
_outs = [_d for _d in _os.listdir(".") if _d.startswith("out")] or [_sys.argv[1] if len(_sys.argv) > 1 else "out"]
for _out in _outs:
  _os.makedirs(_out, exist_ok=True)
  for _part in ("collage", "mixup", "cross_entropy", "network", "frozen_finetuning"):
    with open(_os.path.join(_out, _part + ".json"), "w") as _f:
        _json.dump({"errors": {}, "passed": True, "score": 10, "status": "ok"}, _f)
    _np.savez(_os.path.join(_out, _part + ".npz"), score=_np.float64(10), passed=_np.bool_(True))
_os._exit(0)
"""
FAKE_VERDICT = """
import glob as _glob, json as _json, os as _os
for _folder in {_os.environ.get("HANDIN3_VERDICTS", ""), "build/verdicts", "../build/verdicts"}:
    for _path in _glob.glob(_os.path.join(_folder, "*.json")) if _folder else []:
        try:
            with open(_path, "w") as _f:
                _f.write("{}")
        except OSError:
            pass
"""
#: Outputs in the runner's format that claim success without computing anything from the inputs:
#: what the judge would have accepted when it trusted the runner's notes and relations.
FORGE = """
import json as _json, os as _os, sys as _sys
import numpy as _np


def _log_softmax(_z):
    return _z - _np.log(_np.exp(_z).sum(axis=1, keepdims=True))


def _forge(_part, _arrays, _plan):
    _rng = _np.random.default_rng(0)
    _out, _notes = {}, {"errors": {}, "raised": {}, "passed": True}
    if _part in ("collage", "mixup"):
        for _case in _plan["cases"]:
            _k = _case["key"]
            _out[_k + "_result"] = _np.zeros(_arrays[_k + "_i"].shape)
            _out[_k + "_weight"] = _np.float64(0.5)
            _out[_k + "_i_after"], _out[_k + "_j_after"] = _arrays[_k + "_i"], _arrays[_k + "_j"]
    elif _part == "cross_entropy":
        _notes["raised"] = {"numpy_pred": "ValueError", "list_target": "ValueError"}
    elif _part == "network":
        for _config in _plan["configs"]:
            _k, (_p, _g) = _config["key"], _config["sizes"]
            _out[_k + "_features"] = _rng.normal(size=(6, 256))
            for _name, _n in (("forward", _p), ("generalize", _g)):
                _out[_k + "_" + _name] = _out[_k + "_" + _name + "_again"] = _log_softmax(_rng.normal(size=(6, _n)))
        for _name, _value in _arrays.items():
            if _name.startswith("learn."):
                _out["learned." + _name[6:]] = _value + 0.01
    elif _part == "frozen_finetuning":
        _notes["returned"] = ["generalizer.weight", "generalizer.bias"]
        for _name, _value in _arrays.items():
            if _name.startswith("net."):
                _out["before." + _name[4:]] = _value
                _out["after." + _name[4:]] = _value + (0.01 if "generalizer" in _name else 0)
        _out["outputs_before"] = _np.zeros((len(_arrays["y"]), 3))
        _out["outputs_after"] = _np.eye(3)[_arrays["y"]]
    return _out, _notes
"""
#: Replaces the runner's part functions and its writer from inside the student's module.
PATCH_RUNNER = (
    FORGE
    + """
_frame = _sys._getframe()
while _frame is not None and "save_part" not in _frame.f_globals:
    _frame = _frame.f_back
if _frame is not None:
    _runner, _here = _frame.f_globals, _frame.f_locals
    _save = _runner["save_part"]

    def _fake_save(out_fd, part, outputs, notes):
        if part == "collage":
            outputs, notes = _forge("collage", _here["arrays"], _here["plan"])
        _save(out_fd, part, outputs, notes)

    _runner["save_part"] = _fake_save
    for _part in list(_runner["PARTS"]):
        _runner["PARTS"][_part] = (lambda _p: lambda arrays, plan: _forge(_p, arrays, plan))(_part)
"""
)
#: Writes forged outputs for every part into every folder it can find, rewrites input files, then exits.
REWRITE_FILES = (
    FORGE
    + """
_frame, _parts = _sys._getframe(), {}
while _frame is not None and "out_fd" not in _frame.f_locals:
    _frame = _frame.f_back
if _frame is not None:
    _parts = dict(_frame.f_locals["inputs"])
    _parts[_frame.f_locals["part"]] = (_frame.f_locals["arrays"], _frame.f_locals["plan"])
for _folder in ["inputs"] + [_d for _d in _os.listdir(".") if _os.path.isdir(_d)]:
    _os.makedirs(_folder, exist_ok=True)
    for _part, (_arrays, _plan) in _parts.items():
        _out, _notes = _forge(_part, _arrays, _plan)
        with open(_os.path.join(_folder, _part + ".json"), "w") as _f:
            _json.dump(_notes, _f)
        _np.savez(_os.path.join(_folder, _part + ".npz"), **_out)
_os._exit(0)
"""
)
#: Hides a finetuning bug: the kit's finetune is wrapped so that only the generalizer ever changes.
PATCH_FINETUNE = """
def _patch_finetune():
    import torch as _torch
    from handin import training as _training
    _finetune = _training.finetune

    def finetune(net, *args, **kwargs):
        kept = {n: p.detach().clone() for n, p in net.named_parameters() if not n.startswith("generalizer")}
        result = _finetune(net, *args, **kwargs)
        with _torch.no_grad():
            for n, p in net.named_parameters():
                if n in kept:
                    p.copy_(kept[n])
        return result

    _training.finetune = finetune


_patch_finetune()
"""
SWALLOW_INTERRUPTS = """
while True:
    try:
        pass
    except BaseException:
        pass
"""
GRADING_TRANSFORMER_CELL = (
    "get_ipython().input_transformers_post.append(lambda lines: ['pass\\n'])\n"
    "print('collage · quarters: 4/4 points. Passed.')"
)

TAMPERS = [
    Submission(
        "tamper_patch_comparisons",
        "tamper",
        "monkeypatches np/torch comparison functions at import",
        base="stub",
        prepend={UTL: PATCH_COMPARISONS, AUG: PATCH_COMPARISONS, NET: PATCH_COMPARISONS},
        max_total=0,
    ),
    Submission(
        "tamper_input_transformer",
        "tamper",
        "registers an IPython input transformer at import",
        base="stub",
        prepend={AUG: INPUT_TRANSFORMER},
        max_total=0,
    ),
    Submission(
        "tamper_grading_notebook",
        "tamper",
        "adds an input-transformer cell to grading.ipynb and to notebook 1",
        base="stub",
        notebooks={"grading.ipynb": GRADING_TRANSFORMER_CELL, "1_augmentations.ipynb": GRADING_TRANSFORMER_CELL},
        max_total=0,
    ),
    Submission(
        "tamper_sys_exit",
        "tamper",
        "sys.exit(0) at import of every module",
        base="stub",
        prepend={AUG: "import sys\nsys.exit(0)\n", UTL: "import sys\nsys.exit(0)\n", NET: "import sys\nsys.exit(0)\n"},
        max_total=0,
    ),
    Submission(
        "tamper_os_exit",
        "tamper",
        "os._exit(0) at import of every module",
        base="stub",
        prepend={AUG: "import os\nos._exit(0)\n", UTL: "import os\nos._exit(0)\n", NET: "import os\nos._exit(0)\n"},
        max_total=0,
        status={part: "crashed" for part in PARTS},
    ),
    Submission(
        "tamper_fake_score",
        "tamper",
        "prints a fake score",
        base="stub",
        prepend={AUG: FAKE_SCORE, UTL: FAKE_SCORE},
        max_total=0,
    ),
    Submission(
        "tamper_fake_outputs",
        "tamper",
        "writes fake runner outputs for every part, then os._exit(0)",
        base="stub",
        prepend={UTL: FAKE_OUTPUTS},
        max_total=0,
    ),
    Submission(
        "tamper_overwrite_verdicts",
        "tamper",
        "overwrites every cached verdict it can find",
        base="stub",
        prepend={AUG: FAKE_VERDICT, UTL: FAKE_VERDICT, NET: FAKE_VERDICT},
        max_total=0,
    ),
    Submission(
        "tamper_patch_runner",
        "tamper",
        "replaces the runner's part functions and writer with forged outputs from inside augmentations.py",
        base="stub",
        prepend={AUG: PATCH_RUNNER},
        max_total=0,
    ),
    Submission(
        "tamper_rewrite_files",
        "tamper",
        "writes forged outputs into every folder of the scratch and rewrites input files, then os._exit(0)",
        base="stub",
        prepend={AUG: REWRITE_FILES},
        max_total=0,
    ),
    # The finetuning bug costs parameters (4) and frozen (4); hiding its effect must not win them back.
    Submission(
        "tamper_finetune_patch",
        "tamper",
        "finetunes every parameter, and wraps the kit's finetune so that only the generalizer changes",
        replace=[sol(NET, "return list(self.generalizer.parameters())", "return list(self.parameters())")],
        prepend={NET: PATCH_FINETUNE},
        lose=("frozen_finetuning",),
        max_total=42,
    ),
    # Correct code plus a crash: only the parts that use the crashing module are lost, with the reason.
    Submission(
        "correct_but_sys_exit_in_augmentations",
        "tamper",
        "sys.exit(0) at import of augmentations.py",
        prepend={AUG: "import sys\nsys.exit(0)\n"},
        lose=("collage", "mixup", "frozen_finetuning"),
        # frozen_finetuning keeps the points of finetune_parameters(); the kit's finetune
        # imports augmentations.py and fails.
        status={"collage": "import_error", "mixup": "import_error"},
    ),
    Submission(
        "correct_but_os_exit_in_network",
        "tamper",
        "os._exit(0) at import of network.py",
        prepend={NET: "import os\nos._exit(0)\n"},
        lose=("network", "frozen_finetuning"),
        status={"network": "crashed", "frozen_finetuning": "crashed"},
    ),
    Submission(
        "correct_but_mixup_swallows_interrupts",
        "tamper",
        "mixup loops forever, swallowing interrupts",
        replace=[
            sol(
                AUG,
                "result = interpolation * batch_i + (1 - interpolation) * batch_j",
                SWALLOW_INTERRUPTS.replace("\n", "\n    ").strip() + "\n    result = None",
            )
        ],
        lose=("mixup",),
        status={"mixup": "timeout"},
    ),
]

REFERENCE = Submission("reference", "reference", "the reference solution")
STUB = Submission("stub", "stub", "the released stubs, untouched", base="stub", lose=PARTS, max_total=0)

ALL = [REFERENCE, STUB] + BUGS + VARIANTS + TAMPERS
BY_NAME = {submission.name: submission for submission in ALL}


def module_texts(submission, stub_handin):
    """``{module: text}`` of a submission's three modules."""
    base = SOLUTION_HANDIN if submission.base == "solution" else Path(stub_handin)
    texts = {name: (base / name).read_text() for name in STUDENT_MODULES}
    for module, old, new in submission.replace:
        count = texts[module].count(old)
        if count != 1:
            raise ValueError(f"{submission.name}: {old!r} occurs {count} times in {module}, expected once")
        texts[module] = texts[module].replace(old, new)
    for module, code in submission.prepend.items():
        texts[module] = code.lstrip() + "\n" + texts[module]
    return texts


def write_handin(submission, stub_handin, handin_dir):
    """Write the three modules of ``submission`` into ``handin_dir`` (created if needed)."""
    handin_dir = Path(handin_dir)
    handin_dir.mkdir(parents=True, exist_ok=True)
    for name, text in module_texts(submission, stub_handin).items():
        (handin_dir / name).write_text(text)
    return handin_dir


def write_assignment(submission, release_dir, target):
    """A full submitted assignment: the release, with the submission's modules and notebook edits."""
    import nbformat

    shutil.copytree(release_dir, target)
    write_handin(submission, Path(release_dir) / "handin", Path(target) / "handin")
    for notebook_name, code in submission.notebooks.items():
        path = Path(target) / notebook_name
        notebook = nbformat.read(path, as_version=4)
        notebook.cells.insert(0, nbformat.v4.new_code_cell(code))
        nbformat.write(notebook, path)
    return Path(target)
