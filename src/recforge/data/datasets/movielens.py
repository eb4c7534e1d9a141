"""MovieLens datasets (GroupLens) as implicit feedback with leave-one-out evaluation.

* ``movielens-1m-ncf``: the NCF authors' split and test negatives (He et al., 2017), as shipped in
  their repository ``hexiangnan/neural_collaborative_filtering`` (``Data/``). Used as is, including
  the quirk that 156 of its 597,960 negatives repeat the user's own test item (the evaluation
  protocol ignores such candidates, as the authors' evaluate.py does).
* ``movielens-1m`` / ``movielens-100k``: built from the raw GroupLens files. Every rating is a
  positive; each user's latest interaction (ties: largest item id) is the test item, or a seeded
  random one where the files carry no timestamps; 99 distinct negatives per user fixed by the seed.

Licence: GroupLens terms (research use, no redistribution); files are never copied into this package.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from recforge.data.datasets.registry import DatasetSource, register_dataset
from recforge.data.files import DataFile, FileVariant, download, extract_member, git_blob, resolve_data_dir, sha256
from recforge.data.interactions import LeaveOneOutData, leave_one_out
from recforge.data.readers import read_int_columns, read_ncf_negatives
from recforge.errors import DataError

NCF_RAW = "https://raw.githubusercontent.com/hexiangnan/neural_collaborative_filtering/4aab159e81c44b062c091bdaed0ab54ac632371f/Data"
GROUPLENS = "https://files.grouplens.org/datasets/movielens"
NCF_CITATION = "He et al., Neural Collaborative Filtering, WWW 2017 (arXiv:1708.05031)"
GROUPLENS_CITATION = "Harper & Konstan, The MovieLens Datasets, ACM TiiS 2015"


@contextmanager
def _cleanup_on_failure(folder: Path) -> Iterator[None]:
    """Remove ``folder`` if a download into it fails and leaves it empty."""
    existed = folder.exists()
    try:
        yield
    except BaseException:
        if not existed and folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
        raise


def fetch_ml100k_members(folder: Path, wanted: list[tuple[DataFile, str]]) -> None:
    """Download GroupLens' ml-100k.zip into ``folder`` (once) and extract each ``(file, member)``
    whose file is missing, under the file's first accepted name.

    Raises:
        DataError: for a failed download or a missing archive member.
    """
    missing = [(f, m) for f, m in wanted if f.locate(folder) is None]
    if not missing:
        return
    with _cleanup_on_failure(folder):
        archive = folder / "ml-100k.zip"
        if not archive.is_file():
            download(f"{GROUPLENS}/ml-100k.zip", archive)
        for data_file, member in missing:
            extract_member(archive, f"ml-100k/{member}", folder / data_file.variants[0].filename)


def _dense_ids(raw: np.ndarray) -> tuple[np.ndarray, int]:
    """Map raw ids to 0..n-1 in ascending raw-id order (independent of row order)."""
    unique, dense = np.unique(raw, return_inverse=True)
    return dense.astype(np.int64), len(unique)


def implicit_leave_one_out(
    name: str,
    users: np.ndarray,
    items: np.ndarray,
    timestamps: np.ndarray | None,
    num_users: int,
    num_items: int,
    seed: int,
    path: Path,
) -> LeaveOneOutData:
    """The leave-one-out split of the raw GroupLens datasets and of own interaction logs.

    Each user's latest interaction (ties: largest item id) is the test item, or, without
    ``timestamps``, a seeded random one (with a warning naming ``path``); 99 distinct sampled
    negatives per test user fixed by ``seed`` (:func:`recforge.data.interactions.leave_one_out`).

    Args:
        name: dataset name.
        users, items: int64 [P] dense ids, each (user, item) pair once.
        timestamps: [P] or None.
        num_users, num_items: id ranges.
        seed: fixes the random hold-out and the negatives.
        path: the file the interactions came from (for messages).

    Raises:
        DataError: naming ``path`` if a test user has fewer than 99 items left to sample.
    """
    if timestamps is None:
        warnings.warn(
            f"{path.name} has no timestamps: each user's held-out test item is chosen at "
            f"random (seed {seed}) instead of the latest one",
            stacklevel=3,
        )
    try:
        return leave_one_out(name, users, items, timestamps, num_users, num_items, num_negatives=99, seed=seed)
    except DataError as exc:
        if exc.path is not None:
            raise
        raise DataError(str(exc.args[0]) if exc.args else str(exc), path) from None


@register_dataset
class MovieLens1MNCF(DatasetSource):
    """MovieLens-1M with the NCF authors' leave-one-out split and 99 fixed test negatives."""

    name = "movielens-1m-ncf"
    folder = "ml-1m-ncf"
    description = "MovieLens-1M, NCF authors' leave-one-out split and test negatives (6,040 users, 3,706 items)"
    citation = NCF_CITATION
    license = "GroupLens ML-1M terms: research use only, no redistribution"
    files = (
        DataFile(
            "training pairs",
            (
                FileVariant("ml-1m.train.rating", git_blob("31ba384fd58dac8fbd09d2dfc6616431f3563ab5")),
                FileVariant(
                    "ml-1m.train.pairs.reconstructed.tsv.gz",
                    sha256("a16cc7b063e851b0a2ef7c90117010c27e1a670fb26253cfbc27656350043d05"),
                ),
            ),
        ),
        DataFile(
            "test ratings",
            (FileVariant("ml-1m.test.rating", sha256("231ae11eb060b643a8c58c063cd17ffc743b54f569afb073d1abb6cf126b88b5")),),
        ),
        DataFile(
            "test negatives",
            (
                FileVariant("ml-1m.test.negative", git_blob("c82844fb99d021f94751a6f915a230a1e8b8da92")),
                FileVariant(
                    "ml-1m.test.negative.gz", sha256("9137ae7799d7f9f6b554168bf7bb7c8a08795bd932267e4513f3ed326e1723f8")
                ),
            ),
        ),
    )

    def build(self, paths: dict[str, Path], seed: int) -> LeaveOneOutData:
        train_users, train_items = read_int_columns(paths["training pairs"], 2, "\t", ("user", "item"))
        test_users, test_items = read_int_columns(paths["test ratings"], 2, "\t", ("user", "item"))
        neg_users, neg_pos, negatives = read_ncf_negatives(paths["test negatives"])
        if not (np.array_equal(neg_users, test_users) and np.array_equal(neg_pos, test_items)):
            raise DataError(
                "the (user,item) pairs of the negatives file do not match the test ratings file line by line",
                paths["test negatives"],
            )
        num_users = int(max(train_users.max(), test_users.max())) + 1
        num_items = int(max(train_items.max(), test_items.max(), negatives.max())) + 1
        return LeaveOneOutData(
            name=self.name,
            num_users=num_users,
            num_items=num_items,
            train_users=train_users,
            train_items=train_items,
            test_users=test_users,
            test_candidates=np.concatenate([test_items[:, None], negatives], axis=1),
        )

    def download(self, data_dir: str | Path | None = None) -> None:
        folder = resolve_data_dir(data_dir) / self.folder
        with _cleanup_on_failure(folder):
            for data_file in self.files:
                if data_file.locate(folder) is None:
                    variant = data_file.variants[0]
                    download(f"{NCF_RAW}/{variant.filename}", folder / variant.filename, variant.checksum)


