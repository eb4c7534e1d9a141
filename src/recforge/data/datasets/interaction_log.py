"""A user's own interaction log (``recforge train MODEL --data events.csv --user-col u --item-col i``).

The log is one or more CSV / TSV files (plain or ``.gz``; with a header, or headerless with
``columns`` naming the fields, like ml-100k's ``u.data``) or Parquet files, read with PyArrow. It
becomes the same data the registered datasets give, through the same code:

* NCF / MF / ItemPop: a :class:`~recforge.data.interactions.LeaveOneOutData` built by
  :func:`~recforge.data.datasets.movielens.implicit_leave_one_out`, the function of the raw
  GroupLens datasets: every row is a positive; each user's latest interaction by ``time_col`` is
  the test item, ties on the time going to the largest item (in internal-id order, see below),
  so the choice never depends on the row order; without ``time_col`` a seeded random item per
  user, with a warning. 99 distinct sampled negatives per test user fixed by the split seed.
  Repeated (user, item) rows are implicit feedback about one pair: they are dropped, keeping the
  pair's latest row (by time, then row number; the first row without a time column), and counted
  in a warning. Users with a single item train only.
* NCF / MF / ItemPop with ``split`` ``last:N`` or ``time:COL``: several test (and validation)
  items per user, :func:`build_held_out_sets` with the rules of :mod:`recforge.data.held_out_sets`
  (latest N by time, ties to the larger item id; a global time cut; users left out counted),
  evaluated with full-catalogue Recall / Precision / NDCG / MAP. The pairs are de-duplicated as
  for leave-one-out first, so the time cut's quantiles are over distinct pairs.
* DIN and every other CTR model: behaviour-sequence samples of
  :func:`recforge.data.sequences.behaviour_samples` with the per-user split and leakage figures of
  the built-in sequence datasets (:class:`~recforge.data.datasets.sequence_sets.SequenceSource`);
  repeated rows are kept (a repeat is a behaviour). The item category is ``category_col`` (an
  item's category is the one on its first row), else 0 for every item. Without ``time_col`` the
  row number is the time (with a warning).

IDs: user and item columns of integers (any int64) or strings. Internal ids are 0..n-1 in
ascending raw-id order (:func:`recforge.data.id_maps.encode_ids`), the order of the registered
MovieLens datasets, so ml-100k's ``u.data.gz`` as a log gives exactly the split of
``movielens-100k`` and the samples of ``movielens-100k-seq`` (apart from its genre category).
The sequence tables hold integer raw ids as they are (as the built-in sequence datasets do) and
string ids as their internal ids. Integer ids are read as CSV type inference reads them: a string
id column of digits only (``007``) is read as integers.

The prepared data is cached keyed on the files' content, the reading options and the seed
(:func:`recforge.data.fingerprint.cache_key`), as registered datasets are.
"""

from __future__ import annotations

import dataclasses
import io
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from recforge.data.datasets.movielens import implicit_leave_one_out
from recforge.data.datasets.registry import split_arrays, split_fields
from recforge.data.datasets.sequence_sets import Events, SequenceSource, events_from_ids
from recforge.data.files import atomic_write, resolve_cache_dir
from recforge.data.fingerprint import cache_key
from recforge.data.held_out_sets import HeldOutSetsData, parse_log_split, several_items_split
from recforge.data.id_maps import encode_ids
from recforge.data.interactions import LeaveOneOutData
from recforge.data.readers import read_table
from recforge.errors import ConfigError, DataError

CACHE_FORMAT = 1
NUM_TEST_NEGATIVES = 99


@dataclass(frozen=True)
class InteractionLogData(LeaveOneOutData):
    """A leave-one-out split of an own log plus its vocabularies.

    Attributes:
        user_ids: [num_users] raw user id of each internal id (ascending).
        item_ids: [num_items] raw item id of each internal id (ascending).
    """

    user_ids: pa.Array | None = None
    item_ids: pa.Array | None = None


