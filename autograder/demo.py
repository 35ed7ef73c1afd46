"""``python -m autograder demo``: the offline tour (``make demo``).

1. Regenerate the student release (``handin/``, ``notebooks/``) from ``solutions/``.
2. Assemble the submissions described in ``examples/examples.toml`` (the reference,
   the untouched stubs, a few buggy ones, one hostile one) into ``build/demo/submissions``.
3. Grade them with ``python -m autograder grade`` (sandboxed; ``--no-sandbox`` to skip
   bubblewrap) into ``build/demo/results``.
4. Print the grade table and where the feedback is.
"""

import argparse
import shutil
import sys
import tomllib
from pathlib import Path

from . import KIT_ROOT, STUDENT_MODULES

EXAMPLES = KIT_ROOT / "examples" / "examples.toml"
DEMO_DIR = KIT_ROOT / "build" / "demo"


class ExampleError(ValueError):
    """An example's edit no longer fits the module it edits."""


def module_sources():
    """``{"solution": folder, "stubs": folder}``: where an example's modules come from."""
    return {"solution": KIT_ROOT / "solutions" / "handin", "stubs": KIT_ROOT / "handin"}


def apply_edits(text, edits, where):
    """Replace each edit's ``old`` (which must occur exactly once) by its ``new``."""
    for edit in edits:
        count = text.count(edit["old"])
        if count != 1:
            raise ExampleError(
                f"{EXAMPLES}: {where}: the text to replace occurs {count} times in "
                f"{edit['file']}, expected once; update the edit to the current solution:\n"
                f"{edit['old']}"
            )
        text = text.replace(edit["old"], edit["new"])
    return text


def assemble(student_id, spec, target, sources=None):
    """Write one example submission ``target/<student_id>/`` (handin/ modules and the report)."""
    sources = sources or module_sources()
    folder = Path(target) / student_id
    (folder / "handin").mkdir(parents=True, exist_ok=True)
    for name in STUDENT_MODULES:
        edits = [edit for edit in spec.get("edit", []) if edit["file"] == name]
        text = (sources[spec["base"]] / name).read_text(encoding="utf-8")
        (folder / "handin" / name).write_text(apply_edits(text, edits, student_id), encoding="utf-8")
    report = KIT_ROOT / "notebooks" / "3_report.ipynb"
    if report.is_file():
        shutil.copyfile(report, folder / report.name)
    return folder


def assemble_examples(target, names=None):
    """Assemble every example of ``examples/examples.toml`` (or only ``names``) into ``target``."""
    specs = tomllib.loads(EXAMPLES.read_text(encoding="utf-8"))
    shutil.rmtree(target, ignore_errors=True)
    Path(target).mkdir(parents=True)
    for student_id, spec in specs.items():
        if names is None or student_id in names:
            assemble(student_id, spec, target)
    return specs


def regenerate_release():
    """Run the release command; the stubs and the report come from it."""
    from . import release

    code = release.main([])
    if code != 0:
        raise SystemExit(f"demo: the release could not be regenerated (exit {code}); see above")


def main(argv=()):
    parser = argparse.ArgumentParser(
        prog="python -m autograder demo", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--no-sandbox", action="store_true", help="grade without bubblewrap (development only)")
    parser.add_argument("--out", type=Path, default=DEMO_DIR, help="working folder (default: %(default)s)")
    options = parser.parse_args(argv)

    print("== 1. regenerating the release from solutions/")
    regenerate_release()
    print("\n== 2. assembling examples/ (examples/examples.toml)")
    submissions = options.out / "submissions"
    specs = assemble_examples(submissions)
    for student_id, spec in specs.items():
        print(f"  {student_id:22s} {' '.join(spec['about'].split())}")
    print(f"\n== 3. grading {submissions}")
    from . import batch

    argv = [str(submissions), "--out", str(options.out / "results")]
    if options.no_sandbox:
        argv.append("--no-sandbox")
    code = batch.main(argv)
    if code == 0:
        print(f"\nOpen a feedback page, e.g. {options.out / 'results' / 'feedback' / 'wrong_quadrant.html'}")
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
