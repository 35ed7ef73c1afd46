"""Make student-written notebook content safe to show in a TA's browser.

Everything a student wrote is hostile: a ``<script>`` or an ``onerror=`` handler in a
markdown answer runs on the Jupyter origin with the TA's session when formgrader or a
feedback page shows it. These functions keep what a report needs (markdown with its
formatting, math, code, tables; plain-text and PNG/JPEG outputs) and remove the rest:

* :func:`clean_markdown`: the HTML inside markdown goes through nh3 (a kept HTML
  sanitizer) with a small allow-list of formatting tags and no attributes except safe
  links; link targets other than http(s), mailto and in-page anchors are dropped.
* :func:`clean_outputs`: only ``text/plain``, ``image/png`` and ``image/jpeg`` survive;
  active MIME types (HTML, JavaScript, SVG, widget views, ...) are dropped.
* :func:`clean_notebook`: every cell (markdown, raw, code outputs, attachments) and the
  cell and notebook metadata that renderers read.
"""

import re

import nh3

#: Formatting that markdown answers may use as raw HTML; every other tag is removed
#: (its text kept), ``script``/``style`` with their content.
ALLOWED_TAGS = {
    "b",
    "strong",
    "i",
    "em",
    "u",
    "s",
    "del",
    "sub",
    "sup",
    "br",
    "p",
    "code",
    "pre",
    "kbd",
    "blockquote",
    "ul",
    "ol",
    "li",
    "table",
    "thead",
    "tbody",
    "tr",
    "th",
    "td",
    "hr",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "a",
}
ALLOWED_ATTRIBUTES = {"a": {"href", "title"}}
URL_SCHEMES = {"http", "https", "mailto"}
REMOVED_WITH_CONTENT = {"script", "style", "template", "noscript", "iframe", "object", "embed", "svg", "math"}

#: Output MIME types a renderer shows as inert text or pixels.
SAFE_MIME_TYPES = ("text/plain", "image/png", "image/jpeg")
#: Cell metadata that nbgrader and the renderers need; everything else is dropped.
KEPT_CELL_METADATA = ("nbgrader", "editable", "deletable", "collapsed", "scrolled")
KEPT_NOTEBOOK_METADATA = ("kernelspec", "language_info")
#: A grade id as nbgrader writes it (anything else in a student's cell metadata is not ours).
GRADE_ID = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")

# HTML starts a tag only with "<" followed by a letter, "/", "!" or "?"; any other escaped "<"
# may go back to a plain "<", which keeps "a < b" and "x<1" readable in markdown and math.
_INERT_LESS_THAN = re.compile(r"&lt;(?![A-Za-z/!?])")
# A markdown link destination or reference definition with a URL scheme: [text](scheme:...), [id]: scheme:...
# Code in markdown: fenced blocks and inline spans. Their "<" is escaped before nh3, so that
# "if a<b:" is not taken for a tag and lost (it shows as "&lt;" in code; a cosmetic loss).
_CODE = re.compile(r"^(```|~~~)[^\n]*\n.*?^\1|(`+)[^`]+?\2", re.MULTILINE | re.DOTALL)
_LINK_TARGET = re.compile(r"(\]\(\s*<?|^\s{0,3}\[[^\]\n]+\]:\s*<?)\s*([A-Za-z][A-Za-z0-9+.\-]*):", re.MULTILINE)


def _neutralize_link(match):
    prefix, scheme = match.group(1), match.group(2)
    return match.group(0) if scheme.lower() in URL_SCHEMES else f"{prefix}#blocked-"


def clean_html(text):
    """``text`` with only :data:`ALLOWED_TAGS` left as markup (nh3); the rest escaped or removed."""
    return nh3.clean(
        text,
        tags=ALLOWED_TAGS,
        clean_content_tags=REMOVED_WITH_CONTENT,
        attributes=ALLOWED_ATTRIBUTES,
        url_schemes=URL_SCHEMES,
        strip_comments=True,
    )


def clean_markdown(source):
    """A markdown cell's source with its HTML sanitized and unsafe link targets blocked.

    nh3 escapes ``<``, ``>`` and ``&`` in text; markdown needs ``>`` (quotes) and ``&``
    back as they were, and a ``<`` that cannot open a tag may stay too. None of these
    can start markup again: only ``<`` + letter, ``/``, ``!`` or ``?`` does.
    """
    protected = _CODE.sub(lambda match: match.group(0).replace("<", "&lt;"), source)
    cleaned = clean_html(protected)
    cleaned = _INERT_LESS_THAN.sub("<", cleaned).replace("&gt;", ">").replace("&amp;", "&")
    return _LINK_TARGET.sub(_neutralize_link, cleaned)


def clean_outputs(outputs):
    """Saved outputs with every active MIME type dropped (an output left empty is removed)."""
    kept = []
    for output in outputs:
        if output.get("output_type") in ("display_data", "execute_result"):
            data = {mime: value for mime, value in output.get("data", {}).items() if mime in SAFE_MIME_TYPES}
            if not data:
                continue
            output["data"] = data
            output["metadata"] = {}
        elif output.get("output_type") not in ("stream", "error"):
            continue
        kept.append(output)
    return kept


def clean_cell_metadata(metadata):
    """The cell metadata worth keeping; nbgrader's block only with a grade id nbgrader could have written."""
    kept = {key: metadata[key] for key in KEPT_CELL_METADATA if key in metadata}
    grade_id = kept.get("nbgrader", {}).get("grade_id")
    if grade_id is not None and not (isinstance(grade_id, str) and GRADE_ID.match(grade_id)):
        del kept["nbgrader"]
    return kept


def clean_notebook(nb):
    """Sanitize a notebook in place (markdown, raw cells, outputs, attachments, metadata); returns it."""
    nb.metadata = {key: nb.metadata[key] for key in KEPT_NOTEBOOK_METADATA if key in nb.metadata}
    for cell in nb.cells:
        cell.metadata = clean_cell_metadata(cell.get("metadata", {}))
        if cell.cell_type in ("markdown", "raw"):
            cell.source = clean_markdown(cell.source)
            attachments = {
                name: {mime: value for mime, value in bundle.items() if mime in SAFE_MIME_TYPES[1:]}
                for name, bundle in cell.get("attachments", {}).items()
            }
            if "attachments" in cell:
                cell.attachments = {name: bundle for name, bundle in attachments.items() if bundle}
        elif cell.cell_type == "code":
            cell.outputs = clean_outputs(cell.get("outputs", []))
    return nb
