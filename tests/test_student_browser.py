"""The student's JupyterLab in a real browser: launched as the student guide says, on the untouched release.

*Run All* on each notebook must end with the one line that names the first function to write, and
nbgrader's instructor tools (menu, create assignment, formgrader, validate) must not be there.
Needs Debian's Chromium and the ``playwright`` package; skipped without them.
"""

import os
import shutil
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from browser import CHROMIUM, CHROMIUM_ARGS, free_port, jupyter_lab, needs_chromium
from conftest import KIT_ROOT
from test_notebooks import FIRST_UNWRITTEN, write_this

playwright_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")

TOKEN = "student-browser-test"
#: Seconds to wait for JupyterLab to start, and for one notebook's Run All to stop.
STARTUP_SECONDS, RUN_ALL_SECONDS = 180, 300

pytestmark = needs_chromium


@pytest.fixture(scope="module")
def student_lab(tmp_path_factory, tiny_data):
    """JupyterLab started on a fresh copy of the release with the guide's command; yields its base URL."""
    kit = tmp_path_factory.mktemp("student")
    for folder in ("handin", "notebooks"):
        shutil.copytree(KIT_ROOT / folder, kit / folder, ignore=shutil.ignore_patterns("__pycache__"))
    port = free_port()
    environment = {
        **os.environ,
        "JUPYTER_CONFIG_PATH": "notebooks/.jupyter",  # the student guide's launch command
        "JUPYTER_CONFIG_DIR": str(kit / "user-config"),  # a fresh user: no settings or workspaces from earlier runs
        "JUPYTER_RUNTIME_DIR": str(kit / "runtime"),
        "HANDIN3_DATA": str(tiny_data[0]),
        "OMP_NUM_THREADS": "1",
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
    }
    command = [
        sys.executable,
        "-m",
        "jupyter",
        "lab",
        "notebooks/",
        "--no-browser",
        f"--port={port}",
        "--ServerApp.ip=127.0.0.1",
        f"--IdentityProvider.token={TOKEN}",
    ]
    if os.geteuid() == 0:
        command.append("--allow-root")
    with jupyter_lab(command, kit, environment, kit / "jupyterlab.log", TOKEN, STARTUP_SECONDS) as base:
        yield base


@pytest.fixture(scope="module")
def browser():
    with playwright_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def open_notebook(browser, base, name):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    # A workspace of its own, so that JupyterLab does not reopen the notebooks of the other tests.
    workspace = name.split(".")[0].replace("_", "-")
    page.goto(f"{base}/lab/workspaces/{workspace}/tree/{name}?token={TOKEN}")
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=STARTUP_SECONDS * 1000)
    page.get_by_text("Python 3 (ipykernel) | Idle").wait_for(timeout=STARTUP_SECONDS * 1000)  # the status bar
    return page


def menu_labels(page):
    return [label.strip() for label in page.locator(".lm-MenuBar-itemLabel").all_inner_texts()]


@pytest.mark.parametrize("name", sorted(FIRST_UNWRITTEN))
def test_run_all_on_an_untouched_notebook_ends_with_the_one_line_that_names_the_function(
    student_lab, browser, name, tmp_path
):
    page = open_notebook(browser, student_lab, name)
    try:
        page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
        page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
        error = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
        error.first.wait_for(state="attached", timeout=RUN_ALL_SECONDS * 1000)  # Run All scrolled past it
        outputs = [text.strip() for text in page.locator(".jp-OutputArea-output").all_inner_texts() if text.strip()]
        assert outputs[-1] == write_this(*FIRST_UNWRITTEN[name])
        assert error.count() == 1, "Run All stops at the first unwritten function"
    except Exception:
        page.screenshot(path=str(tmp_path / f"{name}.png"))  # what the student would have seen
        raise
    finally:
        page.close()


def test_the_students_jupyterlab_hides_nbgrader(student_lab, browser):
    page = open_notebook(browser, student_lab, "3_report.ipynb")
    try:
        labels = menu_labels(page)
        assert "Run" in labels and "Nbgrader" not in labels
        assert page.locator(".jp-Toolbar >> text=Validate").count() == 0
    finally:
        page.close()
    for path in ("formgrader", "assignments"):
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(f"{student_lab}/{path}?token={TOKEN}", timeout=30)
        assert missing.value.code == 404, f"/{path} belongs to the instructor's nbgrader"