class _RawMovieLens(DatasetSource):
    """Shared logic of the raw GroupLens datasets: ratings -> implicit leave-one-out split."""

    archive: str
    ratings_member: str

    def read_ratings(self, path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        raise NotImplementedError

    def build(self, paths: dict[str, Path], seed: int) -> LeaveOneOutData:
        raw_users, raw_items, timestamps = self.read_ratings(paths["ratings"])
        users, num_users = _dense_ids(raw_users)
        items, num_items = _dense_ids(raw_items)
        pairs = users * num_items + items
        if len(np.unique(pairs)) != len(pairs):
            raise DataError("duplicate (user, item) ratings; expected each pair once", paths["ratings"])
        return implicit_leave_one_out(self.name, users, items, timestamps, num_users, num_items, seed, paths["ratings"])

    def download(self, data_dir: str | Path | None = None) -> None:
        folder = resolve_data_dir(data_dir) / self.folder
        if self.files[0].locate(folder) is not None:
            return
        with _cleanup_on_failure(folder):
            archive = folder / f"{self.archive}.zip"
            if not archive.is_file():
                download(f"{GROUPLENS}/{self.archive}.zip", archive)
            variant = self.files[0].variants[0]
            extract_member(archive, f"{self.archive}/{self.ratings_member}", folder / variant.filename)
            self.verify(data_dir)


@register_dataset
class MovieLens1M(_RawMovieLens):
    """MovieLens-1M from the raw GroupLens files, implicit feedback, leave-one-out."""

    name = "movielens-1m"
    folder = "ml-1m"
    description = "MovieLens-1M from raw ratings, implicit, leave-one-out + 99 sampled negatives"
    citation = GROUPLENS_CITATION
    license = "GroupLens ML-1M terms: research use only, no redistribution"
    archive = "ml-1m"
    ratings_member = "ratings.dat"
    files = (
        DataFile(
            "ratings",
            (
                FileVariant("ratings.dat", git_blob("1668e58e7cdefd8cdb81964c8c3a746e0fa0755d")),
                FileVariant("ratings.parquet", sha256("b354c7081dd0a6ca6b2711d6ae48d057ade864332ae90e28856372997d88994f")),
            ),
        ),
    )

    def read_ratings(self, path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        if path.suffix == ".parquet":
            try:
                table = pq.read_table(path)
            except (pa.ArrowException, OSError) as exc:
                raise DataError(f"not a readable Parquet file (truncated or corrupt?): {exc}", path) from None
            missing = {"userID", "movieID"} - set(table.column_names)
            if missing:
                raise DataError(f"expected columns userID and movieID, missing {sorted(missing)}", path)
            try:
                users = table.column("userID").to_numpy().astype(np.int64)
                items = table.column("movieID").to_numpy().astype(np.int64)
            except ValueError as exc:
                raise DataError(f"userID/movieID must be integers: {exc}", path) from None
            return users, items, None
        users, items, _, timestamps = read_int_columns(path, 4, "::", ("UserID", "MovieID", "Rating", "Timestamp"))
        return users, items, timestamps


@register_dataset
class MovieLens100K(_RawMovieLens):
    """MovieLens-100K from the raw GroupLens files, implicit feedback, leave-one-out by time."""

    name = "movielens-100k"
    folder = "ml-100k"
    description = "MovieLens-100K from raw ratings, implicit, leave-one-out (latest) + 99 sampled negatives"
    citation = GROUPLENS_CITATION
    license = "GroupLens ML-100K terms: research use only, no redistribution"
    archive = "ml-100k"
    ratings_member = "u.data"
    files = (
        DataFile(
            "ratings",
            (
                FileVariant("u.data", sha256("06416e597f82b7342361e41163890c81036900f418ad91315590814211dca490")),
                FileVariant("u.data.gz", sha256("35ac423f5b0bb85b6f686a20134c764a325b88c3044111b57476c4dcbead6ee1")),
            ),
        ),
    )

    def read_ratings(self, path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        users, items, _, timestamps = read_int_columns(path, 4, "\t", ("user", "item", "rating", "timestamp"))
        return users, items, timestamps
