"""Behaviour-sequence datasets for DIN-style models (Zhou et al., Deep Interest Network, KDD 2018).

Every dataset reads time-stamped (user, item) events and an item category, then
:func:`recforge.data.sequences.behaviour_samples` builds one positive and one sampled negative row
per event, with the user's earlier items (and their categories) as history, at most 50.

Two registered names per dataset choose the split (the CLI picks datasets by name, so a name is
the simplest switch that needs no new option):

* ``NAME``: per user, each user's last event is test and the one before valid (DIN's Amazon
  protocol); users with fewer than 3 events are train only. ``info["leakage_share"]`` reports the
  share of training rows later than the earliest test event.
* ``NAME-time``: one global cut in time at 80 / 10 / 10 % of the events (``fractions``);
  ``info["test_users_without_train_events"]`` counts the cold test users.

Datasets:

* ``movielens-100k-seq``: the 100,000 ratings of ``u.data`` as events (every rating, whatever
  its value, counts as an interaction); item category = the movie's first genre flag in
  ``u.genre`` order (``unknown``, ``Action``, ``Adventure``, ...), as the genre's index 0..18, so a
  movie flagged Action and Comedy is ``Action`` (1). 943 users, 1,682 items.
* ``amazon-grocery``: Amazon Grocery_and_Gourmet_Food 5-core as preprocessed by ReChorus
  (``train.csv``: user_id, item_id, time at day resolution; ``item_meta.csv``: ``i_category``).
  ReChorus already removed each user's last two reviews (its own dev/test), so these are the
  5-core data minus those, 121,892 events of 14,681 users; 8,349 of 8,713 items have category 0.
* ``amazon-electronics``: the DIN paper's data, McAuley's ``reviews_Electronics_5.json.gz``
  (reviewerID, asin, unixReviewTime) and ``meta_Electronics.json.gz`` (asin, categories), with
  DIN's preprocessing (``utils/1_convert_pd.py``, ``2_remap_id.py``): the item category is the
  LAST category of the LAST category list (``categories[-1][-1]``); users, items and categories
  get ids in ascending string order. DIN reports 192,403 users, 63,001 items, 801 categories and
  1,689,188 reviews. Reviews of an item without a metadata line (DIN's script would fail on
  them) keep the category ``(no metadata)``; their number is in ``info``.

Item ids in the tables are the files' ids (ML-100K, Grocery) or DIN's asin index (Electronics);
negatives are drawn from the items that occur in the events.
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.json as pajson

from recforge.data.datasets.movielens import GROUPLENS_CITATION, MovieLens100K, _cleanup_on_failure, fetch_ml100k_members
from recforge.data.datasets.movielens_ctr import GENRES, MovieLens100KCTR, _lookup, read_items
from recforge.data.datasets.registry import register_dataset
from recforge.data.datasets.tabular import RawSplits, TabularSource
from recforge.data.files import Checksum, DataFile, FileVariant, download, open_text, resolve_data_dir, sha256
from recforge.data.readers import read_int_columns, read_table
from recforge.data.schema import FeatureSpec, Schema
from recforge.data.sequences import behaviour_samples
from recforge.errors import DataError

DIN_CITATION = "Zhou et al., Deep Interest Network for Click-Through Rate Prediction, KDD 2018 (arXiv:1706.06978)"
AMAZON_CITATION = "McAuley et al., SIGIR 2015; He & McAuley, WWW 2016 (Amazon product reviews)"
AMAZON_TERMS = "Amazon review data (McAuley): research use only; redistribution terms not stated"
HISTORY_LENGTH = 50


@dataclass(frozen=True)
class Events:
    """Time-stamped interactions ready for :func:`behaviour_samples`.

    Attributes:
        users: int64 [E] user id of each event.
        items: int64 [E] item index in ``[0, I)``.
        times: int64 [E] event time (Unix seconds).
        item_categories: int64 [I] category of each item index.
        item_ids: int64 [I] the id written to the tables for each item index.
        notes: JSON-safe facts about the parse, added to the dataset's ``info``.
    """

    users: np.ndarray
    items: np.ndarray
    times: np.ndarray
    item_categories: np.ndarray
    item_ids: np.ndarray
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def num_items(self) -> int:
        return len(self.item_ids)


def events_from_ids(
    users: np.ndarray, raw_items: np.ndarray, times: np.ndarray, meta_items: np.ndarray, meta_categories: np.ndarray, path: Path
) -> Events:
    """Events from raw integer item ids and an item -> category table.

    Items are indexed in ascending raw-id order over the items that occur in the events.

    Raises:
        DataError: naming ``path`` (the metadata file) if an event's item has no category.
    """
    item_ids, items = np.unique(raw_items, return_inverse=True)
    rows = _lookup(np.asarray(meta_items, np.int64), item_ids, "item", path)
    return Events(users.astype(np.int64), items.astype(np.int64), times.astype(np.int64), np.asarray(meta_categories, np.int64)[rows], item_ids.astype(np.int64))


@dataclass
class SequenceSplits(RawSplits):
    """Raw splits plus the sampling figures of :func:`behaviour_samples` (leakage, users, rows)."""

    stats: dict[str, Any] = field(default_factory=dict)


class SequenceSource(TabularSource):
    """A behaviour-sequence dataset: events -> (history, target, label) rows, see the module doc.

    Subclasses implement :meth:`read_events`; ``split`` is ``per_user`` or ``global_time`` and
    ``fractions`` are the time shares of ``global_time``.
    """

    group_column = "user_id"
    split: ClassVar[str] = "per_user"
    fractions: ClassVar[tuple[float, float, float]] = (0.8, 0.1, 0.1)
    #: history events kept per row; a schema's ``max_length`` can only shorten them
    history_length: ClassVar[int] = HISTORY_LENGTH
    source_info: ClassVar[str] = ""

    def default_schema(self) -> Schema:
        """item_id, item_category (sparse); hist_item_id, hist_item_category (sequence, 50, sharing
        the target's tables); label ``label``.

        As in the DIN paper's Amazon setting (Zhou et al. 2018, Sec. 6.1), there is no user-id
        feature: the user is represented by the behaviours. The raw ``user_id`` column still groups
        rows for GAUC; add ``{name: user_id}`` to a schema file (``--schema``) to embed it too.
        """
        return Schema(
            features=(
                FeatureSpec("item_id"),
                FeatureSpec("item_category"),
                FeatureSpec("hist_item_id", "sequence", table="item_id", max_length=HISTORY_LENGTH),
                FeatureSpec("hist_item_category", "sequence", table="item_category", max_length=HISTORY_LENGTH),
            ),
            labels=("label",),
        )

    def read_events(self, paths: dict[str, Path]) -> Events:
        """Parse the verified files into events."""
        raise NotImplementedError

    def samples(self, events: Events, seed: int) -> SequenceSplits:
        """Build the split tables of ``events`` with this dataset's split."""
        tables, stats = behaviour_samples(
            events.users, events.items, events.times, events.item_categories, events.num_items,
            max_length=self.history_length, seed=seed, split=self.split, time_fractions=self.fractions,
            item_ids=events.item_ids,
        )
        stats.update(events.notes)
        return SequenceSplits(tables["train"], tables["valid"], tables["test"], info=self.source_info, stats=stats)

    def read(self, paths: dict[str, Path], seed: int) -> RawSplits:
        return self.samples(self.read_events(paths), seed)

    def encode(self, raw: RawSplits, schema: Schema, seed: int, where: str = "") -> Any:
        """As :meth:`TabularSource.encode`, with the sampling figures (leakage, users) in ``info``."""
        data = super().encode(raw, schema, seed, where)
        if isinstance(raw, SequenceSplits):
            data.info.update(raw.stats)
        return data


# ---------------------------------------------------------------------------------- MovieLens
@register_dataset
class MovieLens100KSeq(SequenceSource):
    """MovieLens-100K ratings as behaviour sequences, first genre as category, per-user split."""

    name = "movielens-100k-seq"
    folder = "ml-100k"
    description = "MovieLens-100K ratings as DIN behaviour sequences (first genre = category), last event per user = test"
    citation = GROUPLENS_CITATION
    license = "GroupLens ML-100K terms: research use only, no redistribution"
    files = (MovieLens100K.files[0], MovieLens100KCTR.files[2])  # "ratings" (u.data), "items" (u.item)
    members = ("u.data", "u.item")
    source_info = "MovieLens-100K u.data (every rating an interaction), u.item first genre flag as category"

    def read_events(self, paths: dict[str, Path]) -> Events:
        users, items, _, times = read_int_columns(paths["ratings"], 4, "\t", ("user", "item", "rating", "timestamp"))
        item_ids, table = read_items(paths["items"])
        first_genre = pc.list_element(pc.split_pattern(table.column("genres"), "|"), 0)
        genre = pc.index_in(first_genre, value_set=pa.array(GENRES)).to_numpy(zero_copy_only=False)
        return events_from_ids(users, items, times, item_ids, genre, paths["items"])

    def download(self, data_dir: str | Path | None = None) -> None:
        fetch_ml100k_members(resolve_data_dir(data_dir) / self.folder, list(zip(self.files, self.members)))
        self.verify(data_dir)


@register_dataset
class MovieLens100KSeqTime(MovieLens100KSeq):
    """``movielens-100k-seq`` with a global time split (80 / 10 / 10 % of the events)."""

    name = "movielens-100k-seq-time"
    split = "global_time"
    description = "MovieLens-100K behaviour sequences, global time split 80/10/10 of the events"


# ---------------------------------------------------------------------------------- Grocery
RECHORUS_RAW = (
    "https://raw.githubusercontent.com/THUwangcy/ReChorus/e58d752558634d42be60de561d6f74df748583cc/data/Grocery_and_Gourmet_Food"
)


def _read_tsv_ints(path: Path, columns: tuple[str, ...]) -> list[np.ndarray]:
    """Integer ``columns`` of a tab-separated file with a header (plain or .gz)."""
    table = read_table(
        path,
        f"a tab-separated file with a header and integer columns {', '.join(columns)}",
        parse_options=pacsv.ParseOptions(delimiter="\t", quote_char=False),
        convert_options=pacsv.ConvertOptions(column_types={c: pa.int64() for c in columns}),
        header=True,
    )
    missing = [c for c in columns if c not in table.column_names]
    if missing:
        raise DataError(f"header lacks column(s) {missing}; found {table.column_names}", path, 1)
    out = []
    for c in columns:
        column = table.column(c)
        if column.null_count:
            row = int(np.flatnonzero(column.is_null().to_numpy(zero_copy_only=False))[0])
            raise DataError(f"column {c!r} is empty", path, row + 2)
        out.append(column.to_numpy().astype(np.int64, copy=False))
    return out


@register_dataset
class AmazonGrocery(SequenceSource):
    """Amazon Grocery 5-core (ReChorus's train.csv) as behaviour sequences, per-user split."""

    name = "amazon-grocery"
    folder = "amazon-grocery-rechorus"
    description = "Amazon Grocery 5-core (ReChorus) as DIN behaviour sequences with item category, last event per user = test"
    citation = f"{AMAZON_CITATION}; preprocessing: ReChorus (Wang et al., THUwangcy/ReChorus)"
    license = f"{AMAZON_TERMS}; ReChorus repository MIT"
    files = (
        DataFile(
            "interactions",
            (
                FileVariant("train.csv", sha256("75847958fbcfec35dd0a20bda43432c22a5d7e5b5fe571fef0b25ff580b475f4")),
                FileVariant("train.csv.gz", sha256("fb2d3c7af81555ac205d44b02c6540e1b3ae8b1c73cd7b17e0f6f73be3f4adec")),
            ),
        ),
        DataFile(
            "item metadata",
            (
                FileVariant("item_meta.csv", sha256("35a7d55fb7024b3cf7937cbc424762bc1cb5ef1f41d49f5955011effcebf144c")),
                FileVariant("item_meta.csv.gz", sha256("7e96c618b44bac4c77b3ddc8e09894a1e48613cbbd02c917969375b6266abc8b")),
            ),
        ),
    )
    source_info = "ReChorus Grocery_and_Gourmet_Food train.csv (5-core minus ReChorus's dev/test) + item_meta.csv i_category"

    def read_events(self, paths: dict[str, Path]) -> Events:
        users, items, times = _read_tsv_ints(paths["interactions"], ("user_id", "item_id", "time"))
        meta_items, categories = _read_tsv_ints(paths["item metadata"], ("item_id", "i_category"))
        return events_from_ids(users, items, times, meta_items, categories, paths["item metadata"])

    def download(self, data_dir: str | Path | None = None) -> None:
        folder = resolve_data_dir(data_dir) / self.folder
        with _cleanup_on_failure(folder):
            for data_file in self.files:
                if data_file.locate(folder) is None:
                    variant = data_file.variants[0]
                    download(f"{RECHORUS_RAW}/{variant.filename}", folder / variant.filename, variant.checksum)


@register_dataset
class AmazonGroceryTime(AmazonGrocery):
    """``amazon-grocery`` with a global time split (80 / 10 / 10 % of the events)."""

    name = "amazon-grocery-time"
    split = "global_time"
    description = "Amazon Grocery 5-core (ReChorus) behaviour sequences, global time split 80/10/10 of the events"


# ---------------------------------------------------------------------------------- Electronics
SNAP = "http://snap.stanford.edu/data/amazon/productGraph/categoryFiles"
NO_METADATA = "(no metadata)"


@dataclass(frozen=True)
class FormatCheck(Checksum):
    """NOT a checksum: the first bytes of a file, for files whose publisher gives no checksum.

    McAuley's Amazon files are published without checksums or sizes, so ``amazon-electronics``
    can only check that a file has the expected format (the gzip magic ``1f8b``, or ``{`` for
    the uncompressed JSON lines). A truncated or different version of the file is not detected
    here; the parser will fail on a truncated gzip. Used by this dataset only; every other
    dataset keeps a sha256 or git blob id.
    """

    def compute(self, path: Path) -> str:
        with open(path, "rb") as f:
            return f.read(len(self.digest) // 2).hex()


GZIP_FORMAT = FormatCheck("format only (no published checksum): gzip magic bytes", "1f8b")
JSON_FORMAT = FormatCheck("format only (no published checksum): first byte '{'", "7b")
_ASIN = re.compile(r"""["']asin["']\s*:\s*["']([^"']+)["']""")
_CATEGORIES = re.compile(r"""["']categories["']\s*:\s*(\[\s*\[.*?\]\s*\])""")


def _open_lines(path: Path) -> Any:
    """The file's lines (plain or .gz); a truncated or corrupt gzip or non-UTF-8 text is a DataError."""
    return open_text(path)


def _string_ids(column: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, pa.Array]:
    """(ids int64 [N], sorted distinct values): ids in ascending string order, as DIN's build_map."""
    encoded = pc.dictionary_encode(column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column)
    order = pc.sort_indices(encoded.dictionary).to_numpy()
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    return rank[encoded.indices.to_numpy(zero_copy_only=False)], encoded.dictionary.take(pa.array(order))


def read_electronics_reviews(path: Path) -> pa.Table:
    """``reviews_Electronics_5.json(.gz)``: JSON lines -> table of reviewerID, asin, unixReviewTime.

    Raises:
        DataError: naming the first line that is not JSON or lacks one of the three fields.
    """
    schema = pa.schema([("reviewerID", pa.string()), ("asin", pa.string()), ("unixReviewTime", pa.int64())])
    try:
        stream = pa.input_stream(str(path), compression="gzip" if path.suffix == ".gz" else None)
        table = pajson.read_json(
            stream,
            read_options=pajson.ReadOptions(block_size=1 << 24),
            parse_options=pajson.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore"),
        )
    except (pa.ArrowInvalid, OSError, EOFError) as exc:
        raise _first_bad_review(path, str(exc)) from None
    for name in schema.names:
        if table.column(name).null_count:
            raise _first_bad_review(path, f"field {name!r} missing")
    return table.select(schema.names)


def _first_bad_review(path: Path, reason: str) -> DataError:
    try:
        with _open_lines(path) as f:
            for number, line in enumerate(f, start=1):
                try:
                    record = json.loads(line)
                except ValueError:
                    return DataError(f"expected one JSON object per line, found {line[:80]!r}", path, number)
                missing = [k for k in ("reviewerID", "asin", "unixReviewTime") if not isinstance(record, dict) or record.get(k) is None]
                if missing:
                    return DataError(f"review lacks field(s) {missing}; expected reviewerID, asin, unixReviewTime", path, number)
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        return DataError(f"cannot read reviews (truncated download?): {exc}", path)
    return DataError(f"cannot parse reviews: {reason}", path)


def read_electronics_categories(path: Path, wanted: set[str]) -> dict[str, str]:
    """``meta_Electronics.json(.gz)`` -> asin -> DIN category (``categories[-1][-1]``) for ``wanted``.

    The metadata lines are Python literals (single quotes), which DIN reads with ``eval``; here
    only the asin and the ``categories`` list are extracted (``ast.literal_eval``, never ``eval``),
    and only for the reviewed items. A line whose fields the fast pattern misses is parsed whole.

    Raises:
        DataError: naming the line, for a line that cannot be parsed or lacks asin / categories.
    """
    out: dict[str, str] = {}
    try:
        with _open_lines(path) as f:
            for number, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                match = _ASIN.search(line)
                if match is not None and match.group(1) not in wanted:
                    continue
                categories = _CATEGORIES.search(line)
                try:
                    if match is not None and categories is not None:
                        asin, lists = match.group(1), ast.literal_eval(categories.group(1))
                    else:
                        record = ast.literal_eval(line)
                        asin, lists = record["asin"], record["categories"]
                    category = str(lists[-1][-1])
                except (ValueError, SyntaxError, KeyError, IndexError, TypeError, MemoryError, RecursionError):
                    raise DataError(
                        f"expected a metadata record with 'asin' and a non-empty 'categories' list of lists, found {line[:80]!r}",
                        path, number,
                    ) from None
                if asin in wanted:
                    out[asin] = category
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read metadata (truncated download?): {exc}", path) from None
    return out


def read_electronics(reviews_path: Path, meta_path: Path) -> Events:
    """DIN's Electronics preprocessing: reviews + last category, ids in ascending string order."""
    reviews = read_electronics_reviews(reviews_path)
    users, _ = _string_ids(reviews.column("reviewerID"))
    items, asins = _string_ids(reviews.column("asin"))
    found = read_electronics_categories(meta_path, set(asins.to_pylist()))
    names = [found.get(a, NO_METADATA) for a in asins.to_pylist()]
    categories, _ = _string_ids(pa.array(names, pa.string()))
    times = reviews.column("unixReviewTime").to_numpy()
    notes = {
        "items_without_metadata": len(asins) - len(found),
        "categories": int(len(np.unique(categories))),
    }
    return Events(users, items, times.astype(np.int64), categories, np.arange(len(asins), dtype=np.int64), notes)


def read_electronics_sample(path: Path) -> Events:
    """torch-rechub's ``amazon_electronics_sample.csv`` (user_id, item_id, time, cate_id, already
    DIN-encoded) as the same events :func:`read_electronics` returns: a format fixture for tests.

    Raises:
        DataError: for a missing column or an item listed with two categories.
    """
    table = read_table(
        path,
        "CSV columns user_id, item_id, time, cate_id (integers)",
        convert_options=pacsv.ConvertOptions(column_types={c: pa.int64() for c in ("user_id", "item_id", "time", "cate_id")}),
        header=True,
    )
    missing = {"user_id", "item_id", "time", "cate_id"} - set(table.column_names)
    if missing:
        raise DataError(f"header lacks column(s) {sorted(missing)}", path, 1)
    users, raw_items, times, cates = (table.column(c).to_numpy() for c in ("user_id", "item_id", "time", "cate_id"))
    item_ids, items = np.unique(raw_items, return_inverse=True)
    categories = np.zeros(len(item_ids), dtype=np.int64)
    categories[items] = cates
    bad = categories[items] != cates
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise DataError(f"item {raw_items[row]} has two categories; expected one per item", path, row + 2)
    return Events(users.astype(np.int64), items.astype(np.int64), times.astype(np.int64), categories, item_ids.astype(np.int64))


@register_dataset
class AmazonElectronics(SequenceSource):
    """Amazon Electronics 5-core, the DIN paper's data and preprocessing, per-user split."""

    name = "amazon-electronics"
    folder = "amazon-electronics"
    description = "Amazon Electronics 5-core + metadata (DIN paper's data), behaviour sequences, last event per user = test"
    citation = f"{DIN_CITATION}; data: {AMAZON_CITATION}"
    license = AMAZON_TERMS
    # No checksums are published for these files: FormatCheck only checks the format (see its doc).
    files = (
        DataFile("reviews", (FileVariant("reviews_Electronics_5.json.gz", GZIP_FORMAT), FileVariant("reviews_Electronics_5.json", JSON_FORMAT))),
        DataFile("metadata", (FileVariant("meta_Electronics.json.gz", GZIP_FORMAT), FileVariant("meta_Electronics.json", JSON_FORMAT))),
    )
    urls = (f"{SNAP}/reviews_Electronics_5.json.gz", f"{SNAP}/meta_Electronics.json.gz")
    source_info = "McAuley reviews_Electronics_5 + meta_Electronics, DIN preprocessing (category = categories[-1][-1])"

    def read_events(self, paths: dict[str, Path]) -> Events:
        return read_electronics(paths["reviews"], paths["metadata"])

    def download(self, data_dir: str | Path | None = None) -> None:
        """Fetch both files from SNAP (about 0.5 GB; unverifiable beyond their format, see FormatCheck)."""
        folder = resolve_data_dir(data_dir) / self.folder
        with _cleanup_on_failure(folder):
            for data_file, url in zip(self.files, self.urls):
                if data_file.locate(folder) is None:
                    variant = data_file.variants[0]
                    download(url, folder / variant.filename, variant.checksum)
        self.verify(data_dir)


@register_dataset
class AmazonElectronicsTime(AmazonElectronics):
    """``amazon-electronics`` with a global time split (80 / 10 / 10 % of the events)."""

    name = "amazon-electronics-time"
    split = "global_time"
    description = "Amazon Electronics 5-core (DIN paper's data) behaviour sequences, global time split 80/10/10"
