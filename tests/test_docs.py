"""The README and the guides in docs/ stay short, linked and true to the commands they show.

The commands themselves run elsewhere: `make demo`/`make test` in CI, `python -m autograder grade`
and `release` in tests/test_batch.py and tests/test_release.py. Here every documented command is
checked against what exists: make targets in the Makefile, and each `--flag` of a
`python -m autograder COMMAND` line in that command's own --help.
"""

import re
import subprocess
import sys

import pytest
from conftest import KIT_ROOT

README = KIT_ROOT / "README.md"
DOCS = sorted((KIT_ROOT / "docs").glob("*.md"))
PAGES = [README, *DOCS]
#: Leftovers that once made the README stale: references to notes or issues a reader cannot see.
STALE = [r"pitfall \d", r"the issue'?s\b", r"<!--"]


def code_lines(page):
    """Lines inside fenced code blocks of a markdown page, continuation lines joined."""
    lines = "\n".join(re.findall(r"```[a-z]*\n(.*?)```", page.read_text(encoding="utf-8"), re.S))
    return [line.strip() for line in lines.replace("\\\n", " ").splitlines() if line.strip()]


def test_the_readme_is_short():
    size = len(README.read_bytes())
    assert size < 6 * 1024, f"README.md is {size} bytes: move details into docs/ (the README links each reader there)"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_relative_link_resolves(page):
    text = page.read_text(encoding="utf-8")
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
        if "://" in target:
            continue
        assert (page.parent / target).exists(), f"{page.name} links to {target}, which does not exist"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_no_stale_references(page):
    text = page.read_text(encoding="utf-8")
    for pattern in STALE:
        found = re.search(pattern, text, re.I)
        assert found is None, f"{page.name}: stale reference {found.group(0)!r}"


def test_every_make_target_in_the_docs_exists():
    makefile = (KIT_ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([a-z][a-z-]*):", makefile, re.M))
    for page in PAGES:
        for line in code_lines(page):
            for target in re.findall(r"(?:^|&&\s*|;\s*)make ([a-z][a-z-]*)", line):
                assert target in targets, f"{page.name}: `make {target}` is not a target of the Makefile"


def documented_autograder_flags():
    """{(command, flag)} for every `python -m autograder COMMAND ... --flag` line of the docs."""
    flags = set()
    for page in PAGES:
        for line in code_lines(page):
            match = re.search(r"-m autograder (\w+)(.*)", line.split("#")[0])
            if match:
                flags |= {(match[1], flag) for flag in re.findall(r"(?<!\S)(--[a-z][a-z-]*)", match[2])}
    return flags


def test_documented_autograder_flags_exist():
    flags = documented_autograder_flags()
    assert flags, "the docs show no `python -m autograder` command with a flag: is the TA guide missing?"
    helps = {}
    for command, flag in sorted(flags):
        if command not in helps:
            done = subprocess.run(
                [sys.executable, "-m", "autograder", command, "--help"],
                cwd=KIT_ROOT,
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert done.returncode == 0, f"`python -m autograder {command} --help` failed: {done.stderr[-500:]}"
            helps[command] = done.stdout
        assert re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", helps[command]), (
            f"the docs use `python -m autograder {command} {flag}`, which its --help does not list"
        )
