"""The results file: one JSON record per run, found again by its ``RunKey``.

The file is ``{"runs": [record, ...]}``. A record (:func:`make_record`) holds every field
of the run's :class:`~.engine_config.RunKey`, the final finetune test accuracy and loss,
and both phases' histories (``train_loss``, ``train_accuracy``: one value per batch;
``test_steps``, ``test_loss``, ``test_accuracy``: one value per test evaluation). It is
plain JSON, so the report, the findings and the grader read it without running any code.
"""
import json
from dataclasses import asdict, fields
from pathlib import Path

from .engine_config import RunKey


def history_record(history):
    """A ``training.History`` as a JSON-ready dict."""
    return {name: list(values) for name, values in asdict(history).items()}


def make_record(key, pretrain_history, finetune_history):
    """One run's JSON record: its key, both histories, and the final finetune test numbers."""
    return {**asdict(key),
            "finetune_test_accuracy": finetune_history["test_accuracy"][-1],
            "finetune_test_loss": finetune_history["test_loss"][-1],
            "pretrain": pretrain_history, "finetune": finetune_history}


def load_results(path):
    """The records in a results file (an empty list if it does not exist).

    Raises:
        ValueError: naming the file, if it is not a results file.
    """
    path = Path(path)
    if not path.exists():
        return []
    try:
        records = json.loads(path.read_text())["runs"]
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise ValueError(f"{path} is not a results file of handin.engine ({error}); "
                         f"delete it or pick another --results path") from error
    return records


def save_results(path, records):
    """Write all records, atomically (a crash never leaves half a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(path.suffix + ".tmp")
    temporary.write_text(json.dumps({"runs": records}))
    temporary.replace(path)


def record_key(record):
    """The ``RunKey`` of a saved record."""
    return RunKey(**{f.name: record[f.name] for f in fields(RunKey)})
