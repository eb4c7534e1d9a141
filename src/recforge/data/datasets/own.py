"""A user's own CSV / TSV / Parquet table as a tabular (CTR) dataset.

:class:`TableSource` is a :class:`TabularSource` like the registered ones, built from files
instead of a registry entry: the rows go through the same split, preprocessing (fitted on the
training split only), leakage checks and content-keyed cache, so the same rows, schema and seed
give the same encoded splits, and so the same metrics, as a registered dataset.

Splits (``split``):

* ``random`` (default): the seeded stratified split of :meth:`TabularSource.encode`, fractions
  0.8 / 0.1 / 0.1 of the rows; with a ``test_path`` the validation rows are the same seeded
  stratified 1/9 of the training file as a registered dataset with an official test file; with a
  ``valid_path`` only, the test rows are a stratified 1/9 of the training file;
* ``time:COL``: a global cut at the 80 % and 90 % quantiles of ``COL`` (numbers or timestamps):
  training rows have ``COL <= t80``, validation ``t80 < COL <= t90``, test ``COL > t90``, so no
  training row is later than any validation row, nor any validation row later than a test row.
  ``COL`` is never a feature;
* ``valid_path`` and ``test_path``: the user's own files (same columns as the training files).

Labels are 0/1 numbers or booleans, or, with ``positive``, any column whose value equals
``positive`` (compared as text) is 1 and every other value 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from recforge.data.datasets.tabular import RawSplits, TabularSource
from recforge.data.fingerprint import file_fingerprint
from recforge.data.inference import ColumnReport, infer_schema
from recforge.data.schema import Schema
from recforge.data.splits import stratified_split
from recforge.data.table_files import TablePart, read_parts, table_name
from recforge.data.tabular import TabularData
from recforge.errors import ConfigError, DataError

TIME_QUANTILES = (0.8, 0.9)


def parse_split(split: str) -> str | None:
    """The time column of ``time:COL``, None for ``random``.

    Raises:
        ConfigError: for any other value.
    """
    if split == "random":
        return None
    if split.startswith("time:") and split[5:].strip():
        return split[5:].strip()
    raise ConfigError(f"data.split must be 'random' or 'time:COLUMN', got {split!r}")


class TableSource(TabularSource):
    """Rows from the user's files, with declared or inferred features. Not registered.

    Args:
        paths: training files (or Parquet directories); several are one table, in order.
        labels: label column(s); more than one for multi-task models.
        schema: declared features (None: inferred by :func:`recforge.data.inference.infer_schema`).
        split: ``random`` or ``time:COL`` (see the module docstring).
        valid_paths, test_paths: the user's own validation / test files.
        positive: the label value that means 1 (None: labels must be 0/1 or booleans).
        ignore: columns that are never features (inference only; a declared schema says itself).
        sequence: string columns of ``a|b|c`` lists to infer as sequence features.

    Raises:
        ConfigError: a time split with own validation or test files, or no label.
    """

    folder: ClassVar[str] = ""
    description: ClassVar[str] = "a user's own table"
    files: ClassVar[tuple] = ()

    def __init__(
        self,
        paths: Sequence[str | Path],
        labels: Sequence[str],
        schema: Schema | None = None,
        split: str = "random",
        valid_paths: Sequence[str | Path] = (),
        test_paths: Sequence[str | Path] = (),
        positive: str | None = None,
        ignore: Sequence[str] = (),
        sequence: Sequence[str] = (),
    ):
        if not paths:
            raise ConfigError("data.path: name at least one data file")
        if not labels:
            raise ConfigError("data.label: name the label column (--label COL)")
        self.paths = tuple(Path(p) for p in paths)
        self.valid_paths = tuple(Path(p) for p in valid_paths)
        self.test_paths = tuple(Path(p) for p in test_paths)
        self.labels = tuple(labels)
        self.split = split
        self.time_column = parse_split(split)
        if self.time_column and (self.valid_paths or self.test_paths):
            raise ConfigError("data.split time:COL cuts one table; it cannot be combined with data.valid_path / data.test_path")
        self.positive = positive
        self.ignore = tuple(ignore)
        self.sequence = tuple(sequence)
        self.declared = schema
        self.name = table_name(self.paths[0])  # type: ignore[misc]
        self._parts: dict[str, list[TablePart]] = {}
        self.report: list[ColumnReport] = []
        self._inferred: Schema | None = None

    # --- the files --------------------------------------------------------------------------
    def verify(self, data_dir: str | Path | None = None) -> dict[str, Path]:
        """Role -> file for the cache key: every data file, training ones first (content-hashed)."""
        roles: dict[str, Path] = {}
        for role, group in (("train", self.paths), ("valid", self.valid_paths), ("test", self.test_paths)):
            for i, path in enumerate(group):
                if not path.exists():
                    raise DataError("no such file", path)
                for j, file in enumerate(_files_of(path)):
                    roles[f"{role}[{i}].{j}"] = file
        return roles

    def fingerprint(self) -> str:
        """One digest of every data file's content (for run summaries and reuse checks)."""
        import hashlib

        digests = [f"{role}={file_fingerprint(path)}" for role, path in self.verify().items()]
        return hashlib.sha256("\n".join(digests).encode()).hexdigest()[:16]

    def cache_parts(self) -> tuple[Any, ...]:
        """What the cache depends on besides files, seed, fractions and schema: split and labels."""
        return (self.split, self.positive, list(self.labels))

    def parts(self, role: str) -> list[TablePart]:
        """The files of ``train`` / ``valid`` / ``test`` as read (read once, then kept)."""
        if role not in self._parts:
            group = {"train": self.paths, "valid": self.valid_paths, "test": self.test_paths}[role]
            self._parts[role] = read_parts(group) if group else []
        return self._parts[role]

    def table(self, role: str = "train") -> pa.Table:
        """The raw rows of ``role`` (labels not yet converted)."""
        parts = self.parts(role)
        return pa.concat_tables([p.table for p in parts]) if len(parts) > 1 else parts[0].table

    # --- schema -----------------------------------------------------------------------------
    def default_schema(self) -> Schema:
        """The declared schema (its labels replaced by ``labels``), or one inferred from the training files."""
        if self.declared is not None:
            schema = self.declared if tuple(self.declared.labels) == self.labels else Schema(self.declared.features, labels=self.labels)
            if self.time_column:
                readers = [f.name for f in schema.features if self.time_column in (set(f.cross) or {f.column_source})]
                if readers:
                    raise ConfigError(f"feature {readers[0]!r} reads the split's time column {self.time_column!r}; the time column cannot be a feature")
            return schema
        if self._inferred is None:
            self._inferred, self.report = infer_schema(self.table(), self.labels, self.ignore, self.sequence, self.time_column)
        return self._inferred

    # --- rows -------------------------------------------------------------------------------
    def read(self, paths: dict[str, Path], seed: int) -> RawSplits:
        """Labels converted to 0/1 and checked; the time split or the user's files applied."""
        train = self._labelled("train")
        valid = self._labelled("valid") if self.valid_paths else None
        test = self._labelled("test") if self.test_paths else None
        if self.time_column:
            train, valid, test = _time_split(train, self.time_column, self.paths[0])
            return RawSplits(train, valid, test, info=f"time split on {self.time_column!r} at its {TIME_QUANTILES} quantiles")
        if valid is not None and test is None:  # carve the test rows as a registered source carves validation
            share = self.fractions[2] / (self.fractions[0] + self.fractions[2])
            labels = train.column(self.labels[0]).to_numpy(zero_copy_only=False).astype(np.float64)
            keep, held = stratified_split(labels, (1 - share, share), seed)
            train, test = train.take(keep), train.take(held)
        files = ", ".join(str(p) for p in self.paths + self.valid_paths + self.test_paths)
        return RawSplits(train, valid, test, info=f"own files {files}")

    def load(self, data_dir: str | Path | None = None, seed: int = 0, use_cache: bool = True, schema: Schema | None = None) -> TabularData:  # type: ignore[override]
        """As :meth:`TabularSource.load`; then records the files' fingerprint and imputed values."""
        data = super().load(data_dir, seed=seed, use_cache=use_cache, schema=schema)
        data.info["fingerprint"] = self.fingerprint()
        return data

    def encode(self, raw: RawSplits, schema: Schema, seed: int, where: str = "") -> TabularData:
        """As :meth:`TabularSource.encode`, plus ``info["imputed"]``: missing values per dense
        feature over all rows (0 after the transform: the training mean for ``standardize``)."""
        self._check_finite(schema)
        where = str(self.paths[0]) if len(self.paths) == 1 else ", ".join(str(p) for p in self.paths)  # the files as given
        data = super().encode(raw, schema, seed, where=where)
        tables = [t for t in (raw.train, raw.valid, raw.test) if t is not None]
        imputed = {}
        for spec in schema.dense:
            count = sum(_missing_values(t.column(spec.column_source)) for t in tables if spec.column_source in t.column_names)
            if count:
                imputed[spec.name] = count
        data.info["imputed"] = imputed
        return data

    def _check_finite(self, schema: Schema) -> None:
        """Infinities under ``non_finite: error``, found in the files as read (before any split
        shuffles the rows), so the error names the file and its line.

        Raises:
            DataError: naming the file, the 1-based line (the header is line 1; no line for
                Parquet, then the 1-based data row), the column and the value.
        """
        for role in ("train", "valid", "test"):
            for part in self._parts.get(role, []):
                check_finite(part, schema)

    def _labelled(self, role: str) -> pa.Table:
        """The rows of ``role`` with every label column as float32 0/1 (a DataError otherwise)."""
        parts = self.parts(role)
        tables = []
        for part in parts:
            table = part.table
            for label in self.labels:
                if label not in table.column_names:
                    raise DataError(f"label column {label!r} is missing; columns: {', '.join(table.column_names)}", part.path)
                index = table.column_names.index(label)
                table = table.set_column(index, label, _binary_label(table.column(label), label, part, self.positive))
            tables.append(table)
        table = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
        if role == "train":
            for label in self.labels:
                values = table.column(label).to_numpy(zero_copy_only=False)
                present = values[~np.isnan(values)]
                if len(np.unique(present)) < 2:
                    only = "no values" if not len(present) else f"only the class {int(present[0])}"
                    raise DataError(f"label {label!r} has {only} in {table.num_rows} rows; a binary label needs both 0 and 1", parts[0].path)
        return table


