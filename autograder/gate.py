"""The release gate: prove that no answer and no hidden test reached the student release.

nbgrader logs and swallows errors raised in its hooks, so a release can look
fine while it still holds solutions. The gate is therefore an explicit check on
the generated files. It fails when a generated file contains

* an nbgrader delimiter (the solution and hidden-test markers in :data:`MARKERS`),
* a line of a hidden-test block of ``autograder/nbgrader_glue/grading.ipynb``, or
* a line of a solution region of ``solutions/`` (modules and notebooks; for a
  notebook solution cell without delimiters, every line of the cell).

Lines are compared with all whitespace removed. Lines that also occur outside
the secret regions (e.g. ``return result, interpolation`` after the student's
block) are public anyway, and punctuation-only lines or bare keywords such as
``pass`` say nothing about the answer: both are ignored.
"""

import json
import re
from dataclasses import dataclass
from pathlib import Path

#: nbgrader's delimiters, built from pieces so that this file never trips a gate itself.
MARKERS = tuple(f"{edge} {what}" for what in ("SOLUTION", "HIDDEN TESTS") for edge in ("BEGIN", "END"))
_SOLUTION_MARKERS = (MARKERS[0], MARKERS[1])
_HIDDEN_MARKERS = (MARKERS[2], MARKERS[3])

#: Bare keywords that may appear inside a solution without revealing it.
TRIVIAL_LINES = {"pass", "else:", "try:", "finally:", "return", "break", "continue", "returnNone", "...", "#"}

#: Folders and files that are never part of a release.
IGNORED_NAMES = {"__pycache__", ".ipynb_checkpoints", ".DS_Store"}


class ReleaseLeakError(RuntimeError):
    """A generated release contains a marker, a solution line or hidden-test text."""


class UnbalancedMarkersError(ReleaseLeakError):
    """A source file's delimiters do not pair up, so its secret regions are unknown."""


@dataclass(frozen=True)
class Leak:
    """One offending line of a generated file."""

    path: Path
    where: str  # "line 12" or "cell 3, line 2"
    kind: str  # "marker", "solution line" or "hidden-test line"
    text: str

    def __str__(self):
        return f"{self.path}, {self.where}: {self.kind}: {self.text.strip()[:120]}"


def squeeze(line):
    """A line without any whitespace, the form in which lines are compared."""
    return "".join(line.split())


def is_trivial(squeezed):
    """True for lines that reveal nothing: empty, punctuation only, or a bare keyword."""
    return squeezed in TRIVIAL_LINES or not re.search(r"[A-Za-z0-9]", squeezed)


