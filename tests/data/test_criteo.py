"""Criteo-format reading, the synthetic generator, streaming encoding and the Criteo datasets."""

from __future__ import annotations

import gzip
import io
import json
import tarfile

import numpy as np
import pyarrow as pa
import pytest
from typer.testing import CliRunner

from recforge.cli.app import app
from recforge.data import criteo
from recforge.data.criteo import (
    CATEGORICAL_COLUMNS,
    CRITEO_COLUMNS,
    INTEGER_COLUMNS,
    assign_splits,
    criteo_schema,
    encode_criteo_file,
    generate_criteo,
    iter_criteo_chunks,
    open_encoded,
    read_criteo,
)
from recforge.data.datasets import get_dataset
from recforge.data.preprocessing import OOV_ID, Preprocessor
from recforge.errors import ConfigError, DataError, DataMissingError

runner = CliRunner()


def row(label="0", integers=(), categories=(), fields=40):
    """One Criteo line: label, 13 integer fields, 26 categorical fields, cut to ``fields`` fields."""
    values = [label, *integers, *[""] * (13 - len(integers)), *categories, *[""] * (26 - len(categories))]
    return "\t".join(values[:fields])


GOOD = row("0", ["1", "-3", "", "4"], ["68fd1e64", "80e26c9b", ""])


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    """A 20,000-row generated file (plain), shared by the tests of this module."""
    path = tmp_path_factory.mktemp("criteo") / "gen20k.tsv"
    return generate_criteo(path, 20_000, seed=7)


# ------------------------------------------------------------------------------- parsing
def test_short_lines_negative_integers_and_empty_fields(tmp_path):
    lines = [
        GOOD,  # all 40 fields, some empty
        row("1", ["5", "-1", "", "7"], ["abcdef01"], fields=15),  # short: trailing fields left out
        "",  # an empty line is skipped
        "0",  # only the label
        row("1", ["", "-12"], [], fields=40) + "\r",  # CRLF line end
        row("0", [str(2**40), "0"], ["0000000a"] * 26),
    ]
    text = "\n".join(lines) + "\n"
    plain = tmp_path / "tiny.tsv"
    plain.write_text(text)
    table = read_criteo(plain)
    assert table.column_names == list(CRITEO_COLUMNS)
    assert table.schema.field("label").type == pa.int8()
    assert all(table.schema.field(c).type == pa.int64() for c in INTEGER_COLUMNS)
    assert all(table.schema.field(c).type == pa.string() for c in CATEGORICAL_COLUMNS)
    assert table.num_rows == 5
    assert table.column("label").to_pylist() == [0, 1, 0, 1, 0]
    assert table.column("I1").to_pylist() == [1, 5, None, None, 2**40]
    assert table.column("I2").to_pylist() == [-3, -1, None, -12, 0]
    assert table.column("I3").null_count == 5  # empty everywhere
    assert table.column("C1").to_pylist() == ["68fd1e64", "abcdef01", None, None, "0000000a"]
    assert table.column("C2").to_pylist() == ["80e26c9b", None, None, None, "0000000a"]
    assert table.column("C3").to_pylist() == [None, None, None, None, "0000000a"]  # empty -> null
    assert table.column("C26").to_pylist() == [None, None, None, None, "0000000a"]
    # The gzip form and small chunks give the same rows.
    zipped = tmp_path / "tiny.tsv.gz"
    zipped.write_bytes(gzip.compress(text.encode()))
    assert read_criteo(zipped, chunk_rows=2).equals(table)
    # A file without a final newline too.
    unterminated = tmp_path / "unterminated.tsv"
    unterminated.write_text(text.rstrip("\n"))
    assert read_criteo(unterminated).equals(table)


def _bad_file(tmp_path, bad_line, name="bad.tsv"):
    path = tmp_path / name
    path.write_text("\n".join([GOOD, row("1", ["2"], [], fields=9), bad_line, GOOD]) + "\n")
    return path


