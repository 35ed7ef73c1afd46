"""The experiment on a Dask cluster: one task per seed, the results merged into one file here.

``python -m handin.engine ... --scheduler tcp://HOST:8786`` (or ``run_experiment(...,
scheduler=...)``) sends every seed that still has runs to do to the cluster's workers::

    this machine (the client)                          a Dask worker
    the seed's config, its finished runs  -- task -->  run_experiment() on that seed alone
    merge the records, save the file      <-- JSON --  the seed's new records (plain data)

A worker imports its own copy of the ``handin`` package (your ``Net``, ``collage``, ``mixup``,
``cross_entropy``) and reads the datasets from its own data folder, so every worker needs
the kit's folder with your code and the data (see ``docs/engine.md``); a worker whose
``handin/*.py`` differ from this machine's refuses the task. Nothing but plain JSON comes
back: no tensors, no objects.

The file is saved after every finished seed, so an interrupted sweep resumes where it
stopped. A worker that dies mid-task is Dask's to handle: the task runs again on another
worker, and a run already in the file is never added twice.
"""
import hashlib
import json
import socket
import tempfile
import threading
from dataclasses import asdict, replace
from pathlib import Path

from tqdm.auto import tqdm

from .engine import run_experiment
from .engine_config import ExperimentConfig
from .engine_results import load_results, record_key, save_results

#: How long to wait for the scheduler to answer, and for a first worker to join it.
CONNECT_SECONDS, WORKER_WAIT_SECONDS = 30, 600

# The engine seeds torch's and numpy's global generators (see RunGroup), so two seeds
# trained at once by threads of one worker process would mix their random streams.
_one_seed_at_a_time = threading.Lock()


def code_fingerprint():
    """A hash of every ``.py`` file of this ``handin`` package: equal on two hosts that run the same code."""
    digest = hashlib.sha256()
    for module in sorted(Path(__file__).parent.glob("*.py")):
        digest.update(module.name.encode() + b"\0" + module.read_bytes() + b"\0")
    return digest.hexdigest()


def run_seed(config_fields, finished, curves, fingerprint, workers=None, device="cpu"):
    """On a worker: the runs of one seed that ``finished`` does not hold, as JSON text.

    Args:
        config_fields: the fields of an ``ExperimentConfig`` with a single seed.
        finished: records of this seed that the client already has (they are skipped).
        curves: keep the per-batch training curves.
        fingerprint: the client's :func:`code_fingerprint`.
        workers, device: as for ``run_experiment`` (on this worker's host).

    Returns:
        JSON text of the list of new records.

    Raises:
        RuntimeError: this worker's ``handin`` code differs from the client's.
    """
    if fingerprint != code_fingerprint():
        raise RuntimeError(f"the Dask worker on {socket.gethostname()} runs other handin code than the client "
                           f"({Path(__file__).parent}): copy your handin/ folder there and restart the worker")
    done = {record_key(record) for record in finished}
    with _one_seed_at_a_time, tempfile.TemporaryDirectory(prefix="handin3-sweep-") as folder:
        path = Path(folder) / "results.json"
        save_results(path, finished)
        records = run_experiment(ExperimentConfig(**config_fields), path, progress=False, curves=curves,
                                 workers=workers, device=device)
    return json.dumps([record for record in records if record_key(record) not in done])


def run_on_cluster(config, results_path, scheduler, progress=True, curves=True, workers=None, device="cpu"):
    """``run_experiment`` on the Dask cluster at ``scheduler``: one task per seed with runs to do.

    Args:
        config: an ``ExperimentConfig``.
        results_path: JSON file of records; created if absent, extended and saved after each seed.
        scheduler: the scheduler's address, e.g. ``"tcp://10.0.0.5:8786"``.
        progress: show a tqdm bar over the seeds.
        curves: keep the per-batch training curves in the records.
        workers, device: passed to ``run_experiment`` on each worker.

    Returns:
        the records of ``config``'s runs, in ``config.run_keys()`` order.
    """
    distributed = import_distributed()
    records = load_results(results_path)
    done = {record_key(record) for record in records}
    wanted = config.run_keys()
    seeds = list(dict.fromkeys(key.seed for key in wanted if key not in done))
    config_keys = set(wanted)
    if seeds:
        client = connect(distributed, scheduler)
        try:
            futures, fingerprint = [], code_fingerprint()
            for seed in seeds:
                finished = [record for record in records if record_key(record) in config_keys and record["seed"] == seed]
                task = (asdict(replace(config, seeds=(seed,))), finished, curves, fingerprint, workers, device)
                futures.append(client.submit(run_seed, *task, pure=False))  # pure=False: a new task every time
            with tqdm(total=len(futures), desc=f"{len(futures)} seeds on {scheduler}", unit="seed",
                      disable=not progress) as bar:
                for future in distributed.as_completed(futures, loop=client.loop):
                    for record in json.loads(future.result()):
                        if record_key(record) not in done:  # each run once, whatever ran twice on the workers
                            records.append(record)
                            done.add(record_key(record))
                    save_results(results_path, records)
                    bar.update(1)
        finally:
            client.close()
    by_key = {record_key(record): record for record in records}
    return [by_key[key] for key in wanted]


def import_distributed():
    """The ``distributed`` package, imported only when a sweep runs on a cluster."""
    try:
        import distributed
    except ImportError as error:
        raise ImportError("running the experiment on a Dask cluster needs the package dask.distributed: "
                          "pip install 'dask[distributed]'") from error
    return distributed


def connect(distributed, scheduler):
    """A client of the scheduler with at least one worker; a ConnectionError saying what to start if not."""
    try:
        client = distributed.Client(scheduler, timeout=CONNECT_SECONDS, set_as_default=False)
    except (OSError, TimeoutError) as error:
        raise ConnectionError(f"cannot reach the Dask scheduler at {scheduler} ({error}); "
                              f"start one with `dask scheduler`") from None
    try:
        client.wait_for_workers(1, timeout=WORKER_WAIT_SECONDS)
    except TimeoutError:
        client.close()
        raise ConnectionError(f"no Dask worker joined {scheduler} within {WORKER_WAIT_SECONDS} s; "
                              f"start workers with `dask worker {scheduler}`") from None
    return client