def check_finite(part: TablePart, schema: Schema, first_row: int = 0) -> None:
    """Infinities under ``non_finite: error`` in ``part`` as read, named by file and line.

    Args:
        part: rows of one file (or a chunk of it: ``first_row`` rows of the file come before,
            and ``part.first_line`` is the line of the chunk's first row).
        schema: the features.

    Raises:
        DataError: naming the file, the 1-based line (the header is line 1; no line for
            Parquet, then the 1-based data row), the column and the value.
    """
    numeric = [s for s in schema.features if (s.kind == "dense" or s.bucketize is not None) and s.non_finite == "error"]
    for spec in numeric:
        if spec.column_source not in part.table.column_names:
            continue  # the preprocessing names the missing column
        column = part.table.column(spec.column_source)
        if not (pa.types.is_floating(column.type) or pa.types.is_string(column.type)):
            continue  # integers cannot be infinite
        values = pc.cast(column, pa.float64(), safe=False) if pa.types.is_floating(column.type) else _text_numbers(column)
        infinite = pc.is_inf(values).to_numpy(zero_copy_only=False) if values is not None else None
        if infinite is None or not infinite.any():
            continue
        row = int(np.flatnonzero(infinite)[0])
        path, line = part.where(row)
        raise DataError(
            f"column {spec.column_source!r} (feature {spec.name!r}) has the non-finite value {values[row].as_py()} "
            f"at data row {first_row + row + 1}; expected a finite number or a missing value (set non_finite: missing or "
            "clip on the feature in --schema to accept it)",
            path, line,
        )


