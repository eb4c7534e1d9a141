"""Out-of-core CTR columns: batches read from memory-mapped ``.npy`` columns in large blocks.

:class:`MappedColumns` has the interface the pointwise trainer and
:func:`recforge.evaluation.protocols.score_rows` use from
:class:`~recforge.data.tabular.TensorColumns` (``len``, ``batch(start, end)``,
``batches(batch_size, generator, shuffle, shard)``, ``labels``) without ever holding a split in
memory: an epoch reads the rows one buffer at a time in the block-shuffled order of
:mod:`recforge.data.row_order`, and scoring reads each batch's rows when it is asked for.

Why positional file reads rather than indexing the memory map: pages touched through a mapping
count in the process's resident set (RSS) until the kernel reclaims them, so one pass over a 7 GB
mapped split shows a 7 GB RSS on a machine with free memory; ``readinto`` at an offset goes
through the page cache, which is not the process's memory. Peak memory is then about one buffer
(``buffer_rows`` x the bytes of a row: 160 B for Criteo's 26 int32 ids, 13 float32 numbers and a
label, so 160 MiB for the default 1 Mi-row buffer) plus the batch being gathered, whatever the
file size. The ``labels`` tensor alone stays a view of the mapping (4 B a row; the trainer reads
the validation and test labels whole to compute AUC).

Reads are synchronous: a 160 MiB buffer reads in well under a second (from the page cache, or a
few seconds from disk), while a CPU trains on it for tens of seconds; a read-ahead thread would
pay off only at GPU speeds (about 1 M rows/s).
"""

from __future__ import annotations

import math
import mmap
import warnings
from collections.abc import Iterator
from contextlib import ExitStack
from typing import IO

import numpy as np
import torch

from recforge.data.batches import Batch
from recforge.data.preprocessing import EncodedColumns
from recforge.data.row_order import BLOCK_ROWS, BUFFER_ROWS, SHUFFLES, block_order
from recforge.data.tabular import TensorColumns, batch_bounds, shard_bounds
from recforge.errors import ConfigError, DataError

AUTO_BLOCK_MIN_ROWS = 2_000_000  # ``shuffle: auto`` block-shuffles memory-mapped splits larger than this


class _Column:
    """One column ([N, ...] array) read by contiguous row ranges.

    A C-ordered ``np.memmap`` that maps a file (``np.load(..., mmap_mode="r")``) is read with
    positional file reads; any other array (in memory, a view of a map, Fortran order, a
    copy-on-write map) by slicing.
    """

    def __init__(self, array: np.ndarray):
        self.array = array
        self.row_shape = tuple(array.shape[1:])
        self.dtype = array.dtype
        self.row_bytes = array.dtype.itemsize * math.prod(self.row_shape)
        # A copy-on-write map ("c") may hold changes the file does not; shared maps read as the file.
        mapped = isinstance(array, np.memmap) and isinstance(array.base, mmap.mmap) and array.flags.c_contiguous and array.mode != "c"
        self.path = str(array.filename) if mapped and array.filename else None
        self.offset = int(array.offset) if self.path else 0

    def empty(self, rows: int) -> np.ndarray:
        return np.empty((rows, *self.row_shape), dtype=self.dtype)

    def read(self, start: int, stop: int, out: np.ndarray, handle: IO[bytes] | None) -> None:
        """Rows ``start .. stop - 1`` into ``out`` (a C-contiguous [stop - start, ...] array)."""
        if handle is None or stop <= start:
            np.copyto(out, self.array[start:stop])
            return
        view = memoryview(out).cast("B")
        handle.seek(self.offset + start * self.row_bytes)
        done = 0
        while done < len(view):
            got = handle.readinto(view[done:])
            if not got:
                raise DataError(f"the file ended {len(view) - done} bytes early reading rows {start}..{stop - 1} (truncated after mapping?)", self.path)
            done += got


