"""The fast experiment engine matches the plain single-run loop of training.py, step for step.

Same seed, same batches, same augmentations, same dropout masks: the engine's losses,
accuracies and final parameters equal the plain loop's up to float rounding (a batched
convolution sums in another order, and max-pool ties can then pick another pixel), for
every augmentation, for pretraining and finetuning, and when it has to fall back from
cached features to running the convolutions.
"""

import json

import numpy as np
import pytest
import torch
from conftest import KIT_ROOT
from packages import load_module

engine = load_module(KIT_ROOT / "solutions" / "handin", "handin_solutions", "engine")
engine_group = load_module(KIT_ROOT / "solutions" / "handin", "handin_solutions", "engine_group")
findings = load_module(KIT_ROOT / "solutions" / "handin", "handin_solutions", "findings")
network = load_module(KIT_ROOT / "solutions" / "handin", "handin_solutions", "network")

#: Losses: the first steps agree to float rounding (float32, sums of a few hundred terms in another
#: order: about 1e-6); later ones may drift by max-pool ties, still far below any bug.
EARLY_STEPS, EARLY_TOLERANCE, TOLERANCE = 40, 1e-5, 5e-3
#: Accuracies count argmax agreements. Where two classes' log-probabilities are within float rounding,
#: the batched and the plain path can pick different classes on another CPU or BLAS build (seen on an
#: AMD EPYC: one of 8 train predictions flipped at one step). So accuracies may differ by at most one
#: prediction per evaluation, at no more than MAX_FLIPPED_FRACTION of the evaluations: a real bug in
#: the engine changes many predictions at most steps.
MAX_FLIPPED_FRACTION = 0.05
BATCH_SIZE = 8
TEST_IMAGES = 10 * 20  # the whole test set of conftest's tiny_data: 10 classes, 20 images each

CONFIG = engine.ExperimentConfig(
    pretrain_dataset="mnist",
    finetune_datasets=("mnist", "fashion-mnist"),
    samples=(1,),
    seeds=(3,),
    pretrain_batches=200,
    finetune_batches=100,
    test_every=50,
)


@pytest.fixture
def tiny_root(tiny_data, monkeypatch):
    monkeypatch.setenv("HANDIN3_DATA", str(tiny_data[0]))
    torch.set_num_threads(1)  # the same on every machine, and faster on a busy one
    return tiny_data[0]


