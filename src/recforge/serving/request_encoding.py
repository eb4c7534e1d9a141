"""Validated HTTP request rows -> model-ready columns, in plain Python and NumPy (no Arrow).

:meth:`Predictor.encode` goes through PyArrow: right for a file's 100,000-row chunk, but for a
one-row request its fixed cost per column (building arrays, a compute call per step) was most of
the request's time: 39 Criteo columns x several Arrow calls, about 2 ms of a 3 ms batch-1 call
and 7 of 10 ms at batch 256 (``benchmarks/serve_latency.py``, profile of 2026-12-01).
:class:`RequestEncoder` encodes the rows the service validated (:mod:`recforge.serving.requests`:
categories are ``str`` / ``int`` / ``None``, numbers ``float`` / ``None``, histories lists or
strings) with one dictionary lookup per category value and one NumPy array of all numbers.

It is a second route to the SAME ids and inputs, not a second preprocessing: the numeric steps
are the fitted :class:`~recforge.data.preprocessing.Preprocessor`'s own functions
(:meth:`~Preprocessor.non_finite_policy`, :meth:`~Preprocessor.dense_values`,
:meth:`~Preprocessor.quantile_ids`, :func:`~recforge.data.preprocessing.log_squared_buckets`);
what it does itself is the category key rule of ``_keys`` (an integer is its decimal string, an
empty string is missing), crosses joined as ``_sparse_keys`` joins them, and the history rule of
``_encode_sequence`` (missing and empty tokens take no position, the last L kept, padding 0 at
the end). ``tests/serving/test_request_encoding.py`` checks it equals ``Predictor.encode`` element
for element on random rows of every feature kind, OOV, null, empty and non-finite values
included. A schema it does not cover (a column read both as a number and as a category, for
example a cross over a dense column) falls back to ``Predictor.encode`` as a whole.

Shape letters: N rows, F sparse features, D dense features, L a history's length.
"""

from __future__ import annotations

from itertools import repeat
from operator import itemgetter
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from recforge.data.preprocessing import (
    _CROSS_SEPARATOR,
    FIRST_ID,
    OOV_ID,
    PADDING_ID,
    EncodedColumns,
    Vocabulary,
    log_squared_buckets,
)
from recforge.data.schema import FeatureSpec

if TYPE_CHECKING:  # requests and predictor import this module's neighbours; no cycle at run time
    from recforge.serving.predictor import Predictor
    from recforge.serving.requests import RequestColumns


def key_lookup(vocabulary: Vocabulary) -> dict[Any, int]:
    """A dict from request values to ids of ``vocabulary``: each known string -> its id; its
    integer too where the string is an integer's decimal form (``17`` finds ``"17"``, never
    ``"017"``), as ``17`` and ``"17"`` are one category; ``None`` and ``""`` -> the padding id 0.
    A value not in it is OOV (id 1).

    About 0.3 s and 100 MB per million known values; built once per vocabulary.
    """
    values = vocabulary.array.to_pylist()
    lookup: dict[Any, int] = {value: i for i, value in enumerate(values, FIRST_ID)}
    for i, value in enumerate(values, FIRST_ID):
        if value[:1].isdigit() or (value[:1] == "-" and value[1:2].isdigit()):
            try:
                number = int(value)
            except ValueError:
                continue
            if str(number) == value:
                lookup[number] = i
    lookup[None] = PADDING_ID
    lookup[""] = PADDING_ID
    return lookup


def _category_key(value: Any) -> str | None:
    """A cross part's key, as ``_keys`` makes it: an integer's decimal string; ``""`` is missing."""
    if value is None or value == "":
        return None
    return value if type(value) is str else str(value)


