"""MovieLens-100K as a CTR task: one row per rating, click = rating >= 4, user and movie features.

Rows: the 100,000 ratings of ``u.data``; label ``click`` = 1.0 for a rating of 4 or 5 (55,375
rows, 55.4%), else 0.0 — the usual "rating >= 4 is a like" binarisation of explicit MovieLens
ratings for CTR models. Features (all categorical):

* ``user_id``, ``item_id``: the raw GroupLens ids.
* ``age_group``: the age groups of the MovieLens-1M release (``Under 18``, ``18-24``, ``25-34``,
  ``35-44``, ``45-49``, ``50-55``, ``56+``; ML-1M README), applied to ML-100K's exact ages so the
  two datasets share one bucketing. (The raw ``age`` column stays in the table; a schema may use
  ``bucketize: quantile`` on it instead.)
* ``gender``, ``occupation`` (21 values of ``u.occupation``).
* ``zip_prefix``: the first character of the zip code. For US ZIP codes that is the national area
  (0 = New England .. 9 = the West Coast), 10 values with 56 to 170 users each; the first three
  characters (the sectional centre) would give 382 values, 204 of them with a single user, too
  sparse for 943 users. The 18 Canadian postal codes start with a letter (the province), kept as is.
* ``genres``: a multi-valued sequence feature: the names of the movie's genre flags among the 19
  of ``u.item`` (``u.genre`` order), joined with ``|``; every movie has 1 to 6.

Split: a seeded stratified random 8:1:1 of the rating rows (not temporal: the raw table keeps
``timestamp`` for a temporal split). ``u.item`` is Latin-1 encoded.

Citation: Harper & Konstan, The MovieLens Datasets, ACM TiiS 2015.
Licence: GroupLens ML-100K terms (research use only, no redistribution); files are never copied
into this package.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from recforge.data.datasets.movielens import GROUPLENS_CITATION, MovieLens100K, fetch_ml100k_members
from recforge.data.datasets.registry import register_dataset
from recforge.data.datasets.tabular import RawSplits, TabularSource
from recforge.data.files import DataFile, FileVariant, resolve_data_dir, sha256
from recforge.data.readers import cast_column, read_int_columns, read_table
from recforge.data.schema import FeatureSpec, Schema
from recforge.errors import DataError

#: The 19 genre flags of ``u.item``, in ``u.genre`` order.
GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama",
    "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western",
)
#: MovieLens-1M age groups (ML-1M README): lower bounds and names.
AGE_BOUNDARIES = (18, 25, 35, 45, 50, 56)
AGE_GROUPS = ("Under 18", "18-24", "25-34", "35-44", "45-49", "50-55", "56+")
USER_COLUMNS = ("user_id", "age", "gender", "occupation", "zip_code")
ITEM_COLUMNS = ("item_id", "title", "release_date", "video_release_date", "imdb_url") + tuple(f"genre_{i}" for i in range(19))


def _read_pipe_file(path: Path, names: tuple[str, ...], encoding: str) -> pa.Table:
    """A headerless ``|``-separated file as strings (no quoting: titles hold quotes)."""
    return read_table(
        path,
        f"{len(names)} '|'-separated columns ({', '.join(names)})",
        read_options=pacsv.ReadOptions(column_names=list(names), encoding=encoding),
        parse_options=pacsv.ParseOptions(delimiter="|", quote_char=False),
        convert_options=pacsv.ConvertOptions(column_types={c: pa.string() for c in names}, strings_can_be_null=False),
    )


def _ids(table: pa.Table, column: str, path: Path) -> np.ndarray:
    ids = cast_column(table.column(column), pa.int64(), path, column).to_numpy()
    unique, first = np.unique(ids, return_index=True)
    if len(unique) != len(ids):
        seen = np.zeros(len(ids), dtype=bool)
        seen[first] = True
        row = int(np.flatnonzero(~seen)[0])
        raise DataError(f"{column} {ids[row]} appears more than once; expected one line per id", path, row + 1)
    return ids


def read_users(path: Path) -> tuple[np.ndarray, pa.Table]:
    """``u.user`` -> (user ids, table of age, age_group, gender, occupation, zip_prefix)."""
    table = _read_pipe_file(path, USER_COLUMNS, "utf-8")
    ids = _ids(table, "user_id", path)
    age = cast_column(table.column("age"), pa.int64(), path, "age").to_numpy()
    zip_code = pc.utf8_trim_whitespace(table.column("zip_code"))
    features = pa.table({
        "age": age,
        "age_group": pa.array(np.asarray(AGE_GROUPS)[np.searchsorted(AGE_BOUNDARIES, age, side="right")], pa.string()),
        "gender": table.column("gender"),
        "occupation": table.column("occupation"),
        "zip_prefix": pc.utf8_slice_codeunits(zip_code, 0, 1),
    })
    return ids, features


def read_items(path: Path) -> tuple[np.ndarray, pa.Table]:
    """``u.item`` (Latin-1) -> (item ids, table of title and ``|``-joined genre names).

    Raises:
        DataError: for a genre flag other than 0/1 or a movie with no genre.
    """
    table = _read_pipe_file(path, ITEM_COLUMNS, "latin-1")
    ids = _ids(table, "item_id", path)
    flags = np.stack([table.column(f"genre_{i}").to_numpy(zero_copy_only=False) for i in range(19)], axis=1)
    bad = ~np.isin(flags, ["0", "1"])
    if bad.any():
        row, col = (int(x[0]) for x in np.nonzero(bad))
        raise DataError(f"genre flag {GENRES[col]!r} must be 0 or 1, found {flags[row, col]!r}", path, row + 1)
    flags = flags == "1"
    empty = ~flags.any(axis=1)
    if empty.any():
        row = int(np.flatnonzero(empty)[0])
        raise DataError("movie has no genre flag set; expected at least one", path, row + 1)
    genres = ["|".join(g for g, on in zip(GENRES, row) if on) for row in flags.tolist()]
    return ids, pa.table({"title": table.column("title"), "genres": pa.array(genres, pa.string())})


def _lookup(ids: np.ndarray, wanted: np.ndarray, what: str, path: Path) -> np.ndarray:
    """Rows of ``ids`` holding each of ``wanted``; DataError if one is missing."""
    order = np.argsort(ids)
    pos = np.minimum(np.searchsorted(ids[order], wanted), len(ids) - 1)
    found = ids[order][pos] == wanted
    if not found.all():
        row = int(np.flatnonzero(~found)[0])
        raise DataError(f"rating line {row + 1} names {what} {wanted[row]}, which {path.name} does not list", path)
    return order[pos]


@register_dataset
class MovieLens100KCTR(TabularSource):
    """MovieLens-100K ratings as CTR rows (rating >= 4), user/movie features, random 8:1:1 split."""

    name = "movielens-100k-ctr"
    folder = "ml-100k"
    description = "MovieLens-100K ratings as CTR (click = rating >= 4), user + genre features, random 8:1:1"
    citation = GROUPLENS_CITATION
    license = "GroupLens ML-100K terms: research use only, no redistribution"
    fractions = (0.8, 0.1, 0.1)
    label_sources = {"click": ("rating",)}  # click = rating >= 4
    files = (
        MovieLens100K.files[0],  # "ratings": u.data / u.data.gz
        DataFile("users", (FileVariant("u.user", sha256("f120e114da2e8cf314fd28f99417c94ae9ddf1cb6db8ce0e4b5995d40e90e62c")),)),
        DataFile(
            "items",
            (
                FileVariant("u.item", sha256("553841ebc7de3a0fd0d6b62a204ea30c1e651aacfb2814c7a6584ac52f2c5701")),
                FileVariant("u.item.gz", sha256("2b110febfbdd78d4d04497161383c4afa729c6a292e18f11d4fb6a6bc494bd68")),
            ),
        ),
    )
    members = ("u.data", "u.user", "u.item")  # in the GroupLens ml-100k.zip, per file above

    def default_schema(self) -> Schema:
        features = [FeatureSpec(c) for c in ("user_id", "item_id", "age_group", "gender", "occupation", "zip_prefix")]
        features.append(FeatureSpec("genres", "sequence", separator="|", max_length=6))
        return Schema(features=tuple(features), labels=("click",))

    def read(self, paths: dict[str, Path], seed: int) -> RawSplits:
        users, items, ratings, timestamps = read_int_columns(paths["ratings"], 4, "\t", ("user", "item", "rating", "timestamp"))
        bad = (ratings < 1) | (ratings > 5)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise DataError(f"rating must be 1..5, found {ratings[row]}", paths["ratings"], row + 1)
        user_ids, user_table = read_users(paths["users"])
        item_ids, item_table = read_items(paths["items"])
        user_rows = _lookup(user_ids, users, "user", paths["users"])
        item_rows = _lookup(item_ids, items, "item", paths["items"])
        table = pa.table({
            "user_id": pa.array(users.astype(str), pa.string()),
            "item_id": pa.array(items.astype(str), pa.string()),
            "rating": ratings,
            "timestamp": timestamps,
            **{c: user_table.column(c).take(pa.array(user_rows)) for c in user_table.column_names},
            "genres": item_table.column("genres").take(pa.array(item_rows)),
            "click": (ratings >= 4).astype(np.float32),
        })
        return RawSplits(train=table, info="MovieLens-100K u.data ratings joined with u.user and u.item; click = rating >= 4")

    def download(self, data_dir: str | Path | None = None) -> None:
        fetch_ml100k_members(resolve_data_dir(data_dir) / self.folder, list(zip(self.files, self.members)))
        self.verify(data_dir)
