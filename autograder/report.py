"""The student's report results: validated, then drawn by the kit's own code for the TA.

A student hands in ``results/experiment.json`` (written by ``handin.engine``) next to
``3_report.ipynb``. While grading, nothing of the student runs and no saved output is
trusted; instead:

1. :func:`load_results` reads the file as plain JSON under a size cap and a nesting-depth
   cap (checked on the bytes, before parsing, so no input can exhaust the recursion
   limit) and :func:`validate_records` checks every run against the schema of
   ``handin.engine`` (keys, types, finite numbers in range). Problems become
   :class:`ResultsProblem` with a message for the TA and the student.
2. :func:`select_runs` keeps the runs of one setting (the assignment's, or the quick one
   with a warning) and says which of the experiment's runs are missing.
3. :func:`report_outputs` draws every figure and the findings text of the report with
   ``solutions/handin/plotting.py`` and ``findings.py``, as notebook outputs
   (``image/png``, plain text) for the report cells that produce them
   (:data:`REPORT_CELLS`).

:class:`autograder.nbgrader_glue.preprocessors.RenderReport` puts them into the autograded notebook.
"""

import base64
import functools
import hashlib
import importlib.util
import io
import json
import math
import re
import sys
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from . import KIT_ROOT
from .files import write_atomically

RESULTS_FILE = "results/experiment.json"
#: A full results file with every curve is about 30 MB.
MAX_RESULTS_BYTES = 64 * 2**20
#: ``{"runs": [{"pretrain": {"train_loss": [...]}}]}`` is 4 deep.
MAX_DEPTH = 8
MAX_RUNS = 2000
#: Problems listed in a notice before "and N more".
MAX_LISTED = 5

DATASETS = ("mnist", "fashion-mnist", "emnist")
AUGMENTATIONS = ("none", "collage", "mixup")
HISTORY_KEYS = ("train_loss", "train_accuracy", "test_steps", "test_loss", "test_accuracy")
#: (lowest, highest) of every number field of a run record; ints must be ints.
INT_FIELDS = {
    "s": (1, 100_000),
    "seed": (0, 2**31),
    "pretrain_batches": (1, 10**6),
    "finetune_batches": (1, 10**6),
    "finetune_samples": (1, 100_000),
    "batch_size": (1, 100_000),
    "test_every": (0, 10**6),
    "curve_test_images": (0, 10**7),
}
FLOAT_FIELDS = {"lr": (1e-12, 100.0), "finetune_test_accuracy": (0.0, 1.0), "finetune_test_loss": (0.0, 1e6)}
LOSS_RANGE, ACCURACY_RANGE = (0.0, 1e6), (0.0, 1.0)
#: The experiment's pairs (D_P, D_F) as the report runs them.
EXPERIMENT_PAIRS = (("mnist", "mnist"), ("mnist", "fashion-mnist"), ("fashion-mnist", "mnist"))
#: The pair whose training curves the report shows.
CURVES_PAIR = ("mnist", "fashion-mnist")
CURVE_WINDOW = 50
QUICK_CURVE_WINDOW = 5  # the quick setting's runs are a few dozen batches long


class ResultsProblem(ValueError):
    """The results file is missing or not usable; the message is for the TA and the student."""


# ----------------------------------------------------------------------------- reading and validation


def nesting_depth(text, chunk=2**22):
    """The deepest nesting of ``[``/``{`` in JSON text, outside strings (no recursion, bounded memory)."""
    import numpy as np

    without_strings = re.sub(r'"[^"\\]*(?:\\.[^"\\]*)*"', '""', text).encode("utf-8")
    step = np.zeros(256, dtype=np.int8)
    step[[ord("["), ord("{")]], step[[ord("]"), ord("}")]] = 1, -1
    depth = deepest = 0
    for start in range(0, len(without_strings), chunk):
        levels = depth + np.cumsum(
            step[np.frombuffer(without_strings[start : start + chunk], dtype=np.uint8)], dtype=np.int64
        )
        if len(levels):
            depth, deepest = int(levels[-1]), max(deepest, int(levels.max()))
    return deepest