def _files_of(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.is_file())
    return [path]


def _binary_label(column: pa.ChunkedArray, name: str, part: TablePart, positive: str | None) -> pa.Array:
    """0/1 float32 of a label column; nulls stay missing (NaN)."""
    if positive is not None:
        text = pc.cast(column, pa.string())
        out = pc.cast(pc.equal(text, pa.scalar(str(positive))), pa.float32())
        return pc.fill_null(out, np.float32("nan")).combine_chunks() if isinstance(out, pa.ChunkedArray) else out
    if pa.types.is_boolean(column.type):
        return pc.fill_null(pc.cast(column, pa.float32()), np.float32("nan")).combine_chunks()
    if pa.types.is_integer(column.type) or pa.types.is_floating(column.type):
        values = np.asarray(column.to_numpy(zero_copy_only=False), dtype=np.float64)
        values[column.is_null().to_numpy(zero_copy_only=False)] = np.nan
        bad = ~np.isnan(values) & (values != 0) & (values != 1)
        if not bad.any():
            return pa.array(values.astype(np.float32))
        row = int(np.flatnonzero(bad)[0])
        found = float(values[row])
    else:
        text = pc.utf8_lower(pc.cast(column, pa.string()))
        known = pc.fill_null(pc.is_in(text, value_set=pa.array(["0", "1", "true", "false"])), True).to_numpy(zero_copy_only=False)
        if known.all():
            ones = pc.is_in(text, value_set=pa.array(["1", "true"]))
            return pc.fill_null(pc.cast(ones, pa.float32()), np.float32("nan")).combine_chunks()
        row = int(np.flatnonzero(~known)[0])
        found = column[row].as_py()
    path, line = part.where(row)
    at = "" if line else f" at data row {row + 1}"  # a text file's line is named by the error's prefix
    shown = f"{found:g}" if isinstance(found, float) else repr(found)
    raise DataError(
        f"label column {name!r} must hold 0/1 (or true/false), found {shown}{at}; "
        "declare the value that means 1 with --positive VALUE (data.positive)",
        path, line,
    )


