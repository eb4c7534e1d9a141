"""Label leakage: schemas reading a label's columns are refused; a feature that alone gives the
label away is warned about (fresh and cached data); the rank AUC helper against scikit-learn."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from sklearn.metrics import roc_auc_score

from recforge.data.datasets import get_dataset
from recforge.data.datasets.tabular import RawSplits, TabularSource
from recforge.data.leakage import LEAK_AUC, LabelLeakWarning, rank_auc, target_encoding_scores
from recforge.data.schema import FeatureSpec, Schema
from recforge.errors import ConfigError
from tests.cli.test_cli import recforge


# ---------------------------------------------------------------------------- schema refusals
def test_the_reported_adult_schema_is_refused_by_the_cli(shared_data, tmp_path):
    schema = tmp_path / "leak.yaml"
    schema.write_text("features:\n  - {name: education}\n  - {name: income_bracket}\nlabels: [income]\n")
    result = recforge(
        "train", "lr", "--dataset", "uci-adult", "--schema", str(schema), "--epochs", "1",
        "--data-dir", str(shared_data), "--output-dir", str(tmp_path / "runs"), env={"COLUMNS": "400"},
    )
    assert result.returncode == 2, result.stdout + result.stderr
    message = " ".join(result.stderr.split())
    assert "feature 'income_bracket' reads column 'income_bracket', from which label 'income' is derived" in message
    assert "Traceback" not in result.stderr
    assert len([line for line in result.stderr.splitlines() if line.startswith("error:")]) == 1
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


@pytest.mark.parametrize(
    "feature",
    [
        FeatureSpec("income_bracket"),
        FeatureSpec("education_x_bracket", cross=("education", "income_bracket")),
        FeatureSpec("bracket", source="income_bracket"),
        FeatureSpec("bracket_bucket", source="income_bracket", bucketize="quantile"),
        FeatureSpec("bracket_dense", "dense", source="income_bracket"),
        FeatureSpec("bracket_list", "sequence", source="income_bracket", separator="|"),
    ],
    ids=lambda f: f.name,
)
def test_adult_features_reading_income_bracket_are_refused(shared_data, feature):
    schema = Schema(features=(FeatureSpec("education"), feature), labels=("income",))
    with pytest.raises(ConfigError) as caught:
        get_dataset("uci-adult").load(shared_data, schema=schema, use_cache=False)
    message = str(caught.value)
    assert f"feature {feature.name!r}" in message and "'income_bracket'" in message and "label 'income'" in message


@pytest.mark.parametrize(
    ("dataset", "schema", "column", "label"),
    [
        ("census-income", Schema((FeatureSpec("age", "dense"), FeatureSpec("marital_stat")), ("never_married",)), "marital_stat", "never_married"),
        ("census-income", Schema((FeatureSpec("edu", source="education"),), ("income", "education_college")), "education", "education_college"),
        ("census-income", Schema((FeatureSpec("sex"), FeatureSpec("income_bracket")), ("income",)), "income_bracket", "income"),
        ("movielens-100k-ctr", Schema((FeatureSpec("user_id"), FeatureSpec("rating", "dense")), ("click",)), "rating", "click"),
    ],
)
def test_derived_label_sources_are_refused(shared_data, dataset, schema, column, label):
    with pytest.raises(ConfigError, match=f"reads column {column!r}, from which label {label!r} is derived"):
        get_dataset(dataset).load(shared_data, schema=schema, use_cache=False)


@pytest.mark.parametrize("dataset", ["uci-adult", "census-income", "frappe", "movielens-100k-ctr"])
def test_default_schemas_load_without_a_leak(shared_data, dataset):
    with warnings.catch_warnings():
        warnings.simplefilter("error", LabelLeakWarning)
        data = get_dataset(dataset).load(shared_data, use_cache=False)
    (task,) = data.schema.labels
    top = data.info["single_feature_auc"][task]
    assert 0 < len(top) <= 5 and all(0.5 <= auc < LEAK_AUC for auc in top.values())
    assert data.info["leakage_warnings"] == []


def test_census_mmoe_tasks_load_without_their_source_columns(shared_data):
    source = get_dataset("census-income")
    data = source.load(shared_data, schema=source.task_schema(("income", "never_married", "education_college")), use_cache=False)
    assert set(data.info["single_feature_auc"]) == {"income", "never_married", "education_college"}
    assert data.info["leakage_warnings"] == []


# ------------------------------------------------------------------- data-driven warning
def _table(n: int, seed: int, single_class: bool = False) -> pa.Table:
    """Random features, two labels, and hidden copies of ``bought`` (categorical and dense, inverted)."""
    rng = np.random.default_rng(seed)
    clicked = (rng.random(n) < 0.4).astype(np.float32)
    bought = np.zeros(n, np.float32) if single_class else (rng.random(n) < 0.3).astype(np.float32)
    return pa.table({
        "city": pa.array(rng.choice(["a", "b", "c", "d"], n)),
        "price": rng.normal(size=n),
        "status": pa.array(np.where(bought == 1, "done", "open")),  # the label under another name
        "refund": 1.0 - bought + rng.normal(scale=0.01, size=n),  # a dense copy, inverted
        "clicked": clicked,
        "bought": bought,
    })


class OwnTable(TabularSource):
    """A user's table with no label_sources: the schema check cannot see the copies."""

    name = "own-table"
    folder = "own-table"
    description = "synthetic"
    files = ()

    def __init__(self, path: Path | None = None):
        self.path = path
        self.reads = 0

    def verify(self, data_dir=None):
        return {"rows": self.path}

    def read(self, paths, seed):
        self.reads += 1
        return RawSplits(train=_table(3000, seed=1))


