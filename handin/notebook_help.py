"""Help for the notebooks: a function you have not written yet stops a cell with one line that names it.

The setup cell of every notebook calls :func:`explain_unwritten_functions`. From
then on, when an untouched YOUR CODE block raises ``NotImplementedError``, the
cell stops with one line such as::

    Write `collage` in handin/augmentations.py (between the YOUR CODE markers), then run this cell again.

instead of a long traceback through the provided code. Any other error shows
its usual traceback.
"""
from pathlib import Path

#: The functions you write, and the file of ``handin/`` that holds each of them.
STUDENT_FUNCTIONS = {"collage": "augmentations.py", "mixup": "augmentations.py", "cross_entropy": "utils.py",
                     "apply_convs": "network.py", "forward": "network.py", "generalize": "network.py",
                     "finetune_parameters": "network.py"}


def write_this_message(function_name, qualified_name=None):
    """The one line that tells you which function to write, and where.

    Args:
        function_name: a key of :data:`STUDENT_FUNCTIONS`.
        qualified_name: how to name it, e.g. ``"Net.forward"`` for a method; defaults to ``function_name``.
    """
    return (f"Write `{qualified_name or function_name}` in handin/{STUDENT_FUNCTIONS[function_name]} "
            f"(between the YOUR CODE markers), then run this cell again.")


def unwritten_function(traceback):
    """The name of the student function that raised, if the error comes straight from its YOUR CODE block.

    Args:
        traceback: the traceback of a ``NotImplementedError``.

    Returns:
        ``(name, qualified name)``, e.g. ``("forward", "Net.forward")``, when the innermost
        frame (where the error was raised) is a function of :data:`STUDENT_FUNCTIONS` in
        its ``handin/`` file; otherwise ``None``.
    """
    frame = None
    while traceback is not None:  # the last entry is the frame that raised
        frame, traceback = traceback.tb_frame, traceback.tb_next
    if frame is None:
        return None
    code = frame.f_code
    path = Path(code.co_filename)
    if STUDENT_FUNCTIONS.get(code.co_name) == path.name and path.parent.name == "handin":
        return code.co_name, code.co_qualname
    return None


def _show_error(shell, etype, value, traceback, tb_offset=None):
    """IPython's handler for ``NotImplementedError``: one line for an unwritten function, else the usual traceback."""
    found = unwritten_function(traceback)
    if found is not None:
        # IPython shows an exception through its _render_traceback_ method when it has one.
        value._render_traceback_ = lambda: [write_this_message(*found)]
    shell.showtraceback((etype, value, traceback), tb_offset=tb_offset)


def explain_unwritten_functions(shell=None):
    """Make IPython show an unwritten function as one line (see the module's docstring).

    Args:
        shell: the IPython shell; defaults to the running one. Does nothing outside IPython.
    """
    if shell is None:
        try:
            from IPython import get_ipython
        except ImportError:
            return
        shell = get_ipython()
    if shell is not None:
        shell.set_custom_exc((NotImplementedError,), _show_error)