@pytest.fixture(scope="module")
def engine_records(tiny_data, tmp_path_factory):
    """The engine's records of CONFIG (3 runs per finetuning dataset), trained once for the module."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HANDIN3_DATA", str(tiny_data[0]))
        torch.set_num_threads(1)
        path = tmp_path_factory.mktemp("engine") / "results.json"
        return path, engine.run_experiment(CONFIG, path, progress=False, workers=2)  # 3 runs in 2 parts


def assert_same_run(engine_record, plain_record):
    """Every curve of both phases agrees: losses to float rounding, accuracies but for near-tie flips."""
    for phase in ("pretrain", "finetune"):
        where = f"{engine_record['augmentation']} s={engine_record['s']} {phase}"
        fast, plain = engine_record[phase], plain_record[phase]
        assert fast["test_steps"] == plain["test_steps"], where
        for curve in ("train_loss", "test_loss"):
            assert_same_losses(np.array(fast[curve]), np.array(plain[curve]), f"{where} {curve}")
        assert_same_accuracies(
            np.array(fast["train_accuracy"]),
            np.array(plain["train_accuracy"]),
            1 / BATCH_SIZE,
            f"{where} train_accuracy",
        )
        assert_same_accuracies(
            np.array(fast["test_accuracy"]), np.array(plain["test_accuracy"]), 1 / TEST_IMAGES, f"{where} test_accuracy"
        )


def assert_same_losses(fast, plain, where):
    assert fast.shape == plain.shape, f"{where}: {fast.shape} != {plain.shape}"
    np.testing.assert_allclose(fast[:EARLY_STEPS], plain[:EARLY_STEPS], atol=EARLY_TOLERANCE, err_msg=where)
    np.testing.assert_allclose(fast, plain, atol=TOLERANCE, err_msg=where)


def assert_same_accuracies(fast, plain, one_prediction, where):
    """At most one prediction flipped per evaluation, at no more than MAX_FLIPPED_FRACTION of them."""
    assert fast.shape == plain.shape, f"{where}: {fast.shape} != {plain.shape}"
    flipped = np.abs(fast - plain) > one_prediction / 2
    assert np.all(np.abs(fast - plain) <= one_prediction * 1.001), (
        f"{where}: more than one prediction differs at evaluations {np.flatnonzero(flipped)[:10]}"
    )
    assert flipped.mean() <= MAX_FLIPPED_FRACTION, (
        f"{where}: predictions differ at {flipped.sum()} of {flipped.size} evaluations"
    )


@pytest.mark.parametrize("augmentation", ["none", "collage", "mixup"])
def test_engine_matches_the_plain_loop_step_for_step(engine_records, tiny_root, augmentation):
    _, records = engine_records
    checked = 0
    for record in records:
        if record["augmentation"] != augmentation:
            continue
        _, plain = engine.plain_run(engine.record_key(record), samples=CONFIG.samples)
        assert_same_run(record, plain)
        checked += 1
    assert checked == len(CONFIG.samples) * len(CONFIG.finetune_datasets)


def test_engine_final_parameters_match_the_plain_loop(tiny_root):
    """The trained weights themselves, not only the curves, for the hardest case (mixup, s = 1)."""
    key = engine.replace(CONFIG.run_keys()[0], augmentation="mixup", s=1)
    group = engine.RunGroup([key], CONFIG.samples)
    group.pretrain(key.pretrain_batches, _NoBar(), 0)
    pretrained = {name: value.clone() for name, value in group.runs.params.items()}
    finetune_set, finetune_test = engine.datasets_for(key, CONFIG.samples)[2:]
    group.finetune(finetune_set, finetune_test, key.finetune_batches, _NoBar(), 0)
    for name, value in group.runs.params.items():  # finetune() trained a copy
        assert torch.equal(value, pretrained[name]), name
    group._finetune(finetune_set, finetune_test, key.finetune_batches, _NoBar(), key.finetune_batches)

    plain_net, _ = engine.plain_run(key, samples=CONFIG.samples)
    for name, value in plain_net.named_parameters():
        torch.testing.assert_close(group.runs.params[name][0], value.detach(), atol=TOLERANCE, rtol=0, msg=name)
        if not name.startswith("generalizer"):  # finetuning leaves everything else alone
            assert torch.equal(group.runs.params[name], pretrained[name]), name


def test_the_engine_falls_back_when_features_cannot_be_cached(tiny_root, tmp_path, monkeypatch):
    """A network whose finetuning also trains the convolutions: no feature cache, still the plain loop's math."""

    class FinetuneEverything(network.Net):
        def finetune_parameters(self):
            return list(self.parameters())

    for builds_nets in (engine, engine_group):  # plain_run and RunGroup
        monkeypatch.setattr(builds_nets, "Net", FinetuneEverything)
    config = engine.ExperimentConfig(
        pretrain_dataset="mnist",
        finetune_datasets=("fashion-mnist",),
        augmentations=("collage",),
        samples=(4,),
        seeds=(1,),
        pretrain_batches=30,
        finetune_batches=60,
        test_every=30,
    )
    [record] = engine.run_experiment(config, tmp_path / "results.json", progress=False)
    net = FinetuneEverything(10, 10)
    assert not engine.features_are_cacheable(
        net, engine.finetune_parameter_names(net), torch.zeros(8, 1, 28, 28), torch.ones(8, 16, 1, 1)
    )
    _, plain = engine.plain_run(engine.record_key(record), samples=config.samples)
    assert_same_run(record, plain)


class ConvolvesByHand(network.Net):
    """Uses the convolutions' weights directly: GroupedRuns (which swaps the layers) cannot run it."""

    def apply_convs(self, x):
        x = torch.relu(torch.nn.functional.max_pool2d(torch.conv2d(x, self.conv1.weight, self.conv1.bias), 2))
        x = torch.relu(torch.nn.functional.max_pool2d(self.conv2_drop(self.conv2(x)), 2))
        return x.flatten(start_dim=1)


class SoftmaxOverTheBatch(network.Net):
    """A student's bug: log-softmax over the images, not the classes. Grouped, it would also mix the runs."""

    def forward(self, x):
        return torch.nn.functional.log_softmax(self.pretrainer(self.apply_convs(x)), dim=0)


@pytest.mark.parametrize("net_class", [ConvolvesByHand, SoftmaxOverTheBatch])
def test_networks_that_cannot_be_grouped_are_trained_with_vmap(tiny_root, tmp_path, monkeypatch, net_class):
    """GroupedRuns is used only after it gave vmap's first step; otherwise vmap trains, still the plain loop's math."""
    for builds_nets in (engine, engine_group):
        monkeypatch.setattr(builds_nets, "Net", net_class)
    config = engine.replace(
        CONFIG,
        finetune_datasets=("mnist",),
        augmentations=("mixup",),
        pretrain_batches=60,
        finetune_batches=30,
        test_every=30,
    )
    [key] = config.run_keys()
    group = engine.RunGroup([key, engine.replace(key, augmentation="none")], config.samples)
    history = group.pretrain(config.pretrain_batches, _NoBar(), config.test_every)[0]
    assert not any(group.runs.grouped_agrees.values())
    _, plain = engine.plain_run(key, samples=config.samples)
    np.testing.assert_allclose(history["train_loss"], plain["pretrain"]["train_loss"], atol=TOLERANCE)
    np.testing.assert_allclose(history["test_loss"], plain["pretrain"]["test_loss"], atol=TOLERANCE)