def _time_split(table: pa.Table, column: str, path: Path) -> tuple[pa.Table, pa.Table, pa.Table]:
    if column not in table.column_names:
        raise ConfigError(f"data.split time:{column}: no column {column!r}; columns: {', '.join(table.column_names)}")
    values = table.column(column)
    if pa.types.is_temporal(values.type):
        values = pc.cast(pc.cast(values, pa.timestamp("ns")) if pa.types.is_date(values.type) else values, pa.int64())
    elif not (pa.types.is_integer(values.type) or pa.types.is_floating(values.type)):
        raise DataError(f"split time column {column!r} must hold numbers or timestamps, found {values.type}", path)
    times = np.asarray(values.to_numpy(zero_copy_only=False), dtype=np.float64)
    if np.isnan(times).any() or values.null_count:
        row = int(np.flatnonzero(np.isnan(times) | values.is_null().to_numpy(zero_copy_only=False))[0])
        raise DataError(f"split time column {column!r} is missing at row {row + 1}; every row needs a time", path, row + 2)
    cut_valid, cut_test = np.quantile(times, TIME_QUANTILES, method="lower")
    train, valid, test = times <= cut_valid, (times > cut_valid) & (times <= cut_test), times > cut_test
    for name, mask in (("validation", valid), ("test", test)):
        if not mask.any():
            raise DataError(f"time split on {column!r}: no {name} rows (too few distinct times); use a random split", path)
    take = lambda mask: table.filter(pa.array(mask))  # noqa: E731
    return take(train), take(valid), take(test)


def _text_numbers(column: pa.ChunkedArray) -> pa.ChunkedArray | None:
    """A text column as float64 (empty cells null), or None where it does not parse as numbers
    (the preprocessing then says the column must be numeric)."""
    blank = pc.equal(pc.utf8_trim_whitespace(column), "")
    try:
        return pc.cast(pc.if_else(blank, pa.scalar(None, column.type), column), pa.float64())
    except pa.ArrowInvalid:
        return None


def _missing_values(column: pa.ChunkedArray) -> int:
    """Nulls, NaN and empty strings: what the preprocessing treats as a missing number."""
    count = column.null_count
    if pa.types.is_floating(column.type):
        count += int(pc.sum(pc.is_nan(column)).as_py() or 0)
    elif pa.types.is_string(column.type):
        count += int(pc.sum(pc.equal(column, "")).as_py() or 0)
    return count


__all__ = ["TableSource", "parse_split", "table_name"]
