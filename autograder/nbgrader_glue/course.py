"""Build the nbgrader course for hand_in_3 from ``solutions/``.

:func:`build_course` is the one way to get a course directory; the release
command and the graders both use it. After it returns, ``course_root`` holds::

    nbgrader_config.py           copy of autograder/nbgrader_glue/nbgrader_config.py (if it exists)
    gradebook.db                 nbgrader's SQLite gradebook, with the assignment and its cells
    source/hand_in_3/            the instructor's version: solutions included
        handin/*.py
        1_augmentations.ipynb, 2_network_and_loss.ipynb, 3_report.ipynb
        grading.ipynb            (if autograder/nbgrader_glue/grading.ipynb exists)
    release/hand_in_3/           the student version: stubs, no solutions, no hidden tests

The release is made by real ``nbgrader generate_assignment``. nbgrader copies
non-notebook files verbatim, so the ``.py`` modules are stripped afterwards with
nbgrader's own ``ClearSolutions`` (the file's text wrapped in a one-cell
notebook), the notebooks are normalized so that a rebuild is byte-identical,
and the result is checked by the explicit gate of :mod:`autograder.gate`.
"""

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat

from .. import ASSIGNMENT, KIT_ROOT
from ..gate import check_release, release_files, secret_and_public_lines

SOLUTIONS_DIR = KIT_ROOT / "solutions"
GLUE_DIR = Path(__file__).resolve().parent
GRADING_NOTEBOOK = GLUE_DIR / "grading.ipynb"
NBGRADER_CONFIG = GLUE_DIR / "nbgrader_config.py"

#: What replaces a solution region of a module; ClearSolutions indents every
#: line like the region's first delimiter, so it also fits inside methods.
CODE_STUB = "# YOUR CODE HERE\nraise NotImplementedError()"

#: Notebook and cell metadata that survive normalization; everything else
#: (widget state, execution timings, editor settings) is volatile.
KEPT_NOTEBOOK_METADATA = ("kernelspec", "language_info")
KEPT_CELL_METADATA = ("nbgrader", "tags", "editable", "deletable")


class CourseBuildError(RuntimeError):
    """nbgrader could not generate the assignment."""


def source_dir(course_root):
    """``course_root/source/hand_in_3``: the instructor's version."""
    return Path(course_root) / "source" / ASSIGNMENT


def release_dir(course_root):
    """``course_root/release/hand_in_3``: the generated student version."""
    return Path(course_root) / "release" / ASSIGNMENT


def gradebook_path(course_root):
    """``course_root/gradebook.db``: nbgrader's default gradebook location."""
    return Path(course_root) / "gradebook.db"


def build_course(
    course_root,
    force=True,
    solutions_dir=SOLUTIONS_DIR,
    grading_notebook=GRADING_NOTEBOOK,
    nbgrader_config=NBGRADER_CONFIG,
):
    """Lay out an nbgrader course for hand_in_3, generate its release and gate it.

    Args:
        course_root: the course directory; created if missing. An existing
            gradebook is kept (nbgrader updates the assignment in it).
        force: rebuild ``source/`` and ``release/`` even if they exist. With
            ``force=False`` an existing release is returned as it is.
        solutions_dir: folder with ``handin/`` and ``notebooks/`` (the single source).
        grading_notebook: the notebook with the hidden tests; skipped if absent.
        nbgrader_config: copied to ``course_root/nbgrader_config.py`` if it exists.

    Returns:
        ``Path`` of the course root.

    Raises:
        CourseBuildError: ``nbgrader generate_assignment`` failed (its output is included).
        autograder.gate.ReleaseLeakError: the release still holds a marker,
            a solution line or hidden-test text.
    """
    course_root = Path(course_root).resolve()
    if not force and (release_dir(course_root) / "handin").is_dir():
        return course_root
    # Fail before the slow nbgrader run if the sources' delimiters do not pair up.
    secret_and_public_lines(solutions_dir, grading_notebook)
    lay_out_source(course_root, Path(solutions_dir), Path(grading_notebook), Path(nbgrader_config))
    generate_assignment(course_root)
    for module in sorted(release_dir(course_root).glob("handin/*.py")):
        strip_module(module)
    for notebook in sorted(release_dir(course_root).glob("*.ipynb")):
        normalize_notebook(notebook, source_dir(course_root) / notebook.name)
    check_release([release_dir(course_root)], solutions_dir, grading_notebook)
    return course_root


def _copy_tree(source, target):
    """Copy the files of ``source`` into ``target``, skipping caches and checkpoints."""
    for path in release_files(source):
        destination = target / path.relative_to(source)
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, destination)


