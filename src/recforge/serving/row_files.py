"""Row files for ``recforge predict``: rows streamed in chunks from CSV / TSV / Parquet, scores streamed out.

* :func:`iter_row_chunks`: a file as PyArrow tables of ``rows`` rows each, in file order, without
  reading the whole file (:func:`recforge.data.table_files.iter_table_batches`: CSV / TSV through
  ``pyarrow.csv.open_csv``, plain or ``.gz``; Parquet through ``ParquetFile.iter_batches``).
  Memory is bounded by the chunk size.
* :func:`write_row_chunks`: tables written one after the other as CSV or Parquet (chosen by the
  suffix), through a temporary file renamed into place at the end, so an error half-way leaves
  no output file.
* :func:`predict_file`: ``recforge predict`` end to end: read, encode, score, write, with the
  reading and encoding of the next chunk on a second thread while this one is scored and
  written (PyArrow and torch release the GIL), at most :data:`PIPELINE_DEPTH` chunk queued between them.

Column types of a text input (:func:`input_types`): every column is read with the type PyArrow
infers from the file's first block, so what is passed through keeps the input's type (an integer
id column stays integers, ``5`` stays ``5``), except the columns of categorical features whose
vocabulary holds a value that is not a canonical integer (``007``, ``a``): those are read as
text, so ``007`` keeps its leading zeros and matches the training key. The keys are then those
of training (:func:`recforge.data.preprocessing._keys` turns integers into their decimal text).
A column whose inferred type fails on a later block (``12`` then ``x``) makes the whole file be
read again with that column as text (a numeric feature: as float64): the output is written
from scratch, so it has one type per column.

Text inputs need a header line: columns are matched by name.
"""

from __future__ import annotations

import queue
import re
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import torch

from recforge.data.files import atomic_write
from recforge.errors import ConfigError, DataError

if TYPE_CHECKING:
    from recforge.serving.predictor import Predictor

OUTPUT_SUFFIXES = (".csv", ".parquet")
_CANONICAL_INT = re.compile(r"^(0|-?[1-9][0-9]{0,17})$")


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


#: chunks queued between the reading thread and the scoring one: with the one being read and the one
#: being scored and written, at most three chunks (raw + encoded) are held, whatever the file size
PIPELINE_DEPTH = 1


def input_types(predictor: "Predictor") -> dict[str, pa.DataType]:
    """Forced read types of a text input's columns: text for the categorical feature columns
    (and histories) whose vocabulary is not all canonical integers; every other column is
    inferred (see the module docstring).
    """
    vocabularies = predictor.preprocessor.vocabularies
    types: dict[str, pa.DataType] = {}
    for spec in predictor.schema.features:
        if spec.kind == "dense" or spec.bucketize is not None:
            continue
        columns = spec.cross or (spec.column_source,)
        vocabulary = vocabularies.get(spec.table_name)
        if spec.kind == "sequence" or spec.cross or vocabulary is None or not _canonical_integers(vocabulary.array):
            types.update({column: pa.string() for column in columns})
    return types


def _canonical_integers(values: pa.Array) -> bool:
    """Whether every value is an integer written as ``str(int)`` does (no sign +, no leading zero)."""
    import pyarrow.compute as pc

    return len(values) > 0 and bool(pc.all(pc.match_substring_regex(values, _CANONICAL_INT.pattern)).as_py())


def predict_file(
    predictor: "Predictor", path: Path, output: Path, rows: int, on_chunk: Callable[[int], None] | None = None
) -> int:
    """Score every row of ``path`` and write them, with the ``p_<task>`` columns, to ``output``.

    Args:
        predictor: the run's predictor.
        path: the input (CSV / TSV with a header, plain or gzip, or Parquet).
        output: ``.csv`` or ``.parquet``; written atomically (nothing there after an error).
        rows: rows per chunk (>= 1): memory is a few chunks, whatever the file size.
        on_chunk: called with the rows written so far after each chunk (a progress bar).

    Returns:
        The rows written.

    Raises:
        DataError: naming the file (and data row) for a missing feature column, an unparsable
            file or a value a feature cannot take; ConfigError for a bad output suffix.
    """
    types = input_types(predictor)
    numeric = {c for spec in predictor.schema.features if spec.kind == "dense" or spec.bucketize is not None
               for c in (spec.cross or (spec.column_source,))}
    while True:
        try:
            return write_row_chunks(output, _scored(predictor, path, rows, types, on_chunk))
        except DataError as exc:
            column = _failed_column(exc, path)
            if column is None or types.get(column) in (pa.string(), pa.float64()):
                raise
            # inferred from the first block, contradicted by a later one: read it all again, this column fixed
            types[column] = pa.float64() if column in numeric and types.get(column) is None else pa.string()


def _failed_column(exc: DataError, path: Path) -> str | None:
    """The column of a CSV conversion error in a later block of ``path``, or None for any other error."""
    from recforge.data.table_files import ColumnTypeError

    return exc.column if isinstance(exc, ColumnTypeError) and exc.path == path else None


def _scored(
    predictor: "Predictor", path: Path, rows: int, types: dict[str, pa.DataType], on_chunk: Callable[[int], None] | None
) -> Iterator[pa.Table]:
    """The input's chunks with their probabilities appended, in row order; the next chunks are
    read and encoded on a thread while this one is scored (and written by the caller)."""
    ahead: queue.Queue[Any] = queue.Queue(maxsize=PIPELINE_DEPTH)
    stop = threading.Event()
    where = str(path)

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                ahead.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        done = 0
        try:
            for chunk in iter_row_chunks(path, rows, column_types=types):
                if done == 0:
                    predictor.check_columns(chunk.column_names, where)
                    clash = [c for c in predictor.output_columns if c in chunk.column_names]
                    if clash:
                        raise DataError(f"the input already has a column {clash[0]!r}, the name of the predicted probabilities; rename it", path)
                if not put((chunk, predictor.encode(chunk, where, first_row=done))):
                    return
                done += chunk.num_rows
            put(None)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, which raises it
            put(exc)

    worker = threading.Thread(target=produce, name="recforge-predict-read", daemon=True)
    worker.start()
    written = 0
    try:
        while True:
            item = ahead.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            chunk, encoded = item
            probabilities = torch.sigmoid(torch.from_numpy(predictor.encoded_logits(encoded))).numpy()  # as Predictor.predict
            for t, name in enumerate(predictor.output_columns):
                chunk = chunk.append_column(name, pa.array(probabilities[:, t], pa.float64()))
            yield chunk
            written += chunk.num_rows
            if on_chunk is not None:
                on_chunk(written)
    finally:
        stop.set()
        worker.join()

