"""Model-ready splits on disk: a two-pass streaming encoder into ``.npy`` columns, and its reader.

:func:`encode_chunks` turns any stream of raw row chunks (a Criteo-format file,
:func:`recforge.data.criteo.encode_criteo_file`; a user's own CSV / Parquet table,
:func:`recforge.data.table_encoding.encode_table_files`) into one folder per encoding, whose
splits :func:`open_encoded` memory-maps for out-of-core training
(:mod:`recforge.data.mapped_columns`). The split of a row must be decided in the fitting pass,
before the row count is known, so it is a seeded *random* split per chunk
(:func:`assign_splits`): each chunk of ``chunk_rows`` rows is split with
:func:`recforge.data.splits.stratified_split` (8:1:1 by default, stratified by the first label),
chunk 0 with ``seed`` itself. A stream of at most one chunk is therefore split exactly as
:meth:`TabularSource.load` splits it in memory.

Folder: ``{split}.sparse.npy`` ids [N, F] (int32 when every table has fewer than 2**31 rows),
``{split}.dense.npy`` float32 [N, N_dense], ``{split}.labels.npy`` float32 [N, T],
``preprocessing.json`` (the fitted state) and ``meta.json`` (name, format, info, the summary).
Sequence features have no place in it (their widths vary): an encoding refuses them.

Shape letters: N rows, F sparse fields, T tasks.
"""

from __future__ import annotations

import json
import os
import queue
import resource
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing, nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from recforge.data.preprocessing import FIRST_ID, OOV_ID, PADDING_ID, EncodedColumns, Preprocessor
from recforge.data.schema import Schema
from recforge.data.splits import stratified_split
from recforge.data.tabular import TabularData
from recforge.errors import ConfigError, DataError


def assign_splits(labels: np.ndarray, fractions: tuple[float, float, float], seed: int, chunk_index: int) -> np.ndarray:
    """Split of each row of one chunk: 0 train, 1 valid, 2 test (int8 [N]).

    A seeded stratified split of the chunk (:func:`stratified_split`); chunk 0 uses ``seed``
    itself, chunk k > 0 a seed derived from (seed, k), so the result depends only on the file,
    ``chunk_rows``, ``fractions`` and ``seed``.
    """
    chunk_seed = seed if chunk_index == 0 else int(np.random.SeedSequence([seed, chunk_index]).generate_state(1)[0])
    codes = np.zeros(len(labels), dtype=np.int8)
    for code, rows in enumerate(stratified_split(labels, fractions, chunk_seed)):
        codes[rows] = code
    return codes


@dataclass
class EncodeSummary:
    """What :func:`encode_criteo_file` did. Times in seconds, memory in bytes."""

    input: str
    output_dir: str
    rows: int
    split_rows: dict[str, int]
    positives: int
    seconds: float
    fit_seconds: float
    transform_seconds: float
    rows_per_second: float
    peak_rss_bytes: int
    sparse_dtype: str
    table_rows: int  # embedding rows over all sparse tables (0 and 1 reserved in each)
    split: str = ""
    reread: bool = True  # pass 2 read the file again (False: it reused the parsed chunks)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


SPLITS = ("train", "valid", "test")