def _reject_constant(name):
    raise ValueError(f"{name} is not a number in plain JSON (did a training run diverge?)")


def load_results(path):
    """The parsed JSON of a results file, after the size, encoding and depth checks.

    Raises:
        ResultsProblem: the file is missing, too large, not UTF-8, too deeply nested or not plain JSON.
    """
    if not path.is_file():
        raise ResultsProblem(
            f"{RESULTS_FILE} was not handed in. Run the experiment in 3_report.ipynb and "
            f"hand in the results file it writes, next to handin/."
        )
    size = path.stat().st_size
    if size > MAX_RESULTS_BYTES:
        raise ResultsProblem(
            f"{RESULTS_FILE} is {size / 2**20:.0f} MB, more than the limit of {MAX_RESULTS_BYTES // 2**20} MB."
        )
    with open(path, "rb") as file:
        data = file.read(MAX_RESULTS_BYTES + 1)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ResultsProblem(f"{RESULTS_FILE} is not UTF-8 text ({error.reason} at byte {error.start}).") from None
    depth = nesting_depth(text)
    if depth > MAX_DEPTH:
        raise ResultsProblem(f"{RESULTS_FILE} is nested {depth} levels deep; a results file has {MAX_DEPTH} at most.")
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except ValueError as error:
        raise ResultsProblem(f"{RESULTS_FILE} is not a valid JSON results file: {error}") from None


def _number(value, low, high, integer=False):
    """Whether ``value`` is a JSON number (not a bool) within ``[low, high]``; an int if ``integer``."""
    if isinstance(value, bool) or not isinstance(value, int if integer else (int, float)):
        return False
    return math.isfinite(value) and low <= value <= high


def history_problems(history, n_batches):
    """What is wrong with one phase's history (``training.History`` as a dict); empty if nothing."""
    if not isinstance(history, dict) or set(history) != set(HISTORY_KEYS):
        return [f"must be an object with exactly the keys {', '.join(HISTORY_KEYS)}"]
    problems = []
    for key in HISTORY_KEYS:
        values = history[key]
        if not isinstance(values, list):
            problems.append(f"{key} must be a list")
            continue
        low, high = {"test_steps": (0, n_batches)}.get(key, ACCURACY_RANGE if "accuracy" in key else LOSS_RANGE)
        if not all(_number(value, low, high, integer=key == "test_steps") for value in values):
            problems.append(f"{key} must hold {'whole ' if key == 'test_steps' else ''}numbers in [{low}, {high}]")
    if not problems:
        if len(history["train_loss"]) != len(history["train_accuracy"]) or len(history["train_loss"]) not in (
            0,
            n_batches,
        ):
            problems.append(f"train_loss and train_accuracy must both hold {n_batches} values (or none)")
        if not len(history["test_steps"]) == len(history["test_loss"]) == len(history["test_accuracy"]) >= 1:
            problems.append("test_steps, test_loss and test_accuracy must have the same length (at least 1)")
    return problems


def record_problems(record, run_key_fields):
    """What is wrong with one run record; empty if it matches ``handin.engine.make_record``."""
    if not isinstance(record, dict):
        return ["is not an object"]
    required = set(run_key_fields) | {"finetune_test_accuracy", "finetune_test_loss", "pretrain", "finetune"}
    missing, extra = sorted(required - set(record)), sorted(set(record) - required)
    if missing or extra:
        return [f"missing keys {', '.join(missing) or '-'}; unknown keys: {len(extra)}"]
    problems = [
        f"{key} must be one of {', '.join(DATASETS)}"
        for key in ("pretrain_dataset", "finetune_dataset")
        if record[key] not in DATASETS
    ]
    if record["augmentation"] not in AUGMENTATIONS:
        problems.append(f"augmentation must be one of {', '.join(AUGMENTATIONS)}")
    problems += [
        f"{key} must be a whole number in [{low}, {high}]"
        for key, (low, high) in INT_FIELDS.items()
        if not _number(record[key], low, high, integer=True)
    ]
    problems += [
        f"{key} must be a number in [{low}, {high}]"
        for key, (low, high) in FLOAT_FIELDS.items()
        if not _number(record[key], low, high)
    ]
    if not problems:
        for phase in ("pretrain", "finetune"):
            problems += [
                f"{phase}: {problem}" for problem in history_problems(record[phase], record[f"{phase}_batches"])
            ]
    return problems


