"""`recforge compare` and `recforge report` on real data, as a user runs them."""

import json
import time

from typer.testing import CliRunner

from recforge.cli.app import app

runner = CliRunner()


def _compare(shared_data, tmp_path, *extra):
    return runner.invoke(app, [
        "compare", "mf", "gmf", "--dataset", "movielens-100k", "--seeds", "2", "--epochs", "1",
        "--set", "train.batch_size=2048", "--data-dir", str(shared_data), "--output-dir", str(tmp_path / "runs"),
        "--threads", "1", *extra,
    ])


def test_compare_trains_reports_and_reuses_finished_runs(shared_data, tmp_path):
    first = _compare(shared_data, tmp_path)
    assert first.exit_code == 0, first.output
    assert "0 finished and reused, 4 to train" in first.output and "run 4/4" in first.output
    assert "test/hit_rate@10" in first.output and "mf − gmf: paired tests" in first.output and "p users W" in first.output
    report = tmp_path / "runs" / "compare-movielens-100k-mf-gmf-seeds1-2"
    assert {"report.md", "report.html", "comparison.json", "metrics.png", "curves.png"} <= {p.name for p in report.iterdir()}
    data = json.loads((report / "comparison.json").read_text())
    assert data["seeds"] == {"mf": [1, 2], "gmf": [1, 2]} and data["pairs"][0]["user_t"]["n"] == 943
    runs = [p for p in (tmp_path / "runs").iterdir() if (p / "summary.json").is_file()]
    assert len(runs) == 4 and all((r / "test_ranks.npz").is_file() for r in runs)

    started = time.perf_counter()
    again = _compare(shared_data, tmp_path)
    assert again.exit_code == 0, again.output
    assert "4 finished and reused, 0 to train" in again.output
    assert time.perf_counter() - started < 60  # no training, no data loading: seconds
    # The same numbers: nothing was retrained.
    assert json.loads((report / "comparison.json").read_text())["values"] == data["values"]

    # An interrupted comparison: one run lost its summary (killed before the end) and is trained again.
    (runs[0] / "summary.json").unlink()
    resumed = _compare(shared_data, tmp_path)
    assert resumed.exit_code == 0, resumed.output
    assert "3 finished and reused, 1 to train" in resumed.output

    out = tmp_path / "report"
    reported = runner.invoke(app, ["report", str(tmp_path / "runs"), "--output", str(out)])
    assert reported.exit_code == 0, reported.output
    assert (out / "report.html").is_file() and "mf (n=2)" in (out / "report.md").read_text()


def test_compare_rejects_bad_input(shared_data, tmp_path):
    unknown = runner.invoke(app, ["compare", "gmf", "nosuchmodel", "--dataset", "movielens-100k", "--output-dir", str(tmp_path)])
    assert unknown.exit_code == 2 and "unknown model 'nosuchmodel'" in unknown.output
    twice = runner.invoke(app, ["compare", "gmf", "gmf", "--dataset", "movielens-100k", "--output-dir", str(tmp_path)])
    assert twice.exit_code == 2 and "named twice" in twice.output
    no_data = runner.invoke(app, ["compare", "gmf", "mf", "--output-dir", str(tmp_path)])
    assert no_data.exit_code == 2 and "--dataset is required" in no_data.output
    nothing = runner.invoke(app, ["report", str(tmp_path)])
    assert nothing.exit_code == 2 and "no finished runs" in nothing.output
    seed = runner.invoke(app, ["compare", "gmf", "mf", "--dataset", "movielens-100k", "--set", "seed=7", "--output-dir", str(tmp_path)])
    assert seed.exit_code == 2 and "--set seed" in seed.output
    (tmp_path / "file.txt").write_text("x")
    a_file = runner.invoke(app, ["report", str(tmp_path / "file.txt")])
    assert a_file.exit_code == 2 and "is a file" in a_file.output


def test_compare_checks_every_model_against_the_data_before_training(shared_data, tmp_path):
    result = runner.invoke(app, [
        "compare", "lr", "gmf", "--dataset", "uci-adult", "--seeds", "2", "--epochs", "1",
        "--data-dir", str(shared_data), "--output-dir", str(tmp_path / "runs"),
    ])
    assert result.exit_code == 2 and "model gmf needs implicit-feedback" in result.output
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())  # lr was not trained first
