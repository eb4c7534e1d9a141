"""Own tables: reading files (table_files), inferring a schema (inference), and TableSource splits."""

import gzip

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from recforge.data.datasets.own import TableSource
from recforge.data.inference import infer_schema
from recforge.data.table_files import iter_table_batches, read_table
from recforge.errors import ConfigError, DataError


def _table(n=1000, seed=0):
    rng = np.random.default_rng(seed)
    return pa.table({
        "user_id": rng.integers(0, 900, n),          # id-like name -> sparse
        "city": rng.choice(["a", "b", "c"], n),      # string -> sparse
        "session": [f"s{i}" for i in range(n)],      # a different string in every row -> skipped as a row id
        "hour": rng.integers(0, 24, n),              # few integers -> sparse
        "spend": rng.exponential(1.0, n) ** 3,       # non-negative, heavy-tailed -> log1p_standardize
        "price": rng.normal(10, 1, n).round(6),      # symmetric -> standardize
        "temp": rng.normal(0, 1, n),                 # negative values -> standardize
        "const": np.ones(n),                         # constant -> skipped
        "tags": rng.choice(["x|y", "y", "x|z"], n),  # '|' lists -> sequence only if declared
        "noise": rng.normal(0, 1, n),                # --ignore
        "ts": np.arange(n),                          # time column of a time split
        "clicked": rng.integers(0, 2, n),
        "device": [f"d{i}" for i in rng.integers(0, 800, n)],  # many distinct strings -> sparse, min_count 2
    })


def test_inference_applies_each_rule():
    schema, report = infer_schema(_table(), ["clicked"], ignore=["noise"], sequence=["tags"], time_column="ts")
    kinds = {f.name: (f.kind, f.transform, f.min_count, f.separator) for f in schema.features}
    assert kinds == {
        "user_id": ("sparse", "none", 1, None),
        "city": ("sparse", "none", 1, None),
        "device": ("sparse", "none", 2, None),
        "hour": ("sparse", "none", 1, None),
        "spend": ("dense", "log1p_standardize", 1, None),
        "price": ("dense", "standardize", 1, None),
        "temp": ("dense", "standardize", 1, None),
        "tags": ("sequence", "none", 1, "|"),
    }
    skipped = {r.name: r.detail for r in report if r.kind == "skipped"}
    assert skipped == {"const": "constant", "noise": "ignored (--ignore)", "ts": "time column of the split",
                       "session": "row id: a different value in every row (not a feature; predict passes it through)"}
    assert schema.labels == ("clicked",)
    undeclared, _ = infer_schema(_table(), ["clicked"])
    assert undeclared["tags"].kind == "sparse" and "ts" not in undeclared  # 0..n-1: a row number


def test_inference_rejects_unknown_columns():
    with pytest.raises(ConfigError, match="sequence column 'nope' is not in the data"):
        infer_schema(_table(), ["clicked"], sequence=["nope"])


def test_numbers_then_words_in_one_csv_column_are_read_as_text(tmp_path):
    path = tmp_path / "t.csv"
    rows = 300_000  # far beyond PyArrow's first block, where its type inference looks
    path.write_text("code,clicked\n" + "".join(f"{i},{i % 2}\n" for i in range(rows)) + "AB7,0\n")
    table = read_table(path)
    assert table.schema.field("code").type == pa.string() and table.num_rows == rows + 1
    assert table.column("code")[rows].as_py() == "AB7"


def test_formats_gzip_tsv_sniffing_and_parquet_parts(tmp_path):
    with gzip.open(tmp_path / "a.tsv.gz", "wt") as f:
        f.write("x\ty\n1\tu\n")
    (tmp_path / "b.txt").write_text("x\ty\n2\tv\n")  # sniffed: tabs
    both = read_table([tmp_path / "a.tsv.gz", tmp_path / "b.txt"])
    assert both.column("x").to_pylist() == [1, 2] and both.column("y").to_pylist() == ["u", "v"]
    parts = tmp_path / "parts"
    parts.mkdir()
    pq.write_table(pa.table({"x": [1, 2]}), parts / "p0.parquet")
    pq.write_table(pa.table({"x": [0.5]}), parts / "p1.parquet")  # ints and floats widen
    assert read_table(parts).column("x").to_pylist() == [1.0, 2.0, 0.5]
    pq.write_table(pa.table({"x": ["w"]}), parts / "p2.parquet")
    with pytest.raises(DataError, match="p2.parquet: mixed types in column 'x': string here, int64 in the part p0.parquet"):
        read_table(parts)
    with pytest.raises(DataError, match="no such file"):
        read_table(tmp_path / "missing.csv")
    batches = list(iter_table_batches([tmp_path / "a.tsv.gz", tmp_path / "b.txt"], rows=1))
    assert [b.num_rows for b in batches] == [1, 1]