def validate_records(data, run_key_fields):
    """The run records of parsed results data.

    Raises:
        ResultsProblem: listing the first problems (run index and field) if any record is invalid.
    """
    if not isinstance(data, dict) or not isinstance(data.get("runs"), list):
        raise ResultsProblem(f'{RESULTS_FILE} is not a results file of handin.engine (no list "runs").')
    runs = data["runs"]
    if not 1 <= len(runs) <= MAX_RUNS:
        raise ResultsProblem(f"{RESULTS_FILE} holds {len(runs)} runs; a results file holds 1 to {MAX_RUNS}.")
    problems = [
        f"run {index}: {problem}"
        for index, record in enumerate(runs)
        for problem in record_problems(record, run_key_fields)
    ]
    if problems:
        listed = "; ".join(problems[:MAX_LISTED])
        more = f" (and {len(problems) - MAX_LISTED} more)" if len(problems) > MAX_LISTED else ""
        raise ResultsProblem(f"{RESULTS_FILE} does not match the results format of handin.engine: {listed}{more}.")
    return runs


# ----------------------------------------------------------------------------- choosing the runs


@dataclass
class Selection:
    """The runs the report shows, and what the TA and the student should know about them."""

    records: list
    notes: list = field(default_factory=list)
    quick: bool = False


def select_runs(records, kit):
    """The runs of one setting (the one with the most runs), first of every run key.

    Args:
        records: validated run records.
        kit: :class:`KitCode`.
    """
    setting_fields = [
        f.name
        for f in fields(kit.engine.RunKey)
        if f.name not in ("pretrain_dataset", "finetune_dataset", "augmentation", "s", "seed")
    ]
    by_setting = {}
    for record in records:
        by_setting.setdefault(tuple(record[name] for name in setting_fields), []).append(record)
    setting, chosen = max(by_setting.items(), key=lambda item: (len(item[1]), item[0]))
    unique = {kit.engine.record_key(record): record for record in reversed(chosen)}
    selection = Selection(records=[unique[key] for key in dict.fromkeys(map(kit.engine.record_key, chosen))])
    if len(by_setting) > 1:
        selection.notes.append(
            f"{RESULTS_FILE} mixes runs of {len(by_setting)} settings; the report uses the "
            f"{len(chosen)} runs of the most common one."
        )
    defaults = kit.engine.ExperimentConfig()
    settings = dict(zip(setting_fields, setting, strict=False))
    if (
        settings["pretrain_batches"] < defaults.pretrain_batches
        or settings["finetune_batches"] < defaults.finetune_batches
    ):
        selection.quick = True
        selection.notes.append(
            f"These results come from a shortened setting ({settings['pretrain_batches']} "
            f"pretraining and {settings['finetune_batches']} finetuning batches instead of "
            f"{defaults.pretrain_batches} and {defaults.finetune_batches}): the numbers are "
            "not meaningful for the report's questions."
        )
    expected = len(EXPERIMENT_PAIRS) * len(defaults.augmentations) * len(defaults.samples) * len(defaults.seeds)
    if len(selection.records) < expected:
        selection.notes.append(
            f"{RESULTS_FILE} holds {len(selection.records)} of the {expected} runs of the "
            "assignment's experiment; the figures and findings use those."
        )
    return selection


# ----------------------------------------------------------------------------- drawing with the kit's code


