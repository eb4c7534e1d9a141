"""`recforge data prepare --data FILE --label COL --output DIR`, then `train --encoded DIR`: an own
table stream-encoded and trained out of core, as a user runs it (issue 16, item 3, own Parquet data)."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
import yaml
from typer.testing import CliRunner

from recforge.cli.app import app
from recforge.data.encoded_folders import open_encoded
from tests.cli.test_cli_own_data import ADULT_SCHEMA, _user_table

runner = CliRunner()
COMMON = ["--epochs", "1", "--batch-size", "2048", "--set", "model.hidden_units=[32]", "--quiet"]


def _summary(out):
    (run,) = [p for p in out.iterdir() if p.is_dir()]
    return run, json.loads((run / "summary.json").read_text())


@pytest.fixture(scope="module")
def adult(shared_data, tmp_path_factory):
    """The raw UCI Adult training file as a user's Parquet table (row groups of 5,000 rows) and the Wide & Deep schema."""
    folder = tmp_path_factory.mktemp("adult")
    pq.write_table(_user_table(shared_data / "uci-adult" / "adult.data.gz", 0), folder / "adult.parquet", row_group_size=5000)
    (folder / "adult.yaml").write_text(yaml.safe_dump(ADULT_SCHEMA))
    return folder


def test_out_of_core_training_equals_the_in_memory_run(adult, tmp_path):
    """One chunk: the same split, vocabularies and transforms as --data, so the same metrics; the
    block shuffle reads the memory-mapped columns (here one buffer: the full shuffle's order), and
    predict scores raw rows with the run."""
    enc = tmp_path / "enc"
    prepared = runner.invoke(app, ["data", "prepare", "--data", str(adult / "adult.parquet"), "--label", "income",
                                   "--schema", str(adult / "adult.yaml"), "--output", str(enc), "--quiet"])
    assert prepared.exit_code == 0, prepared.output
    assert "train 26,048, valid 3,256, test 3,257" in prepared.output and f"recforge train deepfm --encoded {enc}" in prepared.output
    data = open_encoded(enc)
    assert isinstance(data.train.sparse, np.memmap) and data.train.sparse.dtype == np.int32
    out_of_core = runner.invoke(app, ["train", "deepfm", "--encoded", str(enc), "--output-dir", str(tmp_path / "ooc"), *COMMON])
    assert out_of_core.exit_code == 0, out_of_core.output
    in_memory = runner.invoke(app, ["train", "deepfm", "--data", str(adult / "adult.parquet"), "--label", "income",
                                    "--schema", str(adult / "adult.yaml"), "--output-dir", str(tmp_path / "mem"), *COMMON])
    assert in_memory.exit_code == 0, in_memory.output
    run, mine = _summary(tmp_path / "ooc")
    _, theirs = _summary(tmp_path / "mem")
    assert run.name.startswith("adult-deepfm-")
    assert mine["rows"] == theirs["rows"]
    for key in ("valid/auc", "valid/log_loss", "test/auc", "test/log_loss"):
        assert mine[key] == theirs[key], key

    block = runner.invoke(app, ["train", "deepfm", "--encoded", str(enc), "--output-dir", str(tmp_path / "block"),
                                "--set", "train.shuffle=block", *COMMON])
    assert block.exit_code == 0, block.output
    _, shuffled = _summary(tmp_path / "block")
    assert shuffled["test/auc"] == mine["test/auc"]  # a buffer that holds the whole split is exactly the full shuffle

    rows = pq.read_table(adult / "adult.parquet").slice(0, 500)
    pacsv.write_csv(rows, tmp_path / "rows.csv")
    scored = runner.invoke(app, ["predict", str(run), "--input", str(tmp_path / "rows.csv"), "--output", str(tmp_path / "p.csv")])
    assert scored.exit_code == 0, scored.output
    p = pacsv.read_csv(tmp_path / "p.csv").column("p_income").to_numpy()
    assert len(p) == 500 and ((p > 0) & (p < 1)).all()


