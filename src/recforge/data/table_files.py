"""Reading a user's own table files (CSV, TSV, Parquet; optionally gzip) with PyArrow.

Formats, by the file name (a trailing ``.gz`` is decompressed first):

* ``.parquet`` / ``.pq``: Parquet; a *directory* is read as a dataset of Parquet parts
  (:mod:`pyarrow.dataset`, every ``*.parquet`` file below it, in sorted order);
* ``.tsv`` / ``.tab``: tab-separated text with a header line;
* ``.csv``: comma-separated text with a header line;
* anything else is sniffed from its first line: tab-separated if it holds more tabs than commas.

Text columns are typed by PyArrow's inference; an empty cell (or ``NA``, ``null``, ``NaN`` ...,
PyArrow's default null values) is a missing value in every column type.

What "mixed types" means here:

* inside one text file, a column holding numbers and words is *not* an error: it is read as text
  (a categorical column). PyArrow infers types from the first block of a file, so such a column
  would otherwise fail half-way through a large file; it is re-read as strings instead;
* across several files, or the parts of a Parquet directory, one column must have one type:
  integers in one file and floats in another are widened to float64, but any other disagreement
  (for example numbers in ``a.csv`` and words in ``b.csv``) is a :class:`DataError` naming both
  files, the column and both types. Files must also hold the same column names (in any order).

Every failure is a :class:`recforge.errors.DataError` naming the file (and the line or column
where PyArrow says): a missing file, a file that does not parse, an empty file, a header without
rows, a Parquet file or part that is unreadable.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from recforge.data.readers import quiet_row_handler
from recforge.errors import DataError

PARQUET_SUFFIXES = (".parquet", ".pq")
TAB_SUFFIXES = (".tsv", ".tab")
#: bytes PyArrow reads per CSV block (type inference looks at the first block)
BLOCK_BYTES = 1 << 22
_CONVERSION = re.compile(r"In CSV column #(\d+): (?:Row #(\d+): )?CSV conversion error to (\S+): invalid value '(.*)'")


@dataclass
class TablePart:
    """One file's rows.

    Attributes:
        path: the file (or Parquet directory).
        table: its rows.
        first_line: 1-based line of the file holding ``table``'s row 0 (2 for headered text,
            None for Parquet, which has no lines).
    """

    path: Path
    table: pa.Table
    first_line: int | None

    def where(self, row: int) -> tuple[Path, int | None]:
        """The file and 1-based line (None for Parquet) of this part's row ``row`` (0-based)."""
        return self.path, None if self.first_line is None else self.first_line + row


def table_format(path: Path) -> str:
    """``parquet``, ``tsv`` or ``csv`` for ``path`` (see the module docstring)."""
    if path.is_dir():
        return "parquet"
    name = path.name.lower().removesuffix(".gz")
    if name.endswith(PARQUET_SUFFIXES):
        return "parquet"
    if name.endswith(TAB_SUFFIXES):
        return "tsv"
    if name.endswith(".csv"):
        return "csv"
    try:
        with pa.input_stream(str(path), compression="detect") as stream:
            first = stream.read(65536).split(b"\n", 1)[0]
    except (OSError, pa.ArrowException) as exc:
        raise DataError(f"cannot read file ({exc})", path) from None
    return "tsv" if first.count(b"\t") > first.count(b",") else "csv"


def table_name(path: str | Path) -> str:
    """A dataset name from a file: its name without format suffixes (``clicks.csv.gz`` -> ``clicks``)."""
    name = Path(path).name
    for suffix in (".gz", ".parquet", ".pq", ".csv", ".tsv", ".tab", ".txt"):
        name = name.removesuffix(suffix)
    return name or "table"


def read_parts(paths: str | Path | Sequence[str | Path]) -> list[TablePart]:
    """Each file of ``paths`` as a table, checked to agree on column names and types.

    Args:
        paths: one file or Parquet directory, or several (their rows are one table, in order).

    Returns:
        One part per path, with identical schemas (integers widened to float64 where another
        file holds floats in that column).

    Raises:
        DataError: naming the file: missing, unreadable, not parseable, empty, a header only,
            other columns than the first file, or a column whose type differs between files.
    """
    items = [Path(p) for p in ([paths] if isinstance(paths, (str, Path)) else paths)]
    if not items:
        raise DataError("no data files given")
    parts = [_read_one(p) for p in items]
    _unify(parts)
    return parts


