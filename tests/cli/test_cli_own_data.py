"""`recforge train --data FILE --label COL` and `recforge data inspect` on tables as a user holds them."""

import gzip
import json

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
import yaml
from typer.testing import CliRunner

from recforge.cli.app import app

runner = CliRunner()
ADULT_COLUMNS = [
    "age", "workclass", "fnlwgt", "education", "education_num", "marital_status", "occupation", "relationship",
    "race", "gender", "capital_gain", "capital_loss", "hours_per_week", "native_country", "income_bracket",
]
# The Wide & Deep tutorial's features, written out by hand as a user would (the registered uci-adult schema).
ADULT_SCHEMA = {
    "features": [{"name": c} for c in ["workclass", "education", "marital_status", "occupation", "relationship", "race", "gender", "native_country", "age_group"]]
    + [
        {"name": "education_x_occupation", "cross": ["education", "occupation"]},
        {"name": "age_x_education_x_occupation", "cross": ["age_group", "education", "occupation"]},
        {"name": "native_country_x_occupation", "cross": ["native_country", "occupation"]},
    ]
    + [{"name": c, "kind": "dense", "transform": "standardize"} for c in ("age", "education_num", "hours_per_week")]
    + [{"name": c, "kind": "dense", "transform": "log1p_standardize"} for c in ("capital_gain", "capital_loss")],
    "labels": ["income"],
}


def _user_table(raw_gz, skip_rows):
    """What a user does with the raw UCI file: name the columns, blank the '?', decode the label to 0/1, bucket ages."""
    with gzip.open(raw_gz, "rb") as f:
        table = pacsv.read_csv(f, read_options=pacsv.ReadOptions(column_names=ADULT_COLUMNS, skip_rows=skip_rows),
                               convert_options=pacsv.ConvertOptions(column_types={c: pa.string() for c in ADULT_COLUMNS}))
    cols = {}
    for name in ADULT_COLUMNS:
        col = pc.utf8_trim_whitespace(table.column(name))
        cols[name] = pc.if_else(pc.equal(col, "?"), pa.scalar(None, pa.string()), col)
    for name in ("age", "fnlwgt", "education_num", "capital_gain", "capital_loss", "hours_per_week"):
        cols[name] = pc.cast(cols[name], pa.int64())
    cols["income"] = pc.cast(pc.equal(pc.utf8_rtrim(cols.pop("income_bracket"), characters="."), ">50K"), pa.int64())
    cols["age_group"] = pa.array(np.searchsorted([18, 25, 30, 35, 40, 45, 50, 55, 60, 65], cols["age"].to_numpy(), side="right"))
    return pa.table(cols)


def _summary(out):
    (run,) = [p for p in out.iterdir() if p.is_dir()]
    return run, json.loads((run / "summary.json").read_text())


def test_adult_as_own_files_gives_the_registered_metrics(shared_data, tmp_path):
    """Parquet train file + gzip CSV test file, same schema and split -> the same metrics as --dataset uci-adult."""
    pq.write_table(_user_table(shared_data / "uci-adult" / "adult.data.gz", 0), tmp_path / "adult_train.parquet")
    test = _user_table(shared_data / "uci-adult" / "adult.test.gz", 1)
    with gzip.open(tmp_path / "adult_test.csv.gz", "wb") as f:
        pacsv.write_csv(test, f)
    (tmp_path / "adult.yaml").write_text(yaml.safe_dump(ADULT_SCHEMA))
    common = ["--epochs", "1", "--batch-size", "2048", "--set", "model.hidden_units=[32]", "--quiet"]
    own = runner.invoke(app, ["train", "deepfm", "--data", str(tmp_path / "adult_train.parquet"), "--label", "income",
                              "--test-data", str(tmp_path / "adult_test.csv.gz"), "--schema", str(tmp_path / "adult.yaml"),
                              "--output-dir", str(tmp_path / "own"), *common])
    assert own.exit_code == 0, own.output
    registered = runner.invoke(app, ["train", "deepfm", "--dataset", "uci-adult", "--data-dir", str(shared_data),
                                     "--schema", str(tmp_path / "adult.yaml"), "--output-dir", str(tmp_path / "reg"), *common])
    assert registered.exit_code == 0, registered.output
    run, mine = _summary(tmp_path / "own")
    _, theirs = _summary(tmp_path / "reg")
    assert run.name.startswith("adult_train-deepfm-")
    assert mine["rows"] == theirs["rows"] == {"train": 28942, "valid": 3619, "test": 16281}
    for key in ("valid/auc", "valid/log_loss", "test/auc", "test/log_loss"):
        assert mine[key] == theirs[key], key
    assert len(mine["data"]["fingerprint"]) == 16