@pytest.mark.parametrize(
    "bad_line, message",
    [
        (GOOD + "\textra", "found 41 tab-separated fields"),
        (GOOD.replace("\t-3\t", "\t3x\t", 1), "integer field I2 must be an integer, found '3x'"),
        (row("0", ["1.5"]), "integer field I1 must be an integer, found '1.5'"),
        (row("0", ["", "", "", "", "abc"], fields=6), "integer field I5 must be an integer"),  # on a short line
        ("2" + GOOD[1:], "found label 2; the first field must be 0 or 1"),
        ("" + GOOD[1:], "found an empty label"),
        ("yes" + GOOD[1:], "the label must be an integer, found 'yes'"),
    ],
)
def test_malformed_lines_name_file_and_line(tmp_path, bad_line, message):
    path = _bad_file(tmp_path, bad_line)
    with pytest.raises(DataError, match=message) as info:
        read_criteo(path)
    assert info.value.path == path and info.value.line == 3
    assert str(info.value).startswith(f"{path}, line 3: ")


def test_text_that_is_not_utf8_names_its_line(tmp_path):
    path = tmp_path / "latin1.tsv"
    path.write_bytes((GOOD + "\n").encode() + row("1", ["2"], ["caf\xe9"]).encode("latin-1") + b"\n")
    with pytest.raises(DataError, match="not valid UTF-8") as info:
        read_criteo(path)
    assert info.value.line == 2


def test_error_line_numbers_across_chunks_and_parallel_parts(tmp_path, generated, monkeypatch):
    lines = generated.read_text().splitlines()[:10_000]
    lines[7776] = lines[7776].replace("\t", "\tx", 1)  # line 7,777: I1 starts with "x"
    path = tmp_path / "bad.tsv"
    path.write_text("\n".join(lines) + "\n")
    monkeypatch.setattr(criteo, "_MIN_PARALLEL_BYTES", 0)  # cut every chunk into parts
    for chunk_rows, threads in ((1000, 2), (3000, 3), (20_000, 1)):
        with pytest.raises(DataError) as info:
            list(iter_criteo_chunks(path, chunk_rows=chunk_rows, threads=threads))
        assert info.value.line == 7777 and "integer field I1" in str(info.value), (chunk_rows, threads)
    good = tmp_path / "good.tsv"
    good.write_text("\n".join(generated.read_text().splitlines()[:10_000]) + "\n")
    chunks = list(iter_criteo_chunks(good, chunk_rows=3000, threads=2))
    assert [c.num_rows for c in chunks] == [3000, 3000, 3000, 1000]
    assert pa.concat_tables(chunks).equals(read_criteo(good, threads=1))


# ------------------------------------------------------------------------------- generator
def test_generator_output_parses_and_looks_like_criteo(tmp_path, generated):
    table = read_criteo(generated)
    assert table.num_rows == 20_000
    missing = np.mean([table.column(c).null_count / table.num_rows for c in INTEGER_COLUMNS])
    assert 0.17 < missing < 0.25  # ~20 % missing integers, as the real data (20.9 %)
    assert 0.2 < np.mean(table.column("label").to_numpy()) < 0.3  # CTR ~25 %
    i2 = table.column("I2").to_numpy(zero_copy_only=False)
    assert 0.05 < np.mean(i2 < 0) < 0.15
    assert table.column("C22").null_count > 0.7 * table.num_rows  # mostly empty column
    c3 = table.column("C3").drop_null()
    assert pa.compute.all(pa.compute.match_substring_regex(c3, "^[0-9a-f]{8}$")).as_py()
    counts = np.sort(c3.value_counts().field("counts").to_numpy())[::-1]
    assert counts[0] > 50 * np.median(counts)  # heavy-tailed: a few values are very common
    assert 1 <= len(table.column("C9").unique()) <= 4
    # Deterministic, and the short-line form parses to the same rows.
    small, again, short = tmp_path / "a.tsv", tmp_path / "b.tsv.gz", tmp_path / "c.tsv"
    generate_criteo(small, 3000, seed=3)
    generate_criteo(again, 3000, seed=3)
    generate_criteo(short, 3000, seed=3, short_line_fraction=0.5)
    assert gzip.decompress(again.read_bytes()) == small.read_bytes()
    assert any(line.count("\t") < 39 for line in short.read_text().splitlines())
    assert read_criteo(short).equals(read_criteo(small))


