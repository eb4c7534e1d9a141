"""The dataset registry and the base class every dataset source implements."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import ClassVar

import numpy as np

from recforge.data.files import DataFile, atomic_write, resolve_cache_dir, resolve_data_dir, verify
from recforge.data.fingerprint import cache_key
from recforge.data.interactions import LeaveOneOutData
from recforge.errors import UnknownNameError

CACHE_FORMAT = 2  # 2: keyed on file content (recforge.data.fingerprint), not name and size


class DatasetSource:
    """A named dataset: its files, how to verify and parse them, and how to download them.

    Subclasses set the class attributes and implement :meth:`build`; :meth:`load` adds checksum
    verification and a cache of the prepared split keyed by the verified files' content
    (:func:`recforge.data.fingerprint.cache_key`), the seed, the recforge version and
    ``CACHE_FORMAT`` (bump it whenever split or sampling code changes).
    """

    name: ClassVar[str]
    folder: ClassVar[str]
    description: ClassVar[str]
    files: ClassVar[tuple[DataFile, ...]]
    citation: ClassVar[str] = ""
    license: ClassVar[str] = ""

    def how_to_get(self, folder: Path) -> str:
        return (
            f"Run `recforge data prepare {self.name} --download` to fetch it (needs internet), "
            f"or point --data-dir / RECFORGE_DATA_DIR at a directory holding {self.folder}/."
        )

    def verify(self, data_dir: str | Path | None = None) -> dict[str, Path]:
        """Check the files; returns role -> path. Raises DataMissingError / DataError."""
        folder = resolve_data_dir(data_dir) / self.folder
        return verify(folder, self.files, self.how_to_get(folder))

    def build(self, paths: dict[str, Path], seed: int) -> LeaveOneOutData:
        """Parse verified files into a split (no validation hold-out yet)."""
        raise NotImplementedError

    def download(self, data_dir: str | Path | None = None) -> None:
        """Fetch the files from their official source into the data directory."""
        raise NotImplementedError

    def load(self, data_dir: str | Path | None = None, seed: int = 0, use_cache: bool = True) -> LeaveOneOutData:
        """Verify, then build the split or read it from the cache.

        Args:
            data_dir: the data directory (default: ``RECFORGE_DATA_DIR`` or the user data folder).
            seed: fixes sampled test negatives and random hold-outs (ignored by fixed splits).
            use_cache: read/write the prepared split under the cache directory.

        Raises:
            DataMissingError, DataError: missing, corrupt or malformed files.
        """
        paths = self.verify(data_dir)
        digest = cache_key(CACHE_FORMAT, self.name, seed, paths=paths)
        cache = resolve_cache_dir() / "splits" / f"{self.name}-{digest}.npz"
        if use_cache and cache.is_file():
            try:
                return _from_npz(cache)
            except Exception:  # noqa: BLE001 - any damaged cache (truncated zip, bad arrays) is rebuilt
                warnings.warn(f"ignoring unreadable cache {cache}; rebuilding it", stacklevel=2)
        data = self.build(paths, seed)
        if use_cache:
            try:
                atomic_write(cache, lambda f: np.savez(f, **_to_arrays(data)))
            except OSError as exc:
                warnings.warn(f"could not write cache {cache}: {exc}", stacklevel=2)
        return data


def split_arrays(data: LeaveOneOutData) -> dict[str, np.ndarray]:
    """The arrays of a leave-one-out split, as saved in its ``.npz`` cache (:func:`split_fields` reads them)."""
    return _to_arrays(data)


def split_fields(z: "np.lib.npyio.NpzFile") -> dict[str, object]:
    """The :class:`LeaveOneOutData` fields of an opened ``.npz`` cache written from :func:`split_arrays`."""
    return {
        "name": str(z["name"]),
        "num_users": int(z["shape"][0]),
        "num_items": int(z["shape"][1]),
        "train_users": z["train_users"],
        "train_items": z["train_items"],
        "test_users": z["test_users"],
        "test_candidates": z["test_candidates"],
    }


def _to_arrays(data: LeaveOneOutData) -> dict[str, np.ndarray]:
    return {
        "name": np.array(data.name),
        "shape": np.array([data.num_users, data.num_items]),
        "train_users": data.train_users,
        "train_items": data.train_items,
        "test_users": data.test_users,
        "test_candidates": data.test_candidates,
    }


def _from_npz(path: Path) -> LeaveOneOutData:
    with np.load(path, allow_pickle=False) as z:
        return LeaveOneOutData(**split_fields(z))  # type: ignore[arg-type]


DATASETS: dict[str, type[DatasetSource]] = {}


def register_dataset(cls: type[DatasetSource]) -> type[DatasetSource]:
    """Class decorator adding a dataset source to the registry under ``cls.name``."""
    if cls.name in DATASETS:
        raise ValueError(f"dataset {cls.name!r} registered twice")
    DATASETS[cls.name] = cls
    return cls


def get_dataset(name: str) -> DatasetSource:
    """The dataset source registered as ``name``.

    Raises:
        UnknownNameError: listing the registered names.
    """
    if name not in DATASETS:
        raise UnknownNameError("dataset", name, DATASETS)
    return DATASETS[name]()


