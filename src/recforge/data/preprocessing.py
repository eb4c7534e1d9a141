"""Preprocessing fitted on the training split only: vocabularies and numeric transforms.

Ids (every sparse and sequence feature):
    0 = padding or missing value, 1 = out-of-vocabulary (unseen in training, or rarer than
    ``min_count``), 2.. = known values, most frequent first (ties by value, so the mapping does
    not depend on row order). An unseen category therefore never hits a real row, and a table
    has ``len(vocabulary) + 2`` rows.
Dense features:
    ``log1p`` clamps negatives to 0 first (DLRM's Criteo preprocessing); ``standardize`` uses the
    training mean and (population) standard deviation, computed stably in float64 and merged
    exactly across chunks (:mod:`recforge.data.moments`); a constant column keeps std 1. A missing
    value (null, NaN, an empty string) becomes 0 *after* the transform (a zero count for log1p,
    the training mean for standardize): explicit, and the same at inference.
Non-finite values (``inf``, ``-inf``) of dense and bucketized features follow the feature's
    ``non_finite`` option, in training and at transform alike, never silently: ``error`` (default)
    raises a DataError naming the column, the file (``where``), the first row and the value;
    ``missing`` treats them as missing values; ``clip`` replaces them by the smallest / largest
    finite training value (missing if training had none).
Numeric buckets:
    ``quantile`` edges are training values (NumPy's ``higher`` quantiles of the first
    ``QUANTILE_SAMPLE`` values), deduplicated, so a heavily repeated value gives fewer buckets than
    ``num_buckets`` and no bucket is empty in training; bucket k holds ``edge[k-1] <= x < edge[k]``,
    values below the lowest / above the highest edge fall in the first / last bucket. A column with
    no value in training has one bucket. ``log_squared`` keys are floor(ln(x)^2) for x > 2, else
    floor(x) (so negative values keep their own keys). Missing -> id 0 for both.
The fitted ``numeric`` state records, per dense and bucketized feature, the training split's
    ``missing`` values (including those from the ``missing`` policy), ``non_finite`` values seen,
    and the finite ``min`` / ``max`` (None if none); dense features also hold ``mean`` / ``std``.

Fitting can be streamed: :meth:`Preprocessor.partial_fit` over chunks (PyArrow tables), then
:meth:`Preprocessor.finish`; counts are merged with PyArrow's group-by, so memory grows with the
number of distinct values, not rows. The fitted state is JSON (``to_dict`` / ``from_dict``) and is
saved with every run.
"""

from __future__ import annotations

import json
import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from recforge.data.files import atomic_write_text
from recforge.data.moments import Moments
from recforge.data.schema import FeatureSpec, Schema
from recforge.errors import ConfigError, DataError

PADDING_ID, OOV_ID, FIRST_ID = 0, 1, 2
QUANTILE_SAMPLE = 1_000_000  # values kept for quantile edges (the first ones seen in training)
_CROSS_SEPARATOR = "\x1f"  # ASCII unit separator: cannot occur in normal category strings
_COMPACT_EVERY = 8  # merge accumulated value counts after this many chunks
# A standard deviation this small relative to the mean is float64 rounding of a constant column:
# dividing by it would turn rounding noise into unit-size values.
_CONSTANT_RTOL = 1e-12
_INT64_KEY_LIMIT = 2.0**62  # log_squared: values below -2**62 share one key (keys are int64)