@dataclass(frozen=True)
class LogOptions:
    """Where an interaction log is and how to read it (the ``data.*`` keys of the same names).

    Attributes:
        paths: the log's files (several files are one log, read in order).
        user_col, item_col: the id columns.
        time_col: event time (integers, or a timestamp/date column), or None.
        category_col: item category (sequence models), or None.
        columns: names of the fields of headerless CSV/TSV files (empty: the files have a header).
        sep: field separator (default: tab for ``.tsv`` files, else comma); ``\\t`` or ``tab`` for a tab.
        split: ``random`` / ``leave-one-out`` (default), ``last:N`` or ``time:COL``
            (:mod:`recforge.data.held_out_sets`); COL is the time column (``--time-col`` may be omitted).
    """

    paths: tuple[str, ...]
    user_col: str
    item_col: str
    time_col: str | None = None
    category_col: str | None = None
    columns: tuple[str, ...] = ()
    sep: str | None = None
    split: str = "random"

    @classmethod
    def from_config(cls, data: Any) -> "LogOptions":
        """From a :class:`recforge.config.DataConfig` with ``path`` and ``user_col`` set."""
        if not data.item_col:
            raise ConfigError("data.item_col (--item-col) is required with data.user_col")
        split = parse_log_split(data.split)
        time_col = data.time_col
        if split.kind == "time":
            if time_col and time_col != split.column:
                raise ConfigError(f"data.split time:{split.column} and data.time_col {time_col!r} (--time-col) name different columns; the split cuts the log's time column")
            time_col = split.column
        return cls(tuple(data.path), data.user_col, data.item_col, time_col, data.category_col, tuple(data.columns), data.sep, data.split)

    @property
    def name(self) -> str:
        """Dataset name for runs: the first file's name without ``.gz``, e.g. ``u-data``."""
        base = Path(self.paths[0]).name
        base = base[:-3] if base.endswith(".gz") else base
        return re.sub(r"[^A-Za-z0-9_-]+", "-", base).strip("-") or "log"

    def files(self) -> dict[str, Path]:
        """Role -> existing file (``log``, ``log.1``, ...) for the cache key.

        Raises:
            DataError: for a path that does not exist or is not a file.
        """
        out = {}
        for n, p in enumerate(self.paths):
            path = Path(p)
            if not path.is_file():
                raise DataError("no such file" if not path.exists() else "not a file (give the log's files)", path)
            out["log" if n == 0 else f"log.{n}"] = path
        return out

    def cache_parts(self) -> dict[str, Any]:
        """The reading options the prepared data depends on (JSON-safe; the default split is left
        out, so leave-one-out caches keep their keys)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k != "paths" and not (k == "split" and v == "random")}

    def separator(self, path: Path) -> str:
        if self.sep is None:
            return "\t" if ".tsv" in path.suffixes else ","
        sep = {"\\t": "\t", "tab": "\t"}.get(self.sep, self.sep)
        if len(sep) != 1:
            raise ConfigError(f"data.sep must be one character (or \\t), got {self.sep!r}")
        return sep


def read_log(options: LogOptions) -> tuple[pa.Table, Path]:
    """The log's columns ``user``, ``item`` and, where given, ``time`` (int64) and ``category``.

    Returns:
        (table, first file) -- the file names messages about the whole log.

    Raises:
        DataError: naming the file (and line) for an unreadable, empty or unparsable file, a
            missing column, an empty id, ids that are neither integers nor strings, or times that
            are neither integers nor timestamps.
    """
    wanted = {"user": options.user_col, "item": options.item_col, "time": options.time_col, "category": options.category_col}
    wanted = {role: column for role, column in wanted.items() if column}
    parts = []
    files = list(options.files().values())
    for path in files:
        table, header_lines = _read_file(path, options)
        columns = {}
        for role, column in wanted.items():
            flag = "--columns" if options.columns else f"--{role}-col"
            if column not in table.column_names:
                raise DataError(f"no column {column!r} ({flag}); the file has {table.column_names}", path)
            values = table.column(column).combine_chunks()
            if values.null_count:
                row = int(np.flatnonzero(values.is_null().to_numpy(zero_copy_only=False))[0])
                raise DataError(f"column {column!r} is empty; expected a value in every row", path, row + 1 + header_lines)
            columns[role] = _check_type(role, column, values, path)
        parts.append(pa.table(columns))
    try:
        table = pa.concat_tables(parts) if len(parts) > 1 else parts[0]
    except pa.ArrowInvalid as exc:
        raise DataError(f"the log's files hold different column types ({exc})", files[-1]) from None
    return table, files[0]


def _read_file(path: Path, options: LogOptions) -> tuple[pa.Table, int]:
    """One file as a table, and the number of header lines before its first row."""
    if path.suffix == ".parquet":
        try:
            table = pq.read_table(path)
        except (pa.ArrowException, OSError) as exc:
            raise DataError(f"not a readable Parquet file (truncated or corrupt?): {exc}", path) from None
        if table.num_rows == 0:
            raise DataError("no rows", path)
        return table, 0
    sep = options.separator(path)
    read_options = pacsv.ReadOptions(column_names=list(options.columns)) if options.columns else None
    what = (
        f"{len(options.columns)} fields ({', '.join(options.columns)}) separated by {sep!r}"
        if options.columns
        else f"fields separated by {sep!r} under a header naming {options.user_col!r} and {options.item_col!r}"
    )
    table = read_table(path, what, read_options=read_options, parse_options=pacsv.ParseOptions(delimiter=sep), header=not options.columns)
    return table, 0 if options.columns else 1


def _check_type(role: str, column: str, values: pa.Array, path: Path) -> pa.Array:
    kind = values.type
    if role in ("user", "item", "category"):
        if pa.types.is_integer(kind):
            return values.cast(pa.int64())
        if pa.types.is_string(kind) or pa.types.is_large_string(kind):
            return values.cast(pa.string())
        raise DataError(f"column {column!r} holds {kind} values; expected integer or string ids", path)
    if pa.types.is_integer(kind):
        return values.cast(pa.int64())
    if pa.types.is_timestamp(kind) or pa.types.is_date(kind):
        return values.cast(pa.timestamp("s") if pa.types.is_date(kind) else kind).cast(pa.int64())  # order is all that counts
    raise DataError(f"column {column!r} (--time-col) holds {kind} values; expected integer times or timestamps", path)


def _check_users(user_ids: pa.Array, options: LogOptions, path: Path) -> None:
    if len(user_ids) < 2:
        raise DataError(
            f"column {options.user_col!r} holds a single user ({user_ids[0]}); a recommender needs at least 2 users", path
        )


# ---------------------------------------------------------------------------------- NCF / MF / ItemPop
def load_leave_one_out(options: LogOptions, seed: int = 0, use_cache: bool = True) -> InteractionLogData | HeldOutSetsData:
    """The log as a leave-one-out split (no validation hold-out yet), cached like a registered dataset;
    with ``options.split`` ``last:N`` or ``time:COL`` the several-items split of :func:`build_held_out_sets`.

    Args:
        options: the files and how to read them.
        seed: fixes the random hold-out (without times) and the sampled test negatives.
        use_cache: read/write the prepared split under the cache directory.

    Raises:
        DataError: for a bad file (see :func:`read_log`), a single user, no user with 2 or more
            items, or a catalogue too small for 99 negatives.
    """
    if parse_log_split(options.split).several:
        return build_held_out_sets(options)  # type: ignore[return-value]
    files = options.files()
    key = cache_key(CACHE_FORMAT, "interaction-log", options.cache_parts(), seed, paths=files)
    cache = resolve_cache_dir() / "splits" / f"{options.name}-{key}.npz"
    if use_cache and cache.is_file():
        try:
            return _from_npz(cache)
        except Exception:  # noqa: BLE001 - any damaged cache is rebuilt
            warnings.warn(f"ignoring unreadable cache {cache}; rebuilding it", stacklevel=2)
    data = build_leave_one_out(options, seed)
    if use_cache:
        try:
            atomic_write(cache, lambda f: np.savez(f, **_to_arrays(data)))
        except OSError as exc:
            warnings.warn(f"could not write cache {cache}: {exc}", stacklevel=2)
    return data


def build_leave_one_out(options: LogOptions, seed: int) -> InteractionLogData:
    """Read, map ids, drop repeated pairs and split (see the module docstring)."""
    users, items, times, user_ids, item_ids, path = _distinct_pairs(options)
    if np.bincount(users).max() < 2:
        raise DataError(f"no user in column {options.user_col!r} has 2 or more items; leave-one-out needs one to hold out", path)
    split = implicit_leave_one_out(options.name, users, items, times, len(user_ids), len(item_ids), seed, path)
    fields = {f.name: getattr(split, f.name) for f in dataclasses.fields(LeaveOneOutData)}
    return InteractionLogData(**fields, user_ids=user_ids, item_ids=item_ids)


def build_held_out_sets(options: LogOptions) -> HeldOutSetsData:
    """The log split ``last:N`` or ``time:COL`` (several test items per user; no sampled negatives).

    Reads and de-duplicates as :func:`build_leave_one_out` does; the rules (ties, short users,
    users left out and counted) are those of :mod:`recforge.data.held_out_sets`. Not cached: the
    split is a sort of the pairs, cheap next to reading the file.

    Raises:
        ConfigError: ``last:N`` without a time column.
        DataError: for a bad file (see :func:`read_log`), a single user, or no user with both a
            training and a test item.
    """
    split = parse_log_split(options.split)
    if not options.time_col:
        raise ConfigError(f"data.split {options.split} orders each user's events by time: name the time column with --time-col")
    users, items, times, user_ids, item_ids, path = _distinct_pairs(options)
    assert times is not None
    try:
        return several_items_split(options.name, users, items, times, len(user_ids), len(item_ids), split, user_ids, item_ids)
    except ValueError as exc:
        raise DataError(f"{exc} (column {options.time_col!r}); use --split leave-one-out or a smaller N", path) from None


def _distinct_pairs(options: LogOptions) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, pa.Array, pa.Array, Path]:
    """Internal user and item ids [P] of each distinct pair (its latest row), times [P] or None, the id maps, the first file."""
    table, path = read_log(options)
    users, user_ids = encode_ids(table.column("user"))
    items, item_ids = encode_ids(table.column("item"))
    _check_users(user_ids, options, path)
    times = table.column("time").to_numpy() if "time" in table.column_names else None
    keep = _latest_row_per_pair(users, items, len(item_ids), times)
    if len(keep) < len(users):
        warnings.warn(
            f"{path.name}: dropped {len(users) - len(keep)} repeated (user, item) rows (implicit feedback: one "
            "positive per pair; kept each pair's latest row)",
            stacklevel=2,
        )
        users, items = users[keep], items[keep]
        times = None if times is None else times[keep]
    return users, items, times, user_ids, item_ids, path


def _latest_row_per_pair(users: np.ndarray, items: np.ndarray, num_items: int, times: np.ndarray | None) -> np.ndarray:
    """Ascending row indices keeping one row per (user, item): the latest by (time, row), or the first."""
    pairs = users * num_items + items
    if times is None:
        return np.sort(np.unique(pairs, return_index=True)[1])
    order = np.lexsort((np.arange(len(pairs)), times, pairs))
    sorted_pairs = pairs[order]
    last = np.r_[sorted_pairs[1:] != sorted_pairs[:-1], True]
    return np.sort(order[last])


def _ids_to_bytes(ids: pa.Array) -> np.ndarray:
    buffer = io.BytesIO()
    pq.write_table(pa.table({"id": ids}), buffer)
    return np.frombuffer(buffer.getvalue(), dtype=np.uint8)


def _ids_from_bytes(raw: np.ndarray) -> pa.Array:
    return pq.read_table(pa.BufferReader(raw.tobytes())).column("id").combine_chunks()


def _to_arrays(data: InteractionLogData) -> dict[str, np.ndarray]:
    assert data.user_ids is not None and data.item_ids is not None
    return {**split_arrays(data), "user_ids": _ids_to_bytes(data.user_ids), "item_ids": _ids_to_bytes(data.item_ids)}


def _from_npz(path: Path) -> InteractionLogData:
    with np.load(path, allow_pickle=False) as z:
        return InteractionLogData(
            **split_fields(z), user_ids=_ids_from_bytes(z["user_ids"]), item_ids=_ids_from_bytes(z["item_ids"])  # type: ignore[arg-type]
        )


# ---------------------------------------------------------------------------------- DIN and CTR models
class InteractionLogSequences(SequenceSource):
    """An own log as behaviour-sequence samples (per-user split; see the module docstring).

    Args:
        options: the files and how to read them.
    """

    folder = ""
    files = ()
    description = "an own interaction log as DIN behaviour sequences, last event per user = test"

    def __init__(self, options: LogOptions):
        if parse_log_split(options.split).several:
            raise ConfigError(f"data.split {options.split} applies to NCF/MF/ItemPop on a log; sequence models hold out each user's last event")
        self.options = options
        self.name = options.name  # type: ignore[misc]
        self.source_info = f"own interaction log {', '.join(options.paths)}"  # type: ignore[misc]

    def verify(self, data_dir: str | Path | None = None) -> dict[str, Path]:
        return self.options.files()

    def cache_parts(self) -> tuple[Any, ...]:
        return ("interaction-log", self.options.cache_parts())

    def read_events(self, paths: dict[str, Path]) -> Events:
        options = self.options
        table, path = read_log(options)
        users = _raw_or_internal(table.column("user"))
        _check_users(np.unique(users), options, path)
        items = _raw_or_internal(table.column("item"))
        if "time" in table.column_names:
            times = table.column("time").to_numpy()
        else:
            warnings.warn(f"{path.name} has no time column: the row number orders each user's events", stacklevel=2)
            times = np.arange(table.num_rows, dtype=np.int64)
        categories = encode_ids(table.column("category"))[0] if "category" in table.column_names else np.zeros(len(items), np.int64)
        meta_items, first_row = np.unique(items, return_index=True)
        return events_from_ids(users, items, times, meta_items, categories[first_row], path)


def _raw_or_internal(column: pa.ChunkedArray) -> np.ndarray:
    """Integer ids as they are (as the built-in sequence datasets write them); strings as internal ids."""
    if pa.types.is_integer(column.type):
        return column.to_numpy().astype(np.int64, copy=False)
    return encode_ids(column)[0]


def is_interaction_log(data: Any) -> bool:
    """Whether a DataConfig names an own interaction log (``data.path`` with ``data.user_col``)."""
    return bool(getattr(data, "path", None)) and bool(getattr(data, "user_col", None))


__all__ = [
    "InteractionLogData", "InteractionLogSequences", "LogOptions",
    "build_leave_one_out", "is_interaction_log", "load_leave_one_out", "read_log",
]
