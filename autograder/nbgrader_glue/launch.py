"""``python -m autograder.nbgrader_glue.launch ARGS``: ``nbgrader ARGS``, as the batch grader starts it.

The same as ``python -m nbgrader ARGS``, except that ``jsonschema``'s optional
``rfc3987_syntax`` is left out (:func:`skip_slow_optional_imports`). The batch grader starts
it with ``--VerdictExecute.await_settled=True`` before its judges run, and tells it on stdin
which students' judging has ended (:class:`~autograder.nbgrader_glue.execute.SettledStudents`).
"""

import sys


def skip_slow_optional_imports():
    """Leave out ``rfc3987_syntax``, an optional format checker of ``jsonschema`` (the "iri" formats).

    If it is installed, importing ``jsonschema`` (which nbformat does) builds its 38 grammars
    at import time: about 1.7 s of CPU, most of nbgrader's own start-up. No schema that
    nbformat or nbgrader validates with uses an "iri" format, so validation is the same without it.
    """
    sys.modules.setdefault("rfc3987_syntax", None)  # None in sys.modules: `import` raises ImportError


def main(argv):
    skip_slow_optional_imports()
    from nbgrader.apps.nbgraderapp import NbGraderApp

    NbGraderApp.launch_instance(argv)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
