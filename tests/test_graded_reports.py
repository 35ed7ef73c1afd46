"""One class with reports, graded by the real batch grader, checked as files and in a real browser.

The class (``tests/graded_reports.py``): a benign hand-in, its hostile twin, one without results
and one with broken results, graded once (real bubblewrap, real ``nbgrader autograde``, real
gradebook). The first tests read what was written: every figure and the findings reach the
autograded report, a missing or invalid results file gets a notice and costs no points, and no
planted payload survives in any notebook, the gradebook or a feedback page.

Then real headless Chromium opens what a TA opens. As the TA guide (docs/ta-guide-report.md)
says, JupyterLab is started in ``RESULTS/course`` (formgrader is a server extension of it) and
``nbgrader generate_feedback`` is run there. Chromium (Debian's ``/usr/bin/chromium``, driven by
playwright) opens formgrader's pages, the kit's feedback pages and nbgrader's feedback pages.
Every planted script would set ``window.__pwned`` and call a local beacon; the test checks both,
after first showing on the raw (unsanitized) notebook that the payloads do fire.

Both halves share the graded class in one process, so they live in one file (each file runs on
one xdist worker).
"""

import base64
import os
import shutil

import nbformat
import pytest
from browser import CHROMIUM, CHROMIUM_ARGS, free_port, jupyter_lab, needs_chromium
from graded_reports import (
    ACTIVE_PATTERNS,
    BENIGN_ANSWER,
    FIGURES,
    REPORT,
    course_environment,
    generate_feedback,
    graded_class,
)
from nbgrader.api import Gradebook

from autograder import ASSIGNMENT, KIT_ROOT
from autograder.nbgrader_glue.preprocessors import REPORT_METADATA
from autograder.sandbox import bubblewrap_path

STUDENTS = ("alice", "mallory", "nora", "ivan")
#: Figures the benign report must show on formgrader's grading page.
N_FIGURES = sum(FIGURES.values())

needs_bubblewrap = pytest.mark.skipif(bubblewrap_path() is None, reason="bubblewrap is not installed")


@pytest.fixture(scope="module")
def graded(tmp_path_factory, results_with_course):
    if not (KIT_ROOT / "notebooks" / REPORT).is_file():
        pytest.skip("the student release notebooks/ is missing: run `make release`")
    return graded_class(tmp_path_factory.mktemp("graded_reports"), results_with_course)


def autograded_report(graded, student):
    return nbformat.read(graded["out"] / "course" / "autograded" / student / ASSIGNMENT / REPORT, as_version=4)


def cell_by_marker(notebook, marker):
    cells = [cell for cell in notebook.cells if cell.cell_type == "code" and marker in cell.source]
    assert len(cells) == 1, marker
    return cells[0]


@needs_bubblewrap
@pytest.mark.parametrize("student", ["alice", "mallory"])
def test_the_graded_report_has_every_figure_and_the_findings(graded, student):
    notebook = autograded_report(graded, student)
    for marker, count in FIGURES.items():
        pictures = [
            output for output in cell_by_marker(notebook, marker).outputs if "image/png" in output.get("data", {})
        ]
        assert len(pictures) == count, marker
        assert all(base64.b64decode(p["data"]["image/png"]).startswith(b"\x89PNG") for p in pictures)
    findings = "".join(output.get("text", "") for output in cell_by_marker(notebook, "findings.report(").outputs)
    assert "(a) finetune accuracy rises with s: HOLDS" in findings and "± " in findings
    assert notebook.metadata[REPORT_METADATA]["status"] == "ok"
    assert "handin3-report-notice" not in [cell.get("id") for cell in notebook.cells]


@needs_bubblewrap
def test_benign_answers_keep_their_markdown(graded):
    notebook = autograded_report(graded, "alice")
    answers = [cell.source for cell in notebook.cells if cell.metadata.get("nbgrader", {}).get("solution")]
    assert answers and all(answer.replace("a &lt; b", "a < b") == BENIGN_ANSWER for answer in answers)


@needs_bubblewrap
@pytest.mark.parametrize(
    "student, status, says",
    [
        ("nora", "missing", "was not handed in"),
        ("ivan", "invalid", "run 0: augmentation must be one of none, collage, mixup"),
    ],
)
def test_missing_or_invalid_results_get_a_notice_and_no_lost_points(graded, student, status, says):
    notebook = autograded_report(graded, student)
    assert notebook.cells[0].get("id") == "handin3-report-notice" and says in notebook.cells[0].source
    assert notebook.metadata[REPORT_METADATA]["status"] == status
    assert not any(
        "image/png" in output.get("data", {})
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.outputs
    )
    feedback = (graded["out"] / "feedback" / f"{student}.html").read_text()
    assert says in feedback and "could not be drawn" in feedback
    row, reference = graded["rows"][student], graded["rows"]["alice"]
    assert row["total"] == reference["total"] == row["max_total"] and row["status"] == reference["status"]


@needs_bubblewrap
def test_kit_feedback_shows_the_figures(graded):
    feedback = (graded["out"] / "feedback" / "alice.html").read_text()
    assert feedback.count("src='data:image/png;base64,") >= sum(FIGURES.values())
    assert "(a) finetune accuracy rises with s: HOLDS" in feedback