def read_table(paths: str | Path | Sequence[str | Path]) -> pa.Table:
    """The rows of all ``paths`` as one table (see :func:`read_parts` for the checks).

    Raises:
        DataError: as :func:`read_parts`.
    """
    parts = read_parts(paths)
    return pa.concat_tables([p.table for p in parts]) if len(parts) > 1 else parts[0].table


def table_columns(path: str | Path) -> list[str]:
    """The column names of a table file (a text file's header line, a Parquet file's schema; a
    Parquet directory's first part), without reading its rows.

    Raises:
        DataError: naming the file, if it is missing or unreadable.
    """
    path = Path(path)
    _check_exists(path)
    if table_format(path) == "parquet":
        file = _parquet_files(path)[0] if path.is_dir() else path
        try:
            return list(pq.ParquetFile(_parquet_source(file)).schema_arrow.names)
        except (pa.ArrowException, OSError) as exc:
            raise DataError(f"not a readable Parquet file ({exc})", file) from None
    try:
        return _header(path, "\t" if table_format(path) == "tsv" else ",")
    except pa.ArrowInvalid as exc:
        raise _parse_error(path, exc) from None


def iter_table_batches(
    paths: str | Path | Sequence[str | Path], rows: int, column_types: dict[str, pa.DataType] | None = None,
    columns: Sequence[str] | None = None,
) -> Iterator[pa.RecordBatch]:
    """Stream the rows of ``paths`` in record batches of at most ``rows`` rows, in file order.

    Memory is bounded by the batch (and PyArrow's block) size, not the file size. Text is read
    with :func:`pyarrow.csv.open_csv`, Parquet with ``ParquetFile.iter_batches``. Unlike
    :func:`read_table`, a text column whose type changes after the first block cannot be re-read:
    pass ``column_types`` (for example the types a model was trained on) to fix them.

    Args:
        paths: files or Parquet directories.
        rows: the most rows per batch (>= 1).
        column_types: column name -> type for text files (others inferred).
        columns: read only these columns (all when None); the others are not parsed at all,
            which is most of the work for a wide table (check they exist: :func:`table_columns`).

    Raises:
        DataError: naming the file, for anything :func:`read_table` rejects that shows while
            streaming (a missing or unparseable file, an empty file, a conversion error).
        ValueError: if ``rows < 1``.
    """
    if rows < 1:
        raise ValueError(f"rows must be >= 1, got {rows}")
    items = [Path(p) for p in ([paths] if isinstance(paths, (str, Path)) else paths)]
    for path in items:
        _check_exists(path)
        if table_format(path) == "parquet":
            files = _parquet_files(path) if path.is_dir() else [path]
            for file in files:
                try:
                    reader = pq.ParquetFile(_parquet_source(file))
                    yield from reader.iter_batches(batch_size=rows, columns=list(columns) if columns is not None else None)
                except (pa.ArrowException, OSError) as exc:
                    raise DataError(f"not a readable Parquet file ({exc})", file) from None
            continue
        parse = pacsv.ParseOptions(delimiter="\t" if table_format(path) == "tsv" else ",")
        convert = pacsv.ConvertOptions(strings_can_be_null=True, column_types=column_types or {}, include_columns=list(columns or ()))
        try:
            reader = pacsv.open_csv(str(path), read_options=pacsv.ReadOptions(block_size=BLOCK_BYTES), parse_options=parse, convert_options=convert)
            for batch in reader:
                for start in range(0, batch.num_rows, rows):
                    yield batch.slice(start, rows)
        except pa.ArrowInvalid as exc:
            match = _CONVERSION.search(str(exc))
            if match is not None:
                raise _conversion_error(path, match, column_types or {}) from None
            raise _parse_error(path, exc) from None
        except OSError as exc:
            raise DataError(f"cannot read file (truncated or corrupt?): {exc}", path) from None
        except UnicodeDecodeError:
            raise DataError("not UTF-8 text: expected a CSV/TSV file with a header line (a binary file?)", path) from None


class ColumnTypeError(DataError):
    """A streamed text file holds a value its column's type cannot take (:func:`iter_table_batches`).

    Attributes:
        column: the column's name; ``type_name``: the type it was read as (PyArrow's name);
        ``value``: the value; ``fixed``: whether the type was given (``column_types``) rather
        than inferred from the first block.
    """

    def __init__(self, message: str, path: Path, line: int | None, column: str, type_name: str, value: str, fixed: bool):
        super().__init__(message, path, line)
        self.column, self.type_name, self.value, self.fixed = column, type_name, value, fixed


