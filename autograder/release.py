"""``python -m autograder release [--check]``: regenerate the student release from ``solutions/``.

Steps:

1. :func:`autograder.nbgrader_glue.course.build_course` builds an nbgrader course in a
   temporary folder and runs ``nbgrader generate_assignment`` (modules stripped
   with ``ClearSolutions``, notebooks normalized, release gated).
2. The release is staged in the kit's layout: ``handin/`` with the modules and
   ``notebooks/`` with every notebook except ``grading.ipynb`` (students never
   get it; the grader adds it to each submission), the student guide
   (``notebooks/STUDENT_GUIDE.md``) and the students' JupyterLab configuration
   (``notebooks/.jupyter/``).
3. The gate runs again on exactly the staged files.
4. The staged files replace the kit's ``handin/`` and ``notebooks/``, or, with
   ``--check``, are compared byte for byte with them (exit 1 on any difference).

Exit codes: 0 success, 1 gate failure or ``--check`` difference, 2 nbgrader failure.
"""

import argparse
import filecmp
import shutil
import sys
import tempfile
import time
from pathlib import Path

from . import KIT_ROOT
from .gate import ReleaseLeakError, check_release, release_files
from .nbgrader_glue.course import GRADING_NOTEBOOK, SOLUTIONS_DIR, CourseBuildError, build_course, release_dir

#: The generated folders of the kit.
RELEASE_FOLDERS = ("handin", "notebooks")
#: File kinds that a release writes; only these are removed from the kit when they become stale.
GENERATED_SUFFIXES = (".py", ".ipynb")
#: Files the release ships besides nbgrader's output: the student guide, and the JupyterLab
#: configuration that the guide's launch command uses (it hides nbgrader's instructor tools).
SHIPPED_FILES = {
    "docs/student-guide.md": "notebooks/STUDENT_GUIDE.md",
    "solutions/jupyter/labconfig/page_config.json": "notebooks/.jupyter/labconfig/page_config.json",
    "solutions/jupyter/jupyter_server_config.json": "notebooks/.jupyter/jupyter_server_config.json",
}


def stage_release(course_root, staging, kit_root=KIT_ROOT):
    """Copy the course's release, and the :data:`SHIPPED_FILES` of ``kit_root``, into the kit's layout.

    Returns:
        ``staging``, holding ``handin/`` and ``notebooks/``.
    """
    released = release_dir(course_root)
    for path in release_files(released):
        relative = path.relative_to(released)
        if relative.parts[0] == "handin":
            target = staging / relative
        elif relative.name == GRADING_NOTEBOOK.name:
            continue
        else:
            target = staging / "notebooks" / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
    for source, target in SHIPPED_FILES.items():
        (staging / target).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(Path(kit_root) / source, staging / target)
    for folder in RELEASE_FOLDERS:
        (staging / folder).mkdir(exist_ok=True)
    return staging


def _relative_files(root):
    """``{relative path: path}`` of the release files under ``root/handin`` and ``root/notebooks``."""
    files = {}
    for folder in RELEASE_FOLDERS:
        if (root / folder).is_dir():
            files.update({path.relative_to(root): path for path in release_files(root / folder)})
    return files


def compare_release(staging, kit_root):
    """List how the kit's release differs from a fresh one.

    Returns:
        sorted list of lines like ``"differs: handin/network.py"``; empty when identical.
    """
    fresh, committed = _relative_files(staging), _relative_files(kit_root)
    differences = [f"missing from the kit: {path}" for path in fresh.keys() - committed.keys()]
    differences += [f"not generated (stale): {path}" for path in committed.keys() - fresh.keys()]
    differences += [
        f"differs: {path}"
        for path in fresh.keys() & committed.keys()
        if not filecmp.cmp(fresh[path], committed[path], shallow=False)
    ]
    return sorted(differences)


def install_release(staging, kit_root):
    """Write the staged release into the kit; remove stale generated files. Returns changed paths."""
    fresh, committed = _relative_files(staging), _relative_files(kit_root)
    changed = []
    for relative in sorted(committed.keys() - fresh.keys()):
        if relative.suffix in GENERATED_SUFFIXES:
            committed[relative].unlink()
            changed.append(f"removed {relative}")
    for relative, path in sorted(fresh.items()):
        target = kit_root / relative
        if relative in committed and filecmp.cmp(path, target, shallow=False):
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
        changed.append(f"wrote {relative}")
    return changed


def generate(kit_root=KIT_ROOT, check=False, solutions_dir=SOLUTIONS_DIR, grading_notebook=GRADING_NOTEBOOK):
    """Regenerate (or, with ``check``, verify) the release of ``kit_root``.

    Returns:
        list of lines: the changes written, or the differences found by ``check``.

    Raises:
        CourseBuildError, ReleaseLeakError: see :func:`autograder.nbgrader_glue.course.build_course`.
    """
    kit_root = Path(kit_root)
    with tempfile.TemporaryDirectory(prefix="handin3-release-") as temporary:
        course_root = build_course(
            Path(temporary) / "course", solutions_dir=solutions_dir, grading_notebook=grading_notebook
        )
        staging = stage_release(course_root, Path(temporary) / "staging")
        check_release([staging / folder for folder in RELEASE_FOLDERS], solutions_dir, grading_notebook)
        if check:
            return compare_release(staging, kit_root)
        return install_release(staging, kit_root)


def main(argv=()):
    parser = argparse.ArgumentParser(
        prog="python -m autograder release", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--check", action="store_true", help="regenerate into a temporary folder and compare with the committed release"
    )
    parser.add_argument(
        "--kit-root", type=Path, default=KIT_ROOT, help="the kit to write or check (default: %(default)s)"
    )
    options = parser.parse_args(argv)

    started = time.perf_counter()
    try:
        lines = generate(options.kit_root, check=options.check)
    except ReleaseLeakError as error:
        print(error, file=sys.stderr)
        return 1
    except CourseBuildError as error:
        print(f"release: nbgrader failed.\n{error}", file=sys.stderr)
        return 2
    seconds = time.perf_counter() - started

    if options.check:
        if lines:
            print("release --check: the committed release differs from a fresh regeneration:", file=sys.stderr)
            print("\n".join(f"  {line}" for line in lines), file=sys.stderr)
            print("Fix: run `make release` and commit handin/ and notebooks/.", file=sys.stderr)
            return 1
        print(f"release --check: handin/ and notebooks/ equal a fresh regeneration ({seconds:.1f} s)")
        return 0
    print("\n".join(f"  {line}" for line in lines) or "  (nothing changed)")
    print(f"release: handin/ and notebooks/ regenerated from solutions/ and gated ({seconds:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