class Vocabulary:
    """Known values of one table, most frequent first; value ``values[k]`` has id ``k + 2``.

    Held as a PyArrow string array, so building and encoding never go through Python strings.

    Args:
        values: the known values (strings), in id order.
    """

    def __init__(self, values: pa.Array | list[str] | tuple[str, ...]):
        self.array = values if isinstance(values, pa.Array) else pa.array(list(values), type=pa.string())
        if self.array.type != pa.string():
            self.array = pc.cast(self.array, pa.string())

    @property
    def values(self) -> tuple[str, ...]:
        return tuple(self.array.to_pylist())

    def __len__(self) -> int:
        return len(self.array)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and self.array.equals(other.array)

    def __repr__(self) -> str:
        return f"Vocabulary({len(self)} values)"

    @property
    def num_embeddings(self) -> int:
        """Table rows: the known values plus padding/missing (0) and out-of-vocabulary (1)."""
        return len(self.array) + FIRST_ID

    @classmethod
    def from_counts(cls, values: pa.Array, counts: np.ndarray, min_count: int = 1, max_size: int | None = None) -> "Vocabulary":
        """Keep values with ``count >= min_count``, the ``max_size`` most frequent, ties by value."""
        table = pa.table({"value": pc.cast(values, pa.string()), "count": pa.array(counts, pa.int64())})
        if min_count > 1:
            table = table.filter(pc.greater_equal(table.column("count"), min_count))
        table = table.sort_by([("count", "descending"), ("value", "ascending")])
        if max_size is not None:
            table = table.slice(0, max_size)
        return cls(table.column("value").combine_chunks())

    def encode(self, keys: pa.Array) -> np.ndarray:
        """Ids of string ``keys``: null -> 0, unknown -> 1, known -> 2.. (int64 [N]).

        ``pc.index_in`` hashes the whole vocabulary on every call: 0.26 s for a million values
        against 2.6 ms for a thousand (100,000 keys, one core), so a chunked ``predict`` or
        ``transform`` with large vocabularies paid that per column per chunk. A vocabulary of
        :data:`PACKED_MIN_VALUES` or more values is therefore looked up in a sorted index built
        once (:class:`_PackedIndex`); the ids are the same.
        """
        packed = self._packed() if len(self.array) >= PACKED_MIN_VALUES else None
        if packed is not None:
            positions = packed.positions(keys)
            ids = np.where(positions >= 0, positions + FIRST_ID, OOV_ID)
        else:
            index = pc.index_in(keys, value_set=self.array)  # null for missing keys and unknown values
            ids = pc.fill_null(index, OOV_ID - FIRST_ID).to_numpy(zero_copy_only=False).astype(np.int64) + FIRST_ID
        if keys.null_count:
            ids[keys.is_null().to_numpy(zero_copy_only=False)] = PADDING_ID
        return ids

    def _packed(self) -> "_PackedIndex | None":
        """The sorted index of the values, built on first use (None where it does not apply)."""
        if not hasattr(self, "_packed_index"):  # two threads may both build it; either result is the same
            self._packed_index = _PackedIndex.build(self.array)
        return self._packed_index


#: vocabularies at least this large are looked up through a :class:`_PackedIndex`
PACKED_MIN_VALUES = 1 << 17  # measured crossover: index_in is faster below ~150,000 values (100,000 keys)
_PACKED_MAX_BYTES = 32


