"""Seconds per submission: the kit's batch grader against plain serial ``nbgrader autograde``.

Both graders get the same N submissions (default 20, drawn in turn from the example corpus:
``examples/examples.toml`` and ``tests/submissions.toml``, see :func:`corpus`), in the same run, on
this machine:

* kit:      ``python -m autograder grade`` (bubblewrap sandbox, judge outside the student's
            process, 2 parallel workers, and ONE ``nbgrader autograde`` for the gradebook,
            started with the judges, which grades each student once that student's judging
            has ended; its grading notebook needs no kernel);
* baseline: an ordinary nbgrader assignment whose test cells import the student's modules
            and assert in the kernel (no isolation), graded by ``nbgrader autograde`` with
            ``--Execute.shutdown_kernel=immediate`` (the faster setting measured here).

Setup that happens once per course is timed separately: ``generate_assignment``, and for the
kit also the hidden inputs drawn from the course secret (kept in ``RESULTS/verdicts``, reused
by every later run of the course until the judge changes).
Run it on a quiet checkout: an edit to ``autograder/judge/`` during the run changes the
judge's version, which invalidates cached verdicts and makes the kit judge again.
Prints seconds per submission for both, their ratio (baseline / kit) and the kit's phases
(``judge``: until the last verdict; ``nbgrader_autograde_after_judging``: the rest of the
nbgrader pass; ``nbgrader_autograde_whole``: the pass from its start, alongside the judges,
wall and CPU seconds). With ``--scaling`` the kit alone grades classes of those sizes (from
the same corpus), and the bench prints seconds per submission at each, a linear fit
(fixed + n x per student) and, from it, how long 300 submissions take on 2, 8 and 32 cores:
extrapolated, not measured (see :func:`extrapolate` for the model).

    python bench/bench_grading.py [--n 20] [--workers 2] [--scaling 20,100,300] [--keep DIR]
"""

import argparse
import dataclasses
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat

KIT_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(KIT_ROOT))

from autograder import STUDENT_MODULES  # noqa: E402
from autograder.batch import Results, grade, prepare_course  # noqa: E402
from autograder.examples import EXAMPLES, assemble, load  # noqa: E402
from autograder.nbgrader_glue.course import nbgrader_environment  # noqa: E402

TEST_SUBMISSIONS = KIT_ROOT / "tests" / "submissions.toml"

PLAIN = "plain_hand_in"

#: The baseline's hidden tests: the usual nbgrader way, in the kernel, next to the student's code.
PLAIN_TESTS = {
    "collage": """
import numpy as np
from handin.augmentations import collage
i, j = np.random.default_rng(0).normal(size=(2, 3, 8, 8))
result, weight = collage(i.copy(), j.copy())
assert weight == 0.5
assert np.allclose(result[:, :4, :4], j[:, :4, :4]) and np.allclose(result[:, 4:, 4:], j[:, 4:, 4:])
assert np.allclose(result[:, :4, 4:], i[:, :4, 4:]) and np.allclose(result[:, 4:, :4], i[:, 4:, :4])
""",
    "mixup": """
import numpy as np
from handin.augmentations import mixup
i, j = np.random.default_rng(1).normal(size=(2, 1, 6, 6))
np.random.seed(0)
result, weight = mixup(i, j, 0.3)
assert np.allclose(result, weight * i + (1 - weight) * j)
weights = [mixup(i, j, 2.0)[1] for _ in range(500)]
assert abs(np.mean(weights) - 0.5) < 0.05 and np.std(weights) > 0.1
""",
    "cross_entropy": """
import torch
import torch.nn.functional as F
from handin.utils import cross_entropy
pred = torch.log_softmax(torch.randn(5, 4, generator=torch.Generator().manual_seed(0)), 1)
labels = torch.tensor([0, 1, 2, 3, 0])
assert torch.allclose(cross_entropy(pred, F.one_hot(labels, 4).float()), F.nll_loss(pred, labels))
""",
    "network": """
import torch
from handin.network import Net
torch.manual_seed(0)
net = Net(10, 27).eval()
x = torch.randn(4, 1, 28, 28)
out = net(x)
assert out.shape == (4, 10) and net.generalize(x).shape == (4, 27)
assert torch.allclose(out.exp().sum(1), torch.ones(4), atol=1e-5)
""",
    "frozen_finetuning": """
from handin.network import Net
net = Net(10, 27)
assert {id(p) for p in net.finetune_parameters()} == {id(p) for p in net.generalizer.parameters()}
""",
}


