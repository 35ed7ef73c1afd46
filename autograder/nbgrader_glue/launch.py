"""``python -m autograder.nbgrader_glue.launch ARGS``: ``nbgrader ARGS``, made ready early, run on a signal.

Every nbgrader command pays a few seconds before its first notebook: importing nbgrader,
nbconvert and SQLAlchemy, and loading the course's ``nbgrader_config.py``. The batch grader
starts this process while its judges run, so that start-up overlaps the judging; nbgrader
itself is unchanged (this is ``NbGraderApp.launch_instance`` split in two):

1. import nbgrader and ``initialize`` the app with ``ARGS`` (configuration only: no
   notebook, submission or gradebook is touched yet);
2. wait for one line on stdin. ``go`` starts the command; anything else, or the end of
   stdin (the batch grader stopped), exits with :data:`NOT_STARTED` without running it.

The batch grader writes ``go`` only once every verdict exists, so the grade cells never
wait for one (no timer is involved: a missing verdict is still an immediate failure).
"""

import os
import sys

GO = "go"
#: Exit code when the batch grader closed stdin without saying ``go``.
NOT_STARTED = 3


def skip_slow_optional_imports():
    """Leave out ``rfc3987_syntax``, an optional format checker of ``jsonschema`` (the "iri" formats).

    If it is installed, importing ``jsonschema`` (which nbformat does) builds its 38 grammars
    at import time: about 1.7 s of CPU, most of nbgrader's own start-up. nbformat's schemas
    use no "iri" format, so notebook validation is the same without it.
    """
    sys.modules.setdefault("rfc3987_syntax", None)  # None in sys.modules: `import` raises ImportError


def main(argv):
    skip_slow_optional_imports()
    from jupyter_core.application import NoStart
    from jupyter_core.utils import ensure_event_loop
    from nbgrader.apps.nbgraderapp import NbGraderApp

    loop = ensure_event_loop()  # what JupyterApp.launch_instance does around initialize and start
    app = NbGraderApp.instance()
    app.initialize(argv)
    if sys.stdin.readline().strip() != GO:
        return NOT_STARTED
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)  # as under stdin=DEVNULL: kernels inherit no pipe
    try:
        app.start()
    except NoStart:  # a JupyterApp raises it once its subcommand (autograde) has run
        pass
    loop.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
