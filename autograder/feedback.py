"""One self-contained HTML feedback page per student: ``RESULTS/feedback/<id>.html``.

The page shows the status and what it means, the notes from collecting the files,
and for each part its points, every check with its message, and, for collage and
mixup, a picture of expected against got on one input. It is built only from the
verdict's plain data (scores, check names, messages written by the judge) and the
collection notes: no hidden-test source and no reference code can reach it.
Everything the student controls (exception texts, file names) is HTML-escaped.

The picture's arrays come with the verdict (``parts[part]["picture"]``, made by
:mod:`autograder.judge.pictures`); this module only draws them.

The page also shows the report's results as the grader drew them (the notice when the
results file is missing or unusable, the figures, the findings), read from the autograded
report notebook that :class:`autograder.nbgrader_glue.preprocessors.RenderReport` filled.
"""

import base64
import html
import struct
import zlib
from pathlib import Path

import numpy as np

from . import ASSIGNMENT
from .files import write_atomically
from .judge.points import PARTS

STATUS_TEXT = {
    "ok": "Your code ran to the end; the points below are what the hidden tests gave.",
    "timeout": "Your code did not finish within the time limit (an endless loop, or far too slow). "
    "The part it was running scored 0; the other parts were graded in a fresh process.",
    "memory_limit": "Your code used more memory than allowed. The part it was running scored 0.",
    "crashed": "The process running your code ended unexpectedly (sys.exit, os._exit, a crash, or an "
    "exception while importing your module). The affected parts scored 0; see their reasons.",
    "bad_archive": "Your zip file could not be opened safely, so nothing was graded. Zip your files again "
    "(File > Compress / `zip -r`) and resubmit.",
    "duplicate_id": "There were two or more submissions for you; nothing was graded until only one is left.",
    "empty_submission": "None of the expected files were found in your submission.",
    "missing_file": "A file is missing from your submission; the parts that need it scored 0.",
    "syntax_error": "A module has a syntax error, so Python cannot import it; the parts that need it scored 0. "
    "Run the notebooks before handing in: they would have shown the error.",
    "not_implemented": "Your code ran, but at least one function is still the released stub (it raises "
    "NotImplementedError); its part scored 0. The parts below name the function and its file.",
    "grader_error": "The grader itself failed on your submission; this is not your fault and your grade is not "
    "final. The TA will grade it again.",
    "bad_id": "The name of your submission (folder or zip) has characters the grader does not accept, so it "
    "was graded under the id shown above. The notes say which name it came from.",
    "too_large": "Your submission holds too many files or too many bytes to be graded. Hand in only the "
    "three modules, the report notebook and results/experiment.json.",
    "file_too_large": "A module is larger than the grader accepts, so the released stub was graded in its place.",
}


# ----------------------------------------------------------------------------- rendering


def png_data_uri(pixels):
    """Encode an image as a PNG data URI with numpy and zlib only (fast: no plotting library).

    Args:
        pixels: uint8 array ``[H, W]`` (grey) or ``[H, W, 3]`` (RGB).
    """
    pixels = np.ascontiguousarray(pixels, dtype=np.uint8)
    height, width = pixels.shape[:2]
    colour_type = 2 if pixels.ndim == 3 else 0

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    rows = b"".join(b"\0" + row.tobytes() for row in pixels.reshape(height, -1))  # filter 0 per row
    png = (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )
    return "data:image/png;base64," + base64.b64encode(png).decode()


def _scaled(array, low, high, zoom):
    """Map ``[low, high]`` to 0..255 (NaN and inf shown as the extremes), then enlarge by ``zoom``."""
    array = np.nan_to_num(np.asarray(array, dtype=np.float64), nan=high, posinf=high, neginf=low)
    grey = np.clip((array - low) / max(high - low, 1e-12), 0, 1) * 255
    return np.kron(grey, np.ones((zoom, zoom))).astype(np.uint8)


