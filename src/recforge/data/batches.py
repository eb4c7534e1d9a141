"""The Batch that every model consumes, and a shuffling iterator over columnar arrays.

Batches are contiguous slices of arrays permuted once per epoch, never a per-row
``Dataset.__getitem__``: on 2 CPU cores the per-row Python path costs more than the model.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from torch import Tensor


def _empty_dense(n: int) -> Tensor:
    return torch.empty((n, 0), dtype=torch.float32)


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

    def to(self, device: torch.device | str) -> "Batch":
        """Return the batch on ``device`` (non-blocking where possible)."""
        if torch.device(device).type == "cpu" and self.sparse_features.device.type == "cpu":
            return self
        move = lambda t: t.to(device, non_blocking=True)  # noqa: E731
        return Batch(
            sparse_features=move(self.sparse_features),
            labels=move(self.labels),
            dense_features=move(self.dense_features),
            sequence_features={k: move(v) for k, v in self.sequence_features.items()},
            sequence_lengths={k: move(v) for k, v in self.sequence_lengths.items()},
        )


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
        sparse_features, labels = sparse_features[perm], labels[perm]
    for start in range(0, n, batch_size):
        end = start + batch_size
        yield Batch(sparse_features=sparse_features[start:end], labels=labels[start:end])
