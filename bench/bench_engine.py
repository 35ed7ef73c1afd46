"""Benchmark: the experiment engine against the original course's pipeline, same steps, same machine.

    .venv/bin/python bench/bench_engine.py                      # the full 21-run sweep of one seed
    .venv/bin/python bench/bench_engine.py --pretrain-batches 500 --finetune-batches 100   # shorter

Both pipelines run in child processes, one after the other, so that each one's peak
memory (max RSS) is its own. The engine trains the 21 runs of one seed (3 augmentations
x 7 values of s) for the given number of batches and evaluates on the whole test set.
The original pipeline (``original_pipeline.py``) does the same runs one by one; since its
runs are independent and alike, it runs ``--original-runs`` of them (one per augmentation
by default) for the same number of batches and its time is scaled to 21 runs; pass
``--original-runs 21`` to time all of them. The printed ratio is original time / engine time;
the CPU-time ratio next to it changes less with the machine's load (the engine's CPU time
counts both of its threads).

A third child measures two floors. The eager floor: the pretraining arithmetic alone, one
``Net`` (shared weights) on batches of 21 x 8 for the same number of steps, with torch's
eager CPU kernels. The FLOP floor: the floating-point operations of the same work (every
run's pretraining and finetuning steps and its test evaluation, counted by
``torch.utils.flop_counter``) divided by the rate this machine sustains on a large
matrix product (sgemm), measured in the same child: no engine can be faster than that.

Data: ``$HANDIN3_DATA`` (MNIST in torchvision's layout), by default ``../shared/data``.
Targets (issues 5 and 13): the full sweep at least 15x faster than the original, under 2 minutes on 2 cores.
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

KIT_ROOT = Path(__file__).resolve().parent.parent
AUGMENTATIONS = ("none", "collage", "mixup")
SAMPLES = (1, 2, 4, 8, 16, 32, 64)
FLOOR_WARMUP, FLOOR_STEPS = 20, 500
TEST_IMAGES = 10000  # the MNIST test set, on which every run is evaluated
SGEMM_SIZE, SGEMM_SECONDS = 1024, 2.0


def peak_memory_mb():
    """This process's peak resident memory in MB (Linux reports ru_maxrss in KB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def time_engine(options):
    from handin import engine

    config = engine.ExperimentConfig(
        pretrain_dataset="mnist",
        finetune_datasets=("mnist",),
        seeds=(0,),
        pretrain_batches=options.pretrain_batches,
        finetune_batches=options.finetune_batches,
    )
    with tempfile.TemporaryDirectory() as folder:
        start, cpu_start = time.perf_counter(), time.process_time()
        records = engine.run_experiment(config, Path(folder) / "results.json", progress=False)
        seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    return {"seconds": seconds, "cpu_seconds": cpu_seconds, "runs": len(records), "peak_mb": peak_memory_mb()}


