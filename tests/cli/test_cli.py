"""The CLI as a newcomer uses it, on the real data in ../shared/data (runs in CI)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from recforge.cli.app import app

runner = CliRunner()


def recforge(*args, env=None):
    """Run the installed entry point as a user would (separate process)."""
    return subprocess.run(
        [sys.executable, "-m", "recforge.cli.app", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=600,
    )


def test_train_then_evaluate_on_real_data(shared_data, tmp_path, monkeypatch):
    result = runner.invoke(
        app,
        [
            "train", "gmf", "--dataset", "movielens-1m-ncf", "--factors", "8", "--epochs", "1",
            "--batch-size", "2048", "--data-dir", str(shared_data), "--output-dir", str(tmp_path), "--quiet",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "test/hit_rate@10" in result.output and "run directory" in result.output
    (run,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    assert {"config.yaml", "metrics.jsonl", "summary.json", "checkpoint.pt"} <= {p.name for p in run.iterdir()}
    summary = json.loads((run / "summary.json").read_text())
    # one epoch of GMF is far above chance (0.1) on the NCF test file
    assert 0.3 < summary["test/hit_rate@10"] < 0.8
    # no --data-dir, no $RECFORGE_DATA_DIR: the run remembers the data directory it was trained from
    assert (run / "data_dir.txt").read_text().strip() == str(shared_data.resolve())
    monkeypatch.delenv("RECFORGE_DATA_DIR", raising=False)
    evaluated = runner.invoke(app, ["evaluate", str(run), "--no-full-ranking"])
    assert evaluated.exit_code == 0, evaluated.output
    assert f"{summary['test/hit_rate@10']:.4f}" in evaluated.output
    assert f"{summary['test/ndcg@10']:.4f}" in evaluated.output


def test_itempop_matches_the_paper_level(shared_data, tmp_path):
    result = runner.invoke(
        app, ["train", "itempop", "--dataset", "movielens-1m-ncf", "--data-dir", str(shared_data), "--output-dir", str(tmp_path), "--quiet"]
    )
    assert result.exit_code == 0, result.output
    (run,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["test/hit_rate@10"] == pytest.approx(0.45, abs=0.01)  # He et al. 2017: ItemPop ~0.45


def test_data_commands(shared_data):
    listed = runner.invoke(app, ["data", "list"])
    assert listed.exit_code == 0 and "movielens-1m-ncf" in listed.output
    info = runner.invoke(app, ["data", "info", "movielens-1m-ncf", "--data-dir", str(shared_data)])
    assert info.exit_code == 0, info.output
    assert "994,169" in info.output and "6,040" in info.output and "3,706" in info.output
    models = runner.invoke(app, ["models"])
    assert "neumf" in models.output and "[p_u ; q_i]" in models.output


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "ncf9000", "--dataset", "movielens-1m-ncf"], "unknown model 'ncf9000'; valid models: adatt, base, deepfm, din, dlrm, fm, gmf, itempop, lr, mf, mlp, mmoe, neumf, ple, shared_bottom, wide_deep"),
        (["train", "gmf", "--dataset", "netflix"], "unknown dataset 'netflix'; valid datasets: amazon-electronics"),
        (["train", "gmf", "--set", "train.lr=-1"], "train.lr must be > 0"),
        (["train", "gmf", "--set", "train.bogus=1"], "unknown key train.bogus"),
        (["train", "mlp", "--dataset", "movielens-1m-ncf", "--pretrain"], "pretrain.enabled applies to neumf only"),
        (["train", "deepfm"], "--dataset is required"),
        (["evaluate", "/nonexistent/run"], "is not a run directory"),
    ],
)
def test_bad_input_exits_2_with_one_clear_line(args, message, shared_data, tmp_path):
    result = recforge(*args, "--data-dir", str(shared_data), env={"COLUMNS": "400"}) if args[0] == "train" else recforge(*args)
    assert result.returncode == 2, result.stderr
    assert message in " ".join(result.stderr.split())
    assert "Traceback" not in result.stderr


def test_missing_data_directory_says_how_to_get_it(tmp_path):
    result = recforge("train", "gmf", "--dataset", "movielens-1m-ncf", "--data-dir", str(tmp_path), env={"COLUMNS": "400"})
    assert result.returncode == 2
    text = " ".join(result.stderr.split())
    assert "ml-1m-ncf does not exist" in text and "recforge data prepare movielens-1m-ncf --download" in text
    assert "Traceback" not in result.stderr


def test_data_dir_from_environment_variable(shared_data, tmp_path):
    result = recforge("data", "info", "movielens-100k", env={"RECFORGE_DATA_DIR": str(shared_data), "RECFORGE_CACHE_DIR": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    assert "943" in result.stdout and "1,682" in result.stdout


def test_more_bad_input_is_handled(shared_data, tmp_path):
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    cases = [
        (["train", "gmf", "--dataset", "movielens-100k", "--data-dir", str(shared_data), "--output-dir", str(not_a_dir)], "cannot create run directory"),
        (["train", "gmf", "--set", "model.name=mlp", "--data-dir", str(shared_data)], "names model 'mlp', but the command trains 'gmf'"),
        (["train", "gmf", "--device", "cuda:0", "--data-dir", str(shared_data)], None),
        (["train", "gmf", "--lr", "0.00001", "--epochs", "0", "--dataset", "movielens-100k", "--data-dir", str(shared_data), "--output-dir", str(tmp_path / "ok")], "ok"),
    ]
    for args, message in cases:
        result = recforge(*args, env={"COLUMNS": "400", "RECFORGE_CACHE_DIR": str(tmp_path / "cache")})
        assert "Traceback" not in result.stderr, result.stderr
        if message == "ok":
            assert result.returncode == 0, result.stderr
            assert "no training epochs" in result.stdout
        elif message is None:  # cuda: fine where a GPU exists, a clear error where not
            assert result.returncode in (0, 2)
        else:
            assert result.returncode == 2 and message in " ".join(result.stderr.split())


def test_failed_run_leaves_no_empty_directory(shared_data, tmp_path):
    result = recforge(
        "train", "gmf", "--dataset", "movielens-100k", "--set", "train.monitor=valid/auc", "--data-dir", str(shared_data),
        "--output-dir", str(tmp_path / "runs"), env={"RECFORGE_CACHE_DIR": str(tmp_path / "cache")},
    )
    assert result.returncode == 2
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_evaluate_rejects_a_checkpoint_that_does_not_fit(shared_data, tmp_path):
    env = {"RECFORGE_CACHE_DIR": str(tmp_path / "cache")}
    for factors in ("4", "8"):  # the runs are made in process; the command under test runs as a user runs it
        r = runner.invoke(app, ["train", "gmf", "--dataset", "movielens-100k", "--epochs", "0", "--factors", factors,
                                "--data-dir", str(shared_data), "--output-dir", str(tmp_path / f"f{factors}"), "--quiet"], env=env)
        assert r.exit_code == 0, r.output
    (run4,) = (tmp_path / "f4").iterdir()
    (run8,) = (tmp_path / "f8").iterdir()
    (run8 / "checkpoint.pt").write_bytes((run4 / "checkpoint.pt").read_bytes())
    result = recforge("evaluate", str(run8), "--data-dir", str(shared_data), env=env)
    assert result.returncode == 2 and "does not fit the model" in result.stderr
    (run8 / "checkpoint.pt").write_bytes(b"garbage")
    result = recforge("evaluate", str(run8), "--data-dir", str(shared_data), env=env)
    assert result.returncode == 2 and "not a readable recforge checkpoint" in result.stderr
