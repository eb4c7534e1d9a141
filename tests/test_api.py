"""The Python API (recforge.train / load / Run) on real data, as the README shows it."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

import recforge
from recforge.api import train_config
from recforge.data.datasets import get_dataset
from recforge.errors import ConfigError
from recforge.training.records import load_run_config


@pytest.fixture(scope="module")
def adult_rows(shared_data):
    source = get_dataset("uci-adult")
    return source.read(source.verify(shared_data), 0).test.slice(0, 100)


def test_readme_example_train_load_predict(shared_data, tmp_path, adult_rows):
    run = recforge.train(
        "deepfm", dataset="uci-adult", epochs=1, batch_size=1024, hidden_units=[16],
        data_dir=shared_data, output_dir=tmp_path,
    )
    assert run.path.parent == tmp_path and run.config == load_run_config(run.path)
    assert run.config.train.batch_size == 1024 and run.config.model.hidden_units == (16,) and run.config.train.epochs == 1
    assert 0.7 < run.metrics["test/auc"] <= 1 and "valid/auc" in run.metrics
    assert "occupation" in run.schema and run.schema.labels == ("income",)

    scores = run.predict(adult_rows)  # a pyarrow table in, a pyarrow table out
    assert scores.column_names == ["p_income"] and scores.num_rows == 100
    rows = adult_rows.to_pylist()
    again = recforge.load(run.path).predict(rows[::-1])  # list of dicts, reversed: the scores follow the rows
    np.testing.assert_allclose(again.column("p_income").to_numpy()[::-1], scores.column("p_income").to_numpy(), rtol=0, atol=1e-12)


def test_train_on_an_own_csv_then_predict(shared_data, tmp_path, adult_rows):
    source = get_dataset("uci-adult")
    table = source.read(source.verify(shared_data), 0).train.slice(0, 4000).drop_columns(["income_bracket"])
    pacsv.write_csv(table, tmp_path / "clicks.csv")
    run = recforge.train("deepfm", data=tmp_path / "clicks.csv", label="income", epochs=1, hidden_units=[8], output_dir=tmp_path / "runs")
    assert run.config.data.label == ("income",) and (run.path / "schema.yaml").is_file()
    scores = run.predict(adult_rows.drop_columns(["income", "income_bracket"]))
    values = scores.column("p_income").to_numpy()
    assert values.shape == (100,) and ((0 < values) & (values < 1)).all()


def test_recommend_from_the_api(shared_data, tmp_path):
    run = recforge.train("itempop", dataset="movielens-100k", epochs=1, data_dir=shared_data, output_dir=tmp_path)
    top = run.recommend([1, "nobody"], k=3)
    assert top.column("rank").to_pylist() == [1, 2, 3, 1, 2, 3]
    assert top.column("cold").to_pylist() == [False] * 3 + [True] * 3
    with pytest.raises(ConfigError, match="recforge recommend"):
        run.predict([{"user": 1}])


def test_keywords_map_onto_the_cli_keys(tmp_path):
    config = train_config("deepfm", {}, {"data.name": "uci-adult", "train.batch_size": 64, "model.hidden_units": [8], "seed": 3})
    assert (config.data.name, config.train.batch_size, config.model.hidden_units, config.seed) == ("uci-adult", 64, (8,), 3)
    with pytest.raises(ConfigError, match="unknown key"):
        recforge.train("deepfm", dataset="uci-adult", hidden_unitz=[8], output_dir=tmp_path)
    with pytest.raises(ConfigError, match="give dataset=NAME"):
        recforge.train("deepfm", output_dir=tmp_path)
    with pytest.raises(ConfigError, match="names model 'mmoe'"):
        train_config("deepfm", {"model": {"name": "mmoe"}}, {"data.name": "uci-adult"})
    with pytest.raises(ConfigError, match="not a run directory"):
        recforge.load(tmp_path / "nothing")
    assert list(tmp_path.iterdir()) == []


def test_import_recforge_stays_light():
    code = "import sys, recforge; assert 'torch' not in sys.modules and 'pyarrow' not in sys.modules; print(recforge.load.__module__)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "recforge.api"


def test_rows_of_another_kind_are_a_clear_error(shared_data, tmp_path):
    from recforge.serving.predictor import as_table

    assert as_table({"a": [1, 2]}).equals(pa.table({"a": [1, 2]}))
    with pytest.raises(recforge.errors.DataError, match="rows must be a pyarrow Table"):
        as_table("rows.csv")
