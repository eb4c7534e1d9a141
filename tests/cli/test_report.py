"""`recforge report` over a folder holding runs of several datasets."""

import pytest
from typer.testing import CliRunner

from recforge.cli.app import app
from tests.reporting.test_runs import write_run

runner = CliRunner()


@pytest.fixture
def mixed_runs(tmp_path):
    runs = tmp_path / "runs"
    for seed, auc in ((1, 0.85), (2, 0.86)):
        write_run(runs, "lr", "uci-adult", seed, auc)
        write_run(runs, "fm", "frappe", seed, auc + 0.1)
    return runs


def test_report_writes_one_report_per_dataset(mixed_runs, tmp_path):
    result = runner.invoke(app, ["report", str(mixed_runs), "--output", str(tmp_path / "report")])
    assert result.exit_code == 0, result.output
    assert f"frappe -> {tmp_path / 'report' / 'frappe'}" in result.output
    for dataset, model in (("frappe", "fm"), ("uci-adult", "lr")):
        markdown = (tmp_path / "report" / dataset / "report.md").read_text()
        assert markdown.startswith(f"# Comparison on {dataset}\n") and f"| metric | {model} (n=2) |" in markdown
        assert (tmp_path / "report" / dataset / "report.html").is_file()
    assert not (tmp_path / "report" / "report.md").exists()


def test_report_dataset_option_picks_one(mixed_runs, tmp_path):
    result = runner.invoke(app, ["report", str(mixed_runs), "--dataset", "frappe", "--output", str(tmp_path / "report")])
    assert result.exit_code == 0, result.output
    markdown = (tmp_path / "report" / "report.md").read_text()
    assert markdown.startswith("# Comparison on frappe\n") and "| metric | fm (n=2) |" in markdown
    unknown = runner.invoke(app, ["report", str(mixed_runs), "--dataset", "criteo"])
    assert unknown.exit_code == 2 and "found: frappe, uci-adult" in unknown.output and "Traceback" not in unknown.output
