"""``python -m autograder COMMAND ...``: the instructor's and the TA's entry point."""

import argparse
import importlib
import sys

# command -> (module that implements it with main(argv) -> exit code, one-line help)
COMMANDS = {
    "release": ("autograder.release", "regenerate handin/ and notebooks/ from solutions/ and gate them"),
    "grade": ("autograder.batch", "grade a folder of submissions into grades.csv, feedback and a gradebook"),
    "demo": ("autograder.demo", "offline demo: regenerate the release and grade examples/"),
}


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m autograder", description=__doc__)
    parser.add_argument("command", choices=COMMANDS, help="; ".join(f"{c}: {h}" for c, (_, h) in COMMANDS.items()))
    parser.add_argument("args", nargs=argparse.REMAINDER, help="the command's own arguments (see COMMAND --help)")
    options = parser.parse_args(argv)
    module = importlib.import_module(COMMANDS[options.command][0])
    return module.main(options.args)


if __name__ == "__main__":
    sys.exit(main())
