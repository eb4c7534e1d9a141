"""Criteo Display Advertising Challenge (Kaggle, 2014): display ad impressions and clicks.

Two registered datasets, both in the Criteo format (see :mod:`recforge.data.criteo`):

* ``criteo-head-10k``: the first 10,000 rows of the Kaggle ``train.txt`` as committed to the public
  repository ``Lapis-Hong/Wide-ResDNN`` (commit ``4133ba4``, ``data/sample.train``; 2,182 clicks,
  CTR 21.8 %). It is the *head* of day 1 (the data is chronological), not a random sample, so it
  suits tests and smoke runs but not comparisons with published Criteo numbers. Split: seeded
  stratified random 8:1:1 (it has no days to split by). Values seen once in training map to the
  out-of-vocabulary id (``min_count=2``), so the OOV embedding is trained on rows like the unseen
  values of validation and test.
* ``criteo``: the full Kaggle ``train.txt`` (45,840,617 rows, 7 days, ~11 GB), from Criteo's
  archive of the challenge data. Encoded by streaming (two passes over the file, ``.npy`` columns
  in the cache directory, memory bounded by the vocabularies), never read whole into memory.
  Split: seeded stratified random 8:1:1 per chunk of rows, as FuxiCTR/BARS ``Criteo_x4`` (a random
  8:1:1 split; not the same rows, so not row-identical with it); categories seen fewer than 10
  times in training map to the OOV id (FuxiCTR's ``min_categr_count: 10``). The other convention,
  DLRM's (days 1-6 train, day 7 halved into validation and test by row order), needs the row
  count before fitting and is documented in :mod:`recforge.data.criteo`, not implemented.
  No checksum of ``train.txt`` is published and we do not know its exact size, so the file is
  checked by its first line and, while encoding, by its row count (45,840,617).

Features (both): ``I1..I13`` dense log(1 + max(x, 0)) as DLRM and DeepCTR (missing = 0), and
``C1..C26`` categorical (see :func:`recforge.data.criteo.criteo_schema` for the bucketised form).

Citation: Criteo Labs, Display Advertising Challenge (Kaggle, 2014). Terms: released by Criteo for
research (non-commercial); redistribution is not clearly allowed, so files are never copied here.
"""

from __future__ import annotations

import shutil
import tarfile
import tempfile
import warnings
from pathlib import Path

from recforge.data.criteo import (
    DEFAULT_CHUNK_ROWS,
    KAGGLE_ROWS,
    EncodeSummary,
    criteo_schema,
    encode_criteo_file,
    iter_criteo_chunks,
    open_encoded,
    read_criteo,
)
from recforge.data.datasets.registry import register_dataset
from recforge.data.datasets.tabular import CACHE_FORMAT, RawSplits, TabularSource
from recforge.data.files import DataFile, FileVariant, atomic_write, download, resolve_cache_dir, resolve_data_dir, sha256
from recforge.data.fingerprint import cache_key
from recforge.data.schema import Schema
from recforge.data.tabular import TabularData
from recforge.errors import DataError, DataMissingError

WIDE_RESDNN_RAW = "https://raw.githubusercontent.com/Lapis-Hong/Wide-ResDNN/4133ba4f17806b45dd94cb5fa4d16ad9b7a0c01c/data"
DAC_ARCHIVE_URL = "https://go.criteo.net/criteo-research-kaggle-display-advertising-challenge-dataset.tar.gz"
DAC_ARCHIVE = "criteo-research-kaggle-display-advertising-challenge-dataset.tar.gz"
CITATION = "Criteo Labs, Display Advertising Challenge (Kaggle, 2014); split and min_count as FuxiCTR/BARS Criteo_x4 (Zhu et al., CIKM 2021)"
LICENSE = "Criteo research terms (non-commercial research); redistribution not clearly allowed"


