"""Data-parallel training on torch.distributed: process-group setup from torchrun's environment,
the rows each rank reads, and the exact gather of evaluation outputs.

Li et al., "PyTorch Distributed: Experiences on Accelerating Data Parallel Training", VLDB 2020:
every rank holds a full replica of the model, computes gradients on its own rows, and
DistributedDataParallel (DDP) all-reduces (averages) them during the backward pass, so every
replica takes the same optimiser step. This module is the wrapper around that; the trainers call
it at two seams, which rows this rank reads and how predictions are gathered, and otherwise run
as in one process.

* Setup. ``torchrun`` sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT;
  :func:`distributed_session` joins that process group (gloo on CPU, NCCL on CUDA, one device per
  local rank) with a timeout (``$RECFORGE_DIST_TIMEOUT_S``, default 300 s) after which a
  collective waiting for a dead or hung rank fails instead of waiting forever. Without WORLD_SIZE
  > 1 nothing is set up: the context is the trivial one (rank 0 of 1) and training is the
  single-process code path, bit for bit.
* Rows. The global batch order is the same for any number of ranks (same seed, same
  permutation); of each global batch of B rows rank r takes its contiguous part
  (:func:`recforge.data.tabular.shard_bounds`, ``np.array_split`` semantics), so the per-rank
  batch is B / N rows (counts differ by at most one) and every row is read exactly once per epoch.
  Each rank scales its loss so that DDP's average of the rank gradients is the gradient of the
  single-process mean loss over the global batch, also when the parts are unequal.
* Evaluation. Each rank scores its contiguous part of a split; :meth:`DistributedContext.gather_rows`
  returns all rows in row order on every rank (padded all-gather, padding dropped), and the
  metrics are computed once over them, never averaged over ranks; every rank computes the same
  numbers from the same rows, so early stopping decides the same everywhere.

Shape letters: N rows, W world size.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from recforge.data.tabular import batch_bounds, shard_bounds, shard_positions
from recforge.errors import ConfigError, RecforgeError, TrainingError
from recforge.training.threads import automatic_threads, available_cpus

T = TypeVar("T")

TIMEOUT_ENV = "RECFORGE_DIST_TIMEOUT_S"
DEFAULT_TIMEOUT_S = 300.0
_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")

__all__ = [
    "DistributedContext",
    "batch_bounds",
    "current_context",
    "distributed_session",
    "needs_session",
    "rank_seed",
    "shard_bounds",
    "shard_positions",
]


def rank_seed(seed: int, rank: int) -> int:
    """The torch seed of rank ``rank`` (dropout masks): ``seed`` itself on rank 0, so that a
    single-process run is unchanged, and a seed derived from (seed, rank) on the others, so that
    ranks do not draw the same masks for different rows."""
    if rank == 0:
        return int(seed)
    return int(np.random.SeedSequence([int(seed), int(rank)]).generate_state(1, np.uint64)[0] >> 1)


@dataclass(frozen=True)
class DistributedContext:
    """Where this process stands in a data-parallel run.

    The trivial context (``backend=None``: rank 0 of 1) is what single-process runs get; every
    method is then a no-op or the identity.

    Attributes:
        rank: this process's global rank, 0..world_size-1.
        world_size: number of processes (W).
        local_rank: rank on this node (the CUDA device index with NCCL).
        backend: ``gloo``, ``nccl``, or None when no process group is set up.
        timeout_s: how long a collective waits for the other ranks (seconds).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None
    timeout_s: float = DEFAULT_TIMEOUT_S

    @property
    def active(self) -> bool:
        """Whether a process group is set up (world size > 1)."""
        return self.backend is not None

    @property
    def is_main(self) -> bool:
        """Rank 0: the only rank that writes run files and prints progress."""
        return self.rank == 0

    @property
    def shard(self) -> tuple[int, int]:
        """``(rank, world_size)``, the ``shard`` argument of ``batches()``."""
        return self.rank, self.world_size

    def barrier(self) -> None:
        """Wait until every rank got here (no-op in one process)."""
        if self.active:
            dist.barrier()

    def teardown(self) -> None:
        """Leave and destroy the process group (no-op in one process or when already done)."""
        if self.active and dist.is_initialized():
            dist.destroy_process_group()

    # ------------------------------------------------------------------ devices and the model
    def place(self, device: torch.device) -> torch.device:
        """The device of this rank: ``cuda`` without an index becomes ``cuda:LOCAL_RANK`` under NCCL."""
        if self.active and device.type == "cuda" and device.index is None:
            return torch.device("cuda", self.local_rank)
        return device

    def wrap(self, model: nn.Module, device: torch.device) -> nn.Module:
        """The module to train: ``model`` itself in one process, else a DDP wrapper that averages
        gradients over the ranks (Li et al. 2020). The wrapper shares ``model``'s parameters, so
        checkpoints keep using ``model.state_dict()`` (no ``module.`` prefix).

        Raises:
            ConfigError: sparse embedding gradients under NCCL (it has no sparse all-reduce).
        """
        if not self.active or not any(p.requires_grad for p in model.parameters()):
            return model
        sparse = any(isinstance(m, (nn.Embedding, nn.EmbeddingBag)) and m.sparse for m in model.modules())
        if sparse and self.backend == "nccl":
            raise ConfigError(
                "train.sparse_embeddings is not supported by DDP on CUDA (NCCL has no sparse all-reduce); "
                "set train.sparse_embeddings=false, or train on CPU (gloo)"
            )
        ids = [device.index] if device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(model, device_ids=ids)

    # ------------------------------------------------------------------ rows
    def part(self, n: int) -> slice:
        """This rank's contiguous rows of ``n`` (all of them in one process), for evaluation."""
        lo, hi = shard_bounds(n, self.rank, self.world_size)
        return slice(lo, hi)

    def gather_rows(self, local: np.ndarray, n: int) -> np.ndarray:
        """All ``n`` rows from the ranks' parts (:meth:`part`), in row order, on every rank.

        Exact: each part is padded to the largest part size, all-gathered, and the padding is
        dropped before concatenation, so no row is counted twice or lost, whatever the sizes.

        Args:
            local: [n_r, ...] this rank's rows (float or integer dtype).
            n: total rows over all ranks.

        Returns:
            [n, ...] array of ``local``'s dtype; ``local`` itself in one process.

        Raises:
            ValueError: if ``local`` does not have this rank's part size.
        """
        sizes = [hi - lo for lo, hi in (shard_bounds(n, r, self.world_size) for r in range(self.world_size))]
        if len(local) != sizes[self.rank]:
            raise ValueError(f"rank {self.rank} holds {len(local)} rows, its part of {n} is {sizes[self.rank]}")
        if not self.active:
            return local
        device = torch.device("cuda", torch.cuda.current_device()) if self.backend == "nccl" else torch.device("cpu")
        width = max(sizes)
        padded = torch.zeros((width, *local.shape[1:]), dtype=torch.from_numpy(local[:0].copy()).dtype, device=device)
        padded[: len(local)] = torch.from_numpy(np.ascontiguousarray(local)).to(device)
        out = [torch.empty_like(padded) for _ in range(self.world_size)]
        dist.all_gather(out, padded)
        return np.concatenate([o[:size].cpu().numpy() for o, size in zip(out, sizes)])

    def batch_sizes(self, n: int, batch_size: int) -> list[int]:
        """Sizes of the global batches of an epoch of ``n`` rows (:func:`batch_bounds`)."""
        return [end - start for start, end in batch_bounds(n, batch_size)]

    def positions(self, bounds: list[tuple[int, int]]) -> torch.Tensor:
        """This rank's positions in an epoch's global order: its contiguous part
        (:func:`shard_bounds`) of every global batch ``(start, end)``, batch after batch.

        Returns:
            int64 [n_r]; over all ranks every position of the epoch appears exactly once.
        """
        return torch.from_numpy(shard_positions(bounds, self.rank, self.world_size))

    def describe(self, batch_size: int) -> dict[str, Any]:
        """The run summary's ``distributed`` entry (empty for a single-process run)."""
        if not self.active:
            return {}
        return {
            "distributed": {
                "world_size": self.world_size, "backend": self.backend,
                "global_batch_size": batch_size, "per_rank_batch_size": batch_size / self.world_size,
            }
        }

    # ------------------------------------------------------------------ collectives
    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum ``tensor`` over the ranks in place and return it (identity in one process)."""
        if self.active:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def all_gather_object(self, obj: Any) -> list[Any]:
        """Every rank's ``obj`` (picklable), in rank order; ``[obj]`` in one process."""
        if not self.active:
            return [obj]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def on_main(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on rank 0 alone and give its result (picklable) to every rank.

        A user error raised there (:class:`~recforge.errors.RecforgeError`) is raised on every
        rank with the same message, so all ranks stop together instead of the others waiting
        for rank 0 until the timeout; any other exception becomes a TrainingError on the others.
        """
        if not self.active:
            return fn()
        payload: list[Any] = [None]
        failure: BaseException | None = None
        if self.is_main:
            try:
                payload[0] = ("ok", fn())
            except RecforgeError as exc:
                failure, payload[0] = exc, ("user", type(exc), str(exc))
            except BaseException as exc:  # noqa: BLE001 - re-raised below after telling the others
                failure, payload[0] = exc, ("failed", None, f"{type(exc).__name__}: {exc}")
        dist.broadcast_object_list(payload, src=0)
        if failure is not None:
            raise failure
        kind, value, *rest = payload[0]
        if kind == "ok":
            return value
        if kind == "user":
            exc = value.__new__(value)
            Exception.__init__(exc, rest[0])
            raise exc
        raise TrainingError(f"rank 0 failed: {rest[0]}")

    def main_first(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on rank 0, then on the other ranks (for loading data: rank 0 fills the
        cache, the others then read it); a failure on rank 0 is raised on every rank."""
        if not self.active:
            return fn()
        kept: list[T] = []
        self.on_main(lambda: kept.append(fn()))  # only "done" (or rank 0's error) is sent, not the result
        return kept[0] if self.is_main else fn()

    @contextmanager
    def lost_rank_errors(self) -> Iterator[None]:
        """Turn a failed collective (a rank died, was killed or hung past the timeout) into one
        clear TrainingError; no-op in one process."""
        if not self.active:
            yield
            return
        try:
            yield
        except (dist.DistError, RuntimeError) as exc:
            text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            if isinstance(exc, dist.DistError) or any(w in text.lower() for w in ("gloo", "nccl", "connection", "timed out", "peer")):
                raise TrainingError(
                    f"rank {self.rank} of {self.world_size} lost contact with another rank (a process died, was killed, "
                    f"or did not answer within {self.timeout_s:g} s, ${TIMEOUT_ENV}): {text}"
                ) from None
            raise


def current_context() -> DistributedContext:
    """The context of the process group this process is in (the trivial one if none)."""
    if not (dist.is_available() and dist.is_initialized()):
        return DistributedContext()
    return DistributedContext(
        rank=dist.get_rank(),
        world_size=dist.get_world_size(),
        local_rank=int(os.environ.get("LOCAL_RANK", "0")),
        backend=str(dist.get_backend()),
        timeout_s=_timeout_s(),
    )


def _timeout_s() -> float:
    raw = os.environ.get(TIMEOUT_ENV)
    if not raw:
        return DEFAULT_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise ConfigError(f"{TIMEOUT_ENV}={raw!r}: expected a number of seconds > 0")
    return value


def needs_session() -> bool:
    """Whether this process was launched as one of several (WORLD_SIZE > 1, as torchrun sets it)
    and has not joined the process group yet."""
    return os.environ.get("WORLD_SIZE", "1").strip() not in ("", "0", "1") and not dist.is_initialized()


@contextmanager
def distributed_session(device: str = "cpu") -> Iterator[DistributedContext]:
    """Join torchrun's process group for the duration of a run (and leave it afterwards), or
    yield the trivial context when not launched with WORLD_SIZE > 1.

    A session inside another one (NeuMF's pre-training runs) reuses the outer process group.

    Args:
        device: the run's ``train.device``; ``cuda...`` selects NCCL and this rank's GPU, else gloo.

    Raises:
        ConfigError: WORLD_SIZE > 1 with another of torchrun's variables missing or malformed, or
            CUDA requested with fewer local GPUs than local ranks.
    """
    world = os.environ.get("WORLD_SIZE", "1")
    try:
        world_size = int(world)
    except ValueError:
        raise ConfigError(f"WORLD_SIZE={world!r}: expected a whole number of processes") from None
    if world_size <= 1 or dist.is_initialized():
        yield current_context()
        return
    missing = [name for name in _ENV if not os.environ.get(name)]
    if missing:
        raise ConfigError(f"WORLD_SIZE={world_size} but {', '.join(missing)} not set; launch with torchrun (or recforge train --nproc N)")
    timeout = _timeout_s()
    local_rank = int(os.environ["LOCAL_RANK"])
    backend = "gloo"
    if torch.device(device).type == "cuda":
        if not torch.cuda.is_available() or torch.cuda.device_count() <= local_rank:
            raise ConfigError(f"train.device {device}: local rank {local_rank} needs a GPU of its own, this node has {torch.cuda.device_count()}")
        torch.cuda.set_device(local_rank)
        backend = "nccl"
    dist.init_process_group(backend, init_method="env://", timeout=timedelta(seconds=timeout))
    if backend == "gloo" and automatic_threads():
        # N ranks on one node share its CPUs: one torch thread per CPU in all, not per rank
        # (more threads than cores stalls every parallel op, see recforge.training.threads).
        local = int(os.environ.get("LOCAL_WORLD_SIZE", world_size))
        torch.set_num_threads(max(1, available_cpus() // max(local, 1)))
    failed = True
    try:
        context = current_context()
        yield context
        context.barrier()  # leave together: rank 0 may still be writing the run's summary
        failed = False
    finally:
        if dist.is_initialized():
            if failed:
                _leave_broken_group()
            else:
                dist.destroy_process_group()


TEARDOWN_S = 10.0  # the longest wait for a process group's teardown after a failure


def _leave_broken_group() -> None:
    """Destroy the process group after a failure, waiting at most TEARDOWN_S seconds.

    With a peer killed or stopped, ``destroy_process_group`` can block on work still queued
    for it (pytorch/pytorch#75097), and the rank would never exit after printing its error;
    Ray Train bounds the same teardown with a timeout (ray-project/ray#56182). The teardown
    runs on a daemon thread, which the process abandons at exit if it is still blocked.
    """
    import threading

    worker = threading.Thread(target=dist.destroy_process_group, name="recforge-pg-teardown", daemon=True)
    worker.start()
    worker.join(TEARDOWN_S)