SCHEMA = Schema(
    features=(FeatureSpec("city"), FeatureSpec("status"), FeatureSpec("price", "dense"), FeatureSpec("refund", "dense")),
    labels=("clicked", "bought"),
)


def test_a_hidden_copy_of_the_label_warns_per_task():
    with pytest.warns(LabelLeakWarning) as caught:
        data = OwnTable().encode(RawSplits(train=_table(3000, seed=1)), SCHEMA, seed=0)
    messages = [str(w.message) for w in caught if issubclass(w.category, LabelLeakWarning)]
    assert len(messages) == 2
    assert any("feature 'status'" in m and "labels of 'bought'" in m and "AUC 1.0000" in m for m in messages)
    assert any("feature 'refund'" in m and "labels of 'bought'" in m for m in messages)
    assert not any("'clicked'" in m or "'city'" in m or "'price'" in m for m in messages)
    assert data.info["leakage_warnings"] == messages
    assert list(data.info["single_feature_auc"]["bought"])[:2] in (["status", "refund"], ["refund", "status"])
    assert max(data.info["single_feature_auc"]["clicked"].values()) < 0.6


def test_the_warning_is_emitted_again_from_the_cache(tmp_path):
    rows = tmp_path / "rows.csv"
    rows.write_text("stands in for the raw file the cache key hashes\n")
    source = OwnTable(rows)
    with pytest.warns(LabelLeakWarning) as fresh:
        first = source.load(schema=SCHEMA)
    with pytest.warns(LabelLeakWarning) as cached:
        second = source.load(schema=SCHEMA)
    assert source.reads == 1  # the second load came from the cache
    assert [str(w.message) for w in cached] == [str(w.message) for w in fresh] == first.info["leakage_warnings"]
    assert any("feature 'status'" in m for m in second.info["leakage_warnings"])


def test_single_class_validation_gives_nan_and_no_warning():
    raw = RawSplits(train=_table(2000, seed=1), valid=_table(500, seed=2, single_class=True), test=_table(500, seed=3))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        data = OwnTable().encode(raw, SCHEMA, seed=0)
    assert data.info["single_feature_auc"]["bought"] == {}  # every AUC undefined
    assert data.info["leakage_warnings"] == []


# ------------------------------------------------------------------------------ helpers
def test_rank_auc_matches_sklearn_with_ties():
    rng = np.random.default_rng(0)
    labels = (rng.random(2000) < 0.3).astype(np.float32)
    for scores in (rng.integers(0, 5, 2000).astype(np.float64), rng.normal(size=2000) + labels):
        assert rank_auc(labels, scores) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    assert rank_auc(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8])) == 0.75
    assert rank_auc(np.array([0, 1, 0, 1]), np.array([2.0, 2.0, 2.0, 2.0])) == 0.5


def test_rank_auc_of_one_class_is_nan_without_a_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isnan(rank_auc(np.ones(4), np.arange(4.0)))
        assert np.isnan(rank_auc(np.zeros(0), np.zeros(0)))


def test_target_encoding_scores_unseen_ids_at_the_training_prior():
    train_ids = np.array([2, 2, 2, 3, 3])
    train_labels = np.array([1.0, 1.0, 0.0, 0.0, 0.0])
    scores = target_encoding_scores(train_ids, train_labels, np.array([2, 3, 1, 7]))
    np.testing.assert_allclose(scores, [2 / 3, 0.0, 0.4, 0.4])