def file_chunks(path):
    """The text of a file as ``(where_prefix, source, cell)`` pieces.

    A notebook yields one piece per cell (prefix ``"cell N, "``, the cell's
    JSON), any other text file one piece (prefix ``""``, cell ``None``);
    binary files yield nothing.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError):
        return []
    if path.suffix == ".ipynb":
        cells = json.loads(text).get("cells", [])
        return [(f"cell {index}, ", _cell_source(cell), cell) for index, cell in enumerate(cells)]
    return [("", text, None)]


def _cell_source(cell):
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else source


def _is_solution_cell(cell):
    return bool(cell and cell.get("metadata", {}).get("nbgrader", {}).get("solution"))


def split_regions(source, begin, end, whole_is_secret=False):
    """Split a text into the lines inside ``begin``/``end`` regions and the lines outside.

    Args:
        source: the text.
        begin, end: the delimiters (matched as substrings, as nbgrader does).
        whole_is_secret: treat the whole text as secret when it has no region
            (an nbgrader solution cell without delimiters is replaced entirely).

    Returns:
        (secret, public): two lists of lines, delimiter lines excluded.

    Raises:
        UnbalancedMarkersError: a region is nested, never closed, or closed
            without being opened (a misspelled delimiter would otherwise turn a
            secret region into public text).
    """
    lines = source.split("\n")
    if whole_is_secret and not any(begin in line for line in lines):
        return lines, []
    secret, public, opened_at = [], [], None
    for number, line in enumerate(lines, start=1):
        if begin in line:
            if opened_at is not None:
                raise UnbalancedMarkersError(f"line {number}: {begin!r} inside the region opened on line {opened_at}")
            opened_at = number
        elif end in line:
            if opened_at is None:
                raise UnbalancedMarkersError(f"line {number}: {end!r} without a {begin!r} before it")
            opened_at = None
        else:
            (secret if opened_at is not None else public).append(line)
    if opened_at is not None:
        raise UnbalancedMarkersError(f"line {opened_at}: {begin!r} is never closed by {end!r}")
    return secret, public


def secret_and_public_lines(solutions_dir, grading_notebook=None):
    """Collect the lines that must never appear in a release, and the lines that may.

    Args:
        solutions_dir: the ``solutions/`` folder (``handin/*.py`` and ``notebooks/*.ipynb``).
        grading_notebook: ``autograder/nbgrader_glue/grading.ipynb``, if it exists.

    Returns:
        (secrets, public): ``secrets`` maps a squeezed line to ``(kind, origin)``;
        ``public`` is the set of squeezed lines outside every secret region.
    """
    sources = [
        (path, _SOLUTION_MARKERS, "solution line")
        for path in sorted(Path(solutions_dir).rglob("*"))
        if path.suffix in (".py", ".ipynb") and not IGNORED_NAMES & set(path.parts)
    ]
    if grading_notebook is not None and Path(grading_notebook).is_file():
        sources.append((Path(grading_notebook), _HIDDEN_MARKERS, "hidden-test line"))

    secrets, public = {}, set()
    for path, (begin, end), kind in sources:
        for prefix, text, cell in file_chunks(path):
            whole = kind == "solution line" and _is_solution_cell(cell)
            try:
                secret_lines, public_lines = split_regions(text, begin, end, whole_is_secret=whole)
            except UnbalancedMarkersError as error:
                raise UnbalancedMarkersError(
                    f"release gate: unbalanced markers in {path}, {prefix}{error}. Fix the delimiters "
                    "(nbgrader matches them exactly) and regenerate."
                ) from None
            public.update(squeeze(line) for line in public_lines)
            for line in secret_lines:
                secrets.setdefault(squeeze(line), (kind, f"{path.name} {prefix}".strip(", ")))
    secrets = {line: origin for line, origin in secrets.items() if line not in public and not is_trivial(line)}
    return secrets, public


def release_files(folder):
    """Every file under ``folder`` that a release may contain, sorted."""
    return sorted(
        path
        for path in Path(folder).rglob("*")
        if path.is_file() and not IGNORED_NAMES & set(path.relative_to(folder).parts)
    )


def find_leaks(files, secrets):
    """Scan generated files for markers and secret lines.

    Args:
        files: paths of generated files.
        secrets: from :func:`secret_and_public_lines`.

    Returns:
        list of :class:`Leak`, in file and line order.
    """
    leaks = []
    for path in files:
        for prefix, text, _ in file_chunks(path):
            for number, line in enumerate(text.split("\n"), start=1):
                where = f"{prefix}line {number}"
                marker = next((m for m in MARKERS if m in line), None)
                if marker:
                    leaks.append(Leak(Path(path), where, f"marker {marker!r}", line))
                elif squeeze(line) in secrets:
                    leaks.append(Leak(Path(path), where, secrets[squeeze(line)][0], line))
    return leaks


def check_release(folders, solutions_dir, grading_notebook=None):
    """Raise :class:`ReleaseLeakError` listing every leak in the generated ``folders``.

    Args:
        folders: generated folders to scan (e.g. ``handin/`` and ``notebooks/``).
        solutions_dir: the ``solutions/`` folder the release was generated from.
        grading_notebook: ``autograder/nbgrader_glue/grading.ipynb``, if any.

    Returns:
        the number of files scanned, when the release is clean.
    """
    secrets, _ = secret_and_public_lines(solutions_dir, grading_notebook)
    files = [path for folder in folders for path in release_files(folder)]
    leaks = find_leaks(files, secrets)
    if leaks:
        listing = "\n".join(f"  {leak}" for leak in leaks)
        raise ReleaseLeakError(
            f"release gate: {len(leaks)} leaked line(s) in the generated release:\n{listing}\n"
            "Fix: put every answer inside a solution region of solutions/ (and every hidden test inside a "
            "hidden-test region of autograder/nbgrader_glue/grading.ipynb), then regenerate with `make release`."
        )
    return len(files)
