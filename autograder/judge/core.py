"""Judge submissions: run the student's functions in a fresh child, compare its raw outputs here.

This process never imports student code. Per submission:

1. a scratch folder gets the kit's provided modules, the student's three modules,
   the hidden inputs (seeded by the course secret, :func:`.cache.course_seed`) and
   ``runner.py``;
2. the runner runs in a child (sandboxed by :func:`autograder.sandbox.run_isolated`),
   reads every input and deletes them before it imports student code, and writes one
   ``.npz`` + ``.json`` per part, in order, into an output folder whose random name it
   read from its inputs;
3. finished parts are loaded with ``allow_pickle=False``, their notes reduced to the
   fields and types the checks read, and checked here (:mod:`.checks`) against the
   judge's own inputs; if the child died, the part it was on scores 0 with the reason
   (``crashed``, ``timeout``, ``memory_limit``) and the parts after it get a fresh
   child (at most one child per part).

A part whose student function raised ``NotImplementedError`` (the untouched stub) gets
the status ``not_implemented`` and a reason naming the function and file to write.
:class:`autograder.sandbox.SandboxFault` (the sandbox itself failed) propagates out of
:func:`judge_submission` and :func:`judge_submissions`: it is the grader's fault, so it
never becomes a student's status and nothing is cached.
"""

import hashlib
import io
import json
import os
import secrets
import shutil
import stat
import sys
import tempfile
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from .. import KIT_ROOT, STUDENT_MODULES
from ..files import write_atomically
from ..sandbox import Limits, run_isolated
from . import cache, checks, hidden
from .pictures import picture_arrays
from .points import PARTS, POINTS, part_max

RUNNER = Path(__file__).resolve().parent / "runner.py"
PROVIDED_SOURCE = KIT_ROOT / "solutions" / "handin"
MAX_OUTPUT_BYTES = 64 * 2**20
#: The folder of the verdict cache that keeps the hidden inputs (:func:`stored_inputs`).
STORED_INPUTS = "hidden-inputs"
#: A correct submission needs about 5 s of CPU per child. CPU time catches busy loops even on a
#: loaded machine; the wall limit (for sleeping code) is generous so that load never costs points.
DEFAULT_LIMITS = Limits(wall_seconds=120, cpu_seconds=60, memory_bytes=3 * 2**30)

REASONS = {
    "crashed": "the process running your code ended (exit code {code}) during this part, "
    "e.g. sys.exit, os._exit or a crash in your module",
    "timeout": "your code was stopped at the time limit ({seconds:g} s of CPU time) or killed: an endless loop?",
    "memory_limit": "your code used more memory than allowed",
    "missing": "handin/{module} is missing from the submission",
    "unreadable": "{error}",
    "invalid_output": "the outputs of this part could not be read back: {error}",
    "import_error": "importing your module failed: {error}",
    "not_implemented": "write `{function}` in handin/{module}",
}
MODULES_OF_PART = {
    "collage": ("augmentations.py",),
    "mixup": ("augmentations.py",),
    "cross_entropy": ("utils.py",),
    "network": ("network.py",),
    "frozen_finetuning": ("network.py", "augmentations.py", "utils.py"),
}
#: The functions students write, by module; a part names the first one that is still a stub.
STUDENT_FUNCTIONS = {
    "collage": "augmentations.py",
    "mixup": "augmentations.py",
    "cross_entropy": "utils.py",
    "apply_convs": "network.py",
    "forward": "network.py",
    "generalize": "network.py",
    "finetune_parameters": "network.py",
}
#: The function a part names when the child's notes do not say which one was a stub.
MAIN_FUNCTION = {
    "collage": "collage",
    "mixup": "mixup",
    "cross_entropy": "cross_entropy",
    "network": "apply_convs",
    "frozen_finetuning": "finetune_parameters",
}


