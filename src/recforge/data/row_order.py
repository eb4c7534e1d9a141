"""Epoch row orders that read in large blocks: blocks permuted, then rows within a buffer.

The order of one epoch is a two-level shuffle (the CorgiPile scheme: Xu et al., "In-Database
Machine Learning with CorgiPile: Stochastic Gradient Descent without Full Data Shuffle",
SIGMOD 2022, arXiv:2206.05830; the same idea as the shuffle buffers of TFRecord / ``tf.data`` and
WebDataset, with shards as blocks):

1. the rows are cut into *blocks* of ``block_rows`` contiguous rows (the last may be shorter),
   and the blocks are permuted;
2. the permuted blocks are taken ``buffer_rows // block_rows`` at a time into a *buffer*, read
   block by block (each block one contiguous read), and the rows of the buffer are permuted.

The epoch order is the concatenation of the permuted buffers: every row exactly once, a new order
for every draw of the generator. When one buffer holds every row (``buffer_rows >= n`` or one
block) no block permutation is drawn and the buffer's permutation is ``torch.randperm(n,
generator=...)`` itself, so the order is *exactly* the full shuffle of
:meth:`recforge.data.tabular.TensorColumns.batches` from the same generator state.

Statistical cost vs a full permutation. A batch of ``s`` rows is drawn without replacement from
one buffer of ``k`` blocks (or straddles two buffers), not from the whole split. For a per-row
quantity ``x`` (a gradient at fixed weights) with total variance ``sigma^2`` and variance of the
block means ``sigma_b^2``, the batch mean has variance about ``sigma^2 / s`` under a full
shuffle and about ``sigma^2 / s + sigma_b^2 / k`` under the block shuffle (law of total variance:
the buffer's own mean varies like a mean of ``k`` block means). Rows in i.i.d. order have
``sigma_b^2 = sigma^2 / block_rows``, so the extra term is ``sigma^2 / (k * block_rows)``, that is
``s / buffer_rows`` of the full-shuffle noise (0.4 % for batches of 4096 and a 1 M-row buffer). A
file sorted by time (the Criteo Kaggle file is chronological) or by label has far larger
``sigma_b^2``: each buffer mixes only ``k`` random stretches of the file, and the
``buffer_rows / s`` consecutive steps taken from one buffer see the same ``k`` stretches, so
successive gradients are correlated and the model drifts toward the buffer it is reading. Bigger
buffers (more blocks per buffer) shrink the cost; bigger blocks read faster but mix less. In the
limit of one buffer the order is the full shuffle. Bottou ("Stochastic Gradient Descent
Tricks", 2012) recommends shuffling because of exactly this correlation; Livne et al. (Corgi^2,
arXiv:2309.01640) measure where the two-level shuffle loses accuracy (homogeneous blocks).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

BLOCK_ROWS = 65_536  # rows per contiguous read (64 Ki rows: 6.5 MiB of Criteo's 26 int32 ids)
BUFFER_ROWS = 1_048_576  # rows permuted together (16 blocks; about 160 MiB of Criteo columns)
SHUFFLES = ("auto", "full", "block")  # train.shuffle: see recforge.data.mapped_columns.split_columns


@dataclass(frozen=True)
class Buffer:
    """One buffer of an epoch order.

    Attributes:
        blocks: int64 [K] block ids in reading order; block ``j`` holds rows
            ``j * block_rows .. min((j + 1) * block_rows, n) - 1``.
        rows: int64 [M] the order of the buffer's rows as positions ``0..M-1`` into the buffer
            (the blocks' rows concatenated in reading order); None for the identity (no shuffle).
        size: M, the rows in the buffer.
    """

    blocks: np.ndarray
    rows: np.ndarray | None
    size: int


def block_order(
    n_rows: int,
    generator: torch.Generator | None = None,
    shuffle: bool = True,
    block_rows: int = BLOCK_ROWS,
    buffer_rows: int = BUFFER_ROWS,
) -> Iterator[Buffer]:
    """The buffers of one epoch's order (see the module docstring), drawn lazily.

    The block permutation is drawn first (only if there is more than one buffer), then each
    buffer's row permutation as the buffer is reached, all from ``generator`` (None: torch's
    global generator): the order depends only on the generator state, the sizes and ``n_rows``.

    Args:
        n_rows: rows in the split (0 gives no buffers).
        generator: torch RNG of the data order.
        shuffle: False gives the rows in file order (buffers of consecutive blocks, ``rows`` None).
        block_rows: rows per block (>= 1).
        buffer_rows: rows per buffer; rounded down to whole blocks, at least one block.

    Yields:
        :class:`Buffer` objects whose sizes sum to ``n_rows``.

    Raises:
        ValueError: if ``block_rows`` or ``buffer_rows`` is < 1.
    """
    if block_rows < 1 or buffer_rows < 1:
        raise ValueError(f"block_rows and buffer_rows must be >= 1, got {block_rows} and {buffer_rows}")
    n_blocks = -(-n_rows // block_rows)
    per_buffer = max(1, buffer_rows // block_rows)
    if shuffle and n_blocks > per_buffer:
        blocks = torch.randperm(n_blocks, generator=generator).numpy()
    else:  # one buffer (its row permutation is then the full shuffle) or file order
        blocks = np.arange(n_blocks, dtype=np.int64)
    for first in range(0, n_blocks, per_buffer):
        ids = blocks[first : first + per_buffer]
        size = int((np.minimum((ids + 1) * block_rows, n_rows) - ids * block_rows).sum())
        rows = torch.randperm(size, generator=generator).numpy() if shuffle else None
        yield Buffer(ids, rows, size)
