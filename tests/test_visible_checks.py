"""The visible self-checks: solutions pass, untouched stubs say "not implemented", bugs get a precise message."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import KIT_ROOT
from packages import load_package

SOLUTIONS = KIT_ROOT / "solutions" / "handin"
RELEASE = KIT_ROOT / "handin"


@pytest.fixture(scope="module")
def solution():
    """The solutions package, loaded as ``handin_solutions``."""
    package = load_package(SOLUTIONS, "handin_solutions")
    from handin_solutions import augmentations, blending, checks, network, utils  # noqa: F401

    return package


@pytest.fixture(scope="module")
def stubs():
    """The generated release (untouched stubs), loaded as ``handin_release``."""
    if not (RELEASE / "checks.py").is_file():
        pytest.fail(f"{RELEASE} has no generated release; run `make release`")
    package = load_package(RELEASE, "handin_release")
    from handin_release import checks  # noqa: F401

    return package


def test_solutions_pass_every_visible_check(solution, capsys):
    solution.checks.run()
    printed = capsys.readouterr().out.splitlines()
    assert printed == [f"✓ {name}: all checks passed" for name in solution.checks.CHECKS]


def test_checks_are_deterministic_and_leave_global_random_state_alone(solution):
    np.random.seed(123)
    torch.manual_seed(123)
    expected_numpy, expected_torch = np.random.rand(), torch.rand(1)
    np.random.seed(123)
    torch.manual_seed(123)
    first = solution.checks.check_training(n_batches=40)
    assert first == solution.checks.check_training(n_batches=40)
    solution.checks.check_mixup()
    assert np.random.rand() == expected_numpy and torch.equal(torch.rand(1), expected_torch)


@pytest.mark.parametrize(
    "check, function, file_name",
    [
        ("collage", "collage", "augmentations.py"),
        ("mixup", "mixup", "augmentations.py"),
        ("cross_entropy", "cross_entropy", "utils.py"),
        ("network", "apply_convs", "network.py"),
    ],
)
def test_untouched_stubs_fail_with_a_not_implemented_message(stubs, check, function, file_name):
    with pytest.raises(stubs.checks.NotImplementedYet) as error:
        stubs.checks.CHECKS[check]()
    assert str(error.value) == (f"{function} is not implemented yet: fill in the YOUR CODE block in handin/{file_name}")


def test_training_check_on_stubs_names_the_missing_modules(stubs, capsys):
    with pytest.raises(AssertionError) as error:
        stubs.checks.run()
    assert "training needs every YOUR CODE block of handin/network.py and handin/utils.py" in str(error.value)
    printed = capsys.readouterr().out
    assert "✓" not in printed and printed.count("✗") == len(stubs.checks.CHECKS)


# Buggy implementations a student might write, each with the message its check must give.


def collage_swapped(batch_i, batch_j):
    half = batch_i.shape[-1] // 2
    result = batch_j.astype(float)
    result[:, :half, :half] = batch_i[:, :half, :half]
    result[:, half:, half:] = batch_i[:, half:, half:]
    return result, 0.5


def collage_quarter_weight(batch_i, batch_j):
    result, _ = collage_swapped(batch_j, batch_i)
    return result, 0.25


def collage_in_place(batch_i, batch_j):
    half = batch_i.shape[-1] // 2
    batch_i[:, :half, :half] = batch_j[:, :half, :half]
    batch_i[:, half:, half:] = batch_j[:, half:, half:]
    return batch_i, 0.5


def collage_without_weight(batch_i, batch_j):
    return collage_swapped(batch_j, batch_i)[0]


def mixup_fixed_weight(batch_i, batch_j, alpha=0.3):
    np.random.beta(alpha, alpha)
    return 0.5 * batch_i + 0.5 * batch_j, 0.5


def mixup_swapped(batch_i, batch_j, alpha=0.3):
    interpolation = np.random.beta(alpha, alpha)
    return (1 - interpolation) * batch_i + interpolation * batch_j, interpolation


def cross_entropy_sum(pred, target):
    return -(target * pred).sum()


def cross_entropy_of_probabilities(pred, target):
    return -(target * pred.exp()).sum(dim=1).mean()


def cross_entropy_detached(pred, target):
    return -(target * pred).sum(dim=1).mean().detach()


def apply_convs_without_relu(self, x):
    x = F.max_pool2d(self.conv1(x), 2)
    return F.max_pool2d(self.conv2_drop(self.conv2(x)), 2).flatten(start_dim=1)


def forward_logits(self, x):
    return self.pretrainer(self.apply_convs(x))


def forward_wrong_head(self, x):
    return F.log_softmax(self.generalizer(self.apply_convs(x)), dim=1)


def generalize_wrong_head(self, x):
    return F.log_softmax(self.pretrainer(self.apply_convs(x)), dim=1)


def finetune_everything(self):
    return list(self.parameters())


def finetune_weight_only(self):
    return [self.generalizer.weight]


@pytest.mark.parametrize(
    "owner, name, buggy, check, message",
    [
        ("augmentations", "collage", collage_swapped, "collage", "the top-left quarter should come from batch_j"),
        ("augmentations", "collage", collage_quarter_weight, "collage", "interpolation should be 0.5"),
        ("augmentations", "collage", collage_in_place, "collage", "collage modified batch_i in place"),
        ("augmentations", "collage", collage_without_weight, "collage", "should return a pair (result, interpolation)"),
        (
            "augmentations",
            "mixup",
            mixup_fixed_weight,
            "mixup",
            "interpolation should be drawn from Beta(alpha, alpha)",
        ),
        (
            "augmentations",
            "mixup",
            mixup_swapped,
            "mixup",
            "result should be interpolation * batch_i + (1 - interpolation)",
        ),
        ("utils", "cross_entropy", cross_entropy_sum, "cross_entropy", "did you sum over the batch"),
        (
            "utils",
            "cross_entropy",
            cross_entropy_of_probabilities,
            "cross_entropy",
            "should equal F.nll_loss for one-hot",
        ),
        ("utils", "cross_entropy", cross_entropy_detached, "cross_entropy", "must stay differentiable"),
        ("network.Net", "apply_convs", apply_convs_without_relu, "network", "should end with a relu"),
        ("network.Net", "forward", forward_logits, "network", "forward should return log-probabilities"),
        ("network.Net", "forward", forward_wrong_head, "network", "forward should return [B, 10]"),
        ("network.Net", "generalize", generalize_wrong_head, "network", "generalize should return [B, 27]"),
        (
            "network.Net",
            "finetune_parameters",
            finetune_everything,
            "network",
            "finetune_parameters() must return only the generalizer's parameters",
        ),
        (
            "network.Net",
            "finetune_parameters",
            finetune_weight_only,
            "network",
            "must return all of the generalizer's parameters; missing ['bias']",
        ),
    ],
)
def test_a_bug_gets_a_message_that_says_what_is_wrong(solution, monkeypatch, owner, name, buggy, check, message):
    target = solution
    for attribute in owner.split("."):
        target = getattr(target, attribute)
    monkeypatch.setattr(target, name, buggy)
    with pytest.raises(AssertionError) as error:
        solution.checks.CHECKS[check]()
    assert message in str(error.value)


def test_training_check_fails_when_the_loss_is_maximized(solution, monkeypatch):
    monkeypatch.setattr(solution.utils, "cross_entropy", lambda pred, target: (target * pred).sum(dim=1).mean())
    monkeypatch.setattr(solution.training, "cross_entropy", solution.utils.cross_entropy)
    with pytest.raises(AssertionError, match=r"train accuracy is 0\.\d\d .* it should be > 0\.9"):
        solution.checks.check_training(n_batches=40)


# The autograder's test submissions (tests/submissions.toml): correct variants must pass the visible
# checks, and the visible checks should catch nearly every realistic bug.

CHECK_OF_PART = {
    "collage": "collage",
    "mixup": "mixup",
    "cross_entropy": "cross_entropy",
    "network": "network",
    "frozen_finetuning": "network",
}


def _submission_checks(submission, tmp_path):
    """The checks module of a copy of the solutions with the submission's three modules written in."""
    import importlib
    import shutil

    from autograder.examples import write_handin

    folder = tmp_path / submission.name
    shutil.copytree(SOLUTIONS, folder, ignore=shutil.ignore_patterns("__pycache__"))
    write_handin(submission, folder, RELEASE)
    name = f"handin_submission_{submission.name}"
    load_package(folder, name)
    return importlib.import_module(f"{name}.checks")


