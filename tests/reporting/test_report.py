"""Report files: Markdown, plots, JSON and a self-contained HTML page that renders in Chromium."""

import json
import re
import shutil
import subprocess

import numpy as np
import pytest

from recforge.reporting.analysis import analyze
from recforge.reporting.report import write_report
from tests.reporting.test_analysis import _ranked


@pytest.fixture
def comparison():
    rng = np.random.default_rng(0)
    runs = []
    for model, shift in (("neumf", 0), ("gmf", 3), ("mf", 5)):
        for seed in (1, 2, 3):
            greater = np.clip(rng.integers(0, 30, 200) + shift, 0, 99)
            run = _ranked(model, seed, greater, full_greater=greater * 20)
            run.history = [{"epoch": e, "train/loss": 0.5 / e + 0.01 * seed, "valid/hit_rate@10": 0.5 + 0.02 * e - 0.01 * shift}
                           for e in range(1, 5)]
            runs.append(run)
    return analyze(runs)


def test_report_files(tmp_path, comparison):
    files = write_report(comparison, tmp_path / "report", command="recforge compare neumf gmf mf --dataset x --seeds 3")
    assert {"markdown", "html", "json", "metrics_png", "curves_png"} <= set(files)
    for key in ("metrics_png", "curves_png"):
        assert files[key].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = files["markdown"].read_text()
    assert "| test/hit_rate@10 |" in md and "## Pairwise tests" in md and "![Test metrics](metrics.png)" in md
    assert md.count("| test/ndcg@10 | neumf | gmf |") == 1  # one row per pair and metric
    page = files["html"].read_text()
    assert 'id="metrics"' in page and 'id="pairs"' in page and page.count("data:image/png;base64,") == 2
    assert not re.search(r'(src|href)="(https?:|file:|//)', page)  # self-contained
    data = json.loads(files["json"].read_text())
    assert data["models"] == ["neumf", "gmf", "mf"] and len(data["pairs"]) == 3 * len(data["metrics"])


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.mark.skipif(_chromium() is None, reason="headless Chromium not installed (Debian: apt-get install chromium)")
def test_html_report_renders_in_headless_chromium(tmp_path, comparison):
    files = write_report(comparison, tmp_path / "report")
    browser = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", f"--user-data-dir={tmp_path / 'profile'}"]
    url = files["html"].resolve().as_uri()
    dom = subprocess.run([*browser, "--dump-dom", url], capture_output=True, text=True, timeout=120, check=True).stdout
    assert '<table id="metrics">' in dom and '<table id="pairs">' in dom and dom.count("<img") == 2
    shot = tmp_path / "shot.png"
    subprocess.run([*browser, "--window-size=1280,2400", f"--screenshot={shot}", url], capture_output=True, timeout=120, check=True)
    from matplotlib.image import imread

    pixels = imread(shot)[..., :3]
    assert pixels.shape[:2] == (2400, 1280)
    # The plots' default colours (blue #1f77b4 and orange #ff7f0e) must be on screen: the images decoded and drew.
    for colour in ((0x1F, 0x77, 0xB4), (0xFF, 0x7F, 0x0E)):
        close = np.abs(pixels * 255 - np.array(colour)).max(axis=-1) < 12
        assert close.sum() > 500, f"colour {colour} not rendered"