# ------------------------------------------------------------------------------- encoding
def _in_memory_reference(path, schema, chunk_rows, seed, fractions=(0.8, 0.1, 0.1)):
    table = read_criteo(path)
    labels = table.column("label").to_numpy().astype(np.float64)
    codes = np.concatenate([
        assign_splits(labels[k : k + chunk_rows], fractions, seed, i) for i, k in enumerate(range(0, len(labels), chunk_rows))
    ])
    pre = Preprocessor(schema).fit(table.filter(pa.array(codes == 0)))
    return pre, [pre.transform(table.filter(pa.array(codes == i))) for i in range(3)]


@pytest.mark.parametrize("integers, reuse", [("dense", 1 << 30), ("both", 0)])
def test_streaming_encode_equals_the_in_memory_path(tmp_path, generated, integers, reuse):
    schema = criteo_schema(min_count=2, integers=integers)
    summary = encode_criteo_file(generated, tmp_path / "out", schema, chunk_rows=6000, seed=5, reuse_parsed_bytes=reuse)
    assert summary.rows == 20_000 and sum(summary.split_rows.values()) == 20_000
    assert summary.reread == (reuse == 0)
    assert summary.sparse_dtype == "int32" and summary.peak_rss_bytes > 0 and summary.rows_per_second > 0
    data = open_encoded(tmp_path / "out")
    pre, expected = _in_memory_reference(generated, schema, 6000, seed=5)
    assert data.schema == pre.schema
    for split, exp in zip(("train", "valid", "test"), expected):
        got = data.split(split)
        assert got.sparse.dtype == np.int32
        np.testing.assert_array_equal(got.sparse, exp.sparse)
        np.testing.assert_array_equal(got.dense, exp.dense)
        np.testing.assert_array_equal(got.labels, exp.labels)
    meta = json.loads((tmp_path / "out" / "meta.json").read_text())
    assert meta["info"]["rows"] == summary.split_rows
    assert abs(summary.split_rows["train"] / 20_000 - 0.8) < 0.001  # stratified per chunk: exact shares
    # Re-encoding replaces the folder; a foreign non-empty folder is refused.
    encode_criteo_file(generated, tmp_path / "out", schema, chunk_rows=20_000)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(ConfigError, match="not an encoded folder"):
        encode_criteo_file(generated, tmp_path / "mine", schema)


def test_vocabulary_is_fitted_on_training_rows_only(tmp_path, generated):
    # C1 gets a value unique to each row: a value of a validation or test row is never in training.
    lines = generated.read_text().splitlines()[:4000]
    unique = []
    for i, line in enumerate(lines):
        fields = line.split("\t")
        fields += [""] * (40 - len(fields))
        fields[14] = f"{i:08x}"
        unique.append("\t".join(fields))
    path = tmp_path / "unique.tsv"
    path.write_text("\n".join(unique) + "\n")
    encode_criteo_file(path, tmp_path / "out", criteo_schema(min_count=1), chunk_rows=1500)
    data = open_encoded(tmp_path / "out")
    c1 = data.schema.column("C1")
    assert (data.train.sparse[:, c1] >= 2).all()  # every training value is known
    assert (data.valid.sparse[:, c1] == OOV_ID).all() and (data.test.sparse[:, c1] == OOV_ID).all()
    assert data.schema.vocab_size("C1") == len(data.train) + 2
    assert json.loads((tmp_path / "out" / "preprocessing.json").read_text())["rows_fitted"] == len(data.train)


def test_schema_modes():
    dense = criteo_schema()
    assert [f.name for f in dense.dense] == list(INTEGER_COLUMNS) and all(f.transform == "log1p" for f in dense.dense)
    assert [f.name for f in dense.sparse] == list(CATEGORICAL_COLUMNS)
    buckets = criteo_schema(min_count=10, integers="buckets")
    assert not buckets.dense and len(buckets.sparse) == 39
    assert buckets["I1"].bucketize == "log_squared" and buckets["C1"].min_count == 10
    both = criteo_schema(integers="both")
    assert len(both.dense) == 13 and both["I1_bucket"].column_source == "I1"
    with pytest.raises(ConfigError, match="integers must be one of"):
        criteo_schema(integers="raw")


