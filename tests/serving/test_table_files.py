"""Users files in, result tables out."""

import gzip
import json

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from recforge.errors import ConfigError, DataError
from recforge.serving.table_files import read_user_ids, write_table


@pytest.mark.parametrize(
    "name, content, expected",
    [
        ("ids.txt", "17\n\n42\n  big id 9 \n", ["17", "42", "big id 9"]),
        ("ids.txt", "user\n17\n", ["17"]),
        ("ids.csv", "user,segment\n17,a\n 42 ,b\n", ["17", "42"]),
        ("ids.tsv", "segment\tuser\na\t0017\n", ["0017"]),  # kept as written: ids match as strings
    ],
)
def test_user_files_of_each_format(tmp_path, name, content, expected):
    path = tmp_path / name
    path.write_text(content)
    assert read_user_ids(path).to_pylist() == expected
    gz = tmp_path / (name + ".gz")
    gz.write_bytes(gzip.compress(content.encode()))
    assert read_user_ids(gz).to_pylist() == expected


def test_parquet_user_file(tmp_path):
    pq.write_table(pa.table({"user": [17, 2**40]}), tmp_path / "a.parquet")
    assert read_user_ids(tmp_path / "a.parquet").to_pylist() == ["17", str(2**40)]
    pq.write_table(pa.table({"customer": ["x"]}), tmp_path / "b.parquet")
    assert read_user_ids(tmp_path / "b.parquet").to_pylist() == ["x"]


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("empty.txt", b"\n\n", "no user ids in the file"),
        ("binary.txt", b"17\n\xff\xfe\x00", "line 2: not UTF-8 text"),
        ("mixed.txt", b"17\n42,43\n", "line 2: expected one user id per line"),
        ("nouser.csv", b"id,segment\n17,a\n", "line 1: expected a header with a column 'user'"),
        ("ragged.csv", b"user,segment\n17\n", "not a readable CSV/TSV file"),
        ("missing.csv", b"user,segment\n,a\n", "a user id is missing (empty) at row 1"),
        ("bad.parquet", b"PAR1 not really", "not a readable Parquet file"),
    ],
)
def test_user_files_that_do_not_parse(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(DataError, match=str(path).replace(".", r"\.") + ".*" + message.replace("(", r"\(").replace(")", r"\)")):
        read_user_ids(path)


def test_a_missing_users_file(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        read_user_ids(tmp_path / "nope.txt")


TABLE = pa.table({"user": ["a", "a"], "rank": [1, 2], "item": [10, 2**40], "score": pa.array([0.5, -1.25], pa.float32()), "cold": [False, True]})


def test_written_tables_read_back(tmp_path):
    write_table(TABLE, tmp_path / "out.parquet")
    assert pq.read_table(tmp_path / "out.parquet").equals(TABLE)
    write_table(TABLE, tmp_path / "out.csv")
    back = pacsv.read_csv(tmp_path / "out.csv", convert_options=pacsv.ConvertOptions(column_types=TABLE.schema))
    assert back.equals(TABLE)
    write_table(TABLE, tmp_path / "out.json")
    assert json.loads((tmp_path / "out.json").read_text()) == TABLE.to_pylist()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.csv", "out.json", "out.parquet"]  # no temp files left


def test_unknown_output_format(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown format '\.xlsx'"):
        write_table(TABLE, tmp_path / "out.xlsx")
    assert not list(tmp_path.iterdir())