class HiddenInputs:
    """The seeded hidden inputs of every part, made once and shared by every submission.

    With the course seed (``seed`` None) they are made once per course and judge version and
    kept in the verdict cache (:func:`stored_inputs`): later runs only read them.

    Args:
        seed: the seed; default, the course seed of ``cache_dir`` (:func:`.cache.course_seed`).
        cache_dir: the verdict cache whose secret gives the seed (default ``$HANDIN3_VERDICTS``).
    """

    def __init__(self, seed=None, cache_dir=None):
        if seed is None:
            folder = Path(cache_dir or cache.verdicts_dir())
            self.seed = cache.course_seed(folder)
            self.parts = stored_inputs(folder, self.seed)
        else:
            self.seed = seed
            self.parts = hidden.make_inputs(seed)

    def write(self, folder, parts):
        folder.mkdir()
        for part in parts:
            arrays, plan = self.parts[part]
            np.savez(folder / f"{part}.npz", **arrays)
            (folder / f"{part}.json").write_text(json.dumps(plan))


def stored_inputs(folder, seed):
    """``hidden.make_inputs(seed)``, made once and kept in ``folder/hidden-inputs`` (``folder``: the verdict cache).

    Making them costs about 13 s of CPU (the ``learns`` problem is kept only once the reference
    network solves it), the same for every student of the course: like the course build, it is
    per-course setup. The files are named by a hash of the judge's version and the seed (an
    edited judge makes them again), private (0600) like the secret, and plain data: arrays
    read with ``allow_pickle=False`` and the plans as JSON (tuples come back as lists).
    """
    name = hashlib.sha256(f"{cache.judge_version()}:{seed}".encode()).hexdigest()[:16]
    folder = folder / STORED_INPUTS
    arrays_path, plans_path = folder / f"{name}.npz", folder / f"{name}.json"
    try:
        return read_stored_inputs(arrays_path, plans_path)
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):
        pass  # not made yet (or damaged): make them
    parts = hidden.make_inputs(seed)
    folder.mkdir(mode=0o700, exist_ok=True)
    arrays = io.BytesIO()
    np.savez(
        arrays,
        **{f"{part}/{key}": value for part, (part_arrays, _) in parts.items() for key, value in part_arrays.items()},
    )
    write_atomically(arrays_path, arrays.getvalue(), mode=0o600)
    plans = json.dumps({part: plan for part, (_, plan) in parts.items()})
    write_atomically(plans_path, plans, mode=0o600)  # written last: its presence means both are whole
    return read_stored_inputs(arrays_path, plans_path)


def read_stored_inputs(arrays_path, plans_path):
    """``{part: (arrays, plan)}`` from the files of :func:`stored_inputs`; private regular files of this user only."""
    for path in (plans_path, arrays_path):
        info = os.lstat(path)
        if not stat.S_ISREG(info.st_mode) or info.st_mode & 0o077 or info.st_uid != os.geteuid():
            raise ValueError(f"{path} is not a private regular file of this user")
    plans = json.loads(plans_path.read_text())
    parts = {part: ({}, plan) for part, plan in plans.items()}
    with np.load(arrays_path, allow_pickle=False) as data:
        for name in data.files:
            part, key = name.split("/", 1)
            parts[part][0][key] = data[name]
    if set(parts) != set(PARTS):
        raise ValueError(f"{plans_path} does not hold every part")
    return parts


def prepare_scratch(scratch, modules, inputs, parts):
    """Lay out the child's folder: ``handin/`` (provided + student modules), ``inputs/``, ``runner.py``."""
    handin = scratch / "handin"
    handin.mkdir()
    for path in PROVIDED_SOURCE.glob("*.py"):
        if path.name not in STUDENT_MODULES:
            shutil.copyfile(path, handin / path.name)
    for name, data in modules.items():
        if data is not None:
            (handin / name).write_bytes(data)
    shutil.copyfile(RUNNER, scratch / "runner.py")
    inputs.write(scratch / "inputs", parts)


def load_npz(path):
    """Arrays of a runner output file; refuses pickles, non-numeric arrays and oversized members."""
    with zipfile.ZipFile(path) as archive:
        if sum(member.file_size for member in archive.infolist()) > MAX_OUTPUT_BYTES:
            raise ValueError("the outputs are too large")
    with np.load(path, allow_pickle=False) as data:
        arrays = {key: data[key] for key in data.files}
    for key, value in arrays.items():
        if value.dtype.kind not in "biuf":
            raise ValueError(f"{key} is not numeric")
    return arrays


