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
from pathlib import Path

from . import KIT_ROOT
from .examples import EXAMPLES, assemble, load

DEMO_DIR = KIT_ROOT / "build" / "demo"


def assemble_examples(target, names=None):
    """Assemble every example of ``examples/examples.toml`` (or only ``names``) into ``target``."""
    examples = load(EXAMPLES)
    shutil.rmtree(target, ignore_errors=True)
    Path(target).mkdir(parents=True)
    for name, example in examples.items():
        if names is None or name in names:
            assemble(example, target)
    return examples


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
    for name, example in assemble_examples(submissions).items():
        print(f"  {name:22s} {' '.join(example.about.split())}")
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
