"""Tabular (CTR / multi-task) data: encoded train / validation / test splits and their batches."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from recforge.data.batches import Batch, take_rows
from recforge.data.preprocessing import EncodedColumns
from recforge.data.schema import Schema


@dataclass
class TabularData:
    """Model-ready splits of a tabular dataset, with the preprocessing fitted on ``train``.

    Attributes:
        name: dataset name.
        schema: the fitted schema (table sizes known).
        train, valid, test: encoded columns of each split.
        preprocessing: the fitted preprocessing state (``Preprocessor.to_dict()``).
        info: how the splits were made (official files, seeded stratified split, ...).
    """

    name: str
    schema: Schema
    train: EncodedColumns
    valid: EncodedColumns
    test: EncodedColumns
    preprocessing: dict[str, Any]
    info: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        """Counts for ``recforge data info``: rows and positive rate per split, features, tables."""
        out: dict[str, Any] = {}
        for split in ("train", "valid", "test"):
            cols = self.split(split)
            out[f"{split} rows"] = len(cols)
            for t, task in enumerate(self.schema.labels):
                rate = float(np.nanmean(cols.labels[:, t])) if len(cols) else float("nan")
                out[f"{split} positive rate ({task})"] = f"{rate:.4f}"
        for kind in ("sparse", "dense", "sequence"):
            names = [f.name for f in getattr(self.schema, kind)]
            if names:
                out[f"{kind} features"] = f"{len(names)}: {', '.join(names)}"
        out["embedding table rows (all tables)"] = sum(f.vocab_size for f in self.schema.features if f.kind != "dense" and f.table is None)
        out["split"] = self.info.get("split", "")
        return out

    def split(self, name: str) -> EncodedColumns:
        """``train``, ``valid`` or ``test``."""
        return {"train": self.train, "valid": self.valid, "test": self.test}[name]


def to_batch(columns: EncodedColumns, rows: slice | np.ndarray | torch.Tensor | None = None) -> Batch:
    """A Batch over ``rows`` of ``columns`` (all rows if None); zero-copy for slices."""
    pick = (lambda a: a) if rows is None else (lambda a: a[rows])
    as_t = lambda a: torch.as_tensor(pick(a))  # noqa: E731
    return Batch(
        sparse_features=as_t(columns.sparse),
        labels=as_t(columns.labels),
        dense_features=as_t(columns.dense),
        sequence_features={k: as_t(v) for k, v in columns.sequences.items()},
        sequence_lengths={k: as_t(v) for k, v in columns.lengths.items()},
    )


class TensorColumns:
    """The columns of one split as torch tensors, for fast batch slicing."""

    def __init__(self, columns: EncodedColumns):
        # Memory-mapped columns (a prepared Criteo folder) are read-only; torch warns on wrapping
        # them, but nothing here writes to these tensors (shuffling gathers into new ones).
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            self.sparse = torch.from_numpy(np.ascontiguousarray(columns.sparse))
            self.dense = torch.from_numpy(np.ascontiguousarray(columns.dense))
            self.labels = torch.from_numpy(np.ascontiguousarray(columns.labels))
            self.sequences = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in columns.sequences.items()}
            self.lengths = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in columns.lengths.items()}

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def permuted(self, perm: torch.Tensor) -> "TensorColumns":
        out = object.__new__(TensorColumns)
        out.sparse, out.dense = take_rows(self.sparse, perm), take_rows(self.dense, perm)
        out.labels = take_rows(self.labels, perm)
        out.sequences = {k: take_rows(v, perm) for k, v in self.sequences.items()}
        out.lengths = {k: take_rows(v, perm) for k, v in self.lengths.items()}
        return out

    def batch(self, start: int, end: int) -> Batch:
        return Batch(
            sparse_features=self.sparse[start:end],
            labels=self.labels[start:end],
            dense_features=self.dense[start:end],
            sequence_features={k: v[start:end] for k, v in self.sequences.items()},
            sequence_lengths={k: v[start:end] for k, v in self.lengths.items()},
        )

    def batches(
        self, batch_size: int, generator: torch.Generator | None = None, shuffle: bool = True, shard: tuple[int, int] = (0, 1)
    ) -> Iterator[Batch]:
        """Batches over all rows, shuffled once per call; a trailing batch of one row is joined to
        the one before (BatchNorm cannot normalise a single row in training), so no batch has one
        row unless the split has one row.

        With ``shard = (rank, world_size)`` (data-parallel training) the global batches are the
        same as without it, for any world size (same permutation from ``generator``, same
        :func:`batch_bounds`), and this rank gets its contiguous part of each one
        (:func:`shard_bounds`: per-rank sizes differ by at most one row, every row of an epoch goes
        to exactly one rank). Only this rank's rows are gathered. A part may be empty (a global
        batch smaller than the world size): it is still yielded, so every rank steps together.

        Shape: global batches of ``batch_size`` rows (the last one the remainder); this rank's
        part of each has ``batch_size // world_size`` or one more rows.

        Raises:
            ValueError: if ``batch_size < 1`` or ``shard`` is not a rank in ``0..world_size-1``.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        rank, world = _check_shard(shard)
        perm = torch.randperm(len(self), generator=generator) if shuffle else None
        bounds = batch_bounds(len(self), batch_size)
        if world == 1:
            cols = self.permuted(perm) if perm is not None else self
            for start, end in bounds:
                yield cols.batch(start, end)
            return
        positions = torch.from_numpy(shard_positions(bounds, rank, world))
        cols = self.permuted(perm[positions] if perm is not None else positions)
        offset = 0
        for start, end in bounds:
            lo, hi = shard_bounds(end - start, rank, world)
            yield cols.batch(offset, offset + hi - lo)
            offset += hi - lo


