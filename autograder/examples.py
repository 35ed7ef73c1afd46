"""Example submissions written as small edits of the reference (or the stubs), read from TOML.

Two files use this format: ``examples/examples.toml`` (the demo's students) and
``tests/submissions.toml`` (the autograder's test submissions, also the bench's corpus).
The header of ``examples/examples.toml`` explains the format. :func:`load` reads and
checks one file; :func:`assemble` writes one student's folder the way they hand it in.
"""

import shutil
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from . import KIT_ROOT, STUDENT_MODULES
from .judge.points import PARTS

EXAMPLES = KIT_ROOT / "examples" / "examples.toml"
SOLUTION_HANDIN = KIT_ROOT / "solutions" / "handin"
STUB_HANDIN = KIT_ROOT / "handin"
REPORT = KIT_ROOT / "notebooks" / "3_report.ipynb"

KINDS = ("reference", "stub", "bug", "variant", "tamper")
BASES = ("solution", "stubs")
#: The notebooks a submission may add a cell to: the released ones and the grading notebook.
NOTEBOOKS = ("grading.ipynb", "1_augmentations.ipynb", "2_network_and_loss.ipynb", "3_report.ipynb")


class ExampleError(ValueError):
    """A TOML example that cannot be read, or an edit that no longer fits the module it edits."""


@dataclass(frozen=True)
class Edit:
    """Replace the one occurrence of ``old`` by ``new`` in the student module ``file``."""

    file: str
    old: str
    new: str


@dataclass
class Example:
    """One student's submission, as the reference (or the stubs) plus edits."""

    name: str
    kind: str = ""  # one of KINDS (required in a TOML file)
    about: str = ""  # what the student did (required in a TOML file)
    base: str = "solution"  # "solution": solutions/handin/; "stubs": handin/ of the release
    edit: list = field(default_factory=list)  # [Edit]
    prepend: dict = field(default_factory=dict)  # {module: code run first at import}
    notebooks: dict = field(default_factory=dict)  # {notebook file name: extra first code cell}
    lose: tuple = ()  # parts that must lose points; every other part scores full marks...
    may_lose: tuple = ()  # ...except these, which use the same code
    max_total: float = None  # the total may not exceed this (then lose is not checked)
    status: dict = field(default_factory=dict)  # {part: expected status}, e.g. "timeout"
    toml: Path = field(default=None, compare=False, repr=False)  # the file it was read from, for errors


#: The keys of a student's table, and of one [[<student>.edit]] table.
KEYS = ("kind", "about", "base", "edit", "prepend", "notebooks", "lose", "may_lose", "max_total", "status")
EDIT_KEYS = ("file", "old", "new")


def load(path=EXAMPLES):
    """``{name: Example}`` of the TOML file ``path``, in the file's order; checked (:class:`ExampleError`)."""
    path = Path(path)
    try:
        tables = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as error:
        raise ExampleError(f"{path}: not valid TOML: {error}") from None
    return {name: parse(name, table, path) for name, table in tables.items()}


