"""The fast experiment engine: many pretrain/finetune runs trained at once, with the same math as one run.

The experiment (the assignment's settings are the defaults of :class:`ExperimentConfig`):
for every augmentation and every ``s``, create a new ``Net``, pretrain it for 5000
batches of 8 on ``s`` samples per class of ``D_P``, finetune only
``finetune_parameters()`` for 1000 batches of 8 on 256 samples per class of ``D_F``,
and measure the finetune test accuracy on the whole ``D_F`` test set.

:func:`plain_run` does one run with the plain loop of ``training.py``.
:func:`run_experiment` does the same runs with the engine. Both use *your* ``Net``,
``augment`` (with your ``collage`` and ``mixup``) and ``cross_entropy``. The engine is
faster because it

1. decodes and normalizes each dataset once (``data.get_dataset``) and picks batches by index;
2. prepares the augmented batches of every run with the numpy half of ``augment``
   (``blending.blend_batch``, which calls your ``collage`` or ``mixup``) and that run's own
   numpy random state, exactly as the plain loop would, in a thread, while the runs
   train on the previous chunk of batches;
3. trains all runs of one seed together: ``torch.func.stack_module_state`` stacks
   their parameters, and one pass of your network computes every run's gradient: a copy
   of your network whose layers with weights work on all runs at once (grouped
   convolutions, ``engine_grouped.py``), after its first step gave the same gradients as
   ``vmap`` over ``grad`` of a ``functional_call`` of your network (else ``vmap`` it is);
   then an SGD step updates them. The runs are split into one part per CPU core, each
   trained in its own thread;
4. finetunes on cached features: the convolutions are frozen, so their output for
   each training and test image is computed once;
5. evaluates without gradients, all runs at once on batches of 50 images.

Randomness, and why a run matches the plain loop step for step. A run with seed
``seed`` draws from four sources, in this order, in both implementations:

* ``torch.manual_seed(seed)``, then ``Net(...)``: the initial weights;
* the torch random stream that continues after that: one dropout mask per step
  (``Dropout2d`` draws ``[B, C, 1, 1]`` Bernoulli values); the engine copies the
  stream's state into a per-run ``torch.Generator`` and draws the very same masks;
* ``np.random.seed(seed)``: the augmentation partners and mixup weights;
* ``torch.Generator().manual_seed(seed)``: the batch order (``training.batch_indices``).

So the engine sees the same batches, augmentations and dropout masks as the plain
loop. The only difference is floating-point rounding (a batched convolution sums
in another order), so losses and parameters agree to about 1e-5 rather than bit for bit;
``tests/test_engine.py`` checks this for every augmentation, for pretraining and finetuning.

Finetuning on cached features is exact, dropout included: dropout multiplies whole
channels of the second convolution by 0 or 2, and max-pool and relu commute with
multiplying by a non-negative number, so the features with dropout are the cached
features times the mask. The engine checks this on a probe batch with your network
and falls back to running the convolutions at every step when it does not hold.

Results go to a JSON file, one record per run with its config and seed; a rerun
skips the runs that are already there. Run ``python -m handin.engine --help``.

The engine in five files, each read on its own:

* ``engine_config.py``: :class:`ExperimentConfig`, the :class:`RunKey` of each run, and a run's data;
* ``engine_stacked.py``: your network for many runs at once (stacked parameters, vmapped SGD steps);
* ``engine_grouped.py``: the same as one network with the runs' channels side by side (faster);
* ``engine_group.py``: :class:`RunGroup`, the runs of one seed trained together;
* ``engine_results.py``: the results file (records, load and save).
* ``engine_dask.py``: the same experiment on a Dask cluster, one task per seed (``--scheduler``).

This file holds the plain reference run, the experiment loop and the command line, and
offers the names of the other files too (``engine.ExperimentConfig``, ...).
"""
import argparse
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import torch
from tqdm.auto import tqdm

from .data import N_CLASSES
from .engine_config import (
    QUICK_BANNER,
    QUICK_ENV,
    QUICK_SETTINGS,
    REPORT_SETTINGS,
    ExperimentConfig,
    RunKey,
    curve_test_set,
    datasets_for,
    default_config,
    load_data,
    report_experiments,
)
from .engine_group import RunGroup
from .engine_results import history_record, load_results, make_record, record_key, save_results
from .engine_stacked import FeatureHead, StackedRuns, dropout_noise, features_are_cacheable, finetune_parameter_names
from .network import Net
from .training import finetune, pretrain, seed_everything

