"""The judge: grade the student's modules without ever importing them in this process.

``judge_submission(handin_dir, sandbox=True)`` returns a JSON-able verdict;
``judge_submissions(dirs, workers=2)`` judges many and fills the verdict cache that the
grading notebook's cells read. Points per part and check: :mod:`.points`.

CLI: ``python -m autograder.judge --handin DIR --out verdict.json [--no-sandbox]``.
The heavy modules (numpy, torch) are imported only when judging, so the grading
kernel can import :mod:`.cache` and :mod:`.points` cheaply.
"""


def judge_submission(handin_dir, **options):
    from .core import judge_submission as judge

    return judge(handin_dir, **options)


def judge_submissions(handin_dirs, **options):
    from .core import judge_submissions as judge_many

    return judge_many(handin_dirs, **options)