# ------------------------------------------------------------------------------- datasets
def test_real_criteo_head_10k(shared_data, tmp_path):
    source = get_dataset("criteo-head-10k")
    data = source.load(shared_data, seed=0)
    splits = [data.split(s) for s in ("train", "valid", "test")]
    assert sum(len(s) for s in splits) == 10_000
    assert sum(int(s.labels.sum()) for s in splits) == 2_182
    assert data.info["rows"] == {"train": 7_999, "valid": 1_000, "test": 1_001}
    # Streaming the same file (one chunk) gives the same split and the same ids.
    path = source.verify(shared_data)["training rows"]
    summary = source.encode_file(path, tmp_path / "out", seed=0)
    assert summary.positives == 2_182
    streamed = open_encoded(tmp_path / "out")
    for split in ("train", "valid", "test"):
        np.testing.assert_array_equal(streamed.split(split).sparse, data.split(split).sparse)
        np.testing.assert_array_equal(streamed.split(split).dense, data.split(split).dense)


def test_full_criteo_is_checked_by_first_line_and_row_count(tmp_path, monkeypatch):
    source = get_dataset("criteo")
    with pytest.raises(DataMissingError, match="train.txt"):
        source.verify(tmp_path)
    (tmp_path / "criteo").mkdir()
    (tmp_path / "criteo" / "train.txt").write_text("hello\tworld\n")
    with pytest.raises(DataError, match="label must be an integer"):
        source.verify(tmp_path)
    # download(): Criteo's archive (here a small stand-in) is fetched, train.txt extracted, the archive removed.
    (tmp_path / "criteo" / "train.txt").unlink()
    body = ("\n".join([GOOD] * 30) + "\n").encode()

    def fake_download(url, destination, checksum=None, progress=True):
        assert url.startswith("https://go.criteo.net/") and checksum is None
        with tarfile.open(destination, "w:gz") as tar:
            for name, data in (("readme.txt", b"dac"), ("train.txt", body)):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        return destination

    monkeypatch.setattr("recforge.data.datasets.criteo.download", fake_download)
    source.download(tmp_path)
    assert (tmp_path / "criteo" / "train.txt").read_bytes() == body
    assert sorted(p.name for p in (tmp_path / "criteo").iterdir()) == ["train.txt"]
    with pytest.raises(DataError, match="expected 45,840,617 rows, found 30"):
        source.load(tmp_path)


# ------------------------------------------------------------------------------- CLI
def test_cli_prepare_generate_and_malformed_input(shared_data, tmp_path):
    prepared = runner.invoke(app, ["data", "prepare", "criteo-head-10k", "--data-dir", str(shared_data)])
    assert prepared.exit_code == 0, prepared.output
    assert "train 7,999, valid 1,000, test 1,001" in prepared.output

    generated = tmp_path / "gen.tsv.gz"
    result = runner.invoke(app, ["data", "generate", "criteo", "--rows", "3000", "--output", str(generated), "--seed", "1"])
    assert result.exit_code == 0, result.output
    assert "wrote 3,000 Criteo-format rows" in result.output
    assert read_criteo(generated).num_rows == 3000

    out = tmp_path / "encoded"
    result = runner.invoke(app, ["data", "prepare", "criteo", "--input", str(generated), "--output", str(out), "--min-count", "2", "--quiet"])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "encoded 3,000 rows" in text and "rows/s" in text and "peak RSS" in text
    assert abs(len(open_encoded(out).train) - 2400) <= 2  # stratified: each class rounds down
    assert open_encoded(out).schema["C1"].min_count == 2

    bad = _bad_file(tmp_path, GOOD.replace("\t-3\t", "\tminus3\t", 1))
    result = runner.invoke(app, ["data", "prepare", "criteo", "--input", str(bad), "--quiet"])
    assert result.exit_code == 2
    text = " ".join(result.output.split())
    assert f"{bad}, line 3: integer field I2 must be an integer" in text and "Traceback" not in text

    result = runner.invoke(app, ["data", "prepare", "movielens-1m", "--input", str(generated)])
    assert result.exit_code == 2 and "Criteo-format datasets" in result.output
