"""The CTR side of the CLI on real data (UCI Adult from ../shared/data): train, evaluate, resume, bad input."""

import json

import pytest
from typer.testing import CliRunner

from recforge.cli.app import app
from tests.cli.test_cli import recforge

runner = CliRunner()


def _train(shared_data, out, *extra):
    return runner.invoke(
        app,
        ["train", "deepfm", "--dataset", "uci-adult", "--batch-size", "1024", "--data-dir", str(shared_data),
         "--output-dir", str(out), "--quiet", *extra],
    )


def test_train_evaluate_and_resume_deepfm_on_adult(shared_data, tmp_path):
    result = _train(shared_data, tmp_path, "--epochs", "1", "--set", "model.hidden_units=[32,32]")
    assert result.exit_code == 0, result.output
    assert "test/auc" in result.output and "training rows per second" in result.output
    (run,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    assert {"config.yaml", "metrics.jsonl", "summary.json", "checkpoint.pt", "last.pt", "preprocessing.json"} <= {p.name for p in run.iterdir()}
    summary = json.loads((run / "summary.json").read_text())
    assert summary["rows"] == {"train": 28942, "valid": 3619, "test": 16281}
    assert 0.8 < summary["test/auc"] < 1.0

    scored = runner.invoke(app, ["evaluate", str(run), "--data-dir", str(shared_data)])
    assert scored.exit_code == 0, scored.output
    assert f"{summary['test/auc']:.4f}" in scored.output

    resumed = runner.invoke(app, ["train", "deepfm", "--resume", str(run), "--epochs", "2", "--data-dir", str(shared_data), "--quiet"])
    assert resumed.exit_code == 0, resumed.output
    epochs = [json.loads(line)["epoch"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [1, 2]
    assert json.loads((run / "summary.json").read_text())["epochs_run"] == 2


def test_wide_deep_uses_the_papers_optimisers(shared_data, tmp_path):
    result = runner.invoke(
        app,
        ["train", "wide_deep", "--dataset", "uci-adult", "--epochs", "1", "--batch-size", "1024", "--set", "model.hidden_units=[16]",
         "--data-dir", str(shared_data), "--output-dir", str(tmp_path), "--quiet"],
    )
    assert result.exit_code == 0, result.output
    (run,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    assert json.loads((run / "summary.json").read_text())["test/auc"] > 0.8


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "deepfm", "--dataset", "uci-adult", "--set", "model.embedding_dimension=3"], "unknown key model.embedding_dimension"),
        (["train", "gmf", "--dataset", "uci-adult"], "needs implicit-feedback (user, item) data"),
        (["train", "deepfm", "--dataset", "movielens-1m-ncf"], "needs tabular (CTR) data"),
        (["train", "deepfm", "--dataset", "uci-adult", "--set", "train.monitor=valid/ndcg@10"], "does not apply to tabular data"),
    ],
)
def test_bad_ctr_input_exits_2_with_one_clear_line(args, message, shared_data):
    result = recforge(*args, "--data-dir", str(shared_data), env={"COLUMNS": "400"})
    assert result.returncode == 2, result.stderr
    assert message in " ".join(result.stderr.split())
    assert "Traceback" not in result.stderr


def test_a_schema_naming_a_missing_column_is_a_clear_error(shared_data, tmp_path):
    schema = tmp_path / "schema.yaml"
    schema.write_text("features:\n  - {name: education}\n  - {name: shoe_size, kind: dense}\nlabels: [income]\n")
    result = recforge("train", "lr", "--dataset", "uci-adult", "--schema", str(schema), "--data-dir", str(shared_data), env={"COLUMNS": "400"})
    assert result.returncode == 2
    assert "feature 'shoe_size' reads column 'shoe_size', which the data does not have" in " ".join(result.stderr.split())


def test_multi_task_run_on_census_income(shared_data, tmp_path):
    result = runner.invoke(
        app,
        ["train", "adatt", "--dataset", "census-income", "--tasks", "income,never_married", "--epochs", "1", "--batch-size", "2048",
         "--data-dir", str(shared_data), "--output-dir", str(tmp_path), "--quiet"],
    )
    assert result.exit_code == 0, result.output
    (run,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["test/income/auc"] > 0.8 and summary["test/never_married/auc"] > 0.8
    prep = json.loads((run / "preprocessing.json").read_text())
    assert "marital_stat" not in [f["name"] for f in prep["schema"]["features"]]  # the label's source is not a feature
    bad = recforge("train", "deepfm", "--dataset", "census-income", "--tasks", "income,never_married", "--data-dir", str(shared_data))
    assert bad.returncode == 2 and "use a multi-task model" in bad.stderr
