"""Judge a class on Dask distributed workers: ``python -m autograder grade ... --scheduler tcp://HOST:8786``.

One Dask task per student. The coordinator (the ``grade`` command) keeps everything that
is written once: the verdict cache, the one ``nbgrader autograde`` pass, the gradebook,
``grades.csv`` and the feedback. A worker only judges::

    coordinator                                      Dask worker (any host with the kit and bubblewrap)
    module bytes, seed, limits  --- JudgeTask -->    write the bytes to a private temp handin/
                                                     judge_submission(): the same sandboxed child,
                                                     limits and checks as a local run
    check the key, store it     <-- JSON text ---    {"verdict": {...}} or {"fault": "..."}

The seed of the hidden inputs travels, never the course secret: a worker rebuilds the
inputs from it (:class:`~autograder.judge.core.HiddenInputs`, once per seed and process).
No folder is shared: the coordinator reads the modules, the worker gets their bytes.

Why the result is safe to take back: student code runs only in the sandboxed child on
the worker, which has no network (its own net namespace), so it cannot reach the
scheduler or this process. The worker process never imports student code; it loads the
child's outputs without pickles (``allow_pickle=False``, numeric arrays only, typed
notes) and builds the verdict itself. What it returns is that verdict as JSON text,
which the coordinator parses with :func:`json.loads` and accepts only if its key (the
judge's version, the seed and the module bytes) is the one computed here.

Retries: a worker that dies mid-task is Dask's to handle; the scheduler gives the task to
another worker (up to its ``distributed.scheduler.allowed-failures``, then the student is
a ``grader_error``). An exception raised by the task (a worker's disk full, say) is retried
``RETRIES`` times. A :class:`~autograder.sandbox.SandboxFault` is not retried: it is the
student's ``grader_error``, as in a local run. Each future yields one result, so each
student is stored once and autograded once, whatever ran twice on the workers.
"""

import dataclasses
import functools
import json
import socket
import tempfile
import threading
import uuid
from pathlib import Path

from . import STUDENT_MODULES, sandbox
from .judge import cache
from .judge.points import PARTS

RETRIES = 2  # task exceptions (not worker deaths, not sandbox faults)
CONNECT_SECONDS = 30
WORKER_WAIT_SECONDS = 600  # a batch system may take minutes to start the first worker


class ClusterFault(RuntimeError):
    """A worker could not judge a student (its sandbox failed, or it runs another kit version)."""


# ----------------------------------------------------------------------------- the worker's side


def judge_task(task):
    """Judge one student's modules on a Dask worker; returns JSON text (never an object).

    Args:
        task: ``{"modules": {name: bytes or None}, "seed": int, "limits": Limits fields,
            "sandbox": bool, "allow_unenforced_limits": bool}``.

    Returns:
        ``'{"host": ..., "verdict": {...}}'``, or ``'{"host": ..., "fault": "..."}'`` when the
        sandbox cannot run or failed on this host (a grader error, never the student's status).
    """
    from .judge.core import judge_submission

    host = socket.gethostname()
    try:
        prepare_worker(task["sandbox"], task["allow_unenforced_limits"])
        with tempfile.TemporaryDirectory(prefix="handin3-dask-") as folder:
            handin = Path(folder) / "handin"
            handin.mkdir()
            for name in STUDENT_MODULES:
                if task["modules"].get(name) is not None:
                    (handin / name).write_bytes(task["modules"][name])
            verdict = judge_submission(
                handin,
                sandbox=task["sandbox"],
                inputs=hidden_inputs(task["seed"]),
                limits=sandbox.Limits(**task["limits"]),
            )
    except (sandbox.SandboxFault, sandbox.SandboxUnavailable) as error:
        return json.dumps({"host": host, "fault": f"the sandbox failed on {host}: {type(error).__name__}: {error}"})
    return json.dumps({"host": host, "verdict": verdict})


@functools.cache
def prepare_worker(use_sandbox, allow_unenforced_limits):
    """Once per worker process: the sandbox must run here with every limit enforced, and what a
    crashed grader on this host left behind is removed. Raises ``SandboxUnavailable`` otherwise."""
    if use_sandbox:
        sandbox.check_sandbox_support()
        sandbox.require_limits(allow_unenforced_limits)
        sandbox.cleanup_stale()


_inputs_lock = threading.Lock()


def hidden_inputs(seed):
    """The hidden inputs of ``seed``, made once per worker process (a few seconds each).

    One thread at a time: making them seeds torch's global generator, so two threads
    (``dask worker --nthreads 2``) making them at once would get other inputs than the seed's.
    """
    with _inputs_lock:
        return _hidden_inputs(seed)


