"""``python -m handin.engine --scheduler``: the sweep on a real Dask ``LocalCluster`` gives the local run's records.

The cluster has two worker processes (one thread each, loopback only) that import the
student's ``handin`` package from a copy of the kit, as workers started from a kit checkout
do. In that copy the first ``Net`` ever built waits on a ``sleep`` process with a unique
argument; the test kills the WORKER that runs it, Dask gives the task to another worker,
and the merged file must still hold every run exactly once. The file starts with some runs
of seed 0 (an interrupted sweep), which must be kept and not trained again. Every step waits
for an event (a process appears, the command ends), never for a timer.
"""

import json
import os
import shutil
import signal
import sys
import threading
import time
from dataclasses import asdict

import numpy as np
import pytest
import torch
from conftest import KIT_ROOT
from packages import load_module
from processes import dask_worker_pids, processes_running

distributed = pytest.importorskip("distributed")
engine = load_module(KIT_ROOT / "solutions" / "handin", "handin_solutions", "engine")
engine_dask = load_module(KIT_ROOT / "solutions" / "handin", "handin_solutions", "engine_dask")

CONFIG = engine.ExperimentConfig(
    pretrain_dataset="mnist",
    finetune_datasets=("mnist",),
    samples=(1, 2),
    seeds=(0, 1),
    pretrain_batches=20,
    finetune_batches=10,
    test_every=10,
)
#: The command line of CONFIG (``python -m handin.engine`` takes the same list).
COMMAND_OPTIONS = (
    "--pretrain mnist --finetune mnist --samples 1 2 --seeds 0 1 --pretrain-batches 20 --finetune-batches 10"
)
COMMAND_OPTIONS = [*COMMAND_OPTIONS.split(), "--test-every", "10"]
SLEEP_ARGUMENT = f"{80000 + os.getpid() % 9000}.5"  # seconds; unique to this test run
DEADLINE_SECONDS = 300  # a safety net against a hung run, not a measurement
#: Both sides run the same engine code, but a cluster's hosts may have other CPUs or BLAS
#: builds, whose sums round differently in the last bits; over these 30 steps that stays far
#: below 1e-4 (tests/test_engine.py sees 1e-6 between two summation orders). Accuracies count
#: argmax agreements, so a near tie may flip one prediction per evaluation.
LOSS_TOLERANCE = 1e-4
INIT_LINE = "        super().__init__()\n        self.conv1"
WAITS = (
    "        import os, subprocess\n"
    "        try:  # the first Net of the whole test waits until the test kills its worker\n"
    "            os.close(os.open({flag!r}, os.O_CREAT | os.O_EXCL))\n"
    "        except FileExistsError:\n"
    "            pass\n"
    "        else:\n"
    f"            subprocess.run(['sleep', '{SLEEP_ARGUMENT}'])\n"
)


@pytest.fixture(scope="module")
def data_root(tiny_data):
    return tiny_data[0]


@pytest.fixture(scope="module")
def local_records(data_root, tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HANDIN3_DATA", str(data_root))
        torch.set_num_threads(1)
        return engine.run_experiment(CONFIG, tmp_path_factory.mktemp("local") / "results.json", progress=False)


@pytest.fixture(scope="module")
def kit(tmp_path_factory):
    """A copy of the solutions' ``handin`` whose first ``Net`` waits (the flag file says it did)."""
    root = tmp_path_factory.mktemp("kit")
    shutil.copytree(KIT_ROOT / "solutions" / "handin", root / "handin", ignore=shutil.ignore_patterns("__pycache__"))
    network = root / "handin" / "network.py"
    source = network.read_text()
    assert source.count(INIT_LINE) == 1
    network.write_text(source.replace(INIT_LINE, WAITS.format(flag=str(root / "waited")) + INIT_LINE))
    return root


@pytest.fixture(scope="module")
def cluster(kit, data_root):
    """Two worker processes that import ``handin`` from ``kit`` and read ``data_root`` (also after a restart).

    The scheduler unpickles every task's function, so it imports ``handin`` too; the
    LocalCluster's scheduler runs in this process, which finds ``handin`` in ``kit`` while the
    cluster runs (the spawned workers start with this ``sys.path``).
    """
    sys.path.insert(0, str(kit))
    try:
        with distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
            memory_limit=0,
            env={"HANDIN3_DATA": str(data_root), "OMP_NUM_THREADS": "1"},
        ) as local_cluster:
            yield local_cluster
    finally:
        sys.path.remove(str(kit))
        for name in [name for name in sys.modules if name == "handin" or name.startswith("handin.")]:
            del sys.modules[name]


def parent(pid):
    with open(f"/proc/{pid}/stat") as stat:
        return int(stat.read().rsplit(")", 1)[1].split()[1])


