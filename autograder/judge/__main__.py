"""``python -m autograder.judge --handin DIR --out verdict.json [--no-sandbox]``: judge one submission.

Exit code 0 when a verdict was written (whatever the score), 2 for bad arguments.
"""

import argparse
import json
import sys
from pathlib import Path

from .cache import store


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m autograder.judge", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--handin", required=True, type=Path, help="folder with the student's augmentations.py, network.py and utils.py"
    )
    parser.add_argument("--out", type=Path, help="where to write the verdict JSON (default: stdout)")
    parser.add_argument("--no-sandbox", action="store_true", help="run the child without bubblewrap (development)")
    parser.add_argument(
        "--seed",
        type=int,
        help="seed of the hidden inputs (default: derived from the course secret in the verdict cache folder)",
    )
    parser.add_argument(
        "--cache",
        type=Path,
        help="also store the verdict in this verdict cache folder "
        "(default folder: $HANDIN3_VERDICTS, else build/verdicts)",
    )
    options = parser.parse_args(argv)
    if not options.handin.is_dir():
        parser.error(f"--handin {options.handin} is not a folder; pass the submission's handin/ folder")

    from .core import judge_submission

    verdict = judge_submission(
        options.handin, sandbox=not options.no_sandbox, seed=options.seed, cache_dir=options.cache
    )
    text = json.dumps(verdict, indent=1, sort_keys=True)
    if options.out:
        options.out.write_text(text)
    else:
        print(text)
    if options.cache:
        store(verdict, options.handin, options.seed, cache_dir=options.cache)
    return 0


if __name__ == "__main__":
    sys.exit(main())
