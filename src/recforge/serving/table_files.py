"""The files serving commands read and write: lists of user ids in, result tables out.

* :func:`read_user_ids`: a ``--users-file`` (text with one id per line, CSV/TSV with a ``user``
  column, or Parquet), plain or gzip-compressed.
* :func:`write_table`: a result table as CSV, JSON (a list of row objects) or Parquet, chosen by
  the file's suffix, written atomically (temp file + rename: never a half-written file).
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from recforge.data.files import atomic_write, read_bytes
from recforge.errors import ConfigError, DataError

OUTPUT_FORMATS = (".csv", ".json", ".parquet")
USER_COLUMN = "user"


def read_user_ids(path: str | Path) -> pa.Array:
    """Raw user ids from a file, as strings, in file order.

    Formats: Parquet (``.parquet``: the column ``user``, or its only column); otherwise text
    (``.gz``: gzip), either one id per line (blank lines skipped; a first line ``user`` is a
    header) or, when the first line holds a comma or tab, CSV/TSV with a header naming a
    ``user`` column.

    Raises:
        DataError: naming the file (and line): unreadable, not UTF-8, no ``user`` column, a line
            with several fields in a one-id-per-line file, or no ids at all.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError("no such file" if not path.exists() else "not a file", path)
    if path.name.endswith(".parquet"):
        try:
            table = pq.read_table(path)
        except (pa.ArrowException, OSError) as exc:
            raise DataError(f"not a readable Parquet file ({exc})", path) from None
        if USER_COLUMN not in table.column_names and table.num_columns != 1:
            raise DataError(f"expected a column {USER_COLUMN!r} (or a single column), found {table.column_names}", path)
        column = table.column(USER_COLUMN if USER_COLUMN in table.column_names else 0).combine_chunks()
        ids = _as_strings(column, path)
    else:
        data = read_bytes(path)
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DataError(f"not UTF-8 text (byte {exc.start}); expected one user id per line", path, data[: exc.start].count(b"\n") + 1) from None
        lines = text.splitlines()
        first = next((line for line in lines if line.strip()), "")
        ids = _delimited(data, path, "\t" if "\t" in first else ",") if ("," in first or "\t" in first) else _one_per_line(lines, path)
    if ids.null_count:
        raise DataError(f"a user id is missing (empty) at row {ids.to_pylist().index(None) + 1}", path)
    if len(ids) == 0:
        raise DataError("no user ids in the file", path)
    return ids


def _one_per_line(lines: list[str], path: Path) -> pa.Array:
    ids: list[str] = []
    for number, line in enumerate(lines, start=1):
        value = line.strip()
        if not value or (not ids and value == USER_COLUMN):
            continue
        if "," in value or "\t" in value:
            raise DataError(f"expected one user id per line, found {value[:40]!r}", path, number)
        ids.append(value)
    return pa.array(ids, pa.string())


def _delimited(data: bytes, path: Path, delimiter: str) -> pa.Array:
    try:
        table = pacsv.read_csv(
            io.BytesIO(data),
            parse_options=pacsv.ParseOptions(delimiter=delimiter),
            convert_options=pacsv.ConvertOptions(column_types={USER_COLUMN: pa.string()}, strings_can_be_null=True),
        )
    except pa.ArrowException as exc:
        raise DataError(f"not a readable CSV/TSV file ({str(exc).splitlines()[0]})", path) from None
    if USER_COLUMN not in table.column_names:
        raise DataError(f"expected a header with a column {USER_COLUMN!r}, found {table.column_names}", path, 1)
    return pc.utf8_trim_whitespace(table.column(USER_COLUMN).combine_chunks())


def _as_strings(column: pa.Array, path: Path) -> pa.Array:
    try:
        return pc.cast(column, pa.string())
    except (pa.ArrowException, NotImplementedError):
        raise DataError(f"user ids of type {column.type} cannot be read as ids", path) from None


def check_output_format(path: str | Path) -> str:
    """The output format of ``path`` from its suffix.

    Raises:
        ConfigError: for a suffix other than .csv, .json or .parquet.
    """
    suffix = Path(path).suffix.lower()
    if suffix not in OUTPUT_FORMATS:
        raise ConfigError(f"--output {path}: unknown format {suffix or '(no suffix)'!r}; use one of {', '.join(OUTPUT_FORMATS)}")
    return suffix


def write_table(table: pa.Table, path: str | Path) -> None:
    """Write ``table`` to ``path`` atomically as CSV (header row), JSON (a list of objects) or Parquet.

    Raises:
        ConfigError: for an unknown suffix, or a file that cannot be written.
    """
    path = Path(path)
    suffix = check_output_format(path)
    buffer = io.BytesIO()
    if suffix == ".csv":
        pacsv.write_csv(table, buffer)
    elif suffix == ".parquet":
        pq.write_table(table, buffer)
    else:
        buffer.write((json.dumps(table.to_pylist(), ensure_ascii=False) + "\n").encode("utf-8"))
    try:
        atomic_write(path, lambda f: f.write(buffer.getvalue()))
    except OSError as exc:
        raise ConfigError(f"--output {path}: cannot write the file: {exc.strerror or exc}") from None
