"""Row files for ``recforge predict``: rows streamed in chunks from CSV / TSV / Parquet, scores streamed out.

* :func:`iter_row_chunks`: a file as PyArrow tables of ``rows`` rows each, in file order, without
  reading the whole file (:func:`recforge.data.table_files.iter_table_batches`: CSV / TSV through
  ``pyarrow.csv.open_csv``, plain or ``.gz``; Parquet through ``ParquetFile.iter_batches``).
  Memory is bounded by the chunk size.
* :func:`write_row_chunks`: tables written one after the other as CSV or Parquet (chosen by the
  suffix), through a temporary file renamed into place at the end, so an error half-way leaves
  no output file.

Text inputs need a header line: columns are matched by name.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from recforge.data.files import atomic_write
from recforge.errors import ConfigError, DataError

OUTPUT_SUFFIXES = (".csv", ".parquet")


def check_input(path: Path) -> None:
    """Fail early, before a model is loaded, for an input that is not there.

    Raises:
        DataError: naming ``path``.
    """
    if not path.exists():
        raise DataError("no such file", path)


def check_output_format(path: Path) -> str:
    """The output's format suffix (``.csv`` or ``.parquet``).

    Raises:
        ConfigError: for another suffix.
    """
    suffix = path.suffix.lower()
    if suffix not in OUTPUT_SUFFIXES:
        raise ConfigError(f"--output {path}: unknown format {suffix or '(no suffix)'}; expected .csv or .parquet")
    return suffix


def iter_row_chunks(path: Path, rows: int, column_types: dict[str, pa.DataType] | None = None) -> Iterator[pa.Table]:
    """Stream ``path`` as tables of exactly ``rows`` rows (the last one shorter), in file order.

    Reading is :func:`recforge.data.table_files.iter_table_batches` (the formats of ``--data``:
    CSV / TSV with a header, plain or gzip, Parquet files or folders of parts); this regroups its
    batches into chunks of ``rows`` rows.

    Args:
        path: the input file (or Parquet folder).
        rows: rows per chunk (>= 1).
        column_types: text files: types to read these columns as (others are inferred from the
            first block); reading categories as strings keeps a column that looks numeric in
            the first block from failing on a later one.

    Raises:
        DataError: naming the file: missing, empty, no data rows, or not parseable.
    """
    from recforge.data.table_files import iter_table_batches

    check_input(path)
    chunks = 0
    for chunk in _rebatch(iter_table_batches(path, rows, column_types), rows):
        chunks += 1
        yield chunk
    if chunks == 0:
        raise DataError("no data rows: expected a header line naming the columns, then rows", path)


def _rebatch(batches: Iterable[pa.RecordBatch], rows: int) -> Iterator[pa.Table]:
    """Tables of exactly ``rows`` rows (the last one shorter) from batches of any size."""
    buffered: list[pa.RecordBatch] = []
    held = 0
    for batch in batches:
        while batch.num_rows:
            take = min(rows - held, batch.num_rows)
            buffered.append(batch.slice(0, take))
            held += take
            batch = batch.slice(take)
            if held == rows:
                yield pa.Table.from_batches(buffered)
                buffered, held = [], 0
    if held:
        yield pa.Table.from_batches(buffered)


def write_row_chunks(path: Path, chunks: Iterable[pa.Table]) -> int:
    """Write ``chunks`` (tables of one schema) to ``path`` atomically; returns the rows written.

    CSV gets a header line; Parquet one row group per chunk. Nothing is left at ``path`` if
    iterating ``chunks`` raises (the temporary file is removed). An empty ``chunks`` writes
    nothing and leaves no file.

    Raises:
        ConfigError: for an output suffix other than ``.csv`` / ``.parquet``.
    """
    suffix = check_output_format(path)
    written = 0

    def write(f: IO[bytes]) -> None:
        nonlocal written
        sink = pa.PythonFile(f, mode="w")
        writer: pacsv.CSVWriter | pq.ParquetWriter | None = None
        try:
            for chunk in chunks:
                if writer is None:
                    writer = pacsv.CSVWriter(sink, chunk.schema) if suffix == ".csv" else pq.ParquetWriter(sink, chunk.schema)
                writer.write_table(chunk)
                written += chunk.num_rows
        finally:
            if writer is not None:
                writer.close()
        if writer is None:
            raise _NoRows

    try:
        atomic_write(path, write)
    except _NoRows:
        return 0
    return written


class _NoRows(Exception):
    """Internal: the input had no rows (the temporary file is discarded)."""