def clean_notes(notes):
    """Only the fields of the runner's notes that the checks read, with their types enforced.

    The notes come from the process that ran student code: anything else is dropped, and
    a field of the wrong type is treated as absent.
    """
    if not isinstance(notes, dict):
        raise ValueError("the notes are not a JSON object")

    def texts(value):
        """``{text: text or None}`` of a JSON object; anything else is treated as absent."""
        if not isinstance(value, dict):
            return {}
        return {str(key)[:100]: None if text is None else str(text)[:300] for key, text in value.items()}

    stubs = notes.get("not_implemented")
    cleaned = {
        "errors": texts(notes.get("errors")),
        "raised": texts(notes.get("raised")),
        "not_implemented": [str(name)[:100] for name in stubs[:20]] if isinstance(stubs, list) else [],
    }
    if isinstance(notes.get("returned"), int) and not isinstance(notes.get("returned"), bool):
        cleaned["returned"] = notes["returned"]
    if notes.get("import_error"):
        cleaned["import_error"] = str(notes["import_error"])[:300]
    return cleaned


def load_part(out_dir, part):
    """``(arrays, notes)`` of a finished part, or None if the runner did not finish it."""
    arrays_path, notes_path = out_dir / f"{part}.npz", out_dir / f"{part}.json"
    if not arrays_path.is_file() or arrays_path.is_symlink():
        return None
    if notes_path.is_symlink():
        raise ValueError("the notes are a symlink")
    with open(notes_path, encoding="utf-8", errors="replace") as handle:
        text = handle.read(1_000_001)
    if len(text) > 1_000_000:
        raise ValueError("the notes are too large")
    return load_npz(arrays_path), clean_notes(json.loads(text))


def failed_part(part, status, reason):
    checks_ = [
        {"name": name, "points": 0, "max": points, "passed": False, "message": reason}
        for name, points in POINTS[part].items()
    ]
    return {"score": 0, "max": part_max(part), "status": status, "reason": reason, "checks": checks_}


def graded_part(part, failures):
    checks_ = [
        {
            "name": name,
            "points": 0 if failures[name] else points,
            "max": points,
            "passed": not failures[name],
            "message": "; ".join(failures[name]) or "passed",
        }
        for name, points in POINTS[part].items()
    ]
    return {
        "score": sum(c["points"] for c in checks_),
        "max": part_max(part),
        "status": "ok",
        "reason": "",
        "checks": checks_,
    }


def not_implemented(part, notes):
    """The reason for a part whose student function raised NotImplementedError, or None."""
    if not notes["not_implemented"]:
        return None
    named = [name for name in notes["not_implemented"] if name in STUDENT_FUNCTIONS]
    function = named[0] if named else MAIN_FUNCTION[part]
    return REASONS["not_implemented"].format(function=function, module=STUDENT_FUNCTIONS[function])


def judge_part(part, inputs, arrays, notes):
    """The verdict of one part from the child's raw outputs (malformed outputs: ``invalid_output``)."""
    if notes.get("import_error"):
        return failed_part(part, "import_error", REASONS["import_error"].format(error=notes["import_error"]))
    part_inputs, plan = inputs.parts[part]
    try:
        verdict = graded_part(part, checks.CHECKS[part](part_inputs, plan, arrays, notes))
        picture = picture_arrays(part, part_inputs, arrays)
    except (ValueError, TypeError, IndexError, KeyError) as error:  # outputs of an unexpected type or shape
        return failed_part(
            part,
            "invalid_output",
            REASONS["invalid_output"].format(error=f"{type(error).__name__}: {str(error)[:200]}"),
        )
    if verdict["score"] < verdict["max"] and (reason := not_implemented(part, notes)):
        verdict.update(status="not_implemented", reason=reason)
    if picture is not None:
        verdict["picture"] = picture
    return verdict


def run_child(modules, inputs, parts, limits, sandbox):
    """Run the runner once on ``parts``; ``({part: (arrays, notes)}, RunResult)`` for the finished ones."""
    with tempfile.TemporaryDirectory(prefix="handin3-judge-") as folder:
        scratch = Path(folder)
        prepare_scratch(scratch, modules, inputs, parts)
        out_name = f"out-{secrets.token_hex(8)}"
        (scratch / "inputs" / "out_name").write_text(out_name)
        result = run_isolated([sys.executable, "-I", "runner.py", *parts], scratch, limits, sandbox=sandbox)
        finished = {}
        for part in parts:
            try:
                loaded = load_part(scratch / out_name, part)
            except (OSError, ValueError, RecursionError, zipfile.BadZipFile) as error:
                loaded = ("invalid", str(error)[:200])
            if loaded is None:
                break
            finished[part] = loaded
        return finished, result