class CriteoFormat(TabularSource):
    """Base of the datasets stored in the Criteo format (``data prepare NAME --input FILE`` works for them)."""

    split_info: str = ""  # where the rows come from, for ``TabularData.info``

    def default_schema(self) -> Schema:
        raise NotImplementedError

    def read(self, paths: dict[str, Path], seed: int) -> RawSplits:
        """The whole file in memory (the full ``criteo`` dataset streams instead, see its ``load``)."""
        return RawSplits(train=read_criteo(paths["training rows"]), info=self.split_info)

    def encode_file(
        self, input: Path, output_dir: Path, seed: int = 0, schema: Schema | None = None, progress: bool = False,
        expected_rows: int | None = None,
    ) -> EncodeSummary:
        """Stream-encode a Criteo-format file with this dataset's schema and split fractions.

        Args:
            input: the Criteo-format file (plain or compressed).
            output_dir: folder for the ``.npy`` columns (see :func:`encode_criteo_file`).
            seed: fixes the random split.
            schema: declared schema (default: :meth:`default_schema`).
            progress: show a rows/s progress bar on stderr.
            expected_rows: the row count the file must have, if known.

        Returns:
            The :class:`EncodeSummary` (rows, seconds, rows/s, peak resident memory).
        """
        return encode_criteo_file(
            input, output_dir, schema or self.default_schema(), DEFAULT_CHUNK_ROWS, progress,
            seed=seed, fractions=self.fractions, name=self.name, expected_rows=expected_rows,
        )


@register_dataset
class CriteoHead10k(CriteoFormat):
    """The first 10,000 rows of the Criteo Kaggle ``train.txt``; seeded stratified 8:1:1 split."""

    name = "criteo-head-10k"
    folder = "criteo-head-10k"
    description = "Criteo Kaggle train.txt, first 10,000 rows (head of day 1, CTR 21.8%), random 8:1:1 split"
    citation = CITATION
    license = LICENSE
    fractions = (0.8, 0.1, 0.1)
    split_info = "first 10,000 rows of the Criteo Kaggle train.txt (head of day 1, not a random sample)"
    files = (
        DataFile(
            "training rows",
            (
                FileVariant("sample.train.gz", sha256("3f5e540548760d377c1393919b53fc3f817ec460e5b1cab248c2cfe6ebec3eb8")),
                FileVariant("sample.train", sha256("f665bb8823fd742ea1b8602d70918f235ccc08eba3224f1621c11022721c21a3")),
            ),
        ),
    )

    def default_schema(self) -> Schema:
        return criteo_schema(min_count=2)

    def download(self, data_dir: str | Path | None = None) -> None:
        folder = resolve_data_dir(data_dir) / self.folder
        if self.files[0].locate(folder) is None:
            variant = self.files[0].variants[1]  # the repository holds the uncompressed file
            download(f"{WIDE_RESDNN_RAW}/sample.train", folder / variant.filename, variant.checksum)


