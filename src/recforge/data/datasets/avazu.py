"""Avazu CTR (Kaggle "Click-Through Rate Prediction", 2014): mobile ad impressions and clicks.

Two registered datasets:

* ``avazu-head-10k``: the first 9,999 rows of the Kaggle ``train.csv``, as committed to the public
  repository ``Lapis-Hong/Wide-ResDNN`` (commit ``bd35aa7``, files ``data/avazu/train``: header +
  8,999 rows, and ``data/avazu/test``: the next 1,000 rows, no header, same 24 columns and labelled).
  Test = ``test`` (the official next rows); validation = a seeded stratified 1/9 of ``train``.
  All rows come from one hour (14102100): ``hour``, ``hour_of_day``, ``weekday`` and
  ``is_weekend`` are constant here, so this sample is for tests and smoke runs, not for
  reproducing published Avazu numbers.
* ``avazu``: the full Kaggle ``train.csv`` (40,428,967 rows, 2014-10-21..30). Kaggle requires a
  login, so :meth:`Avazu.download` explains how to fetch it instead of downloading. No checksum is
  published: the file is checked by its header only. Split: seeded stratified random 8:1:1, like
  the BARS/FuxiCTR ``Avazu_x4`` protocol (Zhu et al., "BARS-CTR", CIKM 2021, which reuses AutoInt's
  random 8:1:1 split with seed 2018), but not the same rows, so results are not row-identical with
  Avazu_x4; values seen once in training map to the out-of-vocabulary id (``min_count=2``, the
  ``min_categr_count=2`` of Avazu_x4).

Features (both): every column except ``id`` (an impression id, useless for prediction) and the
label ``click``, as sparse fields; plus, as FuxiCTR/BARS derive from the ``YYMMDDHH`` timestamp,
``hour_of_day`` (``HH``), ``weekday`` (0 = Monday .. 6 = Sunday; FuxiCTR's ``%w`` counts from
Sunday, which only renames the categories) and ``is_weekend``. The raw ``hour`` is kept as well.

Licence/terms: Kaggle competition data, for the competition and non-commercial research;
redistribution is not clearly allowed, so files are never copied into this package.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from recforge.data.datasets.registry import register_dataset
from recforge.data.datasets.tabular import RawSplits, TabularSource
from recforge.data.files import DataFile, FileVariant, download, open_text, resolve_data_dir, sha256
from recforge.data.readers import read_table
from recforge.data.schema import FeatureSpec, Schema
from recforge.errors import DataError, DataMissingError

WIDE_RESDNN_RAW = "https://raw.githubusercontent.com/Lapis-Hong/Wide-ResDNN/bd35aa733b683b8842daae297d1073e5d46f0eb3/data/avazu"
KAGGLE_URL = "https://www.kaggle.com/c/avazu-ctr-prediction/data"
CITATION = "Avazu, Kaggle Click-Through Rate Prediction (2014); features as in BARS/FuxiCTR Avazu_x4 (Zhu et al., CIKM 2021)"
LICENSE = "Kaggle competition terms: competition and non-commercial research use; no redistribution"

COLUMNS = (
    "id", "click", "hour", "C1", "banner_pos", "site_id", "site_domain", "site_category", "app_id",
    "app_domain", "app_category", "device_id", "device_ip", "device_model", "device_type",
    "device_conn_type", "C14", "C15", "C16", "C17", "C18", "C19", "C20", "C21",
)
#: Sparse fields: every raw column but ``id`` and ``click``, then the derived time fields.
FEATURES = COLUMNS[2:] + ("hour_of_day", "weekday", "is_weekend")


def read_avazu(path: Path, header: bool) -> pa.Table:
    """Parse one Avazu CSV file (24 comma-separated columns, all kept as strings).

    Args:
        path: plain or ``.gz`` CSV.
        header: whether the first line is the header (``train.csv``); the head sample's ``test``
            file has none.

    Returns:
        The 24 raw columns as strings (``click`` as float32 0/1), plus ``hour_of_day`` (``HH``),
        ``weekday`` (``0`` = Monday .. ``6``) and ``is_weekend`` (``0``/``1``) from ``hour``.

    Raises:
        DataError: naming the file (and line where known) for a wrong header or column count,
            a ``click`` other than 0/1, or an ``hour`` that is not ``YYMMDDHH``.
    """
    first = 2 if header else 1  # file line of data row 0
    if header:
        _check_header(path)
    table = read_table(
        path,
        f"24 comma-separated Avazu columns ({', '.join(COLUMNS)})",
        read_options=pacsv.ReadOptions(column_names=list(COLUMNS), skip_rows=1 if header else 0, block_size=1 << 26),
        convert_options=pacsv.ConvertOptions(column_types={c: pa.string() for c in COLUMNS}, strings_can_be_null=False),
        header=header,
    )
    columns = {name: table.column(name) for name in COLUMNS}
    click = columns["click"]
    bad = pc.invert(pc.is_in(click, value_set=pa.array(["0", "1"])))
    if pc.any(bad).as_py():
        row = _first_true(bad)
        raise DataError(f"click must be 0 or 1, found {click[row].as_py()!r}", path, row + first)
    columns["click"] = pc.cast(click, pa.float32())
    hour = columns["hour"]
    valid = pc.match_substring_regex(hour, r"^\d{8}$")
    if not pc.all(valid).as_py():
        row = _first_true(pc.invert(valid))
        raise DataError(f"hour must be YYMMDDHH (8 digits), found {hour[row].as_py()!r}", path, row + first)
    try:
        stamp = pc.strptime(hour, format="%y%m%d%H", unit="s")
    except pa.ArrowInvalid as exc:
        raise DataError(f"hour must be a valid YYMMDDHH date: {exc}", path) from None
    columns["hour_of_day"] = pc.utf8_slice_codeunits(hour, 6, 8)
    weekday = pc.day_of_week(stamp)  # 0 = Monday
    columns["weekday"] = pc.cast(weekday, pa.string())
    columns["is_weekend"] = pc.cast(pc.cast(pc.greater_equal(weekday, 5), pa.int8()), pa.string())
    return pa.table(columns)


def _check_header(path: Path) -> None:
    with open_text(path) as f:
        found = f.readline().rstrip("\r\n")
    if found != ",".join(COLUMNS):
        raise DataError(f"expected the Avazu header {','.join(COLUMNS)!r}, found {found[:200]!r}", path, 1)


def _first_true(mask: pa.ChunkedArray | pa.Array) -> int:
    return int(np.flatnonzero(mask.to_numpy(zero_copy_only=False))[0])


def avazu_schema(min_count: int = 1) -> Schema:
    """Every field sparse (see :data:`FEATURES`), label ``click``."""
    return Schema(features=tuple(FeatureSpec(c, min_count=min_count) for c in FEATURES), labels=("click",))


@register_dataset
class AvazuHead10k(TabularSource):
    """The first 9,999 rows of Avazu ``train.csv``: 8,999 for train/valid, the next 1,000 for test."""

    name = "avazu-head-10k"
    folder = "avazu-head-10k"
    description = "Avazu CTR, first 9,999 rows of train.csv (one hour only; tests and smoke runs)"
    citation = CITATION
    license = LICENSE
    fractions = (0.8, 0.1, 0.1)  # validation = 0.1 / 0.9 of the training file
    files = (
        DataFile(
            "training rows",
            (
                FileVariant("train", sha256("0ad2f8bc25d000a4e5120413ccb1a1b329387091ba0ceb5a342ea0ffe236dad4")),
                FileVariant("train.gz", sha256("e781de27c01b14b258bbd6289593c1909af8855b0f0b12f4d59edfcbc106b1b9")),
            ),
        ),
        DataFile(
            "test rows",
            (
                FileVariant("test", sha256("4a2c862e8bd35ba509d70321d9ebf5abf6cccf4103174474f3cd872fff268e2b")),
                FileVariant("test.gz", sha256("7074c3bc57889237604bc6011276def09d62a5d20ad715adc47075e216764ba0")),
            ),
        ),
    )

    def default_schema(self) -> Schema:
        return avazu_schema(min_count=1)

    def read(self, paths: dict[str, Path], seed: int) -> RawSplits:
        return RawSplits(
            train=read_avazu(paths["training rows"], header=True),
            test=read_avazu(paths["test rows"], header=False),
            info="first 9,999 rows of Avazu train.csv: test = the next 1,000 rows after the training file; "
            "all rows from hour 14102100, so the time fields are constant",
        )

    def download(self, data_dir: str | Path | None = None) -> None:
        folder = resolve_data_dir(data_dir) / self.folder
        for data_file in self.files:
            if data_file.locate(folder) is None:
                variant = data_file.variants[0]
                download(f"{WIDE_RESDNN_RAW}/{variant.filename}", folder / variant.filename, variant.checksum)


@register_dataset
class Avazu(TabularSource):
    """The full Avazu ``train.csv`` (40,428,967 rows), seeded stratified 8:1:1 split."""

    name = "avazu"
    folder = "avazu"
    description = "Avazu CTR, full Kaggle train.csv (40.4M rows, 10 days), random 8:1:1 split (Kaggle login needed)"
    citation = CITATION
    license = LICENSE
    fractions = (0.8, 0.1, 0.1)
    accepted = ("train.gz", "train.csv", "train.csv.gz")
    files = ()  # no published checksum: verify() checks presence and the header instead

    def how_to_get(self, folder: Path) -> str:
        return (
            f"Kaggle requires a login: accept the rules of the competition at {KAGGLE_URL}, download train.gz "
            f"(in the browser, or `kaggle competitions download -c avazu-ctr-prediction -f train.gz` with an API "
            f"token), and put it in {folder}/ (as train.gz or unpacked as train.csv); or point --data-dir / "
            f"RECFORGE_DATA_DIR at a directory holding {self.folder}/."
        )

    def verify(self, data_dir: str | Path | None = None) -> dict[str, Path]:
        """Find ``train.gz`` / ``train.csv`` and check its header (no checksum is published).

        Raises:
            DataMissingError: if the file is absent (with instructions to get it).
            DataError: if its first line is not the Avazu header.
        """
        folder = resolve_data_dir(data_dir) / self.folder
        for filename in self.accepted:
            path = folder / filename
            if path.is_file():
                _check_header(path)
                return {"training rows": path}
        names = " or ".join(self.accepted)
        raise DataMissingError(f"missing Avazu training file: expected {names} in {folder}. {self.how_to_get(folder)}")

    def default_schema(self) -> Schema:
        return avazu_schema(min_count=2)

    def read(self, paths: dict[str, Path], seed: int) -> RawSplits:
        return RawSplits(
            train=read_avazu(paths["training rows"], header=True),
            info="full Avazu train.csv (no published checksum; header checked); "
            "random split as in BARS Avazu_x4, not the same rows",
        )

    def download(self, data_dir: str | Path | None = None) -> None:
        """Kaggle data cannot be fetched without a login: always raises with instructions.

        Raises:
            DataMissingError: explaining how to get ``train.gz`` from Kaggle.
        """
        folder = resolve_data_dir(data_dir) / self.folder
        raise DataMissingError(f"the Avazu data cannot be downloaded automatically. {self.how_to_get(folder)}")
