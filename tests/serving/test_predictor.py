"""The scoring path on real runs: raw rows -> probabilities equal the trained model's test-split scores."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
import torch
import yaml
from typer.testing import CliRunner

from recforge.cli.app import app
from recforge.config import from_dict
from recforge.data.datasets import get_dataset
from recforge.data.preprocessing import OOV_ID, label_values
from recforge.data.splits import stratified_split
from recforge.data.tabular import TensorColumns, to_batch
from recforge.errors import ConfigError, DataError
from recforge.evaluation.protocols import score_rows
from recforge.serving.predictor import Predictor
from recforge.training.experiment import load_data
from recforge.training.records import load_run_config

RUNS = {
    "deepfm": ["deepfm", "--dataset", "uci-adult", "--batch-size", "1024", "--set", "model.hidden_units=[16]"],
    # small DIN (D=8, histories cut to 10 by the schema) so one epoch is quick on 2 cores
    "din": ["din", "--dataset", "movielens-100k-seq", "--batch-size", "2048", "--set", "model.embedding_dim=8",
            "--set", "model.hidden_units=[16]", "--set", "model.attention_units=[8]"],
    "mmoe": ["mmoe", "--dataset", "census-income", "--tasks", "income,never_married", "--batch-size", "4096"],
}

DIN_SCHEMA = """features:
  - {name: item_id}
  - {name: item_category}
  - {name: hist_item_id, kind: sequence, table: item_id, max_length: 10}
  - {name: hist_item_category, kind: sequence, table: item_category, max_length: 10}
labels: [label]
"""


@pytest.fixture(scope="module")
def trained(shared_data, tmp_path_factory):
    """Run directories by name, each trained (1 epoch) on first use."""
    root = tmp_path_factory.mktemp("runs")
    made: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in made:
            out = root / name
            extra = []
            if name == "din":
                (root / "din.yaml").write_text(DIN_SCHEMA)
                extra = ["--schema", str(root / "din.yaml")]
            result = CliRunner().invoke(
                app, ["train", *RUNS[name], *extra, "--epochs", "1", "--threads", "1", "--data-dir", str(shared_data), "--output-dir", str(out), "--quiet"]
            )
            assert result.exit_code == 0, result.output
            (made[name],) = [p for p in out.iterdir() if p.is_dir()]
        return made[name]

    return get


def raw_test_rows(run: Path, data_dir: Path) -> pa.Table:
    """The run's test split as raw rows: the source's test table, or the rows its seeded
    stratified split (:meth:`TabularSource.encode`, on the first label) puts in test."""
    config = load_run_config(run)
    source = get_dataset(config.data.name)
    raw = source.read(source.verify(data_dir), config.data.split_seed)
    if raw.test is not None:
        return raw.test
    first_label = Predictor.from_run(run).tasks[0]
    parts = stratified_split(label_values(raw.train, first_label).astype(np.float64), source.fractions, config.data.split_seed)
    return raw.train.take(parts[2])


def test_scores_equal_the_models_test_split_scores(trained, shared_data):
    for name in RUNS:
        run = trained(name)
        predictor = Predictor.from_run(run)
        config = load_run_config(run)
        data = load_data(config, shared_data)
        expected = torch.sigmoid(torch.from_numpy(score_rows(predictor.model, TensorColumns(data.test), predictor.tasks))).numpy()
        got = predictor.predict(raw_test_rows(run, shared_data))
        assert list(got) == list(data.schema.labels)
        for t, task in enumerate(predictor.tasks):
            assert got[task].dtype == np.float64 and got[task].shape == (len(data.test),)
            np.testing.assert_allclose(got[task], expected[:, t], rtol=0, atol=1e-6, err_msg=f"{name}/{task}")
            assert float(np.std(expected[:, t])) > 1e-3  # the scores vary by row: a real comparison


def test_column_order_kinds_of_rows_and_labels_do_not_matter(trained, shared_data):
    run = trained("deepfm")
    predictor = Predictor.from_run(run)
    rows = raw_test_rows(run, shared_data).slice(0, 300)
    base = predictor.predict(rows)["income"]
    reordered = rows.select(list(reversed(rows.column_names)))
    np.testing.assert_array_equal(predictor.predict(reordered)["income"], base)
    unlabelled = rows.drop_columns(["income", "income_bracket"])
    np.testing.assert_array_equal(predictor.predict(unlabelled)["income"], base)
    np.testing.assert_array_equal(predictor.predict(rows.to_pylist())["income"], base)
    np.testing.assert_array_equal(predictor.predict(rows.to_pydict())["income"], base)
    table = predictor.predict_table(rows)
    assert table.column_names == ["p_income"] and table.column(0).type == pa.float64()


def test_an_unseen_category_gets_the_oov_id_and_its_score(trained, shared_data):
    run = trained("deepfm")
    predictor = Predictor.from_run(run)
    rows = raw_test_rows(run, shared_data).slice(0, 2)
    field = [f.name for f in predictor.schema.sparse].index("occupation")
    known = predictor.encode(rows).sparse[:, field]
    assert (known >= 2).all()
    unseen = rows.set_column(rows.column_names.index("occupation"), "occupation", pa.array(["astronaut", "never-seen"]))
    encoded = predictor.encode(unseen)
    assert encoded.sparse[:, field].tolist() == [OOV_ID, OOV_ID]
    # The same score as the training encoding's rows with the OOV id written in explicitly.
    explicit = predictor.encode(rows)
    explicit.sparse[:, field] = OOV_ID
    with torch.inference_mode():
        expected = torch.sigmoid(predictor.model(to_batch(explicit)).double()).numpy()
    np.testing.assert_allclose(predictor.predict(unseen)["income"], expected, atol=1e-12)
    assert not np.allclose(predictor.predict(rows)["income"], expected)  # the category mattered


def test_a_missing_feature_column_is_named(trained, shared_data):
    run = trained("deepfm")
    rows = raw_test_rows(run, shared_data).slice(0, 5).drop_columns(["hours_per_week"])
    with pytest.raises(DataError, match="missing feature column 'hours_per_week' \\(feature 'hours_per_week'\\)"):
        Predictor.from_run(run).predict(rows)


def test_din_histories_as_separated_strings(trained, shared_data):
    run = trained("din")
    predictor = Predictor.from_run(run)
    rows = raw_test_rows(run, shared_data).slice(0, 200)
    assert pa.types.is_list(rows.schema.field("hist_item_id").type)
    as_text = rows
    for name in ("hist_item_id", "hist_item_category"):
        joined = pc.binary_join(pc.cast(rows.column(name), pa.list_(pa.string())), "|")
        as_text = as_text.set_column(as_text.column_names.index(name), name, joined)
    np.testing.assert_array_equal(predictor.predict(as_text)["label"], predictor.predict(rows)["label"])


def test_pair_scoring_runs_point_to_recommend(tmp_path):
    config = from_dict({"model": {"name": "neumf"}, "data": {"name": "movielens-1m-ncf"}})
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config.to_dict()))
    with pytest.raises(ConfigError, match="scores \\(user, item\\) pairs.*recforge recommend"):
        Predictor.from_run(tmp_path)
    with pytest.raises(ConfigError, match="not a run directory"):
        Predictor.from_run(tmp_path / "nothing")