def sweep(results, scheduler, on_sleep):
    """``python -m handin.engine --scheduler ...`` (its ``main``, in a thread of this process, which saves
    importing torch once more); calls ``on_sleep(pid)`` once for each new waiting ``sleep``."""
    from handin import engine as kit_engine  # the kit's copy: the cluster fixture put it on sys.path

    answer = []
    argv = ["--results", str(results), "--scheduler", scheduler, *COMMAND_OPTIONS]
    run = threading.Thread(target=lambda: answer.append(kit_engine.main(argv)), daemon=True)
    run.start()
    seen, started = set(), time.monotonic()
    while run.is_alive():
        assert time.monotonic() - started < DEADLINE_SECONDS, "the sweep hung"
        for pid in processes_running("sleep", SLEEP_ARGUMENT):
            if pid not in seen:
                seen.add(pid)
                on_sleep(pid)
        run.join(0.2)
    assert answer == [0], "the sweep failed (its traceback is above)"
    return seen


def assert_same_records(cluster_record, local_record):
    for phase in ("pretrain", "finetune"):
        where = f"{cluster_record['augmentation']} s={cluster_record['s']} seed={cluster_record['seed']} {phase}"
        ours, theirs = cluster_record[phase], local_record[phase]
        assert ours["test_steps"] == theirs["test_steps"], where
        for curve in ("train_loss", "test_loss"):
            np.testing.assert_allclose(ours[curve], theirs[curve], rtol=0, atol=LOSS_TOLERANCE, err_msg=where)
        for curve, one_prediction in (("train_accuracy", 1 / CONFIG.batch_size), ("test_accuracy", 1 / 200)):
            difference = np.abs(np.array(ours[curve]) - np.array(theirs[curve]))
            assert np.all(difference <= one_prediction * 1.001), f"{where} {curve}"


def test_the_sweep_on_a_cluster_equals_the_local_run_after_a_worker_dies(
    kit, cluster, local_records, tmp_path, monkeypatch
):
    monkeypatch.delenv("HANDIN3_QUICK", raising=False)
    results = tmp_path / "results.json"
    interrupted = [record for record in local_records if record["seed"] == 0 and record["augmentation"] == "none"]
    engine.save_results(results, interrupted)
    workers = dask_worker_pids(cluster)
    killed = []

    def kill_its_worker(pid):
        worker = parent(pid)
        assert worker in workers, "the waiting Net runs outside a worker"
        os.kill(worker, signal.SIGKILL)
        os.kill(pid, signal.SIGKILL)  # the orphaned sleep
        killed.append(worker)

    waited = sweep(results, cluster.scheduler_address, kill_its_worker)

    assert len(killed) == 1 and len(waited) == 1  # killed mid-task; the retry did not wait again
    assert (kit / "waited").exists()
    saved = json.loads(results.read_text())["runs"]
    keys = [engine.record_key(record) for record in saved]
    assert len(keys) == len(set(keys)) == len(CONFIG.run_keys())  # every run exactly once
    assert set(keys) == set(CONFIG.run_keys())
    assert saved[: len(interrupted)] == interrupted  # the finished runs were kept, not trained again
    by_key = dict(zip(keys, saved, strict=True))
    for local in local_records:
        assert_same_records(by_key[engine.record_key(local)], local)


def test_a_finished_sweep_does_not_contact_the_cluster(local_records, tmp_path):
    results = tmp_path / "results.json"
    engine.save_results(results, local_records)
    # nothing listens on port 9: connecting would fail
    assert engine.run_experiment(CONFIG, results, progress=False, scheduler="tcp://127.0.0.1:9") == local_records


def test_a_missing_dask_or_scheduler_is_a_clear_error(tmp_path, monkeypatch):
    with monkeypatch.context() as patch:
        patch.setitem(sys.modules, "distributed", None)  # as if it were not installed
        with pytest.raises(ImportError, match="needs the package dask.distributed"):
            engine.run_experiment(CONFIG, tmp_path / "results.json", scheduler="tcp://127.0.0.1:9")
    monkeypatch.setattr(engine_dask, "CONNECT_SECONDS", 2)
    with pytest.raises(ConnectionError, match="cannot reach the Dask scheduler at tcp://127.0.0.1:9"):
        engine.run_experiment(CONFIG, tmp_path / "results.json", scheduler="tcp://127.0.0.1:9")
    assert not (tmp_path / "results.json").exists()


def test_the_task_returns_plain_json_of_the_new_runs_only(local_records, data_root, monkeypatch):
    """What a worker sends back: JSON text, without the runs the client already has."""
    monkeypatch.setenv("HANDIN3_DATA", str(data_root))
    config = engine.replace(CONFIG, seeds=(1,), augmentations=("none", "mixup"), samples=(2,))
    seed_records = [record for record in local_records if engine.record_key(record) in set(config.run_keys())]
    answer = engine_dask.run_seed(asdict(config), seed_records[:1], True, engine_dask.code_fingerprint())
    assert isinstance(answer, str)
    new = json.loads(answer)
    assert [engine.record_key(record) for record in new] == [engine.record_key(r) for r in seed_records[1:]]
    for record, local in zip(new, seed_records[1:], strict=True):
        assert_same_records(record, local)


def test_a_worker_with_other_code_refuses_the_task():
    with pytest.raises(RuntimeError, match="runs other handin code than the client"):
        engine_dask.run_seed(asdict(CONFIG), [], True, "0" * 64)