def parse(name, table, path):
    """The :class:`Example` of one student's table; every problem is an :class:`ExampleError`."""

    def fail(problem, fix):
        raise ExampleError(f"{path}: [{name}]: {problem}; {fix}")

    def strings(key, value, allowed=None):
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            fail(f"{key} must be a list of strings, not {value!r}", f'write e.g. {key} = ["collage"]')
        for item in value:
            if allowed is not None and item not in allowed:
                fail(f"{key} names {item!r}, which is not a part", f"use one of {', '.join(allowed)}")
        return tuple(value)

    def code_table(key, value, allowed):
        if not isinstance(value, dict):
            fail(f"{key} must be a table of file = code", f"write [{name}.{key}] then \"<file>\" = '''...'''")
        for file, code in value.items():
            if file not in allowed:
                fail(f"{key} names the file {file!r}", f"use one of {', '.join(allowed)}")
            if not isinstance(code, str):
                fail(f"{key}.{file} must be a string of code", "write it as '''...'''")
        return dict(value)

    if not isinstance(table, dict):
        fail("is not a table", f"write [{name}] on a line of its own, then its keys")
    for key in table:
        if key not in KEYS:
            fail(f"unknown key {key!r}", f"the keys are {', '.join(KEYS)}")
    for key in ("kind", "about"):
        if not isinstance(table.get(key), str):
            fail(f"{key} is missing or not a string", f'write {key} = "..."')
    if table["kind"] not in KINDS:
        fail(f"unknown kind {table['kind']!r}", f"use one of {', '.join(KINDS)}")
    base = table.get("base", "solution")
    if base not in BASES:
        fail(f"unknown base {base!r}", f"use one of {', '.join(BASES)}")
    edits = table.get("edit", [])
    if not isinstance(edits, list):
        fail("edit must be an array of tables", f"write each edit as [[{name}.edit]]")
    for edit in edits:
        if not isinstance(edit, dict) or set(edit) != set(EDIT_KEYS):
            keys = sorted(edit) if isinstance(edit, dict) else edit
            fail(f"an edit has the keys {keys}", f"give each [[{name}.edit]] exactly {', '.join(EDIT_KEYS)}")
        if edit["file"] not in STUDENT_MODULES:
            fail(f"an edit names the file {edit['file']!r}", f"use one of {', '.join(STUDENT_MODULES)}")
        if not all(isinstance(edit[key], str) for key in EDIT_KEYS):
            fail("an edit's file, old and new must be strings", "quote them")
    max_total = table.get("max_total")
    if max_total is not None and (isinstance(max_total, bool) or not isinstance(max_total, int | float)):
        fail(f"max_total must be a number, not {max_total!r}", "write e.g. max_total = 0")
    status = table.get("status", {})
    if not isinstance(status, dict) or not all(isinstance(value, str) for value in status.values()):
        fail("status must be a table of part = status", 'write e.g. status = { mixup = "timeout" }')
    strings("status", list(status), PARTS)
    return Example(
        name=name,
        kind=table["kind"],
        about=table["about"],
        base=base,
        edit=[Edit(**edit) for edit in edits],
        prepend=code_table("prepend", table.get("prepend", {}), STUDENT_MODULES),
        notebooks=code_table("notebooks", table.get("notebooks", {}), NOTEBOOKS),
        lose=strings("lose", table.get("lose", []), PARTS),
        may_lose=strings("may_lose", table.get("may_lose", []), PARTS),
        max_total=max_total,
        status=dict(status),
        toml=Path(path),
    )


def where(example):
    """``<file>: [<student>]``, the start of an error message about ``example``."""
    return f"{example.toml or 'an example'}: [{example.name}]"


def module_texts(example, stubs=STUB_HANDIN):
    """``{module: text}``: the example's three modules (``stubs``: the release's ``handin/`` to start from)."""
    base = SOLUTION_HANDIN if example.base == "solution" else Path(stubs)
    texts = {name: (base / name).read_text(encoding="utf-8") for name in STUDENT_MODULES}
    for edit in example.edit:
        count = texts[edit.file].count(edit.old)
        if count != 1:
            raise ExampleError(
                f"{where(example)}: the text to replace occurs {count} times in {edit.file} of the "
                f"{example.base}, expected once; update the edit's old (and new) to the current "
                f"{base / edit.file}:\n{edit.old}"
            )
        texts[edit.file] = texts[edit.file].replace(edit.old, edit.new)
    for module, code in example.prepend.items():
        texts[module] = code.lstrip() + "\n" + texts[module]
    return texts


def write_handin(example, folder, stubs=STUB_HANDIN):
    """Write the example's three modules into ``folder`` (created if needed)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in module_texts(example, stubs).items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


def assemble(example, target, stubs=STUB_HANDIN):
    """Write ``target/<name>/`` as the student hands it in: ``handin/`` modules and the report."""
    folder = Path(target) / example.name
    write_handin(example, folder / "handin", stubs)
    for released in {REPORT, *(REPORT.parent / name for name in example.notebooks)}:
        if released.is_file():
            shutil.copyfile(released, folder / released.name)
    add_notebook_cells(example, folder)
    return folder


def write_assignment(example, release_dir, target):
    """A full submitted assignment: a copy of the release with the example's modules and notebook cells."""
    shutil.copytree(release_dir, target)
    write_handin(example, Path(target) / "handin", Path(release_dir) / "handin")
    add_notebook_cells(example, target)
    return Path(target)


def add_notebook_cells(example, folder):
    """Insert each of the example's extra cells first in its notebook in ``folder``."""
    if not example.notebooks:
        return
    import nbformat  # slow to import, and most examples need it not

    for notebook_name, code in example.notebooks.items():
        path = Path(folder) / notebook_name
        if not path.is_file():
            raise ExampleError(
                f"{where(example)}: notebooks names {notebook_name}, which is not in {folder}; "
                "only write_assignment() (a copy of the whole release) has grading.ipynb"
            )
        notebook = nbformat.read(path, as_version=4)
        notebook.cells.insert(0, nbformat.v4.new_code_cell(code))
        nbformat.write(notebook, path)
