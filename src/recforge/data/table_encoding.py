"""A user's own CSV / TSV / Parquet table, stream-encoded for out-of-core training.

``recforge data prepare --data clicks.parquet --label clicked --output DIR`` reads the table in
chunks (:func:`recforge.data.table_files.iter_table_batches`: Parquet row groups through
``ParquetFile.iter_batches``, text through ``pyarrow.csv.open_csv``) and writes the folder of
:mod:`recforge.data.encoded_folders` in two passes, so that ``recforge train deepfm --encoded
DIR`` trains on memory-mapped columns with the block shuffle: memory is bounded by one chunk and
the vocabularies, not by the table.

What differs from ``--data FILE`` (in memory, :class:`~recforge.data.datasets.own.TableSource`):

* the split is the seeded stratified random 8:1:1 split of each chunk of ``chunk_rows`` rows
  (:func:`~recforge.data.encoded_folders.assign_splits`; a table of at most one chunk is split as
  ``--data`` splits it); time splits and own validation / test files are for ``--data``;
* without ``--schema``, the schema is inferred (:func:`recforge.data.inference.infer_schema`, the
  same rules) from the table's first ``infer_rows`` rows, not all of it: the fitted vocabularies
  and moments still come from every training row; the report says how many rows it read;
* sequence features cannot be stored in the folder: a schema with one is refused
  (:func:`~recforge.data.encoded_folders.encode_chunks` says so);
* labels are converted per chunk by the same rule (0/1, true/false, or ``positive``); a bad
  value names the file and its line (text) or data row (Parquet).

Shape letters: N rows.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path

import pyarrow as pa

from recforge.data.encoded_folders import EncodeSummary, encode_chunks
from recforge.data.inference import ColumnReport, infer_schema
from recforge.data.schema import Schema
from recforge.data.table_files import TablePart, _unify, iter_table_batches, table_columns, table_format, table_name
from recforge.errors import ConfigError, DataError

#: rows per chunk (about 100 MB of parsed columns for 40 Criteo-like columns)
DEFAULT_CHUNK_ROWS = 250_000
#: rows the schema is inferred from when none is declared
DEFAULT_INFER_ROWS = 1_000_000
#: ``meta.json`` ``kind`` of a folder written from an own table
OWN_KIND = "own"


def infer_from_head(paths: Sequence[Path], labels: Sequence[str], rows: int, ignore: Sequence[str] = ()) -> tuple[Schema, list[ColumnReport], int]:
    """A schema inferred from the first ``rows`` rows of ``paths`` (in file order).

    Returns:
        (schema, report, rows read).

    Raises:
        ConfigError / DataError: as :func:`infer_schema` and :func:`iter_table_batches`.
    """
    parts, seen = [], 0
    for path in paths:
        for batch in iter_table_batches(path, min(rows, DEFAULT_CHUNK_ROWS)):
            parts.append(TablePart(path, pa.Table.from_batches([batch]), None))
            seen += batch.num_rows
            if seen >= rows:
                break
        if seen >= rows:
            break
    if not seen:
        raise DataError("the table holds no rows", paths[0])
    _unify(parts)  # the in-memory rule: the same columns in every file, numbers widened, else an error naming the file
    head = pa.concat_tables([p.table for p in parts]).slice(0, rows)
    schema, report = infer_schema(head, labels, ignore)
    return schema, report, head.num_rows


def encode_table_files(
    paths: Sequence[str | Path],
    labels: Sequence[str],
    output_dir: str | Path,
    schema: Schema | None = None,
    *,
    positive: str | None = None,
    ignore: Sequence[str] = (),
    seed: int = 0,
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    infer_rows: int = DEFAULT_INFER_ROWS,
    min_count: int | None = None,
    progress: bool = False,
    threads: int | None = None,
) -> tuple[EncodeSummary, Schema, list[ColumnReport]]:
    """Stream-encode an own table into an encoded folder (see the module docstring).

    Args:
        paths: the table's files (or Parquet directories), in order.
        labels: label column(s); the split is stratified by the first.
        output_dir: the folder to write (an earlier encoding there is replaced).
        schema: declared features (None: inferred from the first ``infer_rows`` rows).
        positive: the label value that means 1 (None: 0/1 or true/false).
        ignore: columns never inferred as features.
        seed, fractions: the per-chunk stratified split.
        chunk_rows: rows per chunk (bounds memory).
        infer_rows: rows read to infer a schema.
        min_count: for an inferred schema, categories seen fewer times in training map to OOV.
        progress: progress bars with rows/s on stderr.
        threads: encoding threads.

    Returns:
        (the summary, the schema used, the inference report: empty for a declared schema).

    Raises:
        ConfigError: no files or labels, a sequence feature, bad sizes.
        DataError: a missing label column, a label that is not binary (file and line named), a
            file that does not parse, an empty table.
    """
    files = [Path(p) for p in paths]
    if not files:
        raise ConfigError("name at least one data file (--data)")
    if not labels:
        raise ConfigError("name the label column (--label COL)")
    if chunk_rows < 1 or infer_rows < 1:
        raise ConfigError(f"chunk_rows and infer_rows must be >= 1, got {chunk_rows} and {infer_rows}")
    report: list[ColumnReport] = []
    inferred_rows = 0
    if schema is None:
        schema, report, inferred_rows = infer_from_head(files, labels, infer_rows, ignore)
        if min_count is not None:
            schema = Schema(tuple(replace(f, min_count=min_count) if f.kind != "dense" else f for f in schema.features), schema.labels)
    elif tuple(schema.labels) != tuple(labels):
        schema = Schema(schema.features, labels=tuple(labels))
    needed = list(dict.fromkeys([c for f in schema.features for c in (f.cross or (f.column_source,))] + list(labels)))
    types = _text_types(schema)

    def chunks() -> Iterator[pa.Table]:
        first: tuple[Path, set[str]] | None = None
        for path in files:
            text = table_format(path) != "parquet"
            before = 0
            names = table_columns(path)
            if first is None:
                first = (path, set(names))
            elif set(names) != first[1]:  # columns are matched by name: order may differ
                extra, lacking = sorted(set(names) - first[1]), sorted(first[1] - set(names))
                raise DataError(f"other columns than {first[0].name}: extra {extra}, missing {lacking}", path)
            missing = [c for c in needed if c not in names]
            if missing:
                kind = "label" if missing[0] in labels else "feature"
                raise DataError(f"{kind} column {missing[0]!r} is missing; columns: {', '.join(names)}", path)
            # only the schema's columns are parsed (a wide table's others cost nothing)
            for batch in iter_table_batches(path, chunk_rows, column_types=types if text else None, columns=needed):
                table = pa.Table.from_batches([batch]).select(needed)
                part = TablePart(path, table, first_line=(2 + before) if text else None)
                check_finite(part, schema, before)  # named by the file's line / row, before the split takes rows apart
                for label in labels:
                    table = table.set_column(table.column_names.index(label), label, _label(table.column(label), label, part, positive, before))
                before += table.num_rows
                yield table

    where = str(files[0]) if len(files) == 1 else ", ".join(str(p) for p in files)
    info = {
        "labels": list(labels), "files": [str(p) for p in files],
        "schema_inferred_from_rows": inferred_rows or None,
    }
    summary = encode_chunks(
        chunks, output_dir, schema, progress=progress, seed=seed, fractions=fractions, name=table_name(files[0]), where=where,
        source=where, chunk_rows=chunk_rows, threads=threads, info=info, kind=OWN_KIND,
        # chunks are kept for pass 2 only while they are small; a large table is read twice
        reuse_parsed_bytes=1 << 28,
    )
    return summary, schema, report


def _text_types(schema: Schema) -> dict[str, pa.DataType]:
    """Column types to read text files with: every block the same (the first block's guess may
    not hold for later ones): categories as strings, numbers as float64."""
    types: dict[str, pa.DataType] = {}
    for spec in schema.features:
        numeric = spec.kind == "dense" or spec.bucketize is not None
        for column in spec.cross or (spec.column_source,):
            types[column] = pa.float64() if numeric else types.get(column, pa.string())
    return types


def check_finite(part: TablePart, schema: Schema, before: int) -> None:
    """Own tables' infinity check (:func:`recforge.data.datasets.own.check_finite`) on a chunk."""
    from recforge.data.datasets import own

    own.check_finite(part, schema, before)


def _label(column: pa.ChunkedArray, name: str, part: TablePart, positive: str | None, before: int) -> pa.Array:
    """The 0/1 float32 label of a chunk (own tables' rule); a Parquet error counts rows from the file's first."""
    from recforge.data.datasets.own import _binary_label

    try:
        return _binary_label(column, name, part, positive)
    except DataError as exc:
        if part.first_line is None and before:  # Parquet: the chunk's row -> the file's row
            import re

            text = str(exc).removeprefix(f"{exc.path}: ")
            text = re.sub(r"at data row (\d+)", lambda m: f"at data row {int(m.group(1)) + before}", text)
            raise DataError(text, exc.path, exc.line) from None
        raise
