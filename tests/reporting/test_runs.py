"""Run records found on disk: one dataset picked out, several datasets grouped and labelled apart."""

import json

import pytest
import yaml

from recforge.config import from_dict
from recforge.errors import ConfigError
from recforge.reporting.runs import by_dataset, find_runs


def write_run(folder, model, dataset, seed, auc, **model_cfg):
    """A finished run directory as `recforge train` leaves it (config.yaml, summary.json, metrics.jsonl)."""
    config = from_dict({"model": {"name": model, **model_cfg}, "data": {"name": dataset}, "seed": seed})
    run = folder / f"{dataset}-{model}-{seed}-{config.fingerprint()}"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
    (run / "summary.json").write_text(json.dumps({"dataset": dataset, "model": model, "test/auc": auc, "test/log_loss": 1 - auc}))
    (run / "metrics.jsonl").write_text(json.dumps({"epoch": 1, "train/loss": 0.5, "valid/auc": auc}) + "\n")
    return run


def test_find_runs_keeps_the_runs_of_one_dataset(tmp_path):
    write_run(tmp_path, "lr", "uci-adult", 1, 0.85)
    write_run(tmp_path, "fm", "frappe", 1, 0.95)
    write_run(tmp_path, "fm", "frappe", 2, 0.96)
    runs = find_runs([tmp_path], dataset="frappe")
    assert sorted(r.seed for r in runs) == [1, 2] and {r.config.data.name for r in runs} == {"frappe"}
    with pytest.raises(ConfigError, match=r"--dataset criteo: no finished runs of it .* \(found: frappe, uci-adult\)"):
        find_runs([tmp_path], dataset="criteo")


def test_by_dataset_labels_each_datasets_runs_on_their_own(tmp_path):
    write_run(tmp_path, "gmf", "movielens-100k", 1, 0.7, factors=8)
    write_run(tmp_path, "gmf", "movielens-1m", 1, 0.8, factors=8)
    write_run(tmp_path, "gmf", "movielens-1m", 2, 0.8, factors=16)
    mixed = find_runs([tmp_path])
    assert all("name=movielens" in r.label for r in mixed)  # labelled together, the dataset tells them apart
    groups = by_dataset(mixed)
    assert list(groups) == ["movielens-100k", "movielens-1m"]
    assert [r.label for r in groups["movielens-100k"]] == ["gmf"]
    assert sorted(r.label for r in groups["movielens-1m"]) == ["gmf (factors=16)", "gmf (factors=8)"]