@functools.lru_cache(maxsize=2)
def _hidden_inputs(seed):
    from .judge.core import HiddenInputs

    return HiddenInputs(seed=seed)


# ----------------------------------------------------------------------------- the coordinator's side


def judge_on_cluster(
    address, todo, handin_of, cache_dir, *, limits, use_sandbox, allow_unenforced_limits, progress, record_fault
):
    """Judge the submissions ``todo`` on the Dask cluster at ``address``; store each verdict on arrival.

    Args:
        address: the scheduler, e.g. ``tcp://10.0.0.5:8786``.
        todo: the collected submissions to judge.
        handin_of: ``submission -> folder`` with its normalized modules.
        cache_dir: the verdict cache (its course secret gives the seed).
        limits: the sandbox :class:`~autograder.sandbox.Limits` for every student's run.
        progress: a tqdm bar; ``record_fault(submission, message)`` records a grader error.

    Raises:
        ConnectionError: the scheduler cannot be reached, or no worker joined it in time.
    """
    from distributed import as_completed

    seed = cache.course_seed(cache_dir)
    client = connect(address)
    try:
        futures = {}
        for submission in todo:
            handin = handin_of(submission)
            try:
                modules = cache.read_modules(handin)
            except cache.SubmissionError:  # no code would run: judged here, every part "unreadable"
                cache.store(judge_unreadable(handin, seed), handin, seed, cache_dir)
                progress.update(1)
                continue
            task = {
                "modules": modules,
                "seed": seed,
                "limits": dataclasses.asdict(limits),
                "sandbox": use_sandbox,
                "allow_unenforced_limits": allow_unenforced_limits,
            }
            future = client.submit(
                judge_task, task, key=f"handin3-judge-{uuid.uuid4().hex}", pure=False, retries=RETRIES
            )
            futures[future] = submission
        for future in as_completed(futures, loop=client.loop):
            submission = futures[future]
            handin = handin_of(submission)
            try:
                cache.store(accept(future.result(), handin, seed), handin, seed, cache_dir)
            except Exception as error:  # noqa: BLE001 - the grader's fault, never the student's: record, go on
                kind = "" if isinstance(error, ClusterFault) else "the judge failed on a Dask worker: "
                record_fault(submission, f"{kind}{type(error).__name__}: {error}")
            future.release()
            progress.update(1)
            progress.set_postfix_str(submission.student_id)
    finally:
        client.close()


def connect(address):
    """A Dask client of ``address`` with at least one worker; ConnectionError saying what to start if not."""
    from distributed import Client

    try:
        client = Client(address, timeout=CONNECT_SECONDS, set_as_default=False)
    except (OSError, TimeoutError) as error:
        raise ConnectionError(
            f"cannot reach the Dask scheduler at {address} ({error}). Start one with "
            "`dask scheduler` on that host, or check the address and port"
        ) from None
    try:
        client.wait_for_workers(1, timeout=WORKER_WAIT_SECONDS)
    except TimeoutError:
        client.close()
        raise ConnectionError(
            f"no Dask worker joined {address} within {WORKER_WAIT_SECONDS} s. Start workers "
            f"with `dask worker {address}` on hosts with the kit and bubblewrap"
        ) from None
    return client


def accept(answer, handin, seed):
    """The verdict in a worker's JSON ``answer``, if it is the verdict of exactly these modules.

    Raises:
        ClusterFault: the worker reported a fault, or judged with another kit or seed.
    """
    reply = json.loads(answer) if isinstance(answer, str) else None
    if not isinstance(reply, dict):
        raise ClusterFault("a Dask worker returned something other than a verdict")
    if "fault" in reply:
        raise ClusterFault(str(reply["fault"]))
    verdict, host = reply.get("verdict"), reply.get("host")
    if (
        not isinstance(verdict, dict)
        or not isinstance(verdict.get("parts"), dict)
        or set(verdict["parts"]) != set(PARTS)
    ):
        raise ClusterFault(f"the Dask worker on {host} returned a malformed verdict")
    if verdict.get("key") != cache.verdict_key(handin, seed):
        raise ClusterFault(
            f"the Dask worker on {host} runs another version of the kit (judge version "
            f"{verdict.get('judge_version')}, here {cache.judge_version()}): install the same kit "
            "commit on every worker"
        )
    return verdict


def judge_unreadable(handin, seed):
    """The verdict of modules that cannot be read (a symlink, too large): no code runs, so it is made here."""
    from .judge.core import judge_submission

    return judge_submission(handin, sandbox=True, seed=seed)
