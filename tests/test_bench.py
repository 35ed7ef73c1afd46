"""The engine benchmark runs both pipelines on data the test writes and prints the ratio."""

import os
import re
import subprocess
import sys

from conftest import KIT_ROOT


def test_bench_engine_prints_the_ratio_and_the_floor(tiny_data):
    command = [
        sys.executable,
        str(KIT_ROOT / "bench" / "bench_engine.py"),
        "--pretrain-batches",
        "30",
        "--finetune-batches",
        "10",
        "--original-runs",
        "1",
        "--threads",
        "1",
    ]
    result = subprocess.run(
        command, env={**os.environ, "HANDIN3_DATA": str(tiny_data[0])}, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr
    ratio = re.search(r"ratio original / engine: ([\d.]+)x", result.stdout)
    assert ratio and float(ratio.group(1)) > 0, result.stdout
    for pipeline in ("original pipeline", "engine", "floor"):
        assert re.search(rf"^{pipeline}: +[\d.]+ s", result.stdout, re.MULTILINE), result.stdout
    assert re.search(r"peak memory \d+ MB", result.stdout), result.stdout
