"""Seconds per submission: the kit's batch grader against plain serial ``nbgrader autograde``.

Both graders get the same N submissions (default 20: the reference, the stubs and the
buggy ones of ``examples/examples.toml``, in turn), in the same run, on this machine:

* kit:      ``python -m autograder grade`` (bubblewrap sandbox, judge outside the student's
            process, 2 parallel workers, then ONE ``nbgrader autograde`` for the gradebook);
* baseline: an ordinary nbgrader assignment whose test cells import the student's modules
            and assert in the kernel (no isolation), graded by ``nbgrader autograde`` with
            ``--Execute.shutdown_kernel=immediate`` (the faster setting measured here).

Setup that happens once per course (``generate_assignment``) is timed separately.
Run it on a quiet checkout: an edit to ``autograder/judge/`` during the run changes the
judge's version, which invalidates cached verdicts and makes the kit judge again.
Prints seconds per submission for both and their ratio (baseline / kit).

    python bench/bench_grading.py [--n 20] [--workers 2] [--keep DIR]
"""
import argparse
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

import nbformat

KIT_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(KIT_ROOT))

from autograder import STUDENT_MODULES  # noqa: E402
from autograder.batch import Results, grade, prepare_course  # noqa: E402
from autograder.course import nbgrader_environment  # noqa: E402
from autograder.demo import EXAMPLES, assemble  # noqa: E402

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


def submissions(target, n):
    """N example submissions (no hostile one: the baseline has no isolation), ids s01..sNN."""
    specs = tomllib.loads(EXAMPLES.read_text())
    names = [name for name in specs if name != "hostile"]
    for index, name in zip(range(1, n + 1), itertools.cycle(names)):
        folder = assemble(f"s{index:02d}", specs[name], target)
        for module in (folder / "handin").glob("*.py"):  # every student's files differ, as in a real class
            module.write_text(module.read_text() + f"# {folder.name}\n")
    return target


def test_notebook():
    notebook = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                                 "language": "python"}})
    notebook.cells.append(nbformat.v4.new_code_cell("import sys, os\nsys.path.insert(0, os.getcwd())"))
    for part, source in PLAIN_TESTS.items():
        cell = nbformat.v4.new_code_cell(source.strip())
        cell.metadata["nbgrader"] = {"grade": True, "solution": False, "locked": True, "points": 10,
                                     "grade_id": part, "schema_version": 3}
        notebook.cells.append(cell)
    return notebook


def nbgrader(course, *args):
    done = subprocess.run([sys.executable, "-m", "nbgrader", *args, f"--CourseDirectory.root={course}"],
                          cwd=course, env=nbgrader_environment(), capture_output=True, text=True)
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
        f"c.Autograde.exclude_overwriting = {{'{PLAIN}': {[f'handin/{m}' for m in STUDENT_MODULES]!r}}}\n")
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


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=20, help="submissions (default 20)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--keep", type=Path, help="keep the work folder here instead of a temporary one")
    options = parser.parse_args(argv)

    work = Path(options.keep or tempfile.mkdtemp(prefix="bench-grading-"))
    class_folder = submissions(work / "class", options.n)
    print(f"{options.n} submissions in {class_folder}; {os.cpu_count()} cores; load before: "
          f"{os.getloadavg()[0]:.1f}")
    kit_setup, kit_seconds = kit(work / "kit", class_folder, options.workers)
    plain_setup, plain_seconds = baseline(work / "plain", class_folder)
    per_kit, per_plain = kit_seconds / options.n, plain_seconds / options.n
    print(f"kit (sandbox, {options.workers} workers, 1 nbgrader run): {per_kit:5.2f} s/submission "
          f"({kit_seconds:.0f} s; course setup {kit_setup:.0f} s once)")
    print(f"plain serial nbgrader autograde:      {per_plain:5.2f} s/submission "
          f"({plain_seconds:.0f} s; generate_assignment {plain_setup:.0f} s once)")
    phases = json.loads((work / "kit" / "run.json").read_text())
    print("kit phases: " + ", ".join(f"{name} {p['seconds']:.0f} s" + (f" ({p['students']} students)"
                                                                      if "students" in p else "")
                                      for name, p in phases.items() if "seconds" in p))
    print(f"ratio plain / kit: {per_plain / per_kit:.2f}x  (target: kit <= 3 s/submission)")
    print(f"load after: {os.getloadavg()[0]:.1f}")
    if not options.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
