"""``recforge train MODEL --data LOG --user-col --item-col``: ml-100k's raw u.data.gz as a user holds it."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from recforge.cli.app import app
from recforge.data.datasets.movielens import MovieLens100K
from recforge.data.id_maps import load_id_maps, load_train_interactions

runner = CliRunner()
LOG_OPTIONS = ("--user-col", "user", "--item-col", "item", "--time-col", "time", "--columns", "user,item,rating,time", "--sep", "\\t")
FAST = ("--epochs", "1", "--factors", "8", "--batch-size", "4096", "--set", "train.full_ranking=false", "--set", "train.report_best_test_epoch=false", "--quiet")


def train(out: Path, *args: str):
    result = runner.invoke(app, ["train", *map(str, args), "--output-dir", str(out)])
    runs = [p for p in out.iterdir() if p.is_dir()] if out.exists() else []
    return result, runs


def assert_user_error(result, *names: str) -> None:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    for name in names:
        assert name in lines[0], lines[0]


def test_neumf_on_the_raw_log_equals_the_registered_dataset(shared_data, tmp_path):
    log = shared_data / "ml-100k" / "u.data.gz"
    own, (own_run,) = train(tmp_path / "own", "neumf", "--data", log, *LOG_OPTIONS, *FAST)
    assert own.exit_code == 0, own.output
    reg, (reg_run,) = train(tmp_path / "reg", "neumf", "--dataset", "movielens-100k", "--data-dir", shared_data, *FAST)
    assert reg.exit_code == 0, reg.output
    own_summary = json.loads((own_run / "summary.json").read_text())
    reg_summary = json.loads((reg_run / "summary.json").read_text())
    own_metrics = {k: v for k, v in _flat(own_summary).items() if k.startswith(("test/", "valid/"))}
    reg_metrics = {k: v for k, v in _flat(reg_summary).items() if k.startswith(("test/", "valid/"))}
    assert "test/ndcg@10" in own_metrics and own_metrics == reg_metrics, (own_metrics, reg_metrics)
    # run artefacts of both: the same training pairs, raw ids at the internal ids
    for run in (own_run, reg_run):
        saved = load_train_interactions(run)
        user_ids, item_ids = load_id_maps(run)
        assert (saved["num_users"], saved["num_items"]) == (943, 1682) == (len(user_ids), len(item_ids))
    np.testing.assert_array_equal(load_train_interactions(own_run)["train_items"], load_train_interactions(reg_run)["train_items"])
    raw_users, raw_items, _ = MovieLens100K().read_ratings(MovieLens100K().verify(shared_data)["ratings"])
    for run in (own_run, reg_run):
        user_ids, item_ids = load_id_maps(run)
        np.testing.assert_array_equal(item_ids.to_numpy(), np.unique(raw_items))
        np.testing.assert_array_equal(user_ids.to_numpy(), np.unique(raw_users))
        assert pq.read_table(run / "item_ids.parquet").column_names == ["id"]


def _flat(summary: dict) -> dict:
    out = {}
    for key, value in summary.items():
        if isinstance(value, dict):
            out.update({k if "/" in k else f"{key}/{k}": v for k, v in _flat(value).items()})
        else:
            out[key] = value
    return out


def test_din_on_a_raw_log(shared_data, tmp_path):
    # the first 60 users of u.data.gz, headerless and tab-separated as GroupLens ships it (kept small: 2 cores)
    with gzip.open(shared_data / "ml-100k" / "u.data.gz", "rt") as f:
        lines = [line for line in f if int(line.split("\t")[0]) <= 60]
    log = tmp_path / "events.tsv.gz"
    with gzip.open(log, "wt") as f:
        f.writelines(lines)
    result, (run,) = train(tmp_path / "runs", "din", "--data", log, *LOG_OPTIONS[:-2], "--epochs", "1", "--quiet")
    assert result.exit_code == 0, result.output
    summary = json.loads((run / "summary.json").read_text())
    assert summary["data"]["users"] == 60 and summary["data"]["leakage_share"] >= 0
    assert 0.0 <= _flat(summary)["test/auc"] <= 1.0
    assert (run / "preprocessing.json").is_file()


@pytest.mark.parametrize(
    "content, extra, names",
    [
        ("u,i,t\n1,2,3\n2,3,4\n", ("--user-col", "usr"), ("events.csv", "'usr'", "--user-col")),
        ("", (), ("events.csv", "no data rows")),
        ("u,i,t\n1,2,3\n2,3\n", (), ("events.csv", "line 3")),
        ("u,i,t\n" + "".join(f"7,{i},{i}\n" for i in range(200)), (), ("events.csv", "'u'", "single user")),
    ],
)
@pytest.mark.parametrize("model", ["neumf", "din"])
def test_bad_logs_are_one_line_exit_2_and_no_run_directory(tmp_path, content, extra, names, model):
    path = tmp_path / "events.csv"
    path.write_text(content)
    options = {"--user-col": "u", "--item-col": "i", "--time-col": "t"}
    options.update(dict(zip(extra[::2], extra[1::2])))
    result, runs = train(tmp_path / "runs", model, "--data", path, *[x for kv in options.items() for x in kv], "--epochs", "1", "--quiet")
    assert_user_error(result, *names)
    assert runs == []