def batch_bounds(n: int, batch_size: int) -> list[tuple[int, int]]:
    """The global batches of an epoch of ``n`` rows as ``(start, end)`` positions in the shuffled
    order: ``batch_size`` rows each, the last one the remainder, and a trailing batch of one row
    joined to the one before (see :meth:`TensorColumns.batches`). Any columns class with a
    ``batches(..., shard=)`` method must cut its epochs this way, so that a data-parallel trainer
    knows the size of the global batch each part belongs to.

    Raises:
        ValueError: if ``batch_size < 1``.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    starts = list(range(0, n, batch_size))
    if len(starts) > 1 and n - starts[-1] == 1:
        starts.pop()
    return [(start, starts[k + 1] if k + 1 < len(starts) else n) for k, start in enumerate(starts)]


def shard_bounds(n: int, rank: int, world_size: int) -> tuple[int, int]:
    """Rank ``rank``'s contiguous part ``[lo, hi)`` of ``n`` rows split over ``world_size`` ranks,
    as ``np.array_split``: the first ``n % world_size`` ranks get one row more, so part sizes
    differ by at most one, and the parts of ranks 0..world_size-1 tile ``0..n`` in order.

    Raises:
        ValueError: if ``rank`` is not in ``0..world_size-1`` or ``n < 0``.
    """
    _check_shard((rank, world_size))
    if n < 0:
        raise ValueError(f"cannot shard {n} rows")
    base, extra = divmod(n, world_size)
    lo = rank * base + min(rank, extra)
    return lo, lo + base + (1 if rank < extra else 0)


def shard_positions(bounds: list[tuple[int, int]], rank: int, world_size: int) -> np.ndarray:
    """Rank ``rank``'s positions in an epoch: its :func:`shard_bounds` part of every global batch
    ``(start, end)`` of ``bounds``, in batch order.

    Returns:
        int64 [n_r]; the positions of ranks 0..world_size-1 together hold every position of the
        batches exactly once.
    """
    if not bounds:
        return np.zeros(0, np.int64)
    starts = np.array([b[0] for b in bounds], np.int64)
    sizes = np.array([b[1] - b[0] for b in bounds], np.int64)
    base, extra = np.divmod(sizes, world_size)
    lo = rank * base + np.minimum(rank, extra)
    lengths = base + (rank < extra)
    first = starts + lo
    # position j of the output belongs to batch k = the one whose run of lengths covers j
    offsets = np.cumsum(lengths) - lengths
    return np.repeat(first - offsets, lengths) + np.arange(int(lengths.sum()), dtype=np.int64)


def _check_shard(shard: tuple[int, int]) -> tuple[int, int]:
    rank, world = (int(v) for v in shard)
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"shard must be (rank, world_size) with 0 <= rank < world_size, got {shard}")
    return rank, world
