"""Batches onto the training device: pinned host memory and a copy of the next batch that overlaps
the current batch's compute (CUDA), a plain pass-through on the CPU."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import torch

from recforge.data.batches import Batch


def to_device(batches: Iterable[Batch], device: torch.device) -> Iterator[Batch]:
    """Yield each batch of ``batches`` on ``device``.

    On the CPU the batches pass through unchanged (``Batch.to`` is free there). On CUDA each batch
    is copied into page-locked (pinned) host memory and sent with ``non_blocking=True`` on a
    side stream one batch ahead, so the host-to-device copy of batch k+1 runs while the kernels of
    batch k do (the pattern of PyTorch's ``DataLoader(pin_memory=True)`` plus NVIDIA Apex's
    ``data_prefetcher``); the compute stream waits for the copy before using the batch, and the
    tensors are marked as used by it so the caching allocator does not reuse them early.

    Args:
        batches: host (CPU) batches, in training order.
        device: the training device.

    Yields:
        The same batches, in the same order, on ``device``.
    """
    if device.type != "cuda":
        for batch in batches:
            yield batch.to(device)
        return
    copies = torch.cuda.Stream(device=device)
    compute = torch.cuda.current_stream(device)

    def send(batch: Batch) -> Batch:
        with torch.cuda.stream(copies):
            return batch.pin_memory().to(device)

    pending: Batch | None = None
    for batch in batches:
        # Make the pending batch ready (the compute stream waits for its copy only), then issue
        # the next copy, so it runs beside the pending batch's kernels.
        ready = _ready(pending, compute, copies) if pending is not None else None
        pending = send(batch)
        if ready is not None:
            yield ready
    if pending is not None:
        yield _ready(pending, compute, copies)


def _ready(batch: Batch, compute: torch.cuda.Stream, copies: torch.cuda.Stream) -> Batch:
    compute.wait_stream(copies)
    for tensor in batch.tensors():
        tensor.record_stream(compute)
    return batch