def _packed_bytes(values: pa.Array, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Each string's first ``width`` UTF-8 bytes, zero-padded, as uint8 [N, width]; byte lengths int64 [N] (-1 for null)."""
    values = values.cast(pa.string()) if values.type != pa.string() else values
    offsets = np.frombuffer(values.buffers()[1], np.int32, len(values) + 1, values.offset * 4).astype(np.int64)
    data = values.buffers()[2]
    data = np.frombuffer(data, np.uint8) if data is not None and data.size else np.zeros(1, np.uint8)
    starts, lengths = offsets[:-1], np.diff(offsets)
    if values.null_count:
        lengths = np.where(values.is_null().to_numpy(zero_copy_only=False), -1, lengths)
    column = np.arange(width)
    packed = np.empty((len(values), width), np.uint8)
    for first in range(0, len(values), 1 << 16):  # bounded temporaries: 65,536 rows at a time
        rows = slice(first, first + (1 << 16))
        inside = column < lengths[rows, None]
        packed[rows] = np.where(inside, data[np.minimum(starts[rows, None] + column, len(data) - 1)], 0)
    return packed, lengths


class _PackedIndex:
    """A vocabulary as sorted fixed-width keys for ``np.searchsorted``: exact lookups without a hash
    table rebuilt per call.

    Each value's UTF-8 bytes are zero-padded to ``width`` (8, else a multiple of 8 up to
    :data:`_PACKED_MAX_BYTES`) and compared as one uint64 (width 8) or as fixed-width bytes; a
    match must also have the key's byte length, so padding never makes two strings equal. Not
    built (None) for values longer than :data:`_PACKED_MAX_BYTES` bytes or holding a NUL character.
    """

    def __init__(self, keys: np.ndarray, lengths: np.ndarray, width: int):
        self.width = width
        self.order = np.argsort(keys, kind="stable")
        self.keys = keys[self.order]
        self.lengths = lengths[self.order]

    @classmethod
    def build(cls, values: pa.Array) -> "_PackedIndex | None":
        longest = pc.max(pc.binary_length(values)).as_py() or 0
        if longest > _PACKED_MAX_BYTES or pc.any(pc.match_substring(values, "\x00")).as_py():
            return None
        width = max(8, -(-longest // 8) * 8)
        packed, lengths = _packed_bytes(values, width)
        return cls(cls._view(packed, width), lengths, width)

    @staticmethod
    def _view(packed: np.ndarray, width: int) -> np.ndarray:
        return packed.view(np.uint64).ravel() if width == 8 else packed.view(f"S{width}").ravel()

    def positions(self, keys: pa.Array) -> np.ndarray:
        """Position of each key in the vocabulary (int64 [N]); -1 for an unknown or null key."""
        if len(self.keys) == 0 or len(keys) == 0:
            return np.full(len(keys), -1, np.int64)
        packed, lengths = _packed_bytes(keys, self.width)
        wanted = self._view(np.ascontiguousarray(packed), self.width)
        at = np.minimum(np.searchsorted(self.keys, wanted), len(self.keys) - 1)
        found = (self.keys[at] == wanted) & (self.lengths[at] == lengths)  # a null (-1) or longer key never matches
        return np.where(found, self.order[at], -1).astype(np.int64)


def _as_array(column: pa.ChunkedArray | pa.Array) -> pa.Array:
    return column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column


def _column(table: pa.Table, name: str, feature: str, where: str) -> pa.Array:
    if name not in table.column_names:
        raise DataError(
            f"feature {feature!r} reads column {name!r}, which the data does not have; columns: {table.column_names}",
            path=where or None,
        )
    return _as_array(table.column(name))


def _as_float(array: pa.Array, name: str, where: str) -> np.ndarray:
    """float64 [N] with NaN for missing; a non-numeric value is a DataError naming the column."""
    if pa.types.is_string(array.type) or pa.types.is_large_string(array.type):
        array = pc.if_else(pc.equal(pc.utf8_trim_whitespace(array), ""), pa.scalar(None, array.type), array)
        try:
            array = pc.cast(array, pa.float64())
        except pa.ArrowInvalid as exc:
            raise DataError(f"column {name!r} must be numeric: {exc}", path=where or None) from None
    elif not (pa.types.is_integer(array.type) or pa.types.is_floating(array.type) or pa.types.is_null(array.type)):
        raise DataError(f"column {name!r} must be numeric, found {array.type}", path=where or None)
    return pc.cast(array, pa.float64()).to_numpy(zero_copy_only=False)


def _keys(array: pa.Array) -> pa.Array:
    """Category keys as strings; empty strings count as missing."""
    if pa.types.is_floating(array.type):
        # 3.0 and 3 must be the same category whichever way a file wrote it.
        values = array.to_numpy(zero_copy_only=False)
        whole = np.isfinite(values) & (values == np.round(values))
        if whole.all() or np.isnan(values[~whole]).all():
            array = pc.cast(pc.if_else(pc.is_nan(array), pa.scalar(None, array.type), array), pa.int64())
    keys = array if pa.types.is_string(array.type) else pc.cast(array, pa.string())
    empty = pc.equal(keys, "")
    if not pc.any(empty).as_py():  # the usual case: no copy
        return keys
    return pc.if_else(empty, pa.scalar(None, pa.string()), keys)


def log_squared_buckets(values: np.ndarray) -> np.ndarray:
    """Bucket numbers (float64 [N], whole numbers): floor(ln(x)^2) for x > 2, else floor(x);
    NaN and +-inf -> NaN (missing).

    Criteo 1st place (Juan et al. 2014), defined there on integer counts; a fractional x <= 2 is
    rounded down; the buckets are clipped to +-2**62 so that they are int64 keys. The caller
    applies the feature's non-finite policy first.
    """
    finite = np.isfinite(values)
    large = finite & (values > 2)
    out = np.where(large, np.floor(np.log(np.where(large, values, 1.0)) ** 2), np.floor(np.where(finite, values, 0.0)))
    out = np.clip(out, -_INT64_KEY_LIMIT, _INT64_KEY_LIMIT)
    return np.where(finite, out, np.nan)


def _log_squared(values: np.ndarray) -> pa.Array:
    """:func:`log_squared_buckets` as int64 keys (null = missing)."""
    return pc.cast(pa.array(log_squared_buckets(values), from_pandas=True), pa.int64())


class NonFiniteValueError(DataError):
    """+-inf in a feature with ``non_finite: error``.

    Attributes:
        column: the raw column; feature: the feature's name; row: the 0-based row among the
            values given (``first_row`` not added); value: the value (inf or -inf).
    """

    def __init__(self, message: str, path: str | None, column: str, feature: str, row: int, value: float):
        super().__init__(message, path=path)
        self.column, self.feature, self.row, self.value = column, feature, row, value


def _first_non_finite(values: np.ndarray, spec: FeatureSpec, where: str, first_row: int) -> DataError:
    row = int(np.flatnonzero(np.isinf(values))[0])
    return NonFiniteValueError(
        f"column {spec.column_source!r} (feature {spec.name!r}) has the non-finite value {values[row]} at data row "
        f"{first_row + row + 1} (1-based, a header line not counted); expected a finite number or a missing value "
        "(set non_finite: missing or clip on the feature to accept it)",
        where or None, spec.column_source, spec.name, row, float(values[row]),
    )


@dataclass(frozen=True)
class _Codes:
    """A dictionary-encoded key column: distinct non-null keys, and per row an index into them (-1 = missing)."""

    dictionary: pa.Array
    indices: np.ndarray

    @classmethod
    def of(cls, keys: pa.Array) -> "_Codes":
        encoded = pc.dictionary_encode(keys)
        indices = pc.fill_null(encoded.indices, -1).to_numpy(zero_copy_only=False).astype(np.int64)
        return cls(encoded.dictionary, indices)

    def ids(self, vocabulary: Vocabulary) -> np.ndarray:
        """Row ids in ``vocabulary`` (int64 [N]): looks up each distinct key once, not every row."""
        lookup = vocabulary.encode(self.dictionary)
        return np.append(lookup, PADDING_ID)[self.indices]  # index -1 picks the appended padding id


@dataclass
class _Accumulator:
    """Streaming statistics of one feature (counts of keys, or moments / a sample of numbers)."""

    counts: list[pa.Table] = field(default_factory=list)
    chunks: int = 0
    moments: Moments = field(default_factory=Moments)
    missing: int = 0  # null / NaN values (and infinities under ``non_finite: missing``)
    positive_inf: int = 0
    negative_inf: int = 0
    low: float = math.inf  # smallest / largest finite value seen
    high: float = -math.inf
    sample: list[np.ndarray] = field(default_factory=list)
    sampled: int = 0
    longest: int = 0

    def add_range(self, values: np.ndarray) -> np.ndarray:
        """Count missing and infinite values and track the finite range; returns the finite mask."""
        finite = np.isfinite(values)
        self.missing += int(np.isnan(values).sum())
        self.positive_inf += int((values == math.inf).sum())
        self.negative_inf += int((values == -math.inf).sum())
        if finite.any():
            self.low = min(self.low, float(values[finite].min()))
            self.high = max(self.high, float(values[finite].max()))
        return finite

    @property
    def has_range(self) -> bool:
        return self.low <= self.high

    def add_counts(self, keys: pa.Array) -> None:
        vc = pc.value_counts(keys.drop_null())
        self.counts.append(pa.table({"value": vc.field("values"), "count": pc.cast(vc.field("counts"), pa.int64())}))
        self.chunks += 1
        if self.chunks % _COMPACT_EVERY == 0:
            self.counts = [self.merged()]

    def add_codes(self, codes: "_Codes") -> None:
        """Counts from an already dictionary-encoded column (no second hashing pass)."""
        counts = np.bincount(codes.indices[codes.indices >= 0], minlength=len(codes.dictionary))
        self.counts.append(pa.table({"value": codes.dictionary, "count": pa.array(counts, pa.int64())}))
        self.chunks += 1

    def merged(self) -> pa.Table:
        if not self.counts:
            return pa.table({"value": pa.array([], pa.string()), "count": pa.array([], pa.int64())})
        table = pa.concat_tables(self.counts)
        if len(self.counts) == 1:
            return table
        grouped = table.group_by("value").aggregate([("count", "sum")])
        return pa.table({"value": grouped.column("value"), "count": grouped.column("count_sum")})


class Preprocessor:
    """Vocabularies and numeric transforms for a declared schema, fitted on training rows only.

    Args:
        schema: the declared schema (sizes may be unknown).

    Use ``fit(train_table)`` (or ``partial_fit`` per chunk then ``finish``) then ``transform``.
    """

    def __init__(self, schema: Schema):
        self.declared = Schema(features=tuple(_unfitted(f) for f in schema.features), labels=schema.labels)
        self.vocabularies: dict[str, Vocabulary] = {}
        self.numeric: dict[str, dict[str, float]] = {}
        self.quantile_edges: dict[str, list[float]] = {}
        self.max_lengths: dict[str, int] = {}
        self._acc: dict[str, _Accumulator] = {}
        self._fitted = False
        self.rows_fitted = 0

    # ------------------------------------------------------------------ fitting
    def fit(self, table: pa.Table, where: str = "") -> "Preprocessor":
        """Fit on the whole training table; returns self."""
        return self.partial_fit(table, where).finish()

    def fit_transform(self, table: pa.Table, where: str = "") -> "EncodedColumns":
        """Fit on the training table and encode it: the same result as ``fit(table).transform(table)``.

        Faster: each sparse column with its own table is hashed once (``dictionary_encode``); the
        counts and the row ids both come from that one pass.

        Raises:
            DataError: as :meth:`fit` and :meth:`transform`.
        """
        shared = {spec.table for spec in self.declared.features if spec.table is not None}
        # Not quantile buckets (no keys), nor clipped log_squared ones (their infinities' keys need the fitted range).
        direct = [
            spec for spec in self.declared.sparse
            if spec.table is None and spec.bucketize != "quantile" and spec.name not in shared
            and not (spec.bucketize == "log_squared" and spec.non_finite == "clip")
        ]
        # Arrow kernels release the GIL, so the columns are hashed in parallel.
        with ThreadPoolExecutor(max_workers=max(1, min(pa.cpu_count(), len(direct)))) as pool:
            encoded = pool.map(lambda spec: _Codes.of(self._sparse_keys(table, spec, where)), direct)
            codes = dict(zip((spec.name for spec in direct), encoded))
        self._partial_fit(table, where, codes).finish()
        return self._transform(table, where, codes)

    def partial_fit(self, table: pa.Table, where: str = "") -> "Preprocessor":
        """Accumulate statistics of one chunk of training rows (``where`` names it in errors).

        Raises:
            DataError: for a missing or non-numeric column, or +-inf in a feature with
                ``non_finite: error`` (its row counts the training rows of all chunks so far).
        """
        return self._partial_fit(table, where, {})

    def _partial_fit(self, table: pa.Table, where: str, codes: dict[str, _Codes]) -> "Preprocessor":
        if self._fitted:
            raise RuntimeError("preprocessor already fitted")
        first_row = self.rows_fitted
        self.rows_fitted += table.num_rows
        for spec in self.declared.features:
            acc = self._acc.setdefault(spec.name, _Accumulator())
            if spec.kind == "dense" or spec.bucketize is not None:
                values = self._numeric_source(table, spec, where, first_row)  # infinities kept unless "error"
                finite = acc.add_range(values)
                if spec.non_finite == "missing":
                    acc.missing += int(np.isinf(values).sum())
                    values = np.where(np.isinf(values), np.nan, values)
                if spec.kind == "dense":
                    # clip: the infinities join the moments in finish(), once the training range is known.
                    acc.moments = acc.moments.merge(Moments.of(self._dense_transform(spec, values[finite])))
                elif spec.bucketize == "quantile":
                    values = values[~np.isnan(values)]  # clip: infinities kept, replaced in finish()
                    room = QUANTILE_SAMPLE - acc.sampled
                    if room > 0:
                        acc.sample.append(values[:room])
                        acc.sampled += len(values[:room])
                elif spec.name in codes:
                    acc.add_codes(codes[spec.name])
                elif spec.table is None:
                    acc.add_counts(_keys(_log_squared(values)))  # infinities -> null; clip counts them in finish()
            elif spec.kind == "sequence":
                lists = self._lists(table, spec, where)
                lengths = np.diff(lists.offsets.to_numpy())
                acc.longest = max(acc.longest, int(lengths.max(initial=0)))
                if spec.table is None:
                    acc.add_counts(_keys(lists.flatten()))
            elif spec.name in codes:
                acc.add_codes(codes[spec.name])
            elif spec.table is None:
                acc.add_counts(self._sparse_keys(table, spec, where))
        # Tables shared with a sequence feature also count the values seen in its sequences.
        for spec in self.declared.features:
            if spec.table is not None and spec.kind != "dense":
                owner_acc = self._acc.setdefault(spec.table, _Accumulator())
                keys = _keys(self._lists(table, spec, where).flatten()) if spec.kind == "sequence" else self._sparse_keys(table, spec, where)
                owner_acc.add_counts(keys)
        return self

    def finish(self) -> "Preprocessor":
        """Turn the accumulated statistics into vocabularies and transforms; returns self.

        Raises:
            DataError: if no training rows were seen.
        """
        if self.rows_fitted == 0:
            raise DataError("cannot fit preprocessing on an empty training split")
        for spec in self.declared.features:
            acc = self._acc[spec.name]
            clip = spec.non_finite == "clip" and acc.has_range
            if spec.kind == "dense" or spec.bucketize is not None:
                self.numeric[spec.name] = _range_state(acc, spec)
            if spec.kind == "dense":
                moments = acc.moments
                if clip:
                    high, low = self._dense_transform(spec, np.array([acc.high, acc.low]))
                    moments = moments.merge(Moments.constant(high, acc.positive_inf)).merge(Moments.constant(low, acc.negative_inf))
                std = moments.std if moments.std > _CONSTANT_RTOL * abs(moments.mean) else 1.0
                self.numeric[spec.name] = {"mean": moments.mean, "std": std, **self.numeric[spec.name]}
                continue
            if spec.bucketize == "quantile":
                values = np.concatenate(acc.sample) if acc.sample else np.zeros(0)
                if clip:
                    values = np.clip(values, acc.low, acc.high)
                values = values[np.isfinite(values)]  # clip with no finite training value: infinities are missing
                # "higher" quantiles are training values, so after np.unique no bucket is empty in training.
                quantiles = np.linspace(0, 1, spec.num_buckets + 1)
                edges = np.unique(np.quantile(values, quantiles, method="higher")) if len(values) else np.zeros(0)
                self.quantile_edges[spec.name] = [float(e) for e in edges[1:-1]]
                # Buckets are the vocabulary "0".."k"; k + 1 buckets for k inner edges.
                self.vocabularies[spec.name] = Vocabulary([str(i) for i in range(len(edges[1:-1]) + 1)])
            elif spec.table is None:
                if clip and spec.bucketize == "log_squared":
                    clipped = [(v, n) for v, n in ((acc.high, acc.positive_inf), (acc.low, acc.negative_inf)) if n]
                    if clipped:
                        keys = _keys(_log_squared(np.array([v for v, _ in clipped])))
                        acc.counts.append(pa.table({"value": keys, "count": pa.array([n for _, n in clipped], pa.int64())}))
                counts = acc.merged()
                self.vocabularies[spec.name] = Vocabulary.from_counts(
                    counts.column("value").combine_chunks(), counts.column("count").to_numpy(), spec.min_count, spec.max_size
                )
            if spec.kind == "sequence":
                self.max_lengths[spec.name] = spec.max_length or max(acc.longest, 1)
        self._acc.clear()
        self._fitted = True
        return self

    # ------------------------------------------------------------------ results
    @property
    def schema(self) -> Schema:
        """The fitted schema: every table's ``vocab_size`` set (0 = padding, 1 = OOV included)."""
        self._check_fitted()
        return self.declared.with_sizes({name: v.num_embeddings for name, v in self.vocabularies.items()})

    def transform(self, table: pa.Table, where: str = "", first_row: int = 0) -> "EncodedColumns":
        """Encode rows with the fitted state.

        Args:
            table: the rows (raw columns by name).
            where: the file (or other source) named in errors.
            first_row: rows of the same source before ``table`` (a chunk of a stream), so an
                error's data row counts from the source's first row.

        Returns:
            EncodedColumns with sparse int64 [N, F], dense float32 [N, N_dense], sequences
            int64 [N, L] (padded with 0 at the end, keeping the last L values), lengths int64 [N],
            labels float32 [N, T] (NaN = missing label).

        Raises:
            DataError: for a missing column, a non-numeric dense value, +-inf in a feature with
                ``non_finite: error`` (naming the column, ``where``, the row and the value) or a
                label outside {0, 1}.
        """
        return self._transform(table, where, {}, first_row)

    def _transform(self, table: pa.Table, where: str, codes: dict[str, _Codes], first_row: int = 0) -> "EncodedColumns":
        self._check_fitted()
        n = table.num_rows
        schema = self.declared
        # Filled one field at a time: field-major (each field contiguous), then one transposing copy
        # to the row-major [N, F] the batches slice, instead of F strided column writes.
        sparse = np.empty((len(schema.sparse), n), dtype=np.int64)
        for j, spec in enumerate(schema.sparse):
            if spec.name in codes:
                sparse[j] = codes[spec.name].ids(self.vocabularies[spec.name])
            else:
                sparse[j] = self._encode_sparse(table, spec, where, first_row)
        sparse = np.ascontiguousarray(sparse.T)
        dense = np.empty((len(schema.dense), n), dtype=np.float32)
        for j, spec in enumerate(schema.dense):
            dense[j] = self._encode_dense(table, spec, where, first_row)
        dense = np.ascontiguousarray(dense.T)
        sequences, lengths = {}, {}
        for spec in schema.sequence:
            sequences[spec.name], lengths[spec.name] = self._encode_sequence(table, spec, where)
        labels = np.zeros((n, len(schema.labels)), dtype=np.float32)
        for t, name in enumerate(schema.labels):
            labels[:, t] = label_values(table, name, where)
        return EncodedColumns(sparse, dense, labels, sequences, lengths)

    # ------------------------------------------------------------------ persistence
    def to_dict(self) -> dict[str, Any]:
        """JSON-safe fitted state (``from_dict`` round-trips it)."""
        self._check_fitted()
        return {
            "format": 1,
            "schema": self.declared.to_dict(),
            "vocabularies": {k: v.array.to_pylist() for k, v in self.vocabularies.items()},
            "numeric": self.numeric,
            "quantile_edges": self.quantile_edges,
            "max_lengths": self.max_lengths,
            "rows_fitted": self.rows_fitted,
        }

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> "Preprocessor":
        if state.get("format") != 1:
            raise ConfigError(f"unsupported preprocessing format {state.get('format')!r} (expected 1)")
        pre = cls(Schema.from_dict(state["schema"]))
        pre.vocabularies = {k: Vocabulary(v) for k, v in state["vocabularies"].items()}
        pre.numeric = state["numeric"]
        pre.quantile_edges = state["quantile_edges"]
        pre.max_lengths = state["max_lengths"]
        pre.rows_fitted = state["rows_fitted"]
        pre._fitted = True
        return pre

    def save(self, path: str | Path) -> None:
        """Write the fitted state as JSON, atomically."""
        atomic_write_text(Path(path), json.dumps(self.to_dict()))

    @classmethod
    def load(cls, path: str | Path) -> "Preprocessor":
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except (OSError, ValueError, KeyError) as exc:
            raise ConfigError(f"cannot read preprocessing state {path}: {exc}") from None

    # ------------------------------------------------------------------ internals
    def _check_fitted(self) -> None:
        if not self._fitted:
            raise RuntimeError("preprocessor is not fitted: call fit() (or partial_fit() then finish()) first")

    def _sparse_keys(self, table: pa.Table, spec: FeatureSpec, where: str, first_row: int = 0) -> pa.Array:
        if spec.cross:
            parts = [_keys(_column(table, c, spec.name, where)) for c in spec.cross]
            return pc.binary_join_element_wise(*parts, _CROSS_SEPARATOR)  # null if any part is null
        if spec.bucketize == "log_squared":
            return _keys(_log_squared(self._numeric_source(table, spec, where, first_row)))
        return _keys(_column(table, spec.column_source, spec.name, where))

    def _numeric_source(self, table: pa.Table, spec: FeatureSpec, where: str, first_row: int = 0) -> np.ndarray:
        """Raw float64 [N] of a dense or bucketized feature (NaN = missing), non-finite policy applied.

        ``error`` raises; once fitted, ``missing`` turns +-inf into NaN and ``clip`` into the
        training range. While fitting, ``missing`` / ``clip`` infinities are returned as they are:
        the accumulator counts them, and ``clip`` needs the whole split's range first.

        Raises:
            DataError: for a missing or non-numeric column, or +-inf under ``non_finite: error``
                (row ``first_row`` + the index in ``table``).
        """
        values = _as_float(_column(table, spec.column_source, spec.name, where), spec.column_source, where)
        return self.non_finite_policy(spec, values, where, first_row)

    def non_finite_policy(self, spec: FeatureSpec, values: np.ndarray, where: str = "", first_row: int = 0) -> np.ndarray:
        """``values`` (float64 [N], NaN = missing) of a dense or bucketized feature with its
        ``non_finite`` option applied (see :meth:`_numeric_source`): ``values`` itself if it holds
        no infinity.

        Raises:
            DataError: +-inf under ``non_finite: error``, naming the column, ``where`` and the row.
        """
        infinite = np.isinf(values)
        if not infinite.any():
            return values
        if spec.non_finite == "error":
            raise _first_non_finite(values, spec, where, first_row)
        if not self._fitted:
            return values
        stats = self.numeric.get(spec.name, {})
        if spec.non_finite == "clip" and stats.get("min") is not None:
            return np.where(values == math.inf, stats["max"], np.where(values == -math.inf, stats["min"], values))
        return np.where(infinite, np.nan, values)  # "missing", or "clip" with no finite training value

    @staticmethod
    def _dense_transform(spec: FeatureSpec, values: np.ndarray) -> np.ndarray:
        if spec.transform in ("log1p", "log1p_standardize"):
            return np.log1p(np.maximum(values, 0.0))  # NaN stays NaN
        return values

    def _encode_sparse(self, table: pa.Table, spec: FeatureSpec, where: str, first_row: int = 0) -> np.ndarray:
        if spec.bucketize == "quantile":
            return self.quantile_ids(spec, self._numeric_source(table, spec, where, first_row))
        return self.vocabularies[spec.table_name].encode(self._sparse_keys(table, spec, where, first_row))

    def quantile_ids(self, spec: FeatureSpec, values: np.ndarray) -> np.ndarray:
        """Ids (int64 [N]) of a ``bucketize: quantile`` feature's numbers (policy applied; NaN -> 0)."""
        buckets = np.searchsorted(np.asarray(self.quantile_edges[spec.name]), values, side="right") + FIRST_ID
        return np.where(np.isnan(values), PADDING_ID, buckets).astype(np.int64)

    def _encode_dense(self, table: pa.Table, spec: FeatureSpec, where: str, first_row: int = 0) -> np.ndarray:
        return self.dense_values(spec, self._numeric_source(table, spec, where, first_row))

    def dense_values(self, spec: FeatureSpec, values: np.ndarray) -> np.ndarray:
        """Model input float32 [N] of a dense feature from its raw numbers (float64 [N], NaN =
        missing, non-finite policy applied): the feature's transform, then 0 for missing."""
        values = self._dense_transform(spec, values)
        if spec.transform in ("standardize", "log1p_standardize"):
            stats = self.numeric[spec.name]
            values = np.subtract(values, stats["mean"])  # a new array: the source may be a read-only Arrow view
            np.divide(values, stats["std"], out=values)
        out = values.astype(np.float32)
        out[np.isnan(out)] = 0.0  # missing -> 0 after the transform (NaN stays NaN through the float32 cast)
        return out

    def _lists(self, table: pa.Table, spec: FeatureSpec, where: str) -> pa.ListArray:
        raw = _column(table, spec.column_source, spec.name, where)
        if pa.types.is_list(raw.type) or pa.types.is_large_list(raw.type):
            lists = raw
        elif spec.separator is not None and (pa.types.is_string(raw.type) or pa.types.is_large_string(raw.type)):
            lists = pc.split_pattern(raw, spec.separator)
        else:
            raise DataError(
                f"sequence feature {spec.name!r} needs a list column or a string column with a separator; "
                f"column {spec.column_source!r} is {raw.type}",
                path=where or None,
            )
        return pc.fill_null(lists, pa.scalar([], lists.type)) if lists.null_count else lists

    def _encode_sequence(self, table: pa.Table, spec: FeatureSpec, where: str) -> tuple[np.ndarray, np.ndarray]:
        lists = self._lists(table, spec, where)
        ids = self.vocabularies[spec.table_name].encode(_keys(lists.flatten()))
        offsets = lists.offsets.to_numpy().astype(np.int64)
        offsets = offsets - offsets[0]
        # Empty or missing tokens (id 0) are dropped, so they never take a position.
        kept = ids != PADDING_ID
        offsets = np.concatenate([[0], np.cumsum(kept)])[offsets]
        ids = ids[kept]
        width = self.max_lengths[spec.name]
        lengths = np.minimum(np.diff(offsets), width)
        start = offsets[1:] - lengths  # the last `width` values of each list
        positions = start[:, None] + np.arange(width)[None, :]
        mask = np.arange(width)[None, :] < lengths[:, None]
        padded = np.where(mask, ids[np.minimum(positions, max(len(ids) - 1, 0))] if len(ids) else 0, PADDING_ID)
        return padded.astype(np.int64), lengths.astype(np.int64)


def _range_state(acc: _Accumulator, spec: FeatureSpec) -> dict[str, Any]:
    """What the training split held: missing and non-finite counts, the finite range (None if empty)."""
    non_finite = acc.positive_inf + acc.negative_inf
    unclipped = non_finite if spec.non_finite == "clip" and not acc.has_range else 0  # nothing to clip to
    return {
        "missing": acc.missing + unclipped,
        "non_finite": non_finite,
        "min": acc.low if acc.has_range else None,
        "max": acc.high if acc.has_range else None,
    }


def _unfitted(spec: FeatureSpec) -> FeatureSpec:
    from dataclasses import replace

    return replace(spec, vocab_size=0) if spec.kind != "dense" else spec


def label_values(table: pa.Table, name: str, where: str = "") -> np.ndarray:
    """Label column ``name`` as float32 [N] (NaN = missing).

    Raises:
        DataError: if the column is missing, not numeric, or holds values other than 0 and 1.
    """
    if name not in table.column_names:
        raise DataError(f"label column {name!r} is missing; columns: {table.column_names}", path=where or None)
    values = _as_float(_as_array(table.column(name)), name, where)
    bad = ~np.isnan(values) & (values != 0) & (values != 1)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise DataError(f"label {name!r} must be 0, 1 or missing; data row {row + 1} (1-based, a header line not counted) has {values[row]}", path=where or None)
    return values.astype(np.float32)


@dataclass
class EncodedColumns:
    """Model-ready columns of one split (see :meth:`Preprocessor.transform` for shapes)."""

    sparse: np.ndarray
    dense: np.ndarray
    labels: np.ndarray
    sequences: dict[str, np.ndarray] = field(default_factory=dict)
    lengths: dict[str, np.ndarray] = field(default_factory=dict)
    groups: np.ndarray | None = None  # int64 [N] raw group (user) of each row, for GAUC; never a model input

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def take(self, rows: np.ndarray) -> "EncodedColumns":
        """The rows ``rows`` (an index array or boolean mask), as a new object."""
        return EncodedColumns(
            self.sparse[rows], self.dense[rows], self.labels[rows],
            {k: v[rows] for k, v in self.sequences.items()}, {k: v[rows] for k, v in self.lengths.items()},
            None if self.groups is None else self.groups[rows],
        )

    def arrays(self) -> dict[str, np.ndarray]:
        """Flat name -> array mapping (for ``.npy`` caches)."""
        out = {"sparse": self.sparse, "dense": self.dense, "labels": self.labels}
        out.update({f"seq.{k}": v for k, v in self.sequences.items()})
        out.update({f"len.{k}": v for k, v in self.lengths.items()})
        if self.groups is not None:
            out["groups"] = self.groups
        return out

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> "EncodedColumns":
        return cls(
            arrays["sparse"], arrays["dense"], arrays["labels"],
            {k[4:]: v for k, v in arrays.items() if k.startswith("seq.")},
            {k[4:]: v for k, v in arrays.items() if k.startswith("len.")},
            arrays.get("groups"),
        )

    @staticmethod
    def concat(parts: list["EncodedColumns"]) -> "EncodedColumns":
        first = parts[0]
        return EncodedColumns(
            np.concatenate([p.sparse for p in parts]), np.concatenate([p.dense for p in parts]),
            np.concatenate([p.labels for p in parts]),
            {k: np.concatenate([p.sequences[k] for p in parts]) for k in first.sequences},
            {k: np.concatenate([p.lengths[k] for p in parts]) for k in first.lengths},
            None if first.groups is None else np.concatenate([p.groups for p in parts]),  # type: ignore[misc]
        )
