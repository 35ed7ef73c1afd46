"""Import a ``handin/`` folder under a name of its own.

The kit has two packages called ``handin`` (the solutions and the generated
release); importing both as ``handin`` in one test session would mix them up.
Their modules import each other relatively, so loading a folder under another
name (e.g. ``handin_solutions``) keeps every import inside that folder.
"""

import importlib
import importlib.util
import sys
from pathlib import Path


def load_package(folder, name):
    """Import the package in ``folder`` as ``name`` (once per session) and return it."""
    if name in sys.modules:
        return sys.modules[name]
    folder = Path(folder)
    spec = importlib.util.spec_from_file_location(
        name, folder / "__init__.py", submodule_search_locations=[str(folder)]
    )
    package = importlib.util.module_from_spec(spec)
    sys.modules[name] = package
    spec.loader.exec_module(package)
    return package


def load_module(folder, name, module):
    """Import ``module`` (e.g. "checks") of the package in ``folder`` loaded as ``name``."""
    load_package(folder, name)
    return importlib.import_module(f"{name}.{module}")