class KitCode:
    """The kit's own ``solutions/handin`` modules, imported under a private package name.

    The name keeps them apart from any ``handin`` package a student's folder could put
    on the path; nothing of the student is imported.
    """

    PACKAGE = "handin3_kit_solutions"

    def __init__(self, folder=KIT_ROOT / "solutions" / "handin"):
        import matplotlib

        matplotlib.use("Agg")
        if self.PACKAGE not in sys.modules:
            spec = importlib.util.spec_from_file_location(
                self.PACKAGE, folder / "__init__.py", submodule_search_locations=[str(folder)]
            )
            package = importlib.util.module_from_spec(spec)
            sys.modules[self.PACKAGE] = package
            spec.loader.exec_module(package)
        self.engine = importlib.import_module(f"{self.PACKAGE}.engine")
        self.findings = importlib.import_module(f"{self.PACKAGE}.findings")
        self.plotting = importlib.import_module(f"{self.PACKAGE}.plotting")
        self.training = importlib.import_module(f"{self.PACKAGE}.training")

    @property
    def run_key_fields(self):
        return [f.name for f in fields(self.engine.RunKey)]


def png_output(fig, dpi=80):
    """A notebook ``display_data`` output holding the figure as PNG; the figure is closed."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)  # the kit's figures are laid out tightly already
    plt.close(fig)
    return {
        "output_type": "display_data",
        "metadata": {},
        "data": {
            "image/png": base64.b64encode(buffer.getvalue()).decode("ascii"),
            "text/plain": f"<Figure: {fig.get_suptitle() or 'drawn by the grader'}>",
        },
    }


def text_output(text):
    return {"output_type": "stream", "name": "stdout", "text": text.rstrip("\n") + "\n"}


def records_outputs(kit, selection):
    lines = [f"{len(selection.records)} runs from {RESULTS_FILE} (drawn by the grader with the kit's code)"]
    return [text_output("\n".join(lines + [f"Note: {note}" for note in selection.notes]))]


def augmentation_outputs(kit, selection):
    return [
        text_output(
            "Not drawn while grading: these pictures show the student's own collage and mixup, "
            "and student code never runs in the grader. The code-part feedback shows both functions "
            "on a hidden input."
        )
    ]


def curves_outputs(kit, selection):
    records = [
        r for r in selection.records if (r["pretrain_dataset"], r["finetune_dataset"]) == CURVES_PAIR and r["seed"] == 0
    ]
    if not records:
        return [text_output(f"No runs of {kit.findings.pair_name(CURVES_PAIR)} with seed 0: no curves.")]
    outputs = []
    for s in sorted({min(r["s"] for r in records), max(r["s"] for r in records)}):
        for phase in ("pretrain", "finetune"):
            histories = {r["augmentation"]: kit.training.History(**r[phase]) for r in records if r["s"] == s}
            title = f"{phase}, {kit.findings.pair_name(CURVES_PAIR)}, s = {s}"
            window = QUICK_CURVE_WINDOW if selection.quick else CURVE_WINDOW
            fig = kit.plotting.plot_curves(histories, window=window, title=title)
            outputs.append(png_output(marked(kit, selection, fig)))
    return outputs


def accuracy_outputs(kit, selection):
    table = kit.findings.accuracy_table(selection.records)
    panels = {
        kit.findings.pair_name(pair): {
            a: {s: list(by_seed.values()) for s, by_seed in by_s.items()} for a, by_s in by_augmentation.items()
        }
        for pair, by_augmentation in table.items()
    }
    return [png_output(marked(kit, selection, kit.plotting.plot_accuracy_panels(panels)))]


def same_vs_cross_outputs(kit, selection):
    table = kit.findings.accuracy_table(selection.records)
    same_vs_cross = {
        kit.findings.pair_name(pair): {s: list(by_seed.values()) for s, by_seed in by_aug["none"].items()}
        for pair, by_aug in table.items()
        if "none" in by_aug
    }
    if not same_vs_cross:
        return [text_output("No runs without augmentation: no same-vs-cross figure.")]
    fig = kit.plotting.plot_accuracy_vs_samples(
        same_vs_cross, title="no augmentation: same vs cross dataset", legend_title="pretraining → finetuning"
    )
    return [png_output(marked(kit, selection, fig))]


def marked(kit, selection, fig):
    """``fig``, with the quick setting's banner across it when the runs are from the quick setting."""
    return kit.plotting.watermark(fig, kit.engine.QUICK_BANNER) if selection.quick else fig