#: The names this module offers: its own and those of the engine's other files, so that
#: ``from handin import engine`` is all a notebook needs.
__all__ = ["ExperimentConfig", "RunKey", "QUICK_ENV", "QUICK_SETTINGS", "REPORT_SETTINGS", "QUICK_BANNER",
           "GRADING_ENV", "default_config", "report_experiments", "load_data", "datasets_for", "curve_test_set",
           "StackedRuns", "FeatureHead", "dropout_noise", "features_are_cacheable", "finetune_parameter_names",
           "RunGroup", "history_record", "make_record", "load_results", "save_results", "record_key",
           "plain_run", "run_experiment", "checked_device", "report_records", "main"]

#: nbgrader sets this while it autogrades; the report then loads saved results instead of training.
GRADING_ENV = "NBGRADER_EXECUTION"


# ---------------------------------------------------------------------------------------------
# The reference: one run with the plain loop of training.py


def plain_run(key, samples=None, progress=False):
    """One run with the plain single-run loop of ``training.py``: the definition of a run.

    Args:
        key: the ``RunKey``.
        samples: all subset sizes of the experiment (the subsets depend on the seed only);
            defaults to ``(key.s,)``.
        progress: show tqdm bars.

    Returns:
        (net, record): the trained ``Net`` and the run's record (as :func:`run_experiment` writes).
    """
    pretrain_set, pretrain_test, finetune_set, finetune_test = datasets_for(key, samples or (key.s,))
    pretrain_test = curve_test_set(pretrain_test, key.curve_test_images)
    pretrain_classes, finetune_classes = N_CLASSES[key.pretrain_dataset], N_CLASSES[key.finetune_dataset]
    seed_everything(key.seed)
    net = Net(pretrain_classes, finetune_classes)
    options = dict(batch_size=key.batch_size, lr=key.lr, seed=key.seed, progress=progress)
    pretrain_history = pretrain(net, pretrain_set, pretrain_classes, key.augmentation, key.pretrain_batches,
                                test_set=pretrain_test if key.test_every else None,
                                test_every=key.test_every or key.pretrain_batches, **options)
    finetune_history = finetune(net, finetune_set, finetune_classes, key.finetune_batches, test_set=finetune_test,
                                test_every=key.test_every or key.finetune_batches, **options)
    return net, make_record(key, history_record(pretrain_history), history_record(finetune_history))


# ---------------------------------------------------------------------------------------------
# The experiment: groups of runs, results in a JSON file