def _synthetic(path, n=2000, seed=0, nan_rows=0):
    rng = np.random.default_rng(seed)
    city = rng.choice(["paris", "rome", "oslo"], n)
    spend = rng.exponential(1.0, n) ** 3
    click = (rng.random(n) < np.where(city == "paris", 0.7, 0.3)).astype(np.int64)
    spend[:nan_rows] = np.nan
    table = pa.table({"city": city, "spend": spend, "temp": rng.normal(0, 1, n), "ts": np.arange(n), "clicked": click})
    pacsv.write_csv(table, path)
    return table


def _train(path, out, *extra):
    return runner.invoke(app, ["train", "deepfm", "--data", str(path), "--label", "clicked", "--epochs", "1", "--batch-size", "512",
                               "--set", "model.hidden_units=[8]", "--output-dir", str(out), *extra])


def test_inferred_schema_is_printed_saved_and_loads_back(tmp_path):
    _synthetic(tmp_path / "clicks.csv")
    first = _train(tmp_path / "clicks.csv", tmp_path / "a")
    assert first.exit_code == 0, first.output
    assert "inferred schema" in first.output and "log1p_standardize" in first.output
    run, summary = _summary(tmp_path / "a")
    assert run.name.startswith("clicks-deepfm-")
    again = _train(tmp_path / "clicks.csv", tmp_path / "b", "--schema", str(run / "schema.yaml"))
    assert again.exit_code == 0, again.output
    _, other = _summary(tmp_path / "b")
    assert other["test/auc"] == summary["test/auc"]


def test_nan_in_a_dense_feature_is_imputed_and_reported(tmp_path):
    _synthetic(tmp_path / "clicks.csv", nan_rows=37)
    result = _train(tmp_path / "clicks.csv", tmp_path / "runs")
    assert result.exit_code == 0, result.output
    assert "37 missing value(s) of dense feature 'spend' imputed" in result.output
    assert _summary(tmp_path / "runs")[1]["data"]["imputed"] == {"spend": 37}


def test_data_inspect_reports_columns_balance_and_schema(tmp_path):
    _synthetic(tmp_path / "clicks.csv")
    result = runner.invoke(app, ["data", "inspect", str(tmp_path / "clicks.csv"), "--label", "clicked", "--split", "time:ts"])
    assert result.exit_code == 0, result.output
    assert "positive share" in result.output and "time column of the split" in result.output
    schema = yaml.safe_load(result.output[result.output.index("features:"):])
    assert [f["name"] for f in schema["features"]] == ["city", "spend", "temp"]


def _write(path, text):
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    "content, extra, message",
    [
        ("a,clicked\n1,0\n2,yes\n3,1\n", [], "label column 'clicked' must hold 0/1"),
        ("a,clicked\n1,1\n2,1\n3,1\n", [], "label 'clicked' has only the class 1"),
        ("a,clicked\n1,0\n2,1,7\n", [], "line 3: does not parse"),
        ("", [], "empty file"),
        ("a,clicked\n", [], "a header line only"),
        ("a,clicked\n1,0\n2,1\n", ["--split", "time:nope"], "split time column 'nope' is not in the data"),
        ("a,clicked\n1,0\n2,1\n", ["--dataset", "uci-adult"], "are exclusive"),
    ],
)
def test_bad_tables_are_one_line_errors_and_leave_no_run(tmp_path, content, extra, message):
    path = _write(tmp_path / "bad.csv", content)
    result = _train(path, tmp_path / "runs", *extra)
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and message in result.output, result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_mixed_types_across_files_name_both(tmp_path):
    a = _write(tmp_path / "a.csv", "a,clicked\n1,0\n2,1\n")
    b = _write(tmp_path / "b.csv", "a,clicked\nx,0\ny,1\n")
    result = runner.invoke(app, ["train", "deepfm", "--data", str(a), "--data", str(b), "--label", "clicked", "--output-dir", str(tmp_path / "r")])
    assert result.exit_code == 2
    assert "b.csv: mixed types in column 'a': string here, int64 in a.csv" in result.output.replace("\n", "")


def test_compare_retrains_when_the_file_changes_in_place(tmp_path):
    from recforge.reporting.compare import plan_comparison, run_comparison

    path = tmp_path / "clicks.csv"
    _synthetic(path, n=600)
    base = {"data": {"path": [str(path)], "label": ["clicked"]}, "train": {"epochs": 1, "batch_size": 256}, "model": {"hidden_units": [8]}}
    plan = plan_comparison(["deepfm"], [1], base)
    first = run_comparison(plan, tmp_path / "runs")
    assert run_comparison(plan, tmp_path / "runs")[0].path == first[0].path  # unchanged file: reused
    _synthetic(path, n=600, seed=1)  # same path and config, other rows
    third = run_comparison(plan, tmp_path / "runs")
    assert third[0].path != first[0].path