def picture_panels(picture, size=112):
    """``[(title, data URI or None)]``: batch_i, batch_j, expected, got on one grey scale; |got - expected| in red."""
    panels = [
        ("batch_i", picture["i"]),
        ("batch_j", picture["j"]),
        ("expected", picture["expected"]),
        ("got", picture["got"]),
    ]
    shown = [np.asarray(a, dtype=np.float64) for _, a in panels if a is not None]
    finite = np.concatenate([a[np.isfinite(a)].ravel() for a in shown]) if shown else np.zeros(1)
    low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    out = []
    for title, array in panels:
        if array is None:
            out.append((title, None))
            continue
        out.append((title, png_data_uri(_scaled(array, low, high, max(1, size // len(array))))))
    if picture["got"] is not None and picture["expected"] is not None:
        difference = np.abs(np.asarray(picture["got"], dtype=np.float64) - np.asarray(picture["expected"]))
        difference = np.nan_to_num(difference, nan=np.inf)
        top = float(np.max(difference[np.isfinite(difference)], initial=0.0)) or 1.0
        red = _scaled(difference, 0.0, top, max(1, size // len(difference)))
        out.append(("|got - expected|", png_data_uri(np.stack([np.full_like(red, 255), 255 - red, 255 - red], -1))))
    return out


STYLE = """
body { font-family: sans-serif; max-width: 60em; margin: 2em auto; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
td, th { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
.pass { color: #176e2b; } .fail { color: #a4161a; }
.status { padding: 0.6em 1em; background: #f3f3f3; border-left: 4px solid #888; }
table.picture td { border: none; text-align: center; font-size: 0.85em; }
table.picture img { image-rendering: pixelated; border: 1px solid #ccc; }
"""


def _escape(value):
    return html.escape(str(value))


def _status_text(status):
    return STATUS_TEXT.get(status.split(":")[0], "")


def _part_html(name, part, row):
    lines = [f"<h2>{_escape(name)}: {_escape(row[name])} / {_escape(part.get('max', ''))}</h2>"]
    if part.get("reason"):
        lines.append(f"<p class='fail'>{_escape(part['reason'])}</p>")
    lines.append("<table><tr><th>check</th><th>points</th><th>result</th></tr>")
    for check in part.get("checks", []):
        verdict_class = "pass" if check.get("passed") else "fail"
        lines.append(
            f"<tr><td>{_escape(check['name'])}</td><td>{_escape(check['points'])} / "
            f"{_escape(check['max'])}</td><td class='{verdict_class}'>{_escape(check['message'])}</td></tr>"
        )
    lines.append("</table>")
    picture = part.get("picture")
    if picture:
        caption = "Expected against got on one input (first channel)"
        if picture.get("note"):
            caption += f": {picture['note']}"
        cells = "".join(
            f"<td><div>{_escape(title)}</div>"
            + (f"<img alt='{_escape(title)}' src='{uri}'>" if uri else "<div>nothing to show</div>")
            + "</td>"
            for title, uri in picture_panels(picture)
        )
        lines.append(
            f"<figure><table class='picture'><tr>{cells}</tr></table>"
            f"<figcaption>{_escape(caption)}</figcaption></figure>"
        )
    return "\n".join(lines)


def report_notebook_path(feedback_path, student_id):
    """The autograded report next to a feedback page: ``RESULTS/course/autograded/<id>/hand_in_3/3_report.ipynb``."""
    return Path(feedback_path).parent.parent / "course" / "autograded" / student_id / ASSIGNMENT / "3_report.ipynb"


def report_html(notebook_path):
    """The report's results as grading drew them: notice, findings text, figures (empty if not autograded)."""
    import nbformat

    from .nbgrader_glue.preprocessors import REPORT_METADATA

    try:
        notebook = nbformat.read(notebook_path, as_version=4)  # joins the lines nbformat splits on writing
    except (OSError, ValueError):
        return ""
    outcome = notebook.get("metadata", {}).get(REPORT_METADATA)
    if not isinstance(outcome, dict):
        return ""
    lines = ["<h2>Your report's results</h2>"]
    if outcome.get("status") != "ok":
        lines.append(
            "<p class='fail'>The report's figures and findings could not be drawn; your written answers "
            "are graded by hand, the code parts as usual.</p>"
        )
    notes = [note for note in outcome.get("notes", []) if isinstance(note, str)]
    if notes:
        lines.append("<ul>" + "".join(f"<li>{_escape(note)}</li>" for note in notes) + "</ul>")
    for cell in notebook.get("cells", []):
        for output in cell.get("outputs", []) if cell.get("cell_type") == "code" else []:
            picture = output.get("data", {}).get("image/png")
            if isinstance(picture, str):
                data = base64.b64encode(base64.b64decode(picture)).decode("ascii")  # only base64 reaches the page
                lines.append(
                    f"<p><img style='max-width:100%' alt='report figure' src='data:image/png;base64,{data}'></p>"
                )
            elif output.get("output_type") == "stream" and isinstance(output.get("text"), str):
                lines.append(f"<pre>{_escape(output['text'])}</pre>")
    return "\n".join(lines)


def feedback_html(submission, row, verdict, report_notebook=None):
    """The page for one student (a string); ``report_notebook``: the autograded report, if any."""
    status = row["status"]
    body = [
        f"<h1>Hand-in 3: feedback for {_escape(submission.student_id)}</h1>",
        f"<p><b>Total: {_escape(row['total'])} / {_escape(row['max_total'])}</b> "
        "(autograded parts; the report's answers are graded by hand)</p>",
        f"<p class='status'>Status: <b>{_escape(status)}</b>. {_escape(_status_text(status))}</p>",
    ]
    if submission.notes:
        body.append("<h2>About your files</h2><ul>")
        body += [f"<li>{_escape(note)}</li>" for note in submission.notes]
        body.append("</ul>")
    if submission.origins:
        body.append(f"<p>Graded from: {_escape(', '.join(submission.origins))}</p>")
    parts = (verdict or {}).get("parts", {})
    for name in PARTS:
        if name in parts:
            body.append(_part_html(name, parts[name], row))
        else:
            body.append(f"<h2>{_escape(name)}: {_escape(row[name])}</h2><p>Not graded (see the status above).</p>")
    if report_notebook is not None:
        body.append(report_html(report_notebook))
    return (
        f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>Feedback {_escape(submission.student_id)}"
        f"</title><style>{STYLE}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n"
    )


def write_feedback(path, submission, row, verdict):
    """Write the page atomically (with the report's results from the autograded report next to it)."""
    report_notebook = report_notebook_path(path, submission.student_id)
    write_atomically(path, feedback_html(submission, row, verdict, report_notebook))