def test_the_solution_is_trained_grouped(tiny_root):
    """The solution's network runs as GroupedRuns in every phase (the fast path the other tests compare)."""
    key = CONFIG.run_keys()[0]
    group = engine.RunGroup([key, engine.replace(key, augmentation="collage")], CONFIG.samples)
    group.pretrain(20, _NoBar(), 10)
    finetune_set, finetune_test = engine.datasets_for(key, CONFIG.samples)[2:]
    group.finetune(finetune_set, finetune_test, 10, _NoBar(), 10)
    assert len(group.runs.grouped_agrees) == 3  # the pretraining step, the test evaluation, the features
    assert all(group.runs.grouped_agrees.values()), group.runs.grouped_agrees


def test_features_are_cached_for_the_solution(tiny_root):
    net = network.Net(10, 10)
    noise = torch.empty(8, 16, 1, 1).bernoulli_(0.5, generator=torch.Generator().manual_seed(0)) * 2
    assert engine.features_are_cacheable(net, engine.finetune_parameter_names(net), torch.randn(8, 1, 28, 28), noise)


def test_dropout_masks_are_the_ones_dropout2d_draws():
    torch.manual_seed(5)
    state = torch.get_rng_state()
    x = torch.randn(8, 16, 8, 8)
    torch.set_rng_state(state)
    expected = torch.nn.functional.dropout2d(x, 0.5, training=True)
    stream = torch.Generator()
    stream.set_state(state)
    noise = engine.dropout_noise(stream, 1, (8, 16, 1, 1), 0.5)[0]
    assert torch.equal(x * noise, expected)


def test_results_file_has_one_record_per_run_with_config_and_seed(engine_records):
    path, records = engine_records
    saved = json.loads(path.read_text())["runs"]
    assert len(saved) == len(CONFIG.run_keys()) == 6
    keys = {engine.record_key(record) for record in saved}
    assert keys == set(CONFIG.run_keys())
    for record in saved:
        assert record["seed"] == 3 and record["pretrain_batches"] == 200 and record["lr"] == 0.01
        assert 0 <= record["finetune_test_accuracy"] <= 1
        assert record["finetune"]["test_steps"] == [50, 100]


def test_a_rerun_skips_finished_runs_and_adds_only_new_ones(engine_records, tiny_root, tmp_path, monkeypatch):
    path, records = engine_records
    copy = tmp_path / "results.json"
    copy.write_text(path.read_text())

    def must_not_train(*args, **kwargs):
        raise AssertionError("a finished run was trained again")

    with monkeypatch.context() as patch:
        patch.setattr(engine, "RunGroup", must_not_train)
        assert engine.run_experiment(CONFIG, copy, progress=False) == records

    bigger = engine.replace(CONFIG, samples=(1, 2), pretrain_batches=200)
    engine.run_experiment(bigger, copy, progress=False)
    saved = json.loads(copy.read_text())["runs"]
    assert len(saved) == 6 + 6
    assert saved[:6] == json.loads(path.read_text())["runs"]


def test_a_broken_results_file_is_named_in_the_error(tmp_path):
    broken = tmp_path / "results.json"
    broken.write_text("{not json")
    with pytest.raises(ValueError, match="results.json is not a results file"):
        engine.load_results(broken)


def test_under_nbgrader_the_report_only_loads(engine_records, tmp_path, capsys):
    path, records = engine_records
    assert engine.report_records(CONFIG, path, grading=True) == records
    assert engine.report_records(CONFIG, tmp_path / "absent.json", grading=True) == []
    assert "holds 0 of the 6 runs" in capsys.readouterr().out
    assert not (tmp_path / "absent.json").exists()


class _NoBar:
    def update(self, n):
        pass


def test_the_command_line_trains_on_the_cpu_device(tiny_root, tmp_path):
    results = tmp_path / "results.json"
    arguments = ["--results", str(results), "--seeds", "3", "--samples", "1", "--augmentations", "collage"]
    arguments += ["--pretrain-batches", "10", "--finetune-batches", "5", "--workers", "1", "--device", "cpu"]
    assert engine.main(arguments) == 0
    [record] = json.loads(results.read_text())["runs"]
    assert record["augmentation"] == "collage" and record["pretrain_batches"] == 10


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present")
def test_asking_for_cuda_without_one_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        engine.main(["--results", str(tmp_path / "results.json"), "--device", "cuda"])
    assert exit_info.value.code == 2
    assert "no CUDA device" in capsys.readouterr().err
    with pytest.raises(ValueError, match="no CUDA device"):
        engine.run_experiment(CONFIG, tmp_path / "results.json", progress=False, device="cuda")
    assert not (tmp_path / "results.json").exists()