def peak_rss_bytes() -> int:
    """Peak resident set size of this process so far (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if os.uname().sysname == "Darwin" else peak * 1024)


def encode_chunks(
    chunks: Callable[[], Iterator[pa.Table]],
    output_dir: str | Path,
    schema: Schema,
    *,
    progress: bool = False,
    seed: int = 0,
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
    name: str,
    where: str,
    source: str,
    chunk_rows: int,
    reuse_parsed_bytes: int = 1 << 30,
    expected_rows: int | None = None,
    threads: int | None = None,
    info: dict[str, Any] | None = None,
    kind: str | None = None,
) -> EncodeSummary:
    """Encode a stream of raw row chunks into model-ready ``.npy`` columns, in two passes.

    Pass 1 reads the chunks, assigns each row to train / valid / test (:func:`assign_splits`)
    and accumulates the preprocessing statistics of the *training* rows only
    (:meth:`Preprocessor.partial_fit`), then fits the vocabularies. Pass 2 encodes every chunk
    and appends its rows to the split's files. Memory is bounded by the vocabularies and one
    chunk, not by the row count; if the chunks of pass 1 took at most ``reuse_parsed_bytes``,
    pass 2 reuses them instead of reading the stream again. The folder (see the module
    docstring) is written to a temporary folder beside ``output_dir``, then renamed into place.
    The arrays are appended with plain file writes rather than through a memory map, so the
    pages written do not count towards the process's resident memory.

    Args:
        chunks: returns a new iterator over the same chunks, in the same order, each call (pass
            2 calls it again unless the chunks were kept); labels already 0/1 (NaN: missing).
        output_dir: the folder to create (replaced if it holds an earlier encoding).
        schema: the declared schema (features and labels); no sequence features.
        progress: a progress bar with rows/s on stderr.
        seed: fixes the random split.
        fractions: train, valid, test shares.
        name: the dataset name recorded in ``meta.json``.
        where: the file(s), named in errors.
        source: what ``info["source"]`` and the summary record as the input.
        chunk_rows: rows per chunk (recorded in the split's description).
        reuse_parsed_bytes: see above (0: always read twice).
        expected_rows: a stream with another row count is a DataError.
        threads: threads for encoding (default ``pyarrow.cpu_count()``); the next chunk is read
            in the background while one is being fitted or encoded.
        info: extra entries of ``meta.json``'s ``info``.
        kind: ``meta.json``'s ``kind`` (``own`` for an own table; absent for a registered dataset).

    Returns:
        An :class:`EncodeSummary` (rows, seconds, rows/s, peak resident memory).

    Raises:
        DataError: from the chunks, an empty stream or an unexpected row count.
        ConfigError: bad ``fractions``, a schema with no label or a sequence feature, or an
            ``output_dir`` that exists and is not an earlier encoding.
    """
    if schema.sequence:
        raise ConfigError(
            f"feature {schema.sequence[0].name!r} is a sequence: encoded folders hold sparse and dense features only; "
            "train a table with sequence features in memory (--data)"
        )
    started = time.perf_counter()
    output_dir = Path(output_dir)
    label = schema.labels[0] if schema.labels else None
    if label is None:
        raise ConfigError("the schema has no label column")
    if len(fractions) != 3 or any(f <= 0 for f in fractions) or abs(sum(fractions) - 1.0) > 1e-9:
        raise ConfigError(f"fractions must be three positive shares (train, valid, test) summing to 1, got {tuple(fractions)}")
    if output_dir.exists() and not (output_dir.is_dir() and ((output_dir / "meta.json").is_file() or not any(output_dir.iterdir()))):
        raise ConfigError(f"output directory {output_dir} exists and is not an encoded folder; choose another --output")
    threads = max(1, threads or pa.cpu_count())
    bar = _Bar(progress)
    with bar:
        # Pass 1: split assignment and statistics of the training rows.
        pre = Preprocessor(schema)
        counts = np.zeros(3, dtype=np.int64)
        positives = train_positives = train_known = 0
        kept: list[tuple[pa.Table, np.ndarray]] | None = [] if reuse_parsed_bytes > 0 else None
        kept_bytes = 0
        task = bar.add("fitting (pass 1 of 2)", None)
        with closing(_prefetch(chunks())) as parsed:
            for k, chunk in enumerate(parsed):
                labels = chunk.column(label).to_numpy(zero_copy_only=False).astype(np.float64)
                codes = assign_splits(labels, fractions, seed, k)
                counts += np.bincount(codes, minlength=3)
                positives += int(np.nansum(labels))
                train_labels = labels[codes == 0]
                train_known += int((~np.isnan(train_labels)).sum())
                train_positives += int(np.nansum(train_labels))
                pre.partial_fit(chunk.filter(pa.array(codes == 0)), where)
                if kept is not None:
                    kept_bytes += chunk.nbytes
                    if kept_bytes <= reuse_parsed_bytes:
                        kept.append((chunk, codes))
                    else:
                        kept = None
                bar.advance(task, chunk.num_rows)
        rows = int(counts.sum())
        if rows == 0:
            raise DataError("the file holds no rows", where)
        if expected_rows is not None and rows != expected_rows:
            raise DataError(f"expected {expected_rows:,} rows, found {rows:,}: not the complete file", where)
        if counts[0] == 0:
            raise DataError(f"no training rows: {rows} row(s) are too few to split {fractions}", where)
        if train_positives in (0, train_known):
            only = "no values" if not train_known else f"only the class {int(train_positives > 0)}"
            raise DataError(f"label {label!r} has {only} in {int(counts[0]):,} training rows; a binary label needs both 0 and 1", where)
        pre.finish()
        fit_seconds = time.perf_counter() - started
        fitted = pre.schema
        sizes = [fitted.vocab_size(f.name) for f in fitted.sparse]
        id_dtype = np.dtype(np.int32 if max(sizes, default=0) < 2**31 else np.int64)
        # Pass 2: encode and append.
        output_dir.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}.", dir=output_dir.parent))
        try:
            shapes = {"sparse": (len(fitted.sparse), id_dtype), "dense": (len(fitted.dense), np.dtype(np.float32)), "labels": (len(fitted.labels), np.dtype(np.float32))}
            files = {
                (s, kind): _npy_writer(tmp / f"{s}.{kind}.npy", (int(counts[i]), width), dtype)
                for i, s in enumerate(SPLITS) for kind, (width, dtype) in shapes.items()
            }
            encoder = _ChunkEncoder(pre, id_dtype, threads)
            # The fitted state (megabytes of JSON for big vocabularies) is written while pass 2
            # runs: json holds the GIL, the encoding mostly runs in Arrow and NumPy without it.
            background = ThreadPoolExecutor(1)
            state = background.submit(lambda: (tmp / "preprocessing.json").write_text(json.dumps(pre.to_dict())))
            try:
                task = bar.add("encoding (pass 2 of 2)", rows)
                reread = closing(_prefetch(
                    (c, assign_splits(c.column(label).to_numpy(zero_copy_only=False).astype(np.float64), fractions, seed, k))
                    for k, c in enumerate(chunks())
                )) if kept is None else nullcontext(kept)
                with reread as chunks:
                    for chunk, codes in chunks:
                        sparse, dense, labels = encoder.encode(chunk, where)
                        for i, s in enumerate(SPLITS):
                            rows_i = codes == i
                            files[s, "sparse"].write(sparse[rows_i])  # C-contiguous: written as is
                            files[s, "dense"].write(dense[rows_i])
                            files[s, "labels"].write(labels[rows_i])
                        bar.advance(task, chunk.num_rows)
            finally:
                encoder.close()
                for f in files.values():
                    f.close()
                background.shutdown(wait=True)
            state.result()
            seconds = time.perf_counter() - started
            summary = EncodeSummary(
                input=source, output_dir=str(output_dir), rows=rows,
                split_rows={s: int(counts[i]) for i, s in enumerate(SPLITS)}, positives=positives,
                seconds=seconds, fit_seconds=fit_seconds, transform_seconds=seconds - fit_seconds,
                rows_per_second=rows / seconds if seconds > 0 else float("inf"), peak_rss_bytes=peak_rss_bytes(),
                sparse_dtype=id_dtype.name, table_rows=int(sum(sizes)),
                split=f"seeded stratified random split {tuple(fractions)} per chunk of {chunk_rows:,} rows (seed {seed})",
                reread=kept is None,
            )
            info = {
                **(info or {}), "source": source, "split": summary.split, "rows": summary.split_rows,
                "positive_rate": [positives / rows], "encode_seconds": seconds, "sparse_dtype": id_dtype.name,
                "summary": summary.to_dict(),
            }
            (tmp / "meta.json").write_text(json.dumps({"name": name, "format": 1, **({"kind": kind} if kind else {}), "info": info}))
            if output_dir.exists():
                shutil.rmtree(output_dir)
            os.replace(tmp, output_dir)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return summary


class _ChunkEncoder:
    """Encodes chunks exactly as :meth:`Preprocessor.transform` does, faster for plain schemas.

    For schemas whose sparse features are plain categorical columns and whose dense features use
    the standard transforms (the default Criteo schema), the vocabularies are turned into Arrow
    value sets once, not once per chunk, the columns are encoded in a thread pool (Arrow and
    NumPy release the GIL) and ids are written straight into an array of the storage dtype. Any
    other schema (buckets, crosses, sequences) goes through ``Preprocessor.transform``. The
    results are identical (the tests compare them).
    """

    def __init__(self, pre: Preprocessor, id_dtype: np.dtype, threads: int):
        self.pre, self.id_dtype = pre, id_dtype
        schema = pre.schema
        self.sparse = [f.name for f in schema.sparse]
        self.dense = list(schema.dense)
        self.fast = (
            not schema.sequence and len(schema.labels) == 1
            and all(not f.cross and f.bucketize is None and f.table is None and f.source is None for f in schema.sparse)
            and all(f.source is None for f in schema.dense)
        )
        # Known values, then null and "": missing keys find one of the last two slots.
        self.value_sets = {
            name: pa.array([*pre.vocabularies[name].values, None, ""], pa.string()) for name in self.sparse
        } if self.fast else {}
        self.pool = ThreadPoolExecutor(threads) if self.fast and threads > 1 else None

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown()

    def encode(self, table: pa.Table, where: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """sparse ids [N, F] (storage dtype), dense float32 [N, N_dense], labels float32 [N, 1]."""
        if not self.fast or any(not _is_string(table.column(n).type) for n in self.sparse):
            encoded = self.pre.transform(table, where)
            return encoded.sparse.astype(self.id_dtype), encoded.dense, encoded.labels
        n = table.num_rows
        sparse = np.empty((n, len(self.sparse)), dtype=self.id_dtype)
        dense = np.empty((n, len(self.dense)), dtype=np.float32)

        def encode_sparse(j: int) -> None:
            value_set = self.value_sets[self.sparse[j]]
            index = pc.index_in(table.column(self.sparse[j]), value_set=value_set, skip_nulls=False)
            column = sparse[:, j]
            np.add(pc.fill_null(index, OOV_ID - FIRST_ID).to_numpy(), FIRST_ID, out=column, casting="unsafe")
            column[column >= len(value_set) - 2 + FIRST_ID] = PADDING_ID  # null or ""

        def encode_dense(j: int) -> None:
            spec = self.dense[j]
            values = pc.cast(table.column(spec.name), pa.float64()).to_numpy()  # null -> NaN
            if spec.transform in ("log1p", "log1p_standardize"):
                values = np.log1p(np.maximum(values, 0.0))
            if spec.transform in ("standardize", "log1p_standardize"):
                stats = self.pre.numeric[spec.name]
                values = (values - stats["mean"]) / stats["std"]
            dense[:, j] = np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0)

        jobs = [(encode_sparse, j) for j in range(len(self.sparse))] + [(encode_dense, j) for j in range(len(self.dense))]
        if self.pool is None:
            for fn, j in jobs:
                fn(j)
        else:
            for future in [self.pool.submit(fn, j) for fn, j in jobs]:
                future.result()
        labels = pc.cast(table.column(self.pre.schema.labels[0]), pa.float32()).to_numpy()
        return sparse, dense, labels.reshape(n, 1)


def _is_string(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t)


def _npy_writer(path: Path, shape: tuple[int, int], dtype: np.dtype) -> IO[bytes]:
    """An open ``.npy`` file whose header declares ``shape``; the caller appends the rows in C order."""
    f = open(path, "wb")  # noqa: SIM115 - closed by the caller
    np.lib.format.write_array_header_1_0(f, {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": shape})
    return f


def read_meta(folder: Path, how: str) -> dict[str, Any]:
    """The ``meta.json`` of an encoded folder.

    Args:
        folder: the folder.
        how: how to write one (ends the error messages).

    Raises:
        ConfigError: no such folder, no ``meta.json``, or one without ``"format": 1``.
        DataError: a ``meta.json`` that does not parse.
    """
    if not folder.is_dir():
        raise ConfigError(f"data.encoded {folder}: no such folder; {how}")
    meta_file = folder / "meta.json"
    if not meta_file.is_file():
        raise ConfigError(f"data.encoded {folder} is not an encoded folder (no meta.json); {how}")
    try:
        meta = json.loads(meta_file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"not a readable meta.json ({exc})", meta_file) from None
    if not isinstance(meta, dict) or meta.get("format") != 1 or not isinstance(meta.get("name"), str):
        raise ConfigError(f"data.encoded {folder} is not an encoded folder (its meta.json has no \"format\": 1 and name); {how}")
    return meta


def open_encoded(folder: str | Path, mmap: bool = True) -> TabularData:
    """Open a folder written by :func:`encode_chunks` as :class:`TabularData`.

    Args:
        folder: the output folder.
        mmap: memory-map the arrays (read-only) instead of reading them into memory.

    Returns:
        TabularData whose sparse arrays keep their stored dtype (int32 for Criteo); convert
        batches with ``.long()`` (``torch.nn.Embedding`` accepts int32 too).

    Raises:
        DataError: if the folder is incomplete.
    """
    folder = Path(folder)
    try:
        meta = json.loads((folder / "meta.json").read_text())
        state = json.loads((folder / "preprocessing.json").read_text())
        splits = {}
        for s in SPLITS:
            arrays = {k: np.load(folder / f"{s}.{k}.npy", mmap_mode="r" if mmap else None, allow_pickle=False) for k in ("sparse", "dense", "labels")}
            splits[s] = EncodedColumns.from_arrays(arrays)
    except (OSError, ValueError, KeyError) as exc:
        raise DataError(f"not a complete encoded folder: {exc}", folder) from None
    pre = Preprocessor.from_dict(state)
    return TabularData(meta["name"], pre.schema, splits["train"], splits["valid"], splits["test"], state, meta["info"])


def _prefetch(items: Iterator[Any]) -> Iterator[Any]:
    """Iterate ``items`` one step ahead in a background thread (reading overlaps the caller's work).

    Exceptions raised by ``items`` are raised here, in order; closing this generator stops the thread.
    """
    slots: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=1)
    stop = threading.Event()

    def put(entry: tuple[str, Any]) -> bool:
        while not stop.is_set():
            try:
                slots.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for item in items:
                if not put(("item", item)):
                    return
            put(("done", None))
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            put(("error", exc))
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()

    worker = threading.Thread(target=work, name="recforge-chunk-reader", daemon=True)
    worker.start()
    try:
        while True:
            kind, item = slots.get()
            if kind == "done":
                return
            if kind == "error":
                raise item
            yield item
    finally:
        stop.set()
        worker.join()


class _Bar:
    """A rich progress bar showing rows and rows/s on stderr, or nothing."""

    def __init__(self, enabled: bool):
        self.progress = None
        if enabled:
            from rich.console import Console
            from rich.progress import BarColumn, Progress, ProgressColumn, TextColumn, TimeElapsedColumn
            from rich.text import Text

            class RowsPerSecond(ProgressColumn):
                def render(self, task: Any) -> Text:
                    speed = task.finished_speed or task.speed
                    return Text(f"{speed:,.0f} rows/s" if speed else "", style="progress.data.speed")

            self.progress = Progress(
                TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed:,.0f} rows"),
                RowsPerSecond(), TimeElapsedColumn(), console=Console(stderr=True),
            )

    def __enter__(self) -> "_Bar":
        if self.progress is not None:
            self.progress.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.progress is not None:
            self.progress.stop()

    def add(self, description: str, total: int | None) -> Any:
        return None if self.progress is None else self.progress.add_task(description, total=total)

    def advance(self, task: Any, rows: int) -> None:
        if self.progress is not None:
            self.progress.advance(task, rows)


