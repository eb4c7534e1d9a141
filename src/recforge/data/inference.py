"""A feature schema inferred from a user's table, and the column report behind it.

Rules (per column, in this order; the report states which one decided):

1. label columns, ``ignore`` columns and the time column of a time split are never features;
2. a column with at most one distinct value (missing values aside) is skipped as constant;
   a column whose every value is different (a row id: strings, or integers with an id-like name
   or forming a consecutive range, more than :data:`MAX_SPARSE_DISTINCT` rows) is skipped as a
   row id: it cannot generalise to new rows (``predict`` passes it through, to join on);
   a 0/1 column other than the label whose 1s all fall on rows where a label is 1 (``purchase``
   with ``--label click``) is skipped as label-like: a second label or an outcome after the
   label's event, which would leak it (train it as a task with ``--label click,purchase``, or
   declare it in ``--schema`` to use it anyway), with a :class:`~recforge.data.leakage.LabelLeakWarning`;
3. a column declared in ``sequence`` (a string of ``a|b|c`` values) becomes a sequence feature
   split on ``|``; a ``|`` in other string columns is never split (it is a value like any other);
4. timestamps and dates are skipped (use them as ``--split time:COL``);
5. strings and booleans become sparse features; a string column with more than
   :data:`ID_MIN_DISTINCT` distinct values that are more than :data:`ID_DISTINCT_SHARE` of its
   rows is a high-cardinality id, kept sparse with ``min_count: 2`` (a value seen once in training
   maps to the out-of-vocabulary id, which then learns something for unseen ids);
6. integers with at most :data:`MAX_SPARSE_DISTINCT` distinct values, or whose name looks like an
   id (``id``, ``*_id``, ``*Id``, ``*_key``), become sparse features;
7. other numbers become dense features: ``log1p_standardize`` for non-negative heavy-tailed
   counts (all values >= 0 and sample skewness > :data:`HEAVY_TAIL_SKEW`), else ``standardize``.

Missing values follow :mod:`recforge.data.preprocessing`: id 0 for categorical features, 0 after
the transform for dense ones (the training mean of a standardised feature).
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from recforge.data.schema import FeatureSpec, Schema
from recforge.errors import ConfigError

MAX_SPARSE_DISTINCT = 50
ID_MIN_DISTINCT = 100
ID_DISTINCT_SHARE = 0.5
HEAVY_TAIL_SKEW = 2.0
SEQUENCE_SEPARATOR = "|"
_ID_NAME = re.compile(r"(^id$|_id$|[a-z0-9]Id$|_key$)", re.IGNORECASE)


@dataclass(frozen=True)
class ColumnReport:
    """What one column holds and what the schema makes of it.

    Attributes:
        name: the column.
        type: its Arrow type, for example ``int64``.
        distinct: distinct non-missing values.
        missing_share: share of rows with a missing value (null or NaN), in [0, 1].
        kind: ``sparse``, ``dense``, ``sequence``, ``label`` or ``skipped``.
        detail: the transform / min_count / why it was skipped / the label's positive share.
    """

    name: str
    type: str
    distinct: int
    missing_share: float
    kind: str
    detail: str


def describe_columns(
    table: pa.Table,
    labels: Sequence[str] = (),
    ignore: Sequence[str] = (),
    sequence: Sequence[str] = (),
    time_column: str | None = None,
) -> list[ColumnReport]:
    """One :class:`ColumnReport` per column of ``table``, in column order (the rules of the module).

    Args:
        table: the raw rows (all files together).
        labels: label columns (reported with their positive share when they are 0/1 or boolean).
        ignore: columns that are never features.
        sequence: string columns holding ``a|b|c`` lists, to be sequence features.
        time_column: the column of a time split (never a feature).

    Raises:
        ConfigError: naming a ``labels`` / ``ignore`` / ``sequence`` / time column that the
            table lacks, or a sequence column that does not hold strings.
    """
    names = table.column_names
    for option, wanted in (("label", labels), ("ignore", ignore), ("sequence", sequence), ("split time", [time_column] if time_column else [])):
        for name in wanted:
            if name not in names:
                raise ConfigError(f"{option} column {name!r} is not in the data; columns: {', '.join(names)}")
    reports = []
    label_values = {label: _binary(table.column(label)) for label in labels}
    for name in names:
        column = table.column(name)
        type_ = column.type
        missing = _missing(column)
        distinct = _distinct(column)
        share = missing / max(len(column), 1)
        if name in labels:
            kind, detail = "label", _balance(column)
        elif name in ignore:
            kind, detail = "skipped", "ignored (--ignore)"
        elif name == time_column:
            kind, detail = "skipped", "time column of the split"
        elif distinct <= 1:
            kind, detail = "skipped", "constant" if distinct else "no values"
        elif _row_id(name, column, distinct, missing):
            kind, detail = "skipped", "row id: a different value in every row (not a feature; predict passes it through)"
        elif (implied := _implied_label(name, column, label_values)) is not None:
            kind, detail = "skipped", implied
        elif name in sequence:
            if not (pa.types.is_string(type_) or pa.types.is_large_string(type_)):
                raise ConfigError(f"sequence column {name!r} must hold '{SEQUENCE_SEPARATOR}'-separated strings, found {type_}")
            kind, detail = "sequence", f"separator {SEQUENCE_SEPARATOR!r}"
        elif pa.types.is_temporal(type_):
            kind, detail = "skipped", "a time (use --split time:COL)"
        elif pa.types.is_string(type_) or pa.types.is_large_string(type_) or pa.types.is_boolean(type_) or pa.types.is_dictionary(type_):
            high = distinct > ID_MIN_DISTINCT and distinct > ID_DISTINCT_SHARE * (len(column) - missing)
            kind, detail = "sparse", "high-cardinality id: min_count 2" if high else "category"
        elif pa.types.is_integer(type_) and (distinct <= MAX_SPARSE_DISTINCT or _ID_NAME.search(name)):
            kind, detail = "sparse", f"integer with {distinct} values" if distinct <= MAX_SPARSE_DISTINCT else "id-like name"
        elif pa.types.is_integer(type_) or pa.types.is_floating(type_) or pa.types.is_decimal(type_):
            kind, detail = "dense", _transform(column)
        else:
            kind, detail = "skipped", f"unsupported type {type_}"
        reports.append(ColumnReport(name, str(type_), distinct, share, kind, detail))
    return reports


def infer_schema(
    table: pa.Table,
    labels: Sequence[str],
    ignore: Sequence[str] = (),
    sequence: Sequence[str] = (),
    time_column: str | None = None,
) -> tuple[Schema, list[ColumnReport]]:
    """A schema for ``table`` by the rules of the module, and the report of every column.

    Args:
        table, labels, ignore, sequence, time_column: as for :func:`describe_columns`.

    Returns:
        (schema, report): features in column order (sparse, dense and sequence interleaved as
        the columns come; each kind keeps that order), ``labels`` as the schema's labels.

    Raises:
        ConfigError: as :func:`describe_columns`, no label, or no column left to be a feature.
    """
    if not labels:
        raise ConfigError("name the label column (--label COL)")
    reports = describe_columns(table, labels, ignore, sequence, time_column)
    for report in reports:
        if report.detail.startswith("label-like"):
            from recforge.data.leakage import LabelLeakWarning

            warnings.warn(f"column {report.name!r} is {report.detail}", LabelLeakWarning, stacklevel=2)
    features = []
    for report in reports:
        if report.kind == "sparse":
            features.append(FeatureSpec(report.name, "sparse", min_count=2 if "min_count 2" in report.detail else 1))
        elif report.kind == "dense":
            features.append(FeatureSpec(report.name, "dense", transform=report.detail.split(" ")[0]))
        elif report.kind == "sequence":
            features.append(FeatureSpec(report.name, "sequence", separator=SEQUENCE_SEPARATOR))
    if not features:
        raise ConfigError(f"no column can be a feature: {', '.join(f'{r.name} ({r.kind}: {r.detail})' for r in reports)}")
    return Schema(tuple(features), labels=tuple(labels)), reports


def _binary(column: pa.ChunkedArray) -> np.ndarray | None:
    """float64 [N] of a 0/1 (or boolean) column, NaN for missing; None for any other column."""
    type_ = column.type
    if not (pa.types.is_boolean(type_) or pa.types.is_integer(type_) or pa.types.is_floating(type_)):
        return None
    values = np.asarray(pc.cast(column, pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64)
    known = values[~np.isnan(values)]
    return values if len(known) and np.isin(known, (0.0, 1.0)).all() else None


def _row_id(name: str, column: pa.ChunkedArray, distinct: int, missing: int) -> bool:
    """A different value in every (non-missing) row: strings, id-named integers, or a consecutive integer range."""
    if distinct != len(column) - missing or distinct <= MAX_SPARSE_DISTINCT:
        return False
    type_ = column.type
    if pa.types.is_string(type_) or pa.types.is_large_string(type_):
        return True
    if pa.types.is_integer(type_):
        bounds = pc.min_max(column)
        return bool(_ID_NAME.search(name)) or bounds["max"].as_py() - bounds["min"].as_py() + 1 == distinct
    return False


def _implied_label(name: str, column: pa.ChunkedArray, labels: dict[str, np.ndarray | None]) -> str | None:
    """Why a 0/1 column is label-like (its 1s all on rows where a 0/1 label is 1), or None."""
    values = _binary(column)
    if values is None:
        return None
    ones = values == 1
    for label, y in labels.items():
        if y is not None and ones.any() and (y[ones] == 1).all():
            return (
                f"label-like: all {int(ones.sum())} row(s) with {name} = 1 have {label} = 1 (a second label, or an outcome "
                f"after the {label}?); not a feature: train it as a task with --label {label},{name}, or declare it in --schema"
            )
    return None


def _missing(column: pa.ChunkedArray) -> int:
    missing = column.null_count
    if pa.types.is_floating(column.type):
        missing += int(pc.sum(pc.is_nan(column)).as_py() or 0)
    return missing


def _distinct(column: pa.ChunkedArray) -> int:
    values = column
    if pa.types.is_floating(column.type):
        values = pc.drop_null(pc.if_else(pc.is_nan(column), pa.scalar(None, column.type), column))
    return int(pc.count_distinct(values, mode="only_valid").as_py())


def _transform(column: pa.ChunkedArray) -> str:
    values = column.to_numpy() if column.null_count == 0 else pc.drop_null(column).to_numpy()
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    if len(values) and values.min() >= 0:
        std = values.std()
        skew = float(np.mean(((values - values.mean()) / std) ** 3)) if std > 0 else 0.0
        if skew > HEAVY_TAIL_SKEW:
            return f"log1p_standardize (non-negative, skewness {skew:.1f})"
        return f"standardize (skewness {skew:.1f})"
    return "standardize (has negative values)"


def _balance(column: pa.ChunkedArray) -> str:
    if pa.types.is_boolean(column.type) or pa.types.is_integer(column.type) or pa.types.is_floating(column.type):
        values = np.asarray(pc.drop_null(column).to_numpy(zero_copy_only=False), dtype=np.float64)
        values = values[~np.isnan(values)]
        if len(values) and np.isin(values, (0.0, 1.0)).all():
            return f"positive share {values.mean():.4f} of {len(values)} rows"
    counts = pc.value_counts(pc.drop_null(column.combine_chunks()))
    top = sorted(((c["values"].as_py(), c["counts"].as_py()) for c in counts), key=lambda vc: -vc[1])[:3]
    return "values " + ", ".join(f"{v!r}: {n}" for v, n in top) + (" ..." if len(counts) > 3 else "")


__all__ = ["ColumnReport", "describe_columns", "infer_schema"]