def _conversion_error(path: Path, match: re.Match[str], fixed: dict[str, pa.DataType]) -> ColumnTypeError:
    """A value that does not convert to its column's type, named by its column and (for a
    type the caller fixed) the file's line: the file is streamed once more with that column
    as text. An inferred type's failure is for the caller to retry (no second pass here)."""
    delimiter = "\t" if table_format(path) == "tsv" else ","
    names = _header(path, delimiter)
    column, target, value = names[int(match.group(1))], match.group(3), match.group(4)
    kind = "a number" if target.startswith(("double", "float", "int")) else f"a {target} value"
    if column not in fixed:
        why = f"the rows before it read as {target}, and a streamed file keeps the type of its first block"
        return ColumnTypeError(f"column {column!r}: {value!r} is not {kind} ({why})", path, None, column, target, value, False)
    line = None
    reader = pacsv.open_csv(
        str(path), read_options=pacsv.ReadOptions(block_size=BLOCK_BYTES, use_threads=False),
        parse_options=pacsv.ParseOptions(delimiter=delimiter),
        convert_options=pacsv.ConvertOptions(include_columns=[column], column_types={column: pa.string()}),
    )
    before = 0
    for batch in reader:
        found = pc.index(batch.column(0), value).as_py()
        if found >= 0:
            line = 2 + before + found  # the header is line 1 (a quoted field spanning lines shifts this)
            break
        before += batch.num_rows
    why = f"the schema reads {column!r} as {target}: a dense or bucketized feature; make it a sparse feature in the schema if the column holds words"
    return ColumnTypeError(f"column {column!r}: {value!r} is not {kind} ({why})", path, line, column, target, value, True)


def _check_exists(path: Path) -> None:
    if not path.exists():
        raise DataError("no such file", path)


def _read_one(path: Path) -> TablePart:
    _check_exists(path)
    if table_format(path) == "parquet":
        table = _read_parquet(path)
        if table.num_rows == 0:
            raise DataError("no data rows (an empty Parquet table)", path)
        return TablePart(path, table, None)
    if path.is_dir():
        raise DataError("is a directory; only a directory of Parquet parts can be read", path)
    table = _read_text(path)
    if table.num_rows == 0:
        raise DataError("a header line only, no data rows", path)
    return TablePart(path, table, 2)


def _read_text(path: Path) -> pa.Table:
    """A headered CSV/TSV file; a column that fails its inferred type is re-read as text."""
    delimiter = "\t" if table_format(path) == "tsv" else ","
    as_text: dict[str, pa.DataType] = {}
    names: list[str] | None = None
    while True:
        convert = pacsv.ConvertOptions(strings_can_be_null=True, column_types=as_text)
        try:
            return pacsv.read_csv(
                str(path),
                read_options=pacsv.ReadOptions(block_size=BLOCK_BYTES),
                parse_options=pacsv.ParseOptions(delimiter=delimiter),
                convert_options=convert,
            )
        except pa.ArrowInvalid as exc:
            match = _CONVERSION.search(str(exc))
            if match is None:
                raise _parse_error(path, exc) from None
            if names is None:
                names = _header(path, delimiter)
            column = names[int(match.group(1))]
            if column in as_text:  # pragma: no cover - a string column cannot fail conversion
                raise _parse_error(path, exc) from None
            as_text[column] = pa.string()  # numbers and words in one column: a categorical column
        except OSError as exc:
            raise DataError(f"cannot read file (truncated or corrupt?): {exc}", path) from None
        except UnicodeDecodeError:
            raise DataError("not UTF-8 text: expected a CSV/TSV file with a header line (a binary file?)", path) from None


def _header(path: Path, delimiter: str) -> list[str]:
    """The column names of a text file's header line (parsed by PyArrow alone, so quoted names work)."""
    with pa.input_stream(str(path), compression="detect") as stream:
        first = stream.read(1 << 20).split(b"\n", 1)[0]
    try:
        first.decode("utf-8")
    except UnicodeDecodeError:
        raise DataError("not UTF-8 text: expected a CSV/TSV file with a header line (a binary file?)", path, 1) from None
    table = pacsv.read_csv(pa.BufferReader(first + b"\n"), parse_options=pacsv.ParseOptions(delimiter=delimiter))
    return list(table.column_names)