@needs_bubblewrap
def test_nothing_planted_survives_in_what_browsers_render(graded):
    pages = generate_feedback(graded)
    out, planted = graded["out"], list(graded["payloads"].values())

    def found(path):
        text = path.read_bytes().decode("utf-8", errors="replace")
        return [p for p in planted if p in text], {p: text.count(p) for p in ACTIVE_PATTERNS}

    for path in [
        *out.glob("course/submitted/*/*/*.ipynb"),
        *out.glob("course/autograded/*/*/*.ipynb"),
        out / "course" / "gradebook.db",
        *out.glob("feedback/*.html"),
    ]:
        assert found(path) == ([], dict.fromkeys(ACTIVE_PATTERNS, 0)), path
    for path in pages.glob(f"mallory/{ASSIGNMENT}/*.html"):
        # nbconvert's page template itself has CSS such as a[href^="javascript:"]: compare with the benign twin
        assert found(path) == ([], found(pages / "alice" / ASSIGNMENT / path.name)[1]), path
    mallory = pages / "mallory" / ASSIGNMENT / "3_report.html"
    assert mallory.read_text().count("data:image/png;base64,") >= sum(FIGURES.values())  # figures drawn all the same


# ----------------------------------------------------------------------------- in a real browser


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
    with jupyter_lab(command, course, course_environment(), graded["out"] / "jupyter-lab.log", token) as base:
        yield base, token


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright is not installed: pip install -r requirements.txt"
    )
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def nbgrader_feedback(graded):
    return generate_feedback(graded)


def visit(browser, url):
    """Open ``url`` in a fresh page, let every handler fire; returns (page text, PNG images shown, pwned?)."""
    return visit_all(browser, [url])[0]


def visit_all(browser, urls):
    """:func:`visit` of every url, the pages loading side by side; one (text, images, pwned) per url."""
    pages = []
    for url in urls:
        page, console = browser.new_page(), []
        page.on("console", lambda message, console=console: console.append(message.text))
        page.goto(url, wait_until="commit")
        pages.append((page, console))
    for page, _ in pages:
        page.wait_for_load_state("networkidle")
    # Toggle, error and load events fire as the pages render: the control test (payloads fire in a raw
    # page) shows that this wait is long enough.
    pages[-1][0].wait_for_timeout(500)
    results = []
    for page, console in pages:
        pwned = page.evaluate("() => window.__pwned") or any("__pwned" in text for text in console)
        images = page.evaluate(
            "() => [...document.images].filter(i => i.src.startsWith('data:image/png') && i.naturalWidth > 0).length"
        )
        results.append((page.inner_text("body"), images, pwned))
        page.close()
    return results


@needs_bubblewrap
@needs_chromium
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


@needs_bubblewrap
@needs_chromium
def test_formgrader_runs_no_student_script(graded, lab, browser):
    base, token = lab
    context = browser.new_context()
    context.new_page().goto(f"{base}/lab?token={token}", wait_until="domcontentloaded")  # log in as the TA
    urls = formgrader_pages(graded, base, token)
    for url, (_, _, pwned) in zip(urls, visit_all(context, urls), strict=True):
        assert not pwned, url
    assert graded["beacon"].hits == []
    context.close()
    # formgrader found the exchange folder the course's nbgrader_config.py sets up (the TA guide says so)
    assert "Unwritable directory" not in (graded["out"] / "jupyter-lab.log").read_text()


@needs_bubblewrap
@needs_chromium
def test_jupyterlab_menu_opens_formgrader(lab, browser):
    """The TA guide's way in: Nbgrader > Formgrader in JupyterLab's menu bar."""
    base, token = lab
    page = browser.new_page()
    page.goto(f"{base}/lab?token={token}", wait_until="domcontentloaded")
    page.get_by_role("menuitem", name="Nbgrader", exact=True).click(timeout=120_000)
    page.get_by_role("menuitem", name="Formgrader", exact=True).click()
    page.frame_locator("iframe").get_by_text("Manage Assignments").first.wait_for(timeout=120_000)
    page.close()


@needs_bubblewrap
@needs_chromium
def test_formgrader_shows_the_figures_and_findings(graded, lab, browser):
    base, token = lab
    context = browser.new_context()
    context.new_page().goto(f"{base}/lab?token={token}", wait_until="domcontentloaded")
    with Gradebook(f"sqlite:///{graded['out'] / 'course' / 'gradebook.db'}") as gradebook:
        ids = {s: gradebook.find_submission_notebook("3_report", ASSIGNMENT, s).id for s in ("alice", "nora")}
    alice, nora = visit_all(context, [f"{base}/formgrader/submissions/{ids[s]}/" for s in ("alice", "nora")])
    text, images, _ = alice
    assert images >= N_FIGURES and "(a) finetune accuracy rises with s" in text
    text, images, _ = nora
    assert images == 0 and "The report's results are missing" in text and "was not handed in" in text
    context.close()


@needs_bubblewrap
@needs_chromium
def test_feedback_pages_run_no_student_script(graded, nbgrader_feedback, browser):
    pages = [
        (student, page)
        for student in STUDENTS
        for page in (
            graded["out"] / "feedback" / f"{student}.html",
            nbgrader_feedback / student / ASSIGNMENT / "3_report.html",
        )
    ]
    for (student, page), (text, images, pwned) in zip(
        pages, visit_all(browser, [p.as_uri() for _, p in pages]), strict=True
    ):
        assert not pwned, page
        if student in ("alice", "mallory"):
            assert images >= N_FIGURES and "(a) finetune accuracy rises with s" in text, page
    assert graded["beacon"].hits == []
