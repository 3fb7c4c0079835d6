"""The pytest-benchmark suite in bench/ stays runnable (timing disabled, small configs)."""
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(importlib.util.find_spec("pytest_benchmark") is None,
                    reason="pytest-benchmark not installed (pip install 'fastlstm[bench]')")
def test_bench_suite_runs_and_checks_results():
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "bench", "-k", "seed or stream", "-q",
         "--benchmark-disable", "-p", "no:cacheprovider"],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and "failed" not in result.stdout