def run_experiment(config, results_path, progress=True, curves=True, workers=None, device="cpu", scheduler=None):
    """Run every run of ``config`` that ``results_path`` does not hold yet, and save after each group.

    Runs of one seed are trained together; runs that differ only in ``D_F`` share
    their pretraining (see :class:`RunGroup`). The runs of a seed are split into
    ``workers`` parts, each trained in its own thread with one torch thread: on a
    busy machine that beats one part with several torch threads, whose threads wait
    for each other at every small operation.

    Args:
        config: an ``ExperimentConfig``.
        results_path: JSON file of records; created if absent, extended otherwise.
        progress: show one tqdm bar with an ETA over all steps.
        curves: keep the per-batch training curves in the records (they make the file larger).
        workers: parts trained in parallel; defaults to the number of CPUs (1 on a GPU). With 1,
            the group is trained in this thread with torch's thread setting.
        device: where the runs train, "cpu" or a CUDA device such as "cuda"; the records are
            the same (random draws stay on the CPU), up to float rounding.
        scheduler: a Dask scheduler's address (``"tcp://HOST:8786"``): run the seeds on its
            workers instead, one task per seed (see ``engine_dask.py``).

    Returns:
        the records of ``config``'s runs, in ``config.run_keys()`` order.

    Raises:
        ValueError: for a CUDA device when torch finds none.
    """
    if scheduler:
        from .engine_dask import run_on_cluster  # only then is dask.distributed needed

        return run_on_cluster(config, results_path, scheduler, progress=progress, curves=curves,
                              workers=workers, device=device)
    device = checked_device(device)
    workers = workers or ((os.cpu_count() or 1) if device.type == "cpu" else 1)
    records = load_results(results_path)
    done = {record_key(record) for record in records}
    groups = {}
    for key in config.run_keys():
        if key not in done:
            group = groups.setdefault((key.seed, N_CLASSES[key.finetune_dataset]), {})
            group.setdefault((key.augmentation, key.s), []).append(key)
    run_steps = sum(len(g) * (config.pretrain_batches + config.finetune_batches * len(
        {k.finetune_dataset for ks in g.values() for k in ks})) for g in groups.values())
    n_runs = sum(len(keys) for group in groups.values() for keys in group.values())
    experiment = f"{config.pretrain_dataset} → {' and '.join(config.finetune_datasets)}"
    # One bar for the whole experiment (a widget in a notebook, text in a terminal): it names the
    # experiment and the seed, shows the time left, and stays below the cell when done.
    with tqdm(total=run_steps, desc=f"{experiment}: {n_runs} runs", unit=" run-steps", unit_scale=True,
              disable=not progress, leave=True) as bar:
        for (seed, _), group in groups.items():
            pretrain_keys = [keys[0] for keys in group.values()]
            finetune_datasets = list(dict.fromkeys(k.finetune_dataset for keys in group.values() for k in keys))
            pretrain_histories, finetune_histories = train_in_parts(pretrain_keys, finetune_datasets, config, bar,
                                                                    workers, device, f"{experiment}, seed {seed}")
            for finetune_dataset in finetune_datasets:
                keys = [replace(key, finetune_dataset=finetune_dataset) for key in pretrain_keys]
                for key, pre, fine in zip(keys, pretrain_histories, finetune_histories[finetune_dataset]):
                    if key in done:
                        continue
                    record = make_record(key, pre, fine)
                    if not curves:
                        for phase in ("pretrain", "finetune"):
                            record[phase] = {**record[phase], "train_loss": [], "train_accuracy": []}
                    records.append(record)
                    done.add(key)
            save_results(results_path, records)
    by_key = {record_key(record): record for record in records}
    return [by_key[key] for key in config.run_keys()]


def checked_device(device):
    """``torch.device(device)``, after checking that torch can use it.

    Raises:
        ValueError: for a CUDA device when ``torch.cuda.is_available()`` is False, or an unknown name.
    """
    try:
        device = torch.device(device)
    except RuntimeError as error:
        raise ValueError(f"unknown device {device!r}: {error}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {str(device)!r}: torch finds no CUDA device here (torch.cuda.is_available() "
                         f"is False); use --device cpu")
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"device {str(device)!r}: the engine runs on cpu or cuda")
    return device


def train_in_parts(keys, finetune_datasets, config, progress, workers, device, label):
    """Pretrain the runs ``keys`` (one seed) and finetune them on every ``D_F``, in ``workers`` parts at once.

    Every part is a :class:`RunGroup` of its own. They are built one after the other here
    (building seeds the global random generators), then trained in parallel threads.

    Args:
        label: what the progress bar shows before the phase ("mnist → mnist, seed 0").

    Returns:
        (pretrain histories, {finetune dataset: finetune histories}), one history per key, in order.
    """
    n_parts = max(1, min(workers, len(keys)))
    parts = [RunGroup(keys[part::n_parts], config.samples, device) for part in range(n_parts)]

    def train(runs):
        if n_parts > 1:
            torch.set_num_threads(1)
        progress.set_description(f"{label}: pretraining {len(keys)} runs")
        pretrain_histories = runs.pretrain(config.pretrain_batches, progress, config.test_every)
        finetune_histories = {}
        for finetune_dataset in finetune_datasets:
            progress.set_description(f"{label}: finetuning on {finetune_dataset}")
            _, _, finetune_set, finetune_test = datasets_for(replace(runs.keys[0], finetune_dataset=finetune_dataset),
                                                             config.samples)
            finetune_histories[finetune_dataset] = runs.finetune(finetune_set, finetune_test,
                                                                 config.finetune_batches, progress, config.test_every)
        return pretrain_histories, finetune_histories

    if n_parts == 1:
        trained = [train(parts[0])]
    else:
        threads = torch.get_num_threads()
        try:
            with ThreadPoolExecutor(max_workers=n_parts) as pool:
                trained = list(pool.map(train, parts))
        finally:
            torch.set_num_threads(threads)  # the parts set it to 1 for the whole process
    pretrain_histories, finetune_histories = {}, {dataset: {} for dataset in finetune_datasets}
    for runs, (pre, fine) in zip(parts, trained):
        pretrain_histories.update(zip(runs.keys, pre))
        for dataset in finetune_datasets:
            finetune_histories[dataset].update(zip(runs.keys, fine[dataset]))
    return ([pretrain_histories[key] for key in keys],
            {dataset: [histories[key] for key in keys] for dataset, histories in finetune_histories.items()})