def findings_outputs(kit, selection):
    return [text_output(kit.findings.report(selection.records))]


#: The report's code cells that produce output, found in the kit's notebook by a call they
#: make, and what the grader draws for each (in the order of the notebook).
REPORT_CELLS = {
    "report_records(": records_outputs,
    "show_augmentations(": augmentation_outputs,
    "plot_curves(": curves_outputs,
    "plot_accuracy_panels(": accuracy_outputs,
    "same_vs_cross": same_vs_cross_outputs,
    "findings.report(": findings_outputs,
}


def report_outputs(kit, selection):
    """``{marker of REPORT_CELLS: [notebook outputs]}`` drawn from the selected runs."""
    return {marker: [dict(output) for output in draw(kit, selection)] for marker, draw in REPORT_CELLS.items()}


@dataclass
class ReportResults:
    """What grading made of a student's results file: usable runs, or the problem."""

    status: str  # "ok", "missing" or "invalid"
    notes: list
    outputs: dict = field(default_factory=dict)
    quick: bool = False


def grade_results(path, kit=None):
    """Validate the results file at ``path`` and draw the report from it; never raises for bad input."""
    try:
        data = load_results(path)
        kit = kit or KitCode()  # imports torch: only once there is a file to draw
        records = validate_records(data, kit.run_key_fields)
    except ResultsProblem as problem:
        return ReportResults("missing" if not path.is_file() else "invalid", [str(problem)])
    selection = select_runs(records, kit)
    return ReportResults("ok", selection.notes, report_outputs(kit, selection), selection.quick)


#: The kit's code that decides what :func:`grade_results` draws (a change draws every report again).
DRAWING_SOURCES = (
    KIT_ROOT / "autograder" / "report.py",
    *(KIT_ROOT / "solutions" / "handin" / f"{name}.py" for name in ("engine", "findings", "plotting", "training")),
)


def drawing_key(path):
    """sha256 of the kit's drawing code and the results file's bytes; None when there is no regular file."""
    if not path.is_file() or path.is_symlink():
        return None
    digest = hashlib.sha256()
    for source in DRAWING_SOURCES:
        digest.update(source.read_bytes() + b"\0")
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(2**20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def drawn_results(path, drawn_dir, kit=None):
    """:func:`grade_results`, kept as JSON in ``drawn_dir`` (the grader's folder) by :func:`drawing_key`.

    The batch grader draws the reports of the class in parallel with the judges; nbgrader's
    ``RenderReport`` then only reads them. A file that is missing or unreadable is not kept.
    """
    key = drawing_key(path)
    if key is None:
        return grade_results(path, kit)
    kept = Path(drawn_dir) / f"{key}.json"
    try:
        return ReportResults(**json.loads(kept.read_text()))
    except (OSError, ValueError, TypeError):
        pass  # not drawn yet
    results = grade_results(path, kit)
    write_atomically(kept, json.dumps(asdict(results)))
    return results


@functools.cache
def kit_code():
    """The :class:`KitCode` of this process (one per drawing worker)."""
    return KitCode()


def draw_into(path, drawn_dir):
    """Draw the report of the results file at ``path`` into ``drawn_dir`` (a drawing worker's task)."""
    drawn_results(Path(path), drawn_dir, kit_code() if Path(path).is_file() else None)


def notice_markdown(results):
    """The markdown notice at the top of the graded report (text built by the kit; file names are fixed)."""
    if results.status == "ok" and not results.notes:
        return ""
    heading = {
        "ok": "Note about the report's results",
        "missing": "The report's results are missing",
        "invalid": "The report's results could not be used",
    }[results.status]
    consequence = (
        ""
        if results.status == "ok"
        else "\n\nThe report's figures and findings below are empty. The code parts are graded as usual; "
        "the written answers are graded by hand."
    )
    body = "\n".join(f"* {note}" for note in results.notes)
    from .sanitize import clean_markdown

    return clean_markdown(f"### ⚠ {heading}\n\n{body}{consequence}")
