"""Real headless Chromium on what a TA and a student open: no planted script runs.

A class with a hostile hand-in next to a benign one (``tests/graded_reports.py``) is graded
by the batch grader; then, as the TA guide (docs/ta-guide-report.md) says, JupyterLab is
started in ``RESULTS/course`` (formgrader is a server extension of it) and ``nbgrader
generate_feedback`` is run there. Chromium (Debian's ``/usr/bin/chromium``, driven by
playwright) opens formgrader's pages, the kit's feedback pages and nbgrader's feedback
pages. Every planted script would set ``window.__pwned`` and call a local beacon; the test
checks both, after first showing on the raw (unsanitized) notebook that the payloads do fire.
"""

import os
import shutil
import subprocess
import time
import urllib.request

import pytest
from browser import CHROMIUM, CHROMIUM_ARGS, free_port, needs_chromium
from graded_reports import REPORT, course_environment, generate_feedback, graded_class
from nbgrader.api import Gradebook

from autograder import ASSIGNMENT, KIT_ROOT
from autograder.sandbox import bubblewrap_path

STUDENTS = ("alice", "mallory", "nora", "ivan")
#: Figures the benign report must show on formgrader's grading page (4 curves, accuracy against s, same vs cross).
N_FIGURES = 6

pytestmark = [
    needs_chromium,
    pytest.mark.skipif(bubblewrap_path() is None, reason="bubblewrap is not installed"),
]
sync_api = pytest.importorskip(
    "playwright.sync_api", reason="playwright is not installed: pip install -r requirements.txt"
)


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    if not (KIT_ROOT / "notebooks" / REPORT).is_file():
        pytest.skip("the student release notebooks/ is missing: run `make release`")
    return graded_class(tmp_path_factory.mktemp("browser"))


@pytest.fixture(scope="module")
def lab(graded):
    """``jupyter lab`` in RESULTS/course, as the TA guide starts it; yields its base URL and token."""
    course, port, token = graded["out"] / "course", free_port(), "handin3-test-token"
    command = [
        shutil.which("jupyter", path=course_environment()["PATH"]),
        "lab",
        "--no-browser",
        f"--port={port}",
        "--ip=127.0.0.1",
        f"--IdentityProvider.token={token}",
    ]
    if os.geteuid() == 0:
        command.append("--allow-root")
    log = open(graded["out"] / "jupyter-lab.log", "w")
    server = subprocess.Popen(command, cwd=course, env=course_environment(), stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(240):  # start-up on a loaded machine; not a timed assertion
            try:
                urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2)
                break
            except OSError:
                assert server.poll() is None, (graded["out"] / "jupyter-lab.log").read_text()
                time.sleep(0.5)
        yield base, token
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def nbgrader_feedback(graded):
    return generate_feedback(graded)


def visit(browser, url):
    """Open ``url`` in a fresh page, let every handler fire; returns (page text, PNG images shown, pwned?)."""
    page = browser.new_page()
    console = []
    page.on("console", lambda message: console.append(message.text))
    page.goto(url, wait_until="networkidle")
    page.wait_for_timeout(1500)  # toggle and load events fire after the page settles
    pwned = page.evaluate("() => window.__pwned") or any("__pwned" in text for text in console)
    images = page.evaluate(
        "() => [...document.images].filter(i => i.src.startsWith('data:image/png') && i.naturalWidth > 0).length"
    )
    text = page.inner_text("body")
    page.close()
    return text, images, pwned


def test_the_payloads_fire_in_an_unsanitized_page(graded, browser, tmp_path):
    """The control: nbconvert's plain HTML of mallory's notebook as handed in runs her scripts."""
    from nbconvert import HTMLExporter

    html, _ = HTMLExporter().from_filename(str(graded["class_dir"] / "mallory" / REPORT))
    (tmp_path / "raw.html").write_text(html)
    _, _, pwned = visit(browser, (tmp_path / "raw.html").as_uri())
    assert pwned and graded["beacon"].hits
    graded["beacon"].hits.clear()


def formgrader_pages(graded, base, token):
    pages = [
        f"{base}/formgrader",
        f"{base}/formgrader/manage_submissions/{ASSIGNMENT}",
        f"{base}/formgrader/gradebook",
        f"{base}/formgrader/gradebook/{ASSIGNMENT}",
        f"{base}/formgrader/gradebook/{ASSIGNMENT}/3_report",
        f"{base}/formgrader/manage_students",
    ]
    with Gradebook(f"sqlite:///{graded['out'] / 'course' / 'gradebook.db'}") as gradebook:
        for student in STUDENTS:
            submission = gradebook.find_submission_notebook("3_report", ASSIGNMENT, student)
            pages += [
                f"{base}/formgrader/submissions/{submission.id}/",
                f"{base}/formgrader/manage_students/{student}/{ASSIGNMENT}",
            ]
    return pages


def test_formgrader_runs_no_student_script(graded, lab, browser):
    base, token = lab
    context = browser.new_context()
    context.new_page().goto(f"{base}/lab?token={token}", wait_until="domcontentloaded")  # log in as the TA
    for url in formgrader_pages(graded, base, token):
        _, _, pwned = visit(context, url)
        assert not pwned, url
    assert graded["beacon"].hits == []
    context.close()
    # formgrader found the exchange folder the course's nbgrader_config.py sets up (the TA guide says so)
    assert "Unwritable directory" not in (graded["out"] / "jupyter-lab.log").read_text()


def test_jupyterlab_menu_opens_formgrader(lab, browser):
    """The TA guide's way in: Nbgrader > Formgrader in JupyterLab's menu bar."""
    base, token = lab
    page = browser.new_page()
    page.goto(f"{base}/lab?token={token}", wait_until="domcontentloaded")
    page.get_by_role("menuitem", name="Nbgrader", exact=True).click(timeout=120_000)
    page.get_by_role("menuitem", name="Formgrader", exact=True).click()
    page.frame_locator("iframe").get_by_text("Manage Assignments").first.wait_for(timeout=120_000)
    page.close()


def test_formgrader_shows_the_figures_and_findings(graded, lab, browser):
    base, token = lab
    context = browser.new_context()
    context.new_page().goto(f"{base}/lab?token={token}", wait_until="domcontentloaded")
    with Gradebook(f"sqlite:///{graded['out'] / 'course' / 'gradebook.db'}") as gradebook:
        ids = {s: gradebook.find_submission_notebook("3_report", ASSIGNMENT, s).id for s in ("alice", "nora")}
    text, images, _ = visit(context, f"{base}/formgrader/submissions/{ids['alice']}/")
    assert images >= N_FIGURES and "(a) finetune accuracy rises with s" in text
    text, images, _ = visit(context, f"{base}/formgrader/submissions/{ids['nora']}/")
    assert images == 0 and "The report's results are missing" in text and "was not handed in" in text
    context.close()


def test_feedback_pages_run_no_student_script(graded, nbgrader_feedback, browser):
    for student in STUDENTS:
        for page in (
            graded["out"] / "feedback" / f"{student}.html",
            nbgrader_feedback / student / ASSIGNMENT / "3_report.html",
        ):
            text, images, pwned = visit(browser, page.as_uri())
            assert not pwned, page
            if student in ("alice", "mallory"):
                assert images >= N_FIGURES and "(a) finetune accuracy rises with s" in text, page
    assert graded["beacon"].hits == []