def report_records(configs, results_path, grading=None):
    """The records the report shows: run what is missing, or, under nbgrader, only load them.

    Args:
        configs: one ``ExperimentConfig`` or a list of them.
        results_path: the results file (hand it in with the report).
        grading: load only, never train; defaults to whether ``$NBGRADER_EXECUTION`` is set.

    Returns:
        list of records; under grading, those of ``configs`` found in the file (maybe none),
        after printing a note about what is missing.
    """
    configs = [configs] if isinstance(configs, ExperimentConfig) else list(configs)
    grading = GRADING_ENV in os.environ if grading is None else grading
    if not grading:
        return [record for config in configs for record in run_experiment(config, results_path)]
    wanted = [key for config in configs for key in config.run_keys()]
    try:
        saved = {record_key(record): record for record in load_results(results_path)}
    except ValueError as error:
        print(f"Note: {error}. The figures below stay empty.")
        return []
    records = [saved[key] for key in wanted if key in saved]
    if len(records) < len(wanted):
        print(f"Note: {results_path} holds {len(records)} of the {len(wanted)} runs of this experiment; "
              f"the figures and findings below use those. (While grading, the report loads saved "
              f"results instead of training; run the notebook yourself and hand in that file.)")
    return records


def main(argv=None):
    """``python -m handin.engine``: run the experiment and save the results."""
    parser = argparse.ArgumentParser(prog="python -m handin.engine", description=__doc__.split("\n\n")[0])
    defaults = default_config()
    parser.add_argument("--results", default="results.json", help="JSON file of run records (rerun skips done runs)")
    parser.add_argument("--pretrain", default=defaults.pretrain_dataset, help="D_P: mnist, fashion-mnist or emnist")
    parser.add_argument("--finetune", nargs="+", default=list(defaults.finetune_datasets),
                        help="one or more D_F: mnist, fashion-mnist or emnist (they share the pretraining)")
    parser.add_argument("--seeds", type=int, nargs="+", default=list(defaults.seeds))
    parser.add_argument("--samples", type=int, nargs="+", default=list(defaults.samples))
    parser.add_argument("--augmentations", nargs="+", default=list(defaults.augmentations))
    parser.add_argument("--pretrain-batches", type=int, default=defaults.pretrain_batches)
    parser.add_argument("--finetune-batches", type=int, default=defaults.finetune_batches)
    parser.add_argument("--test-every", type=int, default=defaults.test_every,
                        help="test evaluation every N batches for the curves (0: only at the end)")
    parser.add_argument("--curve-test-images", type=int, default=defaults.curve_test_images,
                        help="test images for the pretraining curve (0: all)")
    parser.add_argument("--no-curves", action="store_true", help="do not keep per-batch training curves")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch threads (0: torch's default); 1 is faster on a busy machine")
    parser.add_argument("--workers", type=int, default=0,
                        help="parts of each seed's runs trained in parallel, one torch thread each (0: the CPU count)")
    parser.add_argument("--device", default="cpu", help="where the runs train: cpu (default) or cuda")
    parser.add_argument("--scheduler", help="a Dask scheduler, tcp://HOST:8786: run the seeds on its workers")
    options = parser.parse_args(argv)
    try:
        checked_device(options.device)
    except ValueError as error:
        parser.error(str(error))
    config = replace(defaults, pretrain_dataset=options.pretrain, finetune_datasets=tuple(options.finetune),
                     seeds=tuple(options.seeds), samples=tuple(options.samples),
                     augmentations=tuple(options.augmentations), pretrain_batches=options.pretrain_batches,
                     finetune_batches=options.finetune_batches, test_every=options.test_every,
                     curve_test_images=options.curve_test_images)
    if options.threads:
        torch.set_num_threads(options.threads)
    records = run_experiment(config, options.results, curves=not options.no_curves, workers=options.workers,
                             device=options.device, scheduler=options.scheduler)
    print(f"{len(records)} runs in {options.results}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