def test_several_chunks_a_deterministic_split_and_an_inferred_schema(adult, tmp_path):
    args = ["data", "prepare", "--data", str(adult / "adult.parquet"), "--label", "income", "--chunk-rows", "7000",
            "--infer-rows", "10000", "--ignore", "fnlwgt", "--quiet"]
    first = runner.invoke(app, [*args, "--output", str(tmp_path / "a")])
    assert first.exit_code == 0, first.output
    second = runner.invoke(app, [*args, "--output", str(tmp_path / "b"), "--seed", "0"])
    assert second.exit_code == 0, second.output
    meta = json.loads((tmp_path / "a" / "meta.json").read_text())
    assert meta["kind"] == "own" and meta["name"] == "adult"
    assert sum(meta["info"]["rows"].values()) == 32561 and meta["info"]["schema_inferred_from_rows"] == 10000
    assert "per chunk of 7,000 rows" in meta["info"]["split"]
    for name in ("train.sparse.npy", "valid.dense.npy", "test.labels.npy", "preprocessing.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    schema = yaml.safe_load((tmp_path / "a" / "schema.yaml").read_text())
    names = [f["name"] for f in schema["features"]]
    assert "fnlwgt" not in names and "workclass" in names and schema["labels"] == ["income"]
    labels = np.load(tmp_path / "a" / "train.labels.npy")
    assert 0.2 < labels.mean() < 0.3  # stratified: Adult's 24 % positives in every split


def test_text_columns_keep_one_type_over_all_blocks(tmp_path):
    """A category column of digits for the first 200,000 rows, then words: read as text throughout.
    A column the schema does not use is not parsed at all, so its change of type is no error."""
    n = 240_000
    rng = np.random.default_rng(0)
    shop = [str(i % 50) for i in range(200_000)] + [f"shop{i % 7}" for i in range(n - 200_000)]
    unused = [str(i) for i in range(200_000)] + ["see notes"] * (n - 200_000)
    table = pa.table({"shop": shop, "x": rng.normal(size=n), "clicked": rng.integers(0, 2, n), "comment": unused})
    pacsv.write_csv(table, tmp_path / "t.csv")
    (tmp_path / "s.yaml").write_text(yaml.safe_dump({"features": [{"name": "shop"}, {"name": "x", "kind": "dense"}], "labels": ["clicked"]}))
    result = runner.invoke(app, ["data", "prepare", "--data", str(tmp_path / "t.csv"), "--label", "clicked", "--schema", str(tmp_path / "s.yaml"),
                                 "--chunk-rows", "60000", "--output", str(tmp_path / "enc"), "--quiet"])
    assert result.exit_code == 0, result.output
    vocabulary = json.loads((tmp_path / "enc" / "preprocessing.json").read_text())["vocabularies"]["shop"]
    assert len(vocabulary) == 57 and "shop3" in vocabulary


def test_bad_input_is_one_line_and_leaves_nothing(adult, tmp_path):
    table = pq.read_table(adult / "adult.parquet")
    income = table.column("income").to_pylist()
    income[20_001] = 2
    pq.write_table(table.set_column(table.column_names.index("income"), "income", pa.array(income)), tmp_path / "bad.parquet", row_group_size=5000)
    result = runner.invoke(app, ["data", "prepare", "--data", str(tmp_path / "bad.parquet"), "--label", "income", "--chunk-rows", "8000",
                                 "--output", str(tmp_path / "enc"), "--quiet"])
    assert result.exit_code == 2, result.output
    assert "bad.parquet" in result.output and "found 2 at data row 20002" in result.output
    assert not (tmp_path / "enc").exists() and not any(p.name.startswith(".enc") for p in tmp_path.iterdir())

    (tmp_path / "seq.yaml").write_text(yaml.safe_dump({"features": [{"name": "workclass", "kind": "sequence", "separator": "|"}], "labels": ["income"]}))
    result = runner.invoke(app, ["data", "prepare", "--data", str(adult / "adult.parquet"), "--label", "income",
                                 "--schema", str(tmp_path / "seq.yaml"), "--output", str(tmp_path / "enc"), "--quiet"])
    assert result.exit_code == 2 and "'workclass' is a sequence" in result.output and "in memory (--data)" in result.output

    for args, says in [
        (["--data", str(adult / "adult.parquet"), "--output", str(tmp_path / "enc")], "--label COL"),
        (["--data", str(adult / "adult.parquet"), "--label", "income"], "--output DIR"),
        (["--data", str(adult / "adult.parquet"), "--label", "wrong", "--output", str(tmp_path / "enc")], "'wrong'"),
        (["criteo", "--data", str(adult / "adult.parquet"), "--label", "income", "--output", str(tmp_path / "enc")], "without a dataset NAME"),
    ]:
        result = runner.invoke(app, ["data", "prepare", *args, "--quiet"])
        assert result.exit_code == 2 and says in result.output, (args, result.output)


def test_several_files_are_matched_by_column_name_and_checked_like_in_memory(adult, tmp_path):
    """Columns in another order are the same table; another set of columns is a one-line error
    naming the file (as --data says it); an infinity names the file's own line; a training split
    with one class is refused before anything is written."""
    table = pq.read_table(adult / "adult.parquet")
    first, second = table.slice(0, 16000), table.slice(16000)
    pq.write_table(first, tmp_path / "a.parquet")
    pq.write_table(second.select(list(reversed(second.column_names))), tmp_path / "b.parquet")
    args = ["--label", "income", "--schema", str(adult / "adult.yaml"), "--quiet"]
    both = runner.invoke(app, ["data", "prepare", "--data", str(tmp_path / "a.parquet"), "--data", str(tmp_path / "b.parquet"),
                               "--output", str(tmp_path / "ab"), *args])
    assert both.exit_code == 0, both.output
    pq.write_table(second, tmp_path / "b_same_order.parquet")
    same = runner.invoke(app, ["data", "prepare", "--data", str(tmp_path / "a.parquet"), "--data", str(tmp_path / "b_same_order.parquet"),
                               "--output", str(tmp_path / "same"), *args])
    assert same.exit_code == 0, same.output
    for name in ("train.sparse.npy", "train.dense.npy", "test.labels.npy"):
        assert (tmp_path / "ab" / name).read_bytes() == (tmp_path / "same" / name).read_bytes(), name

    pq.write_table(second.drop(["race"]), tmp_path / "c.parquet")
    for extra in ([], ["--schema", str(adult / "adult.yaml")]):
        result = runner.invoke(app, ["data", "prepare", "--data", str(tmp_path / "a.parquet"), "--data", str(tmp_path / "c.parquet"),
                                     "--label", "income", "--output", str(tmp_path / "ac"), "--quiet", *extra])
        assert result.exit_code == 2 and "c.parquet: other columns than a.parquet: extra [], missing ['race']" in result.output, result.output
        assert "Traceback" not in result.output and not (tmp_path / "ac").exists()

    rows = table.slice(0, 3000).to_pylist()
    rows[2500]["hours_per_week"] = float("inf")
    pacsv.write_csv(pa.Table.from_pylist(rows), tmp_path / "inf.csv")
    result = runner.invoke(app, ["data", "prepare", "--data", str(tmp_path / "inf.csv"), "--label", "income", "--chunk-rows", "1000",
                                 "--output", str(tmp_path / "inf"), "--quiet"])
    assert result.exit_code == 2 and "inf.csv, line 2502:" in result.output and "at data row 2501" in result.output, result.output

    zeros = table.set_column(table.column_names.index("income"), "income", pa.array(np.zeros(table.num_rows, np.int64)))
    pq.write_table(zeros, tmp_path / "zeros.parquet")
    result = runner.invoke(app, ["data", "prepare", "--data", str(tmp_path / "zeros.parquet"), "--label", "income",
                                 "--output", str(tmp_path / "zeros"), "--quiet"])
    assert result.exit_code == 2 and "label 'income' has only the class 0 in 26,048 training rows" in result.output, result.output
    assert not (tmp_path / "zeros").exists()