def corpus():
    """The example corpus, every submission that runs to its end (:class:`autograder.examples.Example`).

    ``examples/examples.toml`` without the hostile one (the baseline has no isolation), then the
    reference, stub, buggy and equivalent-correct submissions of ``tests/submissions.toml`` (its
    tamper cases are left out: some loop until the time limit, which would measure the limit).
    """
    examples = [example for name, example in load(EXAMPLES).items() if name != "hostile"]
    return examples + [example for example in load(TEST_SUBMISSIONS).values() if example.kind != "tamper"]


def submissions(target, n):
    """N submissions from :func:`corpus`, in turn, ids s001..; every student's files differ, as in a real class."""
    target.mkdir(parents=True, exist_ok=True)
    for index, example in zip(range(1, n + 1), itertools.cycle(corpus())):
        folder = assemble(dataclasses.replace(example, name=f"s{index:03d}"), target)
        for module in (folder / "handin").glob("*.py"):
            module.write_text(module.read_text() + f"# {folder.name}\n")
    return target


def test_notebook():
    notebook = nbformat.v4.new_notebook(
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}
    )
    notebook.cells.append(nbformat.v4.new_code_cell("import sys, os\nsys.path.insert(0, os.getcwd())"))
    for part, source in PLAIN_TESTS.items():
        cell = nbformat.v4.new_code_cell(source.strip())
        cell.metadata["nbgrader"] = {
            "grade": True,
            "solution": False,
            "locked": True,
            "points": 10,
            "grade_id": part,
            "schema_version": 3,
        }
        notebook.cells.append(cell)
    return notebook


def nbgrader(course, *args):
    done = subprocess.run(
        [sys.executable, "-m", "nbgrader", *args, f"--CourseDirectory.root={course}"],
        cwd=course,
        env=nbgrader_environment(),
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise SystemExit(f"nbgrader {' '.join(args)} failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}")


def baseline(course, class_folder):
    """Plain nbgrader: returns (setup seconds, grading seconds)."""
    source = course / "source" / PLAIN
    (source / "handin").mkdir(parents=True)
    for path in (KIT_ROOT / "solutions" / "handin").glob("*.py"):
        shutil.copyfile(path, source / "handin" / path.name)
    nbformat.write(test_notebook(), source / "tests.ipynb")
    (course / "nbgrader_config.py").write_text(
        "c = get_config()\n"
        f"c.Autograde.exclude_overwriting = {{'{PLAIN}': {[f'handin/{m}' for m in STUDENT_MODULES]!r}}}\n"
    )
    started = time.perf_counter()
    nbgrader(course, "generate_assignment", PLAIN, "--force")
    setup = time.perf_counter() - started
    for folder in sorted(class_folder.iterdir()):
        target = course / "submitted" / folder.name / PLAIN
        shutil.copytree(course / "release" / PLAIN, target)
        for module in STUDENT_MODULES:
            shutil.copyfile(folder / "handin" / module, target / "handin" / module)
    started = time.perf_counter()
    nbgrader(course, "autograde", PLAIN, "--Execute.shutdown_kernel=immediate")
    return setup, time.perf_counter() - started


def kit(results, class_folder, workers):
    """The kit's grade command: returns (setup seconds, grading seconds)."""
    started = time.perf_counter()
    prepare_course(Results(results))
    setup = time.perf_counter() - started
    started = time.perf_counter()
    grade(class_folder, results, workers=workers, quiet=True)
    return setup, time.perf_counter() - started


def phases(results):
    """``({phase: seconds}, {wall_seconds, cpu_seconds} of the nbgrader pass)`` of a kit run (``RESULTS/run.json``)."""
    data = json.loads((Path(results) / "run.json").read_text())
    laps = {name: entry["seconds"] for name, entry in data.items() if "seconds" in entry}
    return laps, data.get("nbgrader_autograde_whole", {})


def describe(laps, nbgrader_pass):
    return ", ".join(f"{name} {seconds:.1f} s" for name, seconds in laps.items()) + (
        f"; nbgrader pass from its start {nbgrader_pass.get('wall_seconds', 0):.1f} s, "
        f"{nbgrader_pass.get('cpu_seconds', 0):.1f} s CPU"
    )


def scaling(work, sizes, workers, measured):
    """Kit-only runs at each size (``measured``: {n: (seconds, phases)} already known); prints the table."""
    for n in sizes:
        if n not in measured:
            class_folder = submissions(work / f"class-{n}", n)
            _, seconds = kit(work / f"kit-{n}", class_folder, workers)
            measured[n] = seconds, phases(work / f"kit-{n}")
            shutil.rmtree(class_folder, ignore_errors=True)
            print(f"n={n}: {seconds:.0f} s, load {os.getloadavg()[0]:.1f}", flush=True)
    print(f"\nscaling (kit only, {workers} workers, {os.cpu_count()} cores, measured in this run):")
    print(
        f"{'n':>5} {'total s':>8} {'s/submission':>13} {'judge s':>8} {'nbgrader after s':>17} {'nbgrader CPU s':>15}"
    )
    for n in sorted(measured):
        seconds, (laps, nbgrader_pass) = measured[n]
        print(
            f"{n:>5} {seconds:>8.0f} {seconds / n:>13.2f} {laps.get('judge', 0):>8.0f} "
            f"{laps.get('nbgrader_autograde_after_judging', 0):>17.0f} {nbgrader_pass.get('cpu_seconds', 0):>15.0f}"
        )
    if len(measured) >= 2:
        extrapolate(measured, workers)


def fit(points):
    """Least squares ``(fixed, per_student)`` of ``[(n, seconds)]``."""
    xs, ys = [x for x, _ in points], [y for _, y in points]
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in points) / sum((x - mean_x) ** 2 for x in xs)
    return mean_y - slope * mean_x, slope