@register_dataset
class CriteoKaggle(CriteoFormat):
    """The full Criteo Kaggle ``train.txt`` (45,840,617 rows), stream-encoded; random 8:1:1 split."""

    name = "criteo"
    folder = "criteo"
    description = "Criteo Kaggle train.txt (45.8M rows, 7 days), streamed to .npy, random 8:1:1 split, min_count 10"
    citation = CITATION
    license = LICENSE
    fractions = (0.8, 0.1, 0.1)
    accepted = ("train.txt", "train.txt.gz")
    files = ()  # no published checksum: verify() checks the first line, encoding checks the row count
    split_info = "full Criteo Kaggle train.txt; random split as BARS Criteo_x4, not the same rows"

    def how_to_get(self, folder: Path) -> str:
        return (
            f"Run `recforge data prepare {self.name} --download` to fetch Criteo's archive ({DAC_ARCHIVE_URL}, about 4.3 GB) "
            f"and extract train.txt (about 11 GB) into {folder}/, or put train.txt (or train.txt.gz) there yourself; "
            f"or point --data-dir / RECFORGE_DATA_DIR at a directory holding {self.folder}/."
        )

    def verify(self, data_dir: str | Path | None = None) -> dict[str, Path]:
        """Find ``train.txt`` (or ``.gz``) and check that its first line is a Criteo row.

        Raises:
            DataMissingError: if the file is absent (with instructions).
            DataError: if its first line is not a valid Criteo row.
        """
        folder = resolve_data_dir(data_dir) / self.folder
        for filename in self.accepted:
            path = folder / filename
            if path.is_file():
                first = iter_criteo_chunks(path, chunk_rows=1, threads=1)
                try:
                    next(first, None)
                finally:
                    first.close()
                return {"training rows": path}
        names = " or ".join(self.accepted)
        raise DataMissingError(f"missing Criteo training file: expected {names} in {folder}. {self.how_to_get(folder)}")

    def default_schema(self) -> Schema:
        return criteo_schema(min_count=10)

    def load(  # type: ignore[override]
        self,
        data_dir: str | Path | None = None,
        seed: int = 0,
        use_cache: bool = True,
        schema: Schema | None = None,
        progress: bool = False,
    ) -> TabularData:
        """Stream-encode ``train.txt`` into the cache (once) and memory-map the encoded columns.

        Args:
            data_dir: the data directory.
            seed: fixes the random split.
            use_cache: keep the encoded columns in the cache directory; if False they are encoded
                into a temporary folder and read into memory (about 7 GB for the full file).
            schema: a declared schema replacing :meth:`default_schema`.
            progress: show a progress bar while encoding.

        Raises:
            DataMissingError, DataError: missing or malformed file, or not 45,840,617 rows.
        """
        paths = self.verify(data_dir)
        schema = schema or self.default_schema()
        path = paths["training rows"]
        cache = self.cache_folder(path, seed, schema)
        if use_cache and (cache / "meta.json").is_file():
            try:
                return open_encoded(cache)
            except DataError:
                warnings.warn(f"ignoring unreadable cache {cache}; rebuilding it", stacklevel=2)
        if not use_cache:
            with tempfile.TemporaryDirectory() as tmp:
                self.encode_file(path, Path(tmp) / "encoded", seed, schema, progress, expected_rows=KAGGLE_ROWS)
                return open_encoded(Path(tmp) / "encoded", mmap=False)
        self.encode_file(path, cache, seed, schema, progress, expected_rows=KAGGLE_ROWS)
        return open_encoded(cache)

    def cache_folder(self, path: Path, seed: int, schema: Schema) -> Path:
        """Where the encoded columns of ``path`` go, keyed like :meth:`TabularSource.load`'s cache:
        on the file's content (hashed once, then memoised, see :mod:`recforge.data.fingerprint`)."""
        key = cache_key(CACHE_FORMAT, self.name, seed, self.fractions, schema.to_dict(), DEFAULT_CHUNK_ROWS, paths={"training rows": path})
        return resolve_cache_dir() / "tabular" / f"{self.name}-{key}"

    def download(self, data_dir: str | Path | None = None) -> None:
        """Fetch Criteo's archive of the challenge data and extract ``train.txt`` from it.

        The archive (about 4.3 GB) is kept in the dataset folder until ``train.txt`` is extracted,
        then removed. No checksum is published; the extracted file is checked by its first line
        here and by its row count when it is encoded.

        Raises:
            DataError: on a failed download or an archive without ``train.txt``.
        """
        folder = resolve_data_dir(data_dir) / self.folder
        if any((folder / name).is_file() for name in self.accepted):
            return
        archive = folder / DAC_ARCHIVE
        if not archive.is_file():
            download(DAC_ARCHIVE_URL, archive, None)
        extract_train_txt(archive, folder / "train.txt")
        archive.unlink()
        self.verify(data_dir)


def extract_train_txt(archive: Path, destination: Path) -> Path:
    """Stream ``train.txt`` out of the challenge's ``.tar.gz`` archive, atomically.

    Raises:
        DataError: if the archive is unreadable or holds no ``train.txt``.
    """
    try:
        with tarfile.open(archive, mode="r|gz") as tar:
            for member in tar:
                if member.isfile() and Path(member.name).name == "train.txt":
                    source = tar.extractfile(member)
                    assert source is not None
                    atomic_write(destination, lambda f: shutil.copyfileobj(source, f, 16 << 20))
                    return destination
    except (OSError, tarfile.TarError, EOFError) as exc:
        raise DataError(f"cannot read the archive: {exc}", archive) from None
    raise DataError("the archive holds no train.txt", archive)


__all__ = ["CriteoFormat", "CriteoHead10k", "CriteoKaggle", "extract_train_txt"]