def child_status(result):
    """Why a child stopped early: ``timeout`` (wall clock or CPU limit), ``memory_limit`` or ``crashed``."""
    if result.memory_exceeded:
        return "memory_limit"
    return "timeout" if result.timed_out else "crashed"


def judge_modules(modules, inputs, *, limits=DEFAULT_LIMITS, sandbox=True):
    """Verdicts of every part for one submission's module bytes (``{name: bytes or None}``)."""
    verdict = {}
    for part in PARTS:
        missing = [name for name in MODULES_OF_PART[part] if modules.get(name) is None]
        if missing:
            verdict[part] = failed_part(part, "missing", REASONS["missing"].format(module=missing[0]))
    remaining = [part for part in PARTS if part not in verdict]
    while remaining:
        finished, result = run_child(modules, inputs, remaining, limits, sandbox)
        for part in remaining[: len(finished)]:
            loaded = finished[part]
            if loaded[0] == "invalid":
                verdict[part] = failed_part(part, "invalid_output", REASONS["invalid_output"].format(error=loaded[1]))
            else:
                verdict[part] = judge_part(part, inputs, *loaded)
        if len(finished) < len(remaining):
            stopped = remaining[len(finished)]
            status = child_status(result)
            verdict[stopped] = failed_part(
                stopped, status, REASONS[status].format(code=result.returncode, seconds=limits.cpu_seconds)
            )
        remaining = remaining[len(finished) + 1 :]
    return {part: verdict[part] for part in PARTS}


def judge_submission(handin_dir, *, sandbox=True, seed=None, limits=DEFAULT_LIMITS, inputs=None, cache_dir=None):
    """Judge the student modules in ``handin_dir``; returns a JSON-able verdict.

    Args:
        handin_dir: folder with the student's ``augmentations.py``, ``network.py``, ``utils.py``
            (other files in it are ignored: the kit's provided modules are used).
        sandbox: run the child inside bubblewrap (False only for development).
        seed: seed of the hidden inputs; default, the course seed of ``cache_dir``.
        limits: the child's :class:`autograder.sandbox.Limits`.
        inputs: precomputed :class:`HiddenInputs` (shared across submissions); its seed wins.
        cache_dir: the verdict cache whose course secret gives the seed (default ``$HANDIN3_VERDICTS``).

    Returns:
        ``{"judge_version", "key", "score", "max_score", "parts": {part: {"score", "max",
        "status", "reason", "checks": [{"name", "points", "max", "passed", "message"}],
        "picture" (collage and mixup)}}}``.

    Raises:
        SandboxFault: the sandbox itself failed; nothing about the student is known.
    """
    inputs = inputs or HiddenInputs(seed, cache_dir)
    try:
        modules = cache.read_modules(handin_dir)
    except cache.SubmissionError as error:
        parts = {part: failed_part(part, "unreadable", str(error)) for part in PARTS}
    else:
        parts = judge_modules(modules, inputs, limits=limits, sandbox=sandbox)
    return {
        "judge_version": cache.judge_version(),
        "key": cache.verdict_key(handin_dir, inputs.seed),
        "score": sum(p["score"] for p in parts.values()),
        "max_score": sum(p["max"] for p in parts.values()),
        "parts": parts,
    }


def judge_submissions(handin_dirs, *, workers=2, sandbox=True, seed=None, limits=DEFAULT_LIMITS, cache_dir=None):
    """Judge many submissions, ``workers`` children at a time; store each verdict in the cache.

    Returns the verdicts in the order of ``handin_dirs``. Already cached verdicts are reused.
    The seed defaults to the course seed of ``cache_dir``. A :class:`SandboxFault` propagates
    (the verdicts finished before it stay cached; the faulty one is not stored).
    """
    inputs = HiddenInputs(seed, cache_dir)
    seed = inputs.seed

    def one(handin_dir):
        verdict = cache.load_cached(handin_dir, seed, cache_dir)
        if verdict is None:
            verdict = judge_submission(handin_dir, sandbox=sandbox, seed=seed, limits=limits, inputs=inputs)
            cache.store(verdict, handin_dir, seed, cache_dir)
        return verdict

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(one, handin_dirs))