def extrapolate(measured, workers):
    """Fit the total as fixed + n x per student; print 300 submissions at 2, 8 and 32 cores.

    Model: on this machine (``workers`` judges and the nbgrader pass sharing its cores) a
    student costs ``each`` seconds. With more cores the judges (one per core) spread out, but
    nbgrader's pass is one process, so a student never costs less than its CPU seconds per
    student: ``fixed + n x max(nbgrader CPU per student, each x workers / cores)``.
    """
    sizes = sorted(measured)
    fixed, each = fit([(n, measured[n][0]) for n in sizes])
    _, nbgrader_each = fit([(n, measured[n][1][1].get("cpu_seconds", 0.0)) for n in sizes])
    print(
        f"fit: total {fixed:.1f} s + n x {each:.2f} s ({workers} workers, {os.cpu_count()} cores); "
        f"nbgrader pass: n x {nbgrader_each:.2f} s CPU (serial)"
    )
    if fixed < 0:
        print("the fit has a negative fixed cost: the load changed between the sizes; do not use the lines below")
    for cores in (2, 8, 32):
        total = fixed + 300 * max(nbgrader_each, each * workers / cores)
        print(
            f"extrapolated: 300 submissions on {cores:>2} cores ({cores} workers): {total / 60:5.1f} min "
            f"({total / 300:.2f} s/submission)"
        )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=20, help="submissions for the ratio (default 20)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--scaling",
        default="",
        help="comma-separated class sizes for kit-only runs, e.g. 20,100,300 (the ratio's kit run is reused for --n)",
    )
    parser.add_argument("--keep", type=Path, help="keep the work folder here instead of a temporary one")
    options = parser.parse_args(argv)

    work = Path(options.keep or tempfile.mkdtemp(prefix="bench-grading-"))
    class_folder = submissions(work / "class", options.n)
    print(f"{options.n} submissions in {class_folder}; {os.cpu_count()} cores; load before: {os.getloadavg()[0]:.1f}")
    kit_setup, kit_seconds = kit(work / "kit", class_folder, options.workers)
    plain_setup, plain_seconds = baseline(work / "plain", class_folder)
    per_kit, per_plain = kit_seconds / options.n, plain_seconds / options.n
    print(
        f"kit (sandbox, {options.workers} workers, 1 nbgrader run): {per_kit:5.2f} s/submission "
        f"({kit_seconds:.0f} s; course setup {kit_setup:.0f} s once: course build and hidden inputs)"
    )
    print(
        f"plain serial nbgrader autograde:      {per_plain:5.2f} s/submission "
        f"({plain_seconds:.0f} s; generate_assignment {plain_setup:.0f} s once)"
    )
    kit_phases = phases(work / "kit")
    print("kit phases: " + describe(*kit_phases))
    print(f"ratio plain / kit: {per_plain / per_kit:.2f}x  (target: >= 3x)")
    print(f"load after: {os.getloadavg()[0]:.1f}")
    if options.scaling:
        sizes = [int(size) for size in options.scaling.split(",")]
        scaling(work, sizes, options.workers, {options.n: (kit_seconds, kit_phases)} if options.n in sizes else {})
        print(f"load after scaling: {os.getloadavg()[0]:.1f}")
    if not options.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