class MappedColumns:
    """The columns of one split read in blocks from memory-mapped ``.npy`` files (or any arrays).

    Args:
        columns: the split (``open_encoded(folder, mmap=True)`` gives ``np.memmap`` columns).
        block_rows: rows per contiguous read and unit of the block permutation.
        buffer_rows: rows permuted together; the memory bound (rounded down to whole blocks).

    Shape: batches hold sparse_features [B, F] (stored dtype: int32 for Criteo), dense_features
    float32 [B, N], labels float32 [B, T], sequences [B, L] and lengths [B] as stored.

    Raises:
        ValueError: if ``block_rows`` or ``buffer_rows`` is < 1.
    """

    def __init__(self, columns: EncodedColumns, block_rows: int = BLOCK_ROWS, buffer_rows: int = BUFFER_ROWS):
        if block_rows < 1 or buffer_rows < 1:
            raise ValueError(f"block_rows and buffer_rows must be >= 1, got {block_rows} and {buffer_rows}")
        self.block_rows, self.buffer_rows = int(block_rows), int(buffer_rows)
        arrays = columns.arrays()
        arrays.pop("groups", None)  # GAUC's users are read by the caller from the EncodedColumns
        self._columns = {name: _Column(a) for name, a in arrays.items()}
        self._n = len(columns)

    def __len__(self) -> int:
        return self._n

    @property
    def labels(self) -> torch.Tensor:
        """float32 [N, T]: every label, a zero-copy view of the (mapped) column."""
        with warnings.catch_warnings():  # read-only map; nothing writes through this view
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            return torch.from_numpy(self._columns["labels"].array)

    def batch(self, start: int, end: int) -> Batch:
        """Rows ``start .. end - 1`` (``end`` clipped to ``len(self)``), read from the files now."""
        start, end = max(0, start), max(start, min(end, self._n))
        out = {name: col.empty(end - start) for name, col in self._columns.items()}
        with ExitStack() as files:
            handles = self._open(files)
            for name, col in self._columns.items():
                col.read(start, end, out[name], handles[name])
        return _to_batch(out)

    def batches(
        self, batch_size: int, generator: torch.Generator | None = None, shuffle: bool = True, shard: tuple[int, int] = (0, 1)
    ) -> Iterator[Batch]:
        """One epoch of batches in block-shuffled order (:func:`recforge.data.row_order.block_order`).

        Every row comes exactly once; the global batches are ``batch_size`` rows of the epoch
        order, a trailing batch of one row joined to the one before (as ``TensorColumns``). With
        ``shard=(rank, world)`` the global batches are the same for any ``world``, and this
        process yields only its contiguous near-equal part of each (``np.array_split`` of the
        batch: the first ``B % world`` ranks one row more; a part may be empty), so all ranks
        yield the same number of batches. Every rank reads each buffer whole (the rows of its part
        are spread over the buffer) but gathers only its part.

        Args:
            batch_size: rows per global batch.
            generator: torch RNG of the data order (None: the global one); one epoch's draws.
            shuffle: False reads the rows in file order.
            shard: (rank, world).

        Yields:
            Batches that own their memory (they stay valid after the iteration moves on).

        Raises:
            ValueError: if ``batch_size < 1`` or ``shard`` is not ``0 <= rank < world``.
        """
        rank, world = shard
        if world < 1 or not 0 <= rank < world:
            raise ValueError(f"shard must be (rank, world_size) with 0 <= rank < world_size, got {shard}")
        # The global batches and each rank's part exactly as TensorColumns cuts them.
        parts = [(start, shard_bounds(end - start, rank, world)) for start, end in batch_bounds(self._n, batch_size)]
        return self._epoch([s + lo for s, (lo, _) in parts], [s + hi for s, (_, hi) in parts], generator, shuffle)

    def _epoch(self, seg_start: list[int], seg_end: list[int], generator: torch.Generator | None, shuffle: bool) -> Iterator[Batch]:
        n, block = self._n, self.block_rows
        capacity = min(max(1, self.buffer_rows // block) * block, n)
        buffers = {name: col.empty(capacity) for name, col in self._columns.items()}
        k, pending, position = 0, [], 0
        with ExitStack() as files:
            handles = self._open(files)
            for buf in block_order(n, generator, shuffle, block, self.buffer_rows):
                self._fill(buffers, buf.blocks, handles)
                end = position + buf.size
                while k < len(seg_start):
                    lo, hi = max(seg_start[k], position), min(seg_end[k], end)
                    if lo < hi:
                        idx = slice(lo - position, hi - position) if buf.rows is None else buf.rows[lo - position : hi - position]
                        pending.append({name: _take(b, idx) for name, b in buffers.items()})
                    if seg_end[k] > end:
                        break
                    yield _to_batch(_join(pending, self._columns))
                    pending, k = [], k + 1
                position = end

    def _fill(self, buffers: dict[str, np.ndarray], blocks: np.ndarray, handles: dict[str, IO[bytes] | None]) -> None:
        """Read ``blocks`` (in that order) into the front of ``buffers``; runs of adjacent blocks in one read each."""
        n, block = self._n, self.block_rows
        at, i = 0, 0
        while i < len(blocks):
            j = i + 1
            while j < len(blocks) and blocks[j] == blocks[j - 1] + 1:
                j += 1
            start, stop = int(blocks[i]) * block, min(int(blocks[j - 1] + 1) * block, n)
            for name, col in self._columns.items():
                col.read(start, stop, buffers[name][at : at + stop - start], handles[name])
            at, i = at + stop - start, j

    def _open(self, files: ExitStack) -> dict[str, IO[bytes] | None]:
        try:
            return {name: files.enter_context(open(col.path, "rb", buffering=0)) if col.path else None for name, col in self._columns.items()}
        except OSError as exc:
            raise DataError(f"cannot read a mapped column: {exc.strerror}", exc.filename) from None


def _take(array: np.ndarray, rows: slice | np.ndarray) -> np.ndarray:
    return array[rows].copy() if isinstance(rows, slice) else np.take(array, rows, axis=0)


def _join(parts: list[dict[str, np.ndarray]], columns: dict[str, _Column]) -> dict[str, np.ndarray]:
    if len(parts) == 1:
        return parts[0]
    if not parts:
        return {name: col.empty(0) for name, col in columns.items()}
    return {name: np.concatenate([p[name] for p in parts]) for name in columns}


def _to_batch(arrays: dict[str, np.ndarray]) -> Batch:
    t = torch.from_numpy
    return Batch(
        sparse_features=t(arrays["sparse"]),
        labels=t(arrays["labels"]),
        dense_features=t(arrays["dense"]),
        sequence_features={k[4:]: t(v) for k, v in arrays.items() if k.startswith("seq.")},
        sequence_lengths={k[4:]: t(v) for k, v in arrays.items() if k.startswith("len.")},
    )


def is_memory_mapped(columns: EncodedColumns) -> bool:
    """Whether any column of the split is a ``np.memmap`` (``open_encoded(folder, mmap=True)``)."""
    return any(isinstance(a, np.memmap) for a in columns.arrays().values())


def split_columns(
    columns: EncodedColumns, shuffle: str = "auto", block_rows: int = BLOCK_ROWS, buffer_rows: int = BUFFER_ROWS
) -> TensorColumns | MappedColumns:
    """The batch source the trainer uses for one split, as ``train.shuffle`` asks.

    Args:
        columns: the split.
        shuffle: ``full`` (:class:`TensorColumns`: the split in memory, a full permutation per
            epoch), ``block`` (:class:`MappedColumns`: bounded memory, block-shuffled order), or
            ``auto``: ``block`` for a memory-mapped split of more than :data:`AUTO_BLOCK_MIN_ROWS`
            rows (the full Criteo file), else ``full``.
        block_rows, buffer_rows: the block shuffle's sizes (see :class:`MappedColumns`).

    Raises:
        ConfigError: for another ``shuffle`` value.
    """
    if shuffle not in SHUFFLES:
        raise ConfigError(f"train.shuffle must be one of {', '.join(SHUFFLES)}, got {shuffle!r}")
    if shuffle == "block" or (shuffle == "auto" and len(columns) > AUTO_BLOCK_MIN_ROWS and is_memory_mapped(columns)):
        return MappedColumns(columns, block_rows, buffer_rows)
    return TensorColumns(columns)
