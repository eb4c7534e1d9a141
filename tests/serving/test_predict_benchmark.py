"""benchmarks/predict_speed.py runs end to end at CI size (the 1 M-row measurement is the lead's)."""

import subprocess
import sys

from tests.conftest import REPO


def test_predict_benchmark_runs_with_few_rows(shared_data):
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "predict_speed.py"), "--data-dir", str(shared_data), "--rows", "3000",
         "--batch-rows", "1000", "--hidden-units", "16", "--threads", "1"],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "rows: 3,000" in result.stdout and "--batch-rows 1,000" in result.stdout
    assert "rows/s (target >= 200,000)" in result.stdout and "peak RSS of predict:" in result.stdout