def lay_out_source(course_root, solutions_dir, grading_notebook, nbgrader_config):
    """Write ``source/hand_in_3`` (and the config) from the single source, replacing old copies."""
    for old in (source_dir(course_root), release_dir(course_root)):
        shutil.rmtree(old, ignore_errors=True)
    target = source_dir(course_root)
    target.mkdir(parents=True)
    _copy_tree(solutions_dir / "handin", target / "handin")
    _copy_tree(solutions_dir / "notebooks", target)
    if grading_notebook.is_file():
        shutil.copyfile(grading_notebook, target / grading_notebook.name)
    if nbgrader_config.is_file():
        shutil.copyfile(nbgrader_config, course_root / "nbgrader_config.py")


def nbgrader_environment():
    """The environment for nbgrader: it runs ``alembic`` by PATH, so this Python's bin goes first."""
    environment = dict(os.environ)
    environment["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), environment.get("PATH", "")])
    return environment


def generate_assignment(course_root):
    """Run real ``nbgrader generate_assignment`` in ``course_root`` (creates release/ and the gradebook)."""
    command = [
        sys.executable,
        "-m",
        "nbgrader",
        "generate_assignment",
        ASSIGNMENT,
        "--force",
        f"--CourseDirectory.root={course_root}",
    ]
    done = subprocess.run(command, cwd=course_root, env=nbgrader_environment(), capture_output=True, text=True)
    if done.returncode != 0 or not (release_dir(course_root) / "handin").is_dir():
        raise CourseBuildError(
            f"`{' '.join(command)}` failed in {course_root} (exit {done.returncode}):\n"
            f"{done.stdout[-4000:]}{done.stderr[-4000:]}"
        )
    return done


def strip_module(path):
    """Replace the solution regions of a ``.py`` file with :data:`CODE_STUB`, in place.

    nbgrader only strips notebooks, so the module's text becomes the one cell of
    a Python notebook and goes through nbgrader's own ``ClearSolutions``.
    """
    from nbgrader.preprocessors import ClearSolutions

    path = Path(path)
    notebook = nbformat.v4.new_notebook(
        metadata={"kernelspec": {"name": "python3", "language": "python", "display_name": "Python 3"}}
    )
    notebook.cells.append(nbformat.v4.new_code_cell(path.read_text(encoding="utf-8")))
    clear = ClearSolutions(enforce_metadata=False, code_stub={"python": CODE_STUB})
    notebook, _ = clear.preprocess(notebook, {})
    path.write_text(notebook.cells[0].source, encoding="utf-8")


def stable_cell_id(notebook_name, index):
    """A cell id that depends only on the notebook's name and the cell's position."""
    return hashlib.sha1(f"{notebook_name}:{index}".encode()).hexdigest()[:12]


def normalize_notebook(path, source_path=None):
    """Rewrite a generated notebook so that regenerating it gives the same bytes.

    Keeps only the metadata in :data:`KEPT_NOTEBOOK_METADATA` and
    :data:`KEPT_CELL_METADATA`, empties outputs and execution counts, takes cell
    ids from the source notebook (or derives them from the position when the
    source has none), and writes nbformat's own JSON layout (indent 1, sorted keys).
    """
    path = Path(path)
    notebook = json.loads(path.read_text(encoding="utf-8"))
    source_cells = []
    if source_path is not None and Path(source_path).is_file():
        source_cells = json.loads(Path(source_path).read_text(encoding="utf-8")).get("cells", [])

    metadata = notebook.get("metadata", {})
    notebook["metadata"] = {key: metadata[key] for key in KEPT_NOTEBOOK_METADATA if key in metadata}
    if "language_info" in notebook["metadata"]:
        notebook["metadata"]["language_info"] = {"name": notebook["metadata"]["language_info"].get("name", "python")}
    notebook["nbformat"], notebook["nbformat_minor"] = 4, 5
    for index, cell in enumerate(notebook.get("cells", [])):
        source_id = source_cells[index].get("id") if index < len(source_cells) else None
        cell["id"] = source_id or stable_cell_id(path.name, index)
        cell["metadata"] = {key: cell["metadata"][key] for key in KEPT_CELL_METADATA if key in cell.get("metadata", {})}
        if cell["cell_type"] == "code":
            cell["outputs"], cell["execution_count"] = [], None
        else:
            cell.pop("outputs", None)
            cell.pop("execution_count", None)
    notebook = nbformat.from_dict(notebook)
    nbformat.validate(notebook)
    path.write_text(nbformat.writes(notebook, version=4) + "\n", encoding="utf-8")


__all__ = [
    "build_course",
    "source_dir",
    "release_dir",
    "gradebook_path",
    "strip_module",
    "normalize_notebook",
    "CourseBuildError",
]
