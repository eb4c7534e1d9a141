"""``recforge predict`` on a real run (DeepFM on UCI Adult): streamed chunks, passthrough, order, errors."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from recforge.cli.app import app
from recforge.data.datasets import get_dataset
from recforge.serving.predictor import Predictor
from tests.cli.test_cli import recforge

runner = CliRunner()


@pytest.fixture(scope="module")
def adult_run(shared_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    result = runner.invoke(
        app,
        ["train", "deepfm", "--dataset", "uci-adult", "--epochs", "1", "--batch-size", "1024", "--set", "model.hidden_units=[16]",
         "--threads", "1", "--data-dir", str(shared_data), "--output-dir", str(out), "--quiet"],
    )
    assert result.exit_code == 0, result.output
    (run,) = [p for p in out.iterdir() if p.is_dir()]
    return run


@pytest.fixture(scope="module")
def rows(shared_data):
    """200 raw test rows of UCI Adult, with a shuffled ``row_id`` column to join on."""
    source = get_dataset("uci-adult")
    table = source.read(source.verify(shared_data), 0).test.slice(0, 200)
    ids = np.random.default_rng(0).permutation(1000)[:200]
    return table.add_column(0, "row_id", pa.array(ids))


def _predict(run, input, output, *extra):
    return runner.invoke(app, ["predict", str(run), "--input", str(input), "--output", str(output), "--threads", "1", *extra])


def test_predict_csv_passes_columns_through_in_input_order(adult_run, rows, tmp_path):
    pacsv.write_csv(rows, tmp_path / "rows.csv")
    result = _predict(adult_run, tmp_path / "rows.csv", tmp_path / "scores.csv")
    assert result.exit_code == 0, result.output
    scores = pacsv.read_csv(tmp_path / "scores.csv")
    assert scores.column_names == [*rows.column_names, "p_income"]
    assert scores.column("row_id").to_pylist() == rows.column("row_id").to_pylist()
    assert scores.column("education").to_pylist() == rows.column("education").to_pylist()
    expected = Predictor.from_run(adult_run).predict(rows)["income"]
    np.testing.assert_allclose(scores.column("p_income").to_numpy(), expected, atol=1e-12)


def test_chunked_equals_unchunked_and_parquet_round_trip(adult_run, rows, tmp_path):
    pq.write_table(rows, tmp_path / "rows.parquet")
    assert _predict(adult_run, tmp_path / "rows.parquet", tmp_path / "whole.parquet").exit_code == 0
    assert _predict(adult_run, tmp_path / "rows.parquet", tmp_path / "chunked.parquet", "--batch-rows", "7").exit_code == 0
    whole, chunked = pq.read_table(tmp_path / "whole.parquet"), pq.read_table(tmp_path / "chunked.parquet")
    assert chunked.drop_columns(["p_income"]).equals(whole.drop_columns(["p_income"]))
    # float32 sums may round differently with the batch size (BLAS blocking): equal to 1e-6, not bit for bit
    np.testing.assert_allclose(chunked.column("p_income").to_numpy(), whole.column("p_income").to_numpy(), rtol=0, atol=1e-6)
    assert whole.select(rows.column_names).equals(rows)  # passthrough keeps types and values in Parquet

    pacsv.write_csv(rows.drop_columns(["income", "income_bracket"]), tmp_path / "unlabelled.csv")
    assert _predict(adult_run, tmp_path / "unlabelled.csv", tmp_path / "chunked.csv", "--batch-rows", "7").exit_code == 0
    from_csv = pacsv.read_csv(tmp_path / "chunked.csv")
    np.testing.assert_allclose(from_csv.column("p_income").to_numpy(), whole.column("p_income").to_numpy(), rtol=0, atol=1e-6)


def test_a_missing_feature_column_exits_2_naming_it_and_writes_nothing(adult_run, rows, tmp_path):
    pacsv.write_csv(rows.drop_columns(["occupation"]), tmp_path / "rows.csv")
    result = recforge("predict", str(adult_run), "--input", str(tmp_path / "rows.csv"), "--output", str(tmp_path / "scores.csv"), env={"COLUMNS": "400"})
    assert result.returncode == 2, result.stderr
    assert "missing feature column 'occupation'" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "scores.csv").exists()


def test_a_bad_value_in_a_later_chunk_leaves_no_output(adult_run, rows, tmp_path):
    ages = rows.column("age").to_pylist()
    infinite = rows.set_column(rows.column_names.index("age"), "age", pa.array([float(a) for a in ages[:150]] + [float("inf")] * 50))
    pacsv.write_csv(infinite, tmp_path / "rows.csv")
    result = _predict(adult_run, tmp_path / "rows.csv", tmp_path / "scores.csv", "--batch-rows", "7")
    assert result.exit_code == 2
    message = " ".join(result.output.split())
    # the data row counts from the file's first row (150 good rows, then inf), not from the chunk's
    assert "rows.csv: column 'age' (feature 'age') has the non-finite value inf at data row 151 (1-based, a header line not counted)" in message
    assert list(tmp_path.iterdir()) == [tmp_path / "rows.csv"]  # 21 chunks were scored: no output, no temporary file

    text = rows.set_column(rows.column_names.index("age"), "age", pa.array([str(a) for a in ages[:150]] + ["old"] * 50))
    pacsv.write_csv(text, tmp_path / "rows.csv")
    result = _predict(adult_run, tmp_path / "rows.csv", tmp_path / "scores.csv")
    assert result.exit_code == 2
    assert "rows.csv: column 'age' must be numeric" in result.output and "'old'" in " ".join(result.output.split())
    assert list(tmp_path.iterdir()) == [tmp_path / "rows.csv"]


def test_pair_models_and_bad_options_are_clear_errors(adult_run, rows, tmp_path):
    pacsv.write_csv(rows, tmp_path / "rows.csv")
    result = _predict(adult_run, tmp_path / "rows.csv", tmp_path / "scores.json")
    assert result.exit_code == 2 and "expected .csv or .parquet" in result.output
    result = _predict(adult_run, tmp_path / "rows.csv", tmp_path / "scores.csv", "--batch-rows", "0")
    assert result.exit_code == 2 and "--batch-rows must be >= 1" in result.output
    result = _predict(adult_run, tmp_path / "missing.csv", tmp_path / "scores.csv")
    assert result.exit_code == 2 and "no such file" in result.output