def test_a_word_in_a_column_streamed_as_numbers_names_the_column_and_line(tmp_path):
    # Streaming fixes each column's type (a later block cannot be re-read): a word in a column
    # the schema reads as numbers is named with its file line, not PyArrow's "column #1".
    rows = [f"{i % 2},{i * 0.5},c{i % 3}" for i in range(3000)]
    rows[2100] = "1,n/a?,c1"
    path = tmp_path / "t.csv"
    path.write_text("clicked,spend,city\n" + "\n".join(rows) + "\n")
    with pytest.raises(DataError, match=r"t\.csv, line 2102: column 'spend': 'n/a\?' is not a number"):
        list(iter_table_batches(path, rows=500, column_types={"spend": pa.float64()}))
    assert sum(b.num_rows for b in iter_table_batches(path, rows=500)) == 3000  # inferred: a text column, no error


def _csv(path, table):
    pacsv.write_csv(table, path)
    return path


def test_time_split_has_no_future_rows_in_training(tmp_path):
    table = _table(2000)
    rng = np.random.default_rng(3)
    table = table.set_column(table.column_names.index("ts"), "ts", pa.array(rng.integers(0, 300, 2000)))  # many ties
    source = TableSource([_csv(tmp_path / "t.csv", table)], ["clicked"], split="time:ts", ignore=["noise"])
    raw = source.read(source.verify(), seed=0)
    times = {s: np.asarray(getattr(raw, s).column("ts")) for s in ("train", "valid", "test")}
    assert times["train"].max() < times["valid"].min() and times["valid"].max() < times["test"].min()
    assert sum(len(t) for t in times.values()) == 2000
    assert 0.7 < len(times["train"]) / 2000 < 0.9
    data = source.load(seed=0)
    assert "ts" not in data.schema and data.info["rows"]["train"] == len(times["train"])


def test_own_validation_and_test_files_are_used_as_given(tmp_path):
    table = _table(1200)
    train, valid, test = (_csv(tmp_path / f"{n}.csv", table.slice(a, b)) for n, a, b in (("tr", 0, 1000), ("va", 1000, 100), ("te", 1100, 100)))
    data = TableSource([train], ["clicked"], valid_paths=[valid], test_paths=[test]).load(seed=0)
    assert data.info["rows"] == {"train": 1000, "valid": 100, "test": 100}
    only_valid = TableSource([train], ["clicked"], valid_paths=[valid]).load(seed=0)
    assert only_valid.info["rows"] == {"train": 888, "valid": 100, "test": 112}  # test: a stratified 1/9 of the training file


def test_positive_value_declares_the_label_and_the_cache_sees_the_split(tmp_path):
    table = _table(600)
    label = np.where(np.asarray(table.column("clicked")) == 1, "buy", "skip")
    table = table.set_column(table.column_names.index("clicked"), "clicked", pa.array(label))
    path = _csv(tmp_path / "t.csv", table)
    with pytest.raises(DataError, match=r"t.csv, line 2: label column 'clicked' must hold 0/1 \(or true/false\), found '(buy|skip)'; declare"):
        TableSource([path], ["clicked"]).load()  # the file's line 2
    data = TableSource([path], ["clicked"], positive="buy").load(seed=0)
    total = sum(data.info["rows"].values())
    positives = sum(data.info["positive_rate"][s][0] * data.info["rows"][s] for s in data.info["rows"])
    assert round(positives) == int((label == "buy").sum()) and total == 600
    timed = TableSource([path], ["clicked"], positive="buy", split="time:ts").load(seed=0)
    assert "time split" in timed.info["source"]  # not served from the random split's cache
    assert timed.info["fingerprint"] == data.info["fingerprint"]


def test_a_binary_file_is_a_clear_error(tmp_path):
    """Newcomer trial: random bytes named .csv raised UnicodeDecodeError from PyArrow."""
    import os

    from recforge.data.table_files import read_table
    from recforge.errors import DataError

    path = tmp_path / "garbage.csv"
    path.write_bytes(b"\x8b\x99" + os.urandom(3000))
    with pytest.raises(DataError, match="not UTF-8 text") as info:
        read_table(path)
    assert str(path) in str(info.value)