class RequestEncoder:
    """Encodes validated request rows for one predictor, equal to :meth:`Predictor.encode`.

    Args:
        predictor: the service's predictor (its fitted preprocessing and vocabularies).
        columns: the request columns of its schema (:meth:`RequestColumns.of`).

    The vocabulary dicts are built here (a server builds the encoder at start-up).
    """

    def __init__(self, predictor: "Predictor", columns: "RequestColumns"):
        self.predictor = predictor
        self.columns = columns
        pre = predictor.preprocessor
        self._pre = pre
        schema = pre.declared
        self.tasks = len(schema.labels)
        self.fallback = _uncovered(schema.features, columns.kinds)
        if self.fallback:
            return
        lookups: dict[str, dict[Any, int]] = {}

        def lookup(table: str) -> dict[Any, int]:
            if table not in lookups:
                vocabulary = pre.vocabularies[table]
                lookups[table] = vocabulary.lookup() if hasattr(vocabulary, "lookup") else key_lookup(vocabulary)
            return lookups[table]

        numeric: dict[str, int] = {}
        for spec in schema.features:
            if spec.kind == "dense" or spec.bucketize is not None:
                numeric.setdefault(spec.column_source, len(numeric))
        self._numbers = tuple(numeric)
        categories: dict[str, None] = {}
        for spec in schema.sparse:
            if spec.bucketize is None:
                categories.update(dict.fromkeys(spec.cross or (spec.column_source,)))
        self._categories = tuple(categories)
        self._sparse: list[Callable[[dict[str, Sequence[Any]], np.ndarray, str], list[int] | np.ndarray]] = []
        for spec in schema.sparse:
            self._sparse.append(self._sparse_step(spec, lookup, numeric))
        self._dense = [(spec, numeric[spec.column_source]) for spec in schema.dense]
        self._sequences = [
            (spec, spec.column_source, columns.separators[spec.column_source], lookup(spec.table_name), pre.max_lengths[spec.name])
            for spec in schema.sequence
        ]

    def _sparse_step(self, spec: FeatureSpec, lookup: Callable[[str], dict[Any, int]], numeric: dict[str, int]) -> Callable:
        pre = self._pre
        if spec.bucketize == "quantile":
            j = numeric[spec.column_source]
            return lambda values, numbers, where: pre.quantile_ids(spec, pre.non_finite_policy(spec, numbers[:, j], where))
        if spec.bucketize == "log_squared":
            j, ids = numeric[spec.column_source], lookup(spec.table_name)

            def buckets(values: dict[str, Sequence[Any]], numbers: np.ndarray, where: str) -> list[int]:
                keys = log_squared_buckets(pre.non_finite_policy(spec, numbers[:, j], where)).tolist()
                return [PADDING_ID if k != k else ids.get(int(k), OOV_ID) for k in keys]  # k != k: NaN, missing

            return buckets
        ids = lookup(spec.table_name)
        get = ids.get
        if spec.cross:
            parts = spec.cross

            def crossed(values: dict[str, Sequence[Any]], numbers: np.ndarray, where: str) -> list[int]:
                out = []
                for row in zip(*(values[c] for c in parts)):
                    keys = [_category_key(v) for v in row]
                    out.append(PADDING_ID if None in keys else get(_CROSS_SEPARATOR.join(keys), OOV_ID))  # type: ignore[arg-type]
                return out

            return crossed
        column = spec.column_source
        return lambda values, numbers, where: list(map(get, values[column], repeat(OOV_ID)))

    def encode(self, rows: RequestBatch | list[dict[str, Any]], where: str = "the request") -> EncodedColumns:
        """Model-ready columns of validated request rows (shapes as :meth:`Preprocessor.transform`:
        sparse int64 [N, F], dense float32 [N, D], histories int64 [N, L] and lengths int64 [N],
        labels float32 [N, T] all NaN).

        Raises:
            DataError: an infinity in a feature with ``non_finite: error``, naming the column and
                row, as :meth:`Predictor.encode` does.
        """
        batch = rows if isinstance(rows, RequestBatch) else RequestBatch(rows=rows)
        if self.fallback:
            return self.predictor.encode(self.columns.to_arrays(batch), where)
        n = len(batch)
        numbers = batch.numbers(self._numbers)  # None -> NaN
        values = batch.columns(self._categories)
        sparse = np.array([step(values, numbers, where) for step in self._sparse], dtype=np.int64).reshape(len(self._sparse), n)
        dense = np.empty((len(self._dense), n), dtype=np.float32)
        for d, (spec, j) in enumerate(self._dense):
            dense[d] = self._pre.dense_values(spec, self._pre.non_finite_policy(spec, numbers[:, j], where))
        sequences, lengths = {}, {}
        for spec, column, separator, ids, width in self._sequences:
            sequences[spec.name], lengths[spec.name] = _histories(batch.columns((column,))[column], separator, ids, width)
        labels = np.full((n, self.tasks), np.nan, dtype=np.float32)
        return EncodedColumns(np.ascontiguousarray(sparse.T), np.ascontiguousarray(dense.T), labels, sequences, lengths)


