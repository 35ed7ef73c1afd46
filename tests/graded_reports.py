"""A small class of hand-ins with reports, graded once per test process by the real batch grader.

Students (all with the reference modules, so every code part scores full marks):

* ``alice``: a benign report written as in JupyterLab (markdown answers with bold, math, a
  list, a table and code) and a valid ``results/experiment.json``;
* ``mallory``: alice's twin with scripts and event handlers planted in her answers, an added
  markdown cell, a raw HTML cell, an SVG attachment, cell and notebook metadata (a widget
  view) and saved outputs (``text/html``, ``application/javascript``, ``image/svg+xml``);
* ``nora``: no results file; ``ivan``: a results file that breaks the schema (and carries HTML).

Every planted script, when it runs, sets ``window.__pwned`` and requests
``http://127.0.0.1:<beacon port>/<name>``: the browser tests listen there.
"""

import copy
import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import nbformat
from report_results import results_data

from autograder import ASSIGNMENT, KIT_ROOT
from autograder.examples import Example, assemble
from autograder.report import RESULTS_FILE, KitCode

REPORT = "3_report.ipynb"
#: The figures the report draws from the results: 4 training-curve figures, accuracy against s, same vs cross.
FIGURES = {"plot_curves(": 4, "plot_accuracy_panels(": 1, "same_vs_cross": 1}
TIME_LIMIT = 30  # CPU seconds per judge child (60 s wall)
BENIGN_ANSWER = (
    "**Frozen** features: `training.finetune` passes `net.finetune_parameters()` so $\\alpha < \\beta$ "
    "and $\\nabla_\\theta L$ only reach the head.\n\n- first point\n- second point\n\n"
    "| s | accuracy |\n| --- | --- |\n| 1 | 0.83 |\n\n```python\nif a < b:\n    pass\n```\n"
)


class Beacon:
    """A local HTTP listener that records every request a planted script makes."""

    def __init__(self):
        hits = self.hits = []

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                hits.append(self.path)
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, name):
        return f"http://127.0.0.1:{self.port}/{name}"


def payloads(beacon):
    """``{name: planted HTML}``; each one, if it runs, sets ``window.__pwned`` and calls the beacon."""

    def run(name):
        return f"window.__pwned=1;fetch('{beacon.url(name)}')"

    return {
        "script": f"<script>{run('script')}</script>",
        "img": f'<img src="x" onerror="{run("img")}">',
        "details": f'<details open ontoggle="{run("details")}"><summary>s</summary>d</details>',
        "svg": f'<svg onload="{run("svg")}"><circle r="5"></circle></svg>',
        "link": f"[click me](javascript:{run('link')})",
        "html_link": f'<a href="javascript:{run("html_link")}">click</a>',
    }


#: What must not survive anywhere a browser renders, besides the exact payload texts (a blocked link
#: keeps its target as inert text: "[click me](#blocked-window.__pwned=1;...)").
ACTIVE_PATTERNS = ("onerror=", "ontoggle=", "onload=", "javascript:", "<script>window")


def write_report(folder, answer, hostile=None):
    """The released report with every answer cell filled (and, if ``hostile``, payloads everywhere)."""
    notebook = nbformat.read(KIT_ROOT / "notebooks" / REPORT, as_version=4)
    for cell in notebook.cells:
        if cell.metadata.get("nbgrader", {}).get("solution"):
            cell.source = answer + ("\n\n" + "\n\n".join(hostile.values()) if hostile else "")
    if hostile:
        everything = "\n".join(hostile.values())
        notebook.metadata["widgets"] = {
            "application/vnd.jupyter.widget-state+json": {
                "state": {"m": {"model_name": "HTMLModel", "state": {"value": everything}}},
                "version_major": 2,
            }
        }
        extra = nbformat.v4.new_markdown_cell("My extra notes\n\n" + everything + "\n\n![pic](attachment:p.svg)")
        extra.attachments = {"p.svg": {"image/svg+xml": hostile["svg"]}}
        extra.metadata["tags"] = [hostile["img"]]
        raw = nbformat.v4.new_raw_cell(everything)
        raw.metadata["format"] = "text/html"
        code = nbformat.v4.new_code_cell("print('hi')")
        code.outputs = [
            nbformat.v4.new_output("display_data", data={"text/html": everything, "text/plain": "x"}),
            nbformat.v4.new_output("display_data", data={"application/javascript": hostile["script"][8:-9]}),
            nbformat.v4.new_output("execute_result", data={"image/svg+xml": hostile["svg"]}, execution_count=1),
            nbformat.v4.new_output(
                "display_data", data={"application/vnd.jupyter.widget-view+json": {"model_id": "m", "version_major": 2}}
            ),
        ]
        for cell in notebook.cells:  # the saved outputs of the report's own cells too
            if cell.cell_type == "code":
                cell.outputs = copy.deepcopy(code.outputs)
        notebook.cells[1:1] = [extra, raw, code]
    nbformat.write(notebook, folder / REPORT)


def build_class(root, beacon):
    """The four students' folders in ``root``."""
    engine = KitCode().engine
    results = json.dumps(results_data(engine))
    hostile = payloads(beacon)
    for name in ("alice", "mallory", "nora", "ivan"):
        folder = assemble(Example(name), root)
        write_report(folder, BENIGN_ANSWER, hostile if name == "mallory" else None)
        if name in ("alice", "mallory"):
            (folder / "results").mkdir()
            (folder / RESULTS_FILE).write_text(results)
    broken = results_data(engine)
    broken["runs"][0]["augmentation"] = hostile["img"]
    broken["runs"][1]["finetune_test_accuracy"] = 1.5
    (root / "ivan" / "results").mkdir()
    (root / "ivan" / RESULTS_FILE).write_text(json.dumps(broken))
    return root


_GRADED = {}


def graded_class(base, results_with_course):
    """Build and grade the class once per process: ``{"out", "class", "rows", "beacon", "payloads"}``.

    ``results_with_course`` (the conftest fixture) gives the RESULTS folder a copy of the
    session's course build, so the grader does not build its own."""
    if "out" not in _GRADED:
        from autograder.batch import grade

        beacon = Beacon()
        class_dir = build_class(Path(base) / "class", beacon)
        out = results_with_course(Path(base) / "results")
        rows = grade(class_dir, out, time_limit=TIME_LIMIT, quiet=True)
        _GRADED.update(
            out=out,
            class_dir=class_dir,
            rows={row["student_id"]: row for row in rows},
            beacon=beacon,
            payloads=payloads(beacon),
        )
    return _GRADED


def course_environment():
    """The TA's environment: the kit's venv first on PATH, the kit found by ``HANDIN3_KIT``."""
    return {
        **os.environ,
        "PATH": f"{os.path.dirname(sys.executable)}{os.pathsep}{os.environ.get('PATH', '')}",
        "HANDIN3_KIT": str(KIT_ROOT),
    }


def generate_feedback(graded):
    """``nbgrader generate_feedback hand_in_3`` in RESULTS/course (the TA guide's command), once; its folder."""
    course = graded["out"] / "course"
    if "feedback" not in graded:
        done = subprocess.run(
            [sys.executable, "-m", "nbgrader", "generate_feedback", ASSIGNMENT],
            cwd=course,
            env=course_environment(),
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        graded["feedback"] = course / "feedback"
    return graded["feedback"]