def time_original(options):
    sys.path.insert(0, str(KIT_ROOT / "bench"))
    import original_pipeline

    runs = [(augmentation, s) for s in SAMPLES for augmentation in AUGMENTATIONS]
    # Spread the timed runs over the augmentations and the values of s.
    chosen = runs[:: max(1, len(runs) // options.original_runs)][: options.original_runs]
    start, cpu_start = time.perf_counter(), time.process_time()
    for augmentation, s in chosen:
        original_pipeline.run("mnist", "mnist", augmentation, s, 0, options.pretrain_batches, options.finetune_batches)
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    return {
        "seconds": seconds * len(runs) / len(chosen),
        "cpu_seconds": cpu_seconds * len(runs) / len(chosen),
        "timed_seconds": seconds,
        "runs": len(chosen),
        "peak_mb": peak_memory_mb(),
    }


def time_floor(options):
    """The floors: the eager floor (pretraining alone, one shared ``Net``) and the FLOP floor.

    Eager floor: every run-step of the sweep convolves 8 images, so 21 runs need at least
    the compute of one ``Net`` on batches of 21 x 8 per step, whatever batches them. The
    time is measured on ``FLOOR_STEPS`` steps (at most) and scaled to ``--pretrain-batches``.

    FLOP floor: :func:`sweep_flops` at the sgemm rate of :func:`sgemm_gflops`.
    """
    import torch

    from handin.network import Net
    from handin.utils import cross_entropy, one_hot

    torch.manual_seed(0)
    net = Net(10, 10)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01)
    images, labels = torch.randn(21 * 8, 1, 28, 28), one_hot(torch.randint(0, 10, (21 * 8,)), 10)
    timed_steps = min(FLOOR_STEPS, options.pretrain_batches)
    for step in range(FLOOR_WARMUP + timed_steps):
        if step == FLOOR_WARMUP:
            start = time.perf_counter()
        optimizer.zero_grad()
        cross_entropy(net(images), labels).backward()
        optimizer.step()
    seconds = time.perf_counter() - start
    return {
        "seconds": seconds * options.pretrain_batches / timed_steps,
        "peak_mb": peak_memory_mb(),
        "flops": sweep_flops(options),
        "gflops": sgemm_gflops(),
    }


def sweep_flops(options):
    """Floating-point operations of the 21 runs: pretraining and finetuning steps (forward and
    backward, as autograd computes them) and the test evaluation (forward), batches of 8."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from handin.network import Net
    from handin.utils import cross_entropy, one_hot

    net = Net(10, 10)
    images, labels = torch.randn(8, 1, 28, 28), one_hot(torch.randint(0, 10, (8,)), 10)

    def flops(call, trainable):
        for parameter in net.parameters():
            parameter.requires_grad_(False)
        for parameter in trainable:
            parameter.requires_grad_(True)
        with FlopCounterMode(display=False) as counter:
            loss = cross_entropy(call(images), labels)
            if trainable:
                loss.backward()
        return counter.get_total_flops()

    per_run = (
        options.pretrain_batches * flops(net.forward, list(net.parameters()))
        + options.finetune_batches * flops(net.generalize, net.finetune_parameters())
        + TEST_IMAGES / 8 * flops(net.generalize, [])
    )
    return 21 * per_run


def sgemm_gflops():
    """The rate of a large float32 matrix product on all CPUs here, in GFLOP/s."""
    import torch

    torch.set_num_threads(os.cpu_count())
    a, b = torch.randn(SGEMM_SIZE, SGEMM_SIZE), torch.randn(SGEMM_SIZE, SGEMM_SIZE)
    torch.mm(a, b)
    products, start = 0, time.perf_counter()
    while time.perf_counter() - start < SGEMM_SECONDS:
        torch.mm(a, b)
        products += 1
    return products * 2 * SGEMM_SIZE**3 / (time.perf_counter() - start) / 1e9


def child(pipeline, options):
    """Run one pipeline in a fresh Python process and return what it measured."""
    command = [
        sys.executable,
        __file__,
        "--child",
        pipeline,
        "--pretrain-batches",
        str(options.pretrain_batches),
        "--finetune-batches",
        str(options.finetune_batches),
        "--original-runs",
        str(options.original_runs),
        "--threads",
        str(options.threads),
    ]
    env = {**os.environ, "PYTHONPATH": str(KIT_ROOT / "solutions")}
    env.setdefault("HANDIN3_DATA", str(KIT_ROOT.parent / "shared" / "data"))
    output = subprocess.run(command, env=env, check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pretrain-batches", type=int, default=5000)
    parser.add_argument("--finetune-batches", type=int, default=1000)
    parser.add_argument("--original-runs", type=int, default=3, help="original-pipeline runs to time (of 21)")
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        help="torch threads in both pipelines (0: torch's default); 1 is fairer on a busy machine",
    )
    parser.add_argument("--child", choices=("engine", "original", "floor"), help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    if options.child:
        if options.threads:
            import torch

            torch.set_num_threads(options.threads)
        measure = {"engine": time_engine, "original": time_original, "floor": time_floor}[options.child]
        print(json.dumps(measure(options)))
        return 0

    steps = options.pretrain_batches + options.finetune_batches
    print(
        f"21 runs (3 augmentations x 7 values of s) of {options.pretrain_batches} pretraining + "
        f"{options.finetune_batches} finetuning batches of 8, MNIST -> MNIST, full test set; "
        f"{os.cpu_count()} CPUs, torch threads {options.threads or 'default'}, "
        f"load average {os.getloadavg()[0]:.1f} at start"
    )
    original = child("original", options)
    print(
        f"original pipeline: {original['seconds']:8.1f} s for 21 runs (timed {original['runs']} runs, "
        f"{original['timed_seconds']:.1f} s), {1000 * original['seconds'] / (21 * steps):.2f} ms per run-step, "
        f"CPU {original['cpu_seconds']:.1f} s, peak memory {original['peak_mb']:.0f} MB"
    )
    fast = child("engine", options)
    print(
        f"engine:            {fast['seconds']:8.1f} s for {fast['runs']} runs, "
        f"{1000 * fast['seconds'] / (21 * steps):.2f} ms per run-step, CPU {fast['cpu_seconds']:.1f} s, "
        f"peak memory {fast['peak_mb']:.0f} MB"
    )
    print(
        f"ratio original / engine: {original['seconds'] / fast['seconds']:.1f}x "
        f"(target >= 15x); engine wall time {fast['seconds'] / 60:.1f} min (target < 2 min); "
        f"CPU time ratio {original['cpu_seconds'] / fast['cpu_seconds']:.1f}x (less sensitive to the machine's load)"
    )
    floor = child("floor", options)
    print(
        f"floor:             {floor['seconds']:8.1f} s: the pretraining arithmetic alone, one Net on batches of "
        f"21 x 8 for {options.pretrain_batches} steps: with torch's eager CPU kernels no engine gets far past "
        f"{original['seconds'] / floor['seconds']:.1f}x here"
    )
    flop_floor = floor["flops"] / (floor["gflops"] * 1e9)
    print(
        f"FLOP floor:        {flop_floor:8.1f} s: {floor['flops'] / 1e12:.2f} TFLOP (all steps and the test "
        f"evaluation of 21 runs) at {floor['gflops']:.0f} GFLOP/s (sgemm, measured now); the engine takes "
        f"{fast['seconds'] / flop_floor:.1f}x the FLOP floor, the original {original['seconds'] / flop_floor:.1f}x"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