class RequestBatch:
    """The validated rows of one request, or of several merged: a list of row dicts (the body
    ``{"rows": [...]}``) or equal-length value lists per column (``{"columns": {...}}``, the
    columnar form TF Serving's REST API calls "inputs"; it parses about 2.4 times faster).

    Args:
        rows: row dicts, every request column a key.
        columns: column name -> one value per row (every request column; equal lengths).

    Raises:
        ValueError: neither or both given, or columns of unequal length.
    """

    __slots__ = ("_rows", "_columns", "_n")

    def __init__(self, rows: list[dict[str, Any]] | None = None, columns: dict[str, Sequence[Any]] | None = None):
        if (rows is None) == (columns is None):
            raise ValueError("give rows or columns")
        self._rows, self._columns = rows, columns
        if columns is not None:
            lengths = {len(v) for v in columns.values()}
            if len(lengths) > 1:
                raise ValueError(f"columns of unequal length: {sorted(lengths)}")
            self._n = lengths.pop() if lengths else 0
        else:
            self._n = len(rows)  # type: ignore[arg-type]

    def __len__(self) -> int:
        return self._n

    @property
    def by_columns(self) -> bool:
        """True if the request came as columns (the service answers in columns too)."""
        return self._columns is not None

    @classmethod
    def concat(cls, batches: Sequence["RequestBatch"]) -> "RequestBatch":
        """One batch of the rows of ``batches``, in order (row dicts if all are, else columns)."""
        if len(batches) == 1:
            return batches[0]
        if all(b._rows is not None for b in batches):
            return cls(rows=[row for b in batches for row in b._rows])  # type: ignore[union-attr]
        first = batches[0]
        names = tuple(first._columns if first._columns is not None else first._rows[0])  # type: ignore[index]
        parts = [b.columns(names) for b in batches]
        return cls(columns={name: [v for part in parts for v in part[name]] for name in names})

    def columns(self, names: Sequence[str]) -> dict[str, Sequence[Any]]:
        """Per name, its values over the rows."""
        if self._columns is not None:
            return {name: self._columns[name] for name in names}
        if not names:
            return {}
        if len(names) == 1:
            return {names[0]: [row[names[0]] for row in self._rows]}  # type: ignore[union-attr]
        return dict(zip(names, zip(*map(itemgetter(*names), self._rows))))  # type: ignore[arg-type]

    def numbers(self, names: Sequence[str]) -> np.ndarray:
        """The values of ``names`` as float64 [N, len(names)] (None -> NaN)."""
        if self._columns is None and len(names) > 1:
            return np.array(list(map(itemgetter(*names), self._rows)), dtype=np.float64).reshape(self._n, len(names))  # type: ignore[arg-type]
        columns = self.columns(names)
        return np.array([columns[name] for name in names], dtype=np.float64).reshape(len(names), self._n).T


def _histories(values: Sequence[Any], separator: str, ids: dict[Any, int], width: int) -> tuple[np.ndarray, np.ndarray]:
    """Padded ids int64 [N, width] and lengths int64 [N] of request histories: a list of
    categories, a string split on ``separator``, or None (empty)."""
    padded = np.zeros((len(values), width), dtype=np.int64)
    lengths = np.zeros(len(values), dtype=np.int64)
    get = ids.get
    for r, value in enumerate(values):
        if value is None:
            continue
        tokens = value.split(separator) if type(value) is str else value
        kept = [i for i in (get(t, OOV_ID) for t in tokens) if i != PADDING_ID][-width:]
        padded[r, : len(kept)] = kept
        lengths[r] = len(kept)
    return padded, lengths


def _uncovered(features: tuple[FeatureSpec, ...], kinds: dict[str, str]) -> str:
    """Why the encoder cannot take this schema ("" if it can): a column whose request kind is not
    the one this feature reads it as."""
    for spec in features:
        if spec.kind == "dense" or spec.bucketize is not None:
            wanted, read = "number", (spec.column_source,)
        elif spec.kind == "sequence":
            wanted, read = "sequence", (spec.column_source,)
        else:
            wanted, read = "category", spec.cross or (spec.column_source,)
        for column in read:
            if kinds.get(column) != wanted:
                return f"feature {spec.name!r} reads column {column!r} as a {wanted}, the request sends a {kinds.get(column)}"
    return ""
