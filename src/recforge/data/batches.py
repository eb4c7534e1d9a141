"""The Batch that every model consumes, and a shuffling iterator over columnar arrays.

Batches are contiguous slices of arrays permuted once per epoch, never a per-row
``Dataset.__getitem__``: on 2 CPU cores the per-row Python path costs more than the model.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor


def _empty_dense(n: int) -> Tensor:
    return torch.empty((n, 0), dtype=torch.float32)


def take_rows(table: Tensor, rows: Tensor) -> Tensor:
    """``table[rows]`` along the first dimension: the same values, gathered faster on CPU.

    A random gather of millions of rows is bound by cache misses, and torch's advanced
    indexing pays more per row than NumPy's ``take``: for the 4.97 M (user, item) pairs of an
    NCF epoch, ``pairs[perm]`` took 525 ms, ``index_select`` 187 ms and ``np.take`` 66 ms on
    this project's 2-core machine (one thread). CPU tensors of NumPy dtypes go through
    ``np.take``; anything else (CUDA, bfloat16) through ``index_select``.

    Args:
        table: [N, ...] tensor.
        rows: int64 [M] row indices in ``0..N-1``.

    Returns:
        A new contiguous [M, ...] tensor, equal to ``table[rows]``.

    Raises:
        IndexError: if an index is out of range.
    """
    if table.device.type == "cpu" and rows.device.type == "cpu" and table.dtype != torch.bfloat16:
        return torch.from_numpy(np.take(table.numpy(), rows.numpy(), axis=0))
    return table.index_select(0, rows.to(table.device))


@dataclass(frozen=True)
class Batch:
    """A batch of examples.

    Attributes:
        sparse_features: int64 [B, F], one id per categorical field (column order of the Schema).
        labels: float32 [B, T], one column per task; NaN marks a missing label.
        dense_features: float32 [B, N] numeric fields (N may be 0).
        sequence_features: name -> int64 [B, L] padded behaviour sequences, 0 = padding.
        sequence_lengths: name -> int64 [B].
    """

    sparse_features: Tensor
    labels: Tensor
    dense_features: Tensor = field(default_factory=lambda: _empty_dense(0))
    sequence_features: dict[str, Tensor] = field(default_factory=dict)
    sequence_lengths: dict[str, Tensor] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.sparse_features.shape[0])

    def tensors(self) -> list[Tensor]:
        """Every tensor of the batch (features, lengths, labels)."""
        return [self.sparse_features, self.labels, self.dense_features, *self.sequence_features.values(), *self.sequence_lengths.values()]

    def map(self, fn: Callable[[Tensor], Tensor]) -> "Batch":
        """A batch of ``fn(tensor)`` for every tensor of this one (features, lengths, labels)."""
        return Batch(
            sparse_features=fn(self.sparse_features),
            labels=fn(self.labels),
            dense_features=fn(self.dense_features),
            sequence_features={k: fn(v) for k, v in self.sequence_features.items()},
            sequence_lengths={k: fn(v) for k, v in self.sequence_lengths.items()},
        )

    def pin_memory(self) -> "Batch":
        """The batch in page-locked host memory, for asynchronous copies to a GPU (needs CUDA)."""
        return self.map(lambda t: t.pin_memory())

    def to(self, device: torch.device | str) -> "Batch":
        """Return the batch on ``device`` (non-blocking where possible)."""
        if torch.device(device).type == "cpu" and self.sparse_features.device.type == "cpu":
            return self
        return self.map(lambda t: t.to(device, non_blocking=True))


def iterate_batches(
    sparse_features: Tensor,
    labels: Tensor,
    batch_size: int,
    generator: torch.Generator | None = None,
    shuffle: bool = True,
) -> Iterator[Batch]:
    """Yield batches over whole arrays, shuffled once per call, the last one possibly partial.

    Args:
        sparse_features: int64 [N, F].
        labels: float32 [N, T].
        batch_size: examples per batch (the last batch holds the remainder, never dropped).
        generator: torch RNG for the permutation; fixes the data order given a seed.
        shuffle: permute rows first.

    Yields:
        Batch views of size ``batch_size`` (last: ``N % batch_size`` if non-zero).

    Raises:
        ValueError: if ``batch_size < 1`` or the arrays disagree in length.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    n = sparse_features.shape[0]
    if labels.shape[0] != n:
        raise ValueError(f"sparse_features has {n} rows but labels has {labels.shape[0]}")
    if shuffle:
        # One gather per epoch; every batch is then a contiguous view (no per-batch indexing).
        perm = torch.randperm(n, generator=generator)
        sparse_features, labels = take_rows(sparse_features, perm), take_rows(labels, perm)
    for start in range(0, n, batch_size):
        end = start + batch_size
        yield Batch(sparse_features=sparse_features[start:end], labels=labels[start:end])