def _parse_error(path: Path, exc: pa.ArrowInvalid) -> DataError:
    message = str(exc).strip().splitlines()[0]
    if "Empty CSV file" in message:
        return DataError("empty file (no header, no rows); expected a header line and data rows", path)
    delimiter = "\t" if table_format(path) == "tsv" else ","
    invalid: list[tuple[int, str]] = []

    def first_invalid(row: object) -> str:
        invalid.append((row.number, row.text))  # type: ignore[attr-defined]
        return "error"

    try:  # parse again on one thread (PyArrow then numbers physical lines) to find the line
        pacsv.read_csv(
            str(path), read_options=pacsv.ReadOptions(use_threads=False),
            parse_options=pacsv.ParseOptions(delimiter=delimiter, invalid_row_handler=quiet_row_handler(first_invalid)),
            convert_options=pacsv.ConvertOptions(column_types={n: pa.string() for n in _header(path, delimiter)}),
        )
    except (pa.ArrowInvalid, OSError):
        pass
    if invalid and invalid[0][0] > 0:
        number, text = invalid[0]
        expected = len(_header(path, delimiter))
        return DataError(f"does not parse: {text.count(delimiter) + 1} field(s) where the header has {expected}: {text[:80]!r}", path, number)
    line = None
    found = re.search(r"Row #(\d+)", message)
    if found:
        line = int(found.group(1))  # PyArrow counts rows from 1 including the header: the file's line
    return DataError(f"does not parse as {table_format(path).upper()} with a header line: {message}", path, line)


def _parquet_files(folder: Path) -> list[Path]:
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name.lower().removesuffix(".gz").endswith(PARQUET_SUFFIXES))
    if not files:
        raise DataError("a directory without Parquet parts (*.parquet)", folder)
    return files


def _parquet_source(path: Path) -> str | pa.BufferReader:
    if path.name.lower().endswith(".gz"):
        with pa.input_stream(str(path), compression="gzip") as stream:
            return pa.BufferReader(stream.read())
    return str(path)


def _read_parquet(path: Path) -> pa.Table:
    try:
        if not path.is_dir():
            return pq.read_table(_parquet_source(path))
        files = _parquet_files(path)
        schemas = [pq.read_schema(str(f)) for f in files]
        first = schemas[0]
        for file, schema in zip(files[1:], schemas[1:]):
            if set(schema.names) != set(first.names):
                raise DataError(f"Parquet part has columns {schema.names}, but {files[0].name} has {first.names}", file)
            for name in first.names:
                a, b = first.field(name).type, schema.field(name).type
                if a != b and _widened(a, b) is None:
                    raise DataError(f"mixed types in column {name!r}: {b} here, {a} in the part {files[0].name}", file)
        unified = pa.schema([pa.field(n, _column_type([s.field(n).type for s in schemas])) for n in first.names])
        return pads.dataset([str(f) for f in files], schema=unified, format="parquet").to_table()
    except DataError:
        raise
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"not a readable Parquet file or directory ({exc})", path) from None


def _widened(a: pa.DataType, b: pa.DataType) -> pa.DataType | None:
    """The common type of two column types that may be mixed (numbers widen to float64), else None."""
    if a == b:
        return a
    numeric = lambda t: pa.types.is_integer(t) or pa.types.is_floating(t)  # noqa: E731
    if numeric(a) and numeric(b):
        return pa.int64() if pa.types.is_integer(a) and pa.types.is_integer(b) else pa.float64()
    if pa.types.is_null(a):
        return b
    if pa.types.is_null(b):
        return a
    if pa.types.is_string(a) and pa.types.is_large_string(b) or pa.types.is_large_string(a) and pa.types.is_string(b):
        return pa.large_string()
    return None


def _column_type(types: list[pa.DataType]) -> pa.DataType:
    out = types[0]
    for t in types[1:]:
        out = _widened(out, t) or out
    return out


def _unify(parts: list[TablePart]) -> None:
    """Same column names in every part; one type per column (numbers widened), else a DataError."""
    first = parts[0]
    names = first.table.column_names
    for part in parts[1:]:
        if set(part.table.column_names) != set(names):
            extra = sorted(set(part.table.column_names) - set(names))
            lacking = sorted(set(names) - set(part.table.column_names))
            raise DataError(f"other columns than {first.path.name}: extra {extra}, missing {lacking}", part.path)
        part.table = part.table.select(names)
    for name in names:
        types = [p.table.schema.field(name).type for p in parts]
        target = types[0]
        for part, t in zip(parts[1:], types[1:]):
            common = _widened(target, t)
            if common is None:
                raise DataError(f"mixed types in column {name!r}: {t} here, {target} in {first.path.name}", part.path)
            target = common
        if any(t != target for t in types):
            for part in parts:
                index = part.table.column_names.index(name)
                part.table = part.table.set_column(index, name, part.table.column(name).cast(target))


__all__ = ["TablePart", "iter_table_batches", "read_parts", "read_table", "table_format", "table_name"]