def _variants():
    import submissions

    return submissions.VARIANTS


@pytest.mark.parametrize("variant", _variants(), ids=lambda submission: submission.name)
def test_correct_variants_pass_every_visible_check(variant, tmp_path):
    checks = _submission_checks(variant, tmp_path)
    touches_training = any(edit.file in ("network.py", "utils.py") for edit in variant.edit)
    for name, check in checks.CHECKS.items():
        if name != "training" or touches_training:
            check()


def test_visible_checks_catch_nearly_every_realistic_bug(tmp_path):
    import submissions

    missed = []
    for bug in submissions.BUGS:
        checks = _submission_checks(bug, tmp_path)
        failed = set()
        for part in bug.lose:
            try:
                checks.CHECKS[CHECK_OF_PART[part]]()
            except AssertionError:
                failed.add(part)
        if not failed:
            missed.append(bug.name)
    assert len(missed) <= len(submissions.BUGS) // 10, f"bugs no visible check notices: {missed}"


def test_augment_hands_copies_to_the_augmentation(solution):
    """A student augmentation that overwrites its inputs changes neither the batch nor the later pairs."""

    def vandal(batch_i, batch_j):
        blended = batch_i.copy()
        batch_i[...] = -1.0
        batch_j[...] = -1.0
        return blended, 1.0

    batch = torch.rand(6, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    before = batch.clone()
    np.random.seed(0)
    blended, soft_labels = solution.blending.augment(vandal, batch, torch.arange(6), n_classes=6)
    assert torch.equal(batch, before)
    assert torch.equal(blended, before), "every image was blended from its original pixels"
