"""Base class of tabular (CTR and multi-task) datasets: raw tables -> fitted preprocessing -> cache.

A source reads its verified files into raw PyArrow tables (train / valid / test, or one table to
split), declares its default schema, and this class does the rest: a seeded stratified split
where the files have none, preprocessing fitted on the training split only, and a cache of the
encoded columns (``.npy``) keyed by the files' content (:func:`recforge.data.fingerprint.cache_key`),
the schema, the split and ``CACHE_FORMAT``, so a second run skips parsing and encoding and an edited
file is never served from an old encoding.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa

from recforge.data.datasets.registry import DatasetSource
from recforge.data.files import resolve_cache_dir
from recforge.data.fingerprint import cache_key
from recforge.data.leakage import audit_leakage, refuse_label_leaks
from recforge.data.preprocessing import EncodedColumns, Preprocessor, label_values
from recforge.data.schema import Schema
from recforge.data.splits import stratified_split
from recforge.data.tabular import TabularData

CACHE_FORMAT = 2  # 2: keyed on file content (recforge.data.fingerprint), not name and size
SPLITS = ("train", "valid", "test")


@dataclass
class RawSplits:
    """Raw tables from a source. ``valid`` / ``test`` may be None: they are then carved out of
    ``train`` by a seeded stratified split (``fractions`` of the rows)."""

    train: pa.Table
    valid: pa.Table | None = None
    test: pa.Table | None = None
    info: str = ""


class TabularSource(DatasetSource):
    """A dataset of feature rows with one or more binary labels.

    Subclasses set ``files`` etc. (see :class:`DatasetSource`), implement :meth:`read` and
    :meth:`default_schema`, and may set ``fractions`` (train, valid, test) for random splits.
    """

    kind: ClassVar[str] = "tabular"
    fractions: ClassVar[tuple[float, float, float]] = (0.8, 0.1, 0.1)
    #: raw column whose values group rows for GAUC (the user); carried as ``EncodedColumns.groups``
    group_column: ClassVar[str | None] = None
    #: label -> raw columns it is derived from (for example ``income`` <- ``income_bracket``); no
    #: feature may read them (nor the label column itself), see :func:`refuse_label_leaks`
    label_sources: ClassVar[dict[str, tuple[str, ...]]] = {}

    def default_schema(self) -> Schema:
        """The declared features and labels (sizes unknown until fitted)."""
        raise NotImplementedError

    def read(self, paths: dict[str, Path], seed: int) -> RawSplits:
        """Parse the verified files into raw tables (one column per raw field, labels as 0/1)."""
        raise NotImplementedError

    def cache_parts(self) -> tuple[Any, ...]:
        """Further JSON-safe values the encoded cache depends on (an own file's reading options)."""
        return ()

    def build(self, paths: dict[str, Path], seed: int) -> Any:  # pragma: no cover - tabular uses load()
        raise NotImplementedError("tabular datasets are built by load()")

    def load(  # type: ignore[override]
        self,
        data_dir: str | Path | None = None,
        seed: int = 0,
        use_cache: bool = True,
        schema: Schema | None = None,
    ) -> TabularData:
        """Verify the files, then read, split and encode them (or read the encoded cache).

        Args:
            data_dir: the data directory (default: ``RECFORGE_DATA_DIR`` or the user data folder).
            seed: fixes the random split where the files have none.
            use_cache: read/write the encoded columns under the cache directory.
            schema: a declared schema replacing :meth:`default_schema`.

        Raises:
            DataMissingError, DataError: missing, corrupt or malformed files, or a schema naming
                a column the data does not have.
        """
        paths = self.verify(data_dir)
        schema = schema or self.default_schema()
        refuse_label_leaks(schema, self.label_sources, self.name)  # before reading or a cache hit
        key = cache_key(CACHE_FORMAT, self.name, seed, self.fractions, schema.to_dict(), *self.cache_parts(), paths=paths)
        cache = resolve_cache_dir() / "tabular" / f"{self.name}-{key}"
        if use_cache and (cache / "meta.json").is_file():
            try:
                return audit_leakage(_read_cache(cache))  # re-emits the leakage warnings
            except Exception:  # noqa: BLE001 - a damaged cache is rebuilt
                warnings.warn(f"ignoring unreadable cache {cache}; rebuilding it", stacklevel=2)
        data = self.encode(self.read(paths, seed), schema, seed, where=str(next(iter(paths.values()))))  # the file, not its folder
        if use_cache:
            try:
                _write_cache(cache, data)
            except OSError as exc:
                warnings.warn(f"could not write cache {cache}: {exc}", stacklevel=2)
        return data

    def encode(self, raw: RawSplits, schema: Schema, seed: int, where: str = "") -> TabularData:
        """Split (where needed), fit preprocessing on the training rows, encode every split.

        Label leakage is checked on both sides of the encoding (:mod:`recforge.data.leakage`):
        first the schema, then each feature's AUC alone on the validation rows, kept in
        ``info["single_feature_auc"]`` / ``info["leakage_warnings"]`` and warned about.

        Raises:
            ConfigError: a feature reads a label column or a column in :attr:`label_sources`.
            DataError: a missing or non-binary label, or a schema naming a missing column.
        """
        refuse_label_leaks(schema, self.label_sources, self.name)  # before any work on the rows
        started = time.perf_counter()
        tables = {"train": raw.train, "valid": raw.valid, "test": raw.test}
        info: dict[str, Any] = {"source": raw.info}
        info["raw_columns"] = raw.train.column_names  # what a schema can name; `recforge data info` lists it
        missing = [s for s in SPLITS if tables[s] is None]
        for label in schema.labels:  # a clear error for a missing or non-binary label, before anything else
            label_values(raw.train, label, where)
        if missing:
            base = raw.train
            labels = label_values(base, schema.labels[0], where).astype(np.float64)
            if missing == ["valid", "test"]:
                parts = stratified_split(labels, self.fractions, seed)
                tables.update(train=base.take(parts[0]), valid=base.take(parts[1]), test=base.take(parts[2]))
                info["split"] = f"seeded stratified random split {self.fractions} of the rows (seed {seed})"
            elif missing == ["valid"]:
                share = self.fractions[1] / (self.fractions[0] + self.fractions[1])
                parts = stratified_split(labels, (1 - share, share), seed)
                tables.update(train=base.take(parts[0]), valid=base.take(parts[1]))
                info["split"] = f"official test split; validation = seeded stratified {share:.3f} of the training rows (seed {seed})"
            else:
                raise ValueError(f"{self.name}: cannot derive {missing} from the training table")
        else:
            info["split"] = "official train / validation / test files"
        pre = Preprocessor(schema)
        encoded = {"train": pre.fit_transform(tables["train"], where)}  # type: ignore[arg-type]
        encoded.update({s: pre.transform(tables[s], where) for s in SPLITS if s != "train"})  # type: ignore[arg-type]
        if self.group_column is not None:
            for s in SPLITS:
                column = tables[s].column(self.group_column)  # type: ignore[union-attr]
                encoded[s].groups = np.asarray(column.to_numpy(zero_copy_only=False)).astype(np.int64)
            info["group_column"] = self.group_column
        info["rows"] = {s: len(encoded[s]) for s in SPLITS}
        info["positive_rate"] = {
            s: [float(np.nanmean(encoded[s].labels[:, t])) if len(encoded[s]) else float("nan") for t in range(len(schema.labels))]
            for s in SPLITS
        }
        data = TabularData(self.name, pre.schema, encoded["train"], encoded["valid"], encoded["test"], pre.to_dict(), info)
        audit_leakage(data)
        info["encode_seconds"] = time.perf_counter() - started
        return data


def _write_cache(folder: Path, data: TabularData) -> None:
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        for split in SPLITS:
            for name, array in data.split(split).arrays().items():
                np.save(tmp / f"{split}.{name}.npy", array, allow_pickle=False)
        (tmp / "preprocessing.json").write_text(json.dumps(data.preprocessing))
        (tmp / "meta.json").write_text(json.dumps({"name": data.name, "info": data.info}))
        if folder.exists():
            shutil.rmtree(folder, ignore_errors=True)
        os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _read_cache(folder: Path) -> TabularData:
    meta = json.loads((folder / "meta.json").read_text())
    state = json.loads((folder / "preprocessing.json").read_text())
    splits = {}
    for split in SPLITS:
        arrays = {p.name[len(split) + 1 : -4]: np.load(p, allow_pickle=False) for p in folder.glob(f"{split}.*.npy")}
        splits[split] = EncodedColumns.from_arrays(arrays)
    schema = Preprocessor.from_dict(state).schema
    return TabularData(meta["name"], schema, splits["train"], splits["valid"], splits["test"], state, meta["info"])
