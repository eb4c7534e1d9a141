"""The training loop for implicit feedback: pointwise BCE with sampled negatives, model
selection on validation only, the test set scored once at the selected epoch.

Follows He et al. (2017): log loss over positives and ``num_negatives`` uniformly sampled
negatives per positive, redrawn every epoch (Sec. 3.1.1, 4.1); leave-one-out HR@10 / NDCG@10.
"""

from __future__ import annotations

import copy
import math
import os
import time
import warnings
from dataclasses import dataclass, field
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from torch import nn

from recforge.config import HELD_OUT_MONITORS, TrainConfig
from recforge.data.batches import Batch, iterate_batches, take_rows
from recforge.data.held_out_sets import HeldOutSetsData, split_info
from recforge.data.interactions import LeaveOneOutData
from recforge.data.sampling import InteractionIndex, pointwise_examples
from recforge.errors import ConfigError, TrainingError
from recforge.evaluation.protocols import evaluate_full_ranking, evaluate_held_out_split, evaluate_sampled
from recforge.training.device_feed import to_device
from recforge.training.distributed import current_context, rank_seed
from recforge.training.optim import build_optimizer
from recforge.training.precision import autocast
from recforge.training.prefetch import EpochPrefetcher
from recforge.training.records import RunRecorder
from recforge.training.regularization import EmbeddingL2

PROGRESS_EVERY = 200  # batches between progress-bar refreshes (refreshing costs ~20 us a call)


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def prefetch_in_background() -> bool:
    """Whether to draw the next epoch's examples on a second thread: only where torch's intra-op
    threads leave a CPU free. Measured on this project's 2-core machine (NeuMF-8, batch 1024):
    with 1 torch thread, prefetching took an epoch from about 6.1 to 5.6 s; with 2 torch threads,
    the extra thread stalled torch's OpenMP workers and the epoch took 20.3 s instead of 5.9 s."""
    return usable_cpus() > torch.get_num_threads()


@dataclass(frozen=True)
class EpochExamples:
    """One epoch's training examples, already shuffled, and the sampling generators' states
    right after drawing them (what a checkpoint of this epoch must hold).

    Attributes:
        pairs: int64 [N, 2] (user, item) in training order.
        labels: float32 [N, 1], 1 for a positive, 0 for a sampled negative.
        numpy_rng: ``bit_generator.state`` of the negative sampler's generator.
        order_rng: state of the torch generator that shuffles the examples.
        rows: examples of the whole epoch (all ranks); under DDP ``pairs`` and ``labels`` hold
            only this rank's part of each global batch, in training order.
    """

    pairs: torch.Tensor
    labels: torch.Tensor
    numpy_rng: dict[str, Any]
    order_rng: torch.Tensor
    rows: int = 0


def resolve_device(name: str) -> torch.device:
    """The torch device for ``name`` (cpu, cuda, cuda:N).

    Raises:
        ConfigError: if it names a CUDA device that this machine does not have.
    """
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device {name} requested but CUDA is not available here (torch {torch.__version__}); use cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(f"device {name} requested but only {torch.cuda.device_count()} CUDA device(s) exist")
    return device


@dataclass
class FitResult:
    """What a finished training run produced."""

    summary: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)


def trained_epochs(history: list[dict[str, Any]]) -> int:
    """Number of training epochs in a history (epoch 0 is the evaluation before training)."""
    return sum(1 for r in history if r["epoch"] > 0)


def _plain_bounds(n: int, batch_size: int) -> list[tuple[int, int]]:
    """The NCF epoch's global batches: ``batch_size`` rows each, the last one the remainder
    (as :func:`recforge.data.batches.iterate_batches` cuts them)."""
    return [(start, min(start + batch_size, n)) for start in range(0, n, batch_size)]


def _prefixed(prefix: str, metrics: dict[str, float]) -> dict[str, float]:
    return {f"{prefix}/{k}": v for k, v in metrics.items()}


class Trainer:
    """Trains one implicit-feedback model on a leave-one-out split.

    Args:
        model: maps a Batch to logits [B].
        data: the split; with ``valid_candidates`` set, selection uses validation only.
        config: training settings.
        seed: fixes initial data order and negative draws.
        recorder: where run files go (None: keep nothing on disk).
        optimizer: optimiser name (default ``config.optimizer``).
        lr: learning rate (default ``config.lr``).
        console: rich console for progress (None: silent).

    Attributes:
        on_epoch: called with each training epoch's record after it is logged (None: nothing);
            ``recforge tune`` reports the validation metric to Optuna's pruner there and may
            raise ``optuna.TrialPruned``, which ends the run like any other exception.
    """

    on_epoch: Callable[[dict[str, Any]], None] | None = None

    def __init__(
        self,
        model: nn.Module,
        data: LeaveOneOutData,
        config: TrainConfig,
        seed: int,
        recorder: RunRecorder | None = None,
        optimizer: str | None = None,
        lr: float | None = None,
        console: Console | None = None,
    ):
        self.model = model
        self.data = data
        self.config = config
        self.seed = seed
        self.recorder = recorder
        self.console = console
        self.dist = current_context()  # data-parallel rank (the trivial one in a single process)
        self.device = self.dist.place(resolve_device(config.device))
        self.optimizer_name = optimizer or config.optimizer
        self.lr = lr if lr is not None else config.lr
        self.monitor = config.resolved_monitor("implicit")
        metric = self.monitor.removeprefix("valid/").split("@")[0]
        if metric in HELD_OUT_MONITORS and not isinstance(data, HeldOutSetsData):
            raise ConfigError(
                f"train.monitor {self.monitor!r} needs several held-out items per user (an own log with --split last:N or "
                "time:COL); a leave-one-out split holds out one (there recall@K is hit_rate@K): monitor valid/hit_rate@K, "
                "valid/ndcg@K or valid/mrr"
            )

    # ------------------------------------------------------------------ evaluation
    def evaluate_split(self, split: str) -> dict[str, float]:
        """Sampled leave-one-out metrics on ``valid`` or ``test``; for several held-out items per
        user (``last:N``, ``time:COL``) full-catalogue Recall/Precision/NDCG/MAP instead."""
        return self._rank_split(split)[0]

    def _rank_split(self, split: str) -> tuple[dict[str, float], np.ndarray | None, np.ndarray | None]:
        if isinstance(self.data, HeldOutSetsData):  # no sampled candidates: the whole catalogue, chunked
            return evaluate_held_out_split(self.model, self.data, split, self.config.ks, self.device), None, None
        if split == "valid":
            users, candidates = self.data.valid_users, self.data.valid_candidates
        else:
            users, candidates = self.data.test_users, self.data.test_candidates
        try:
            return evaluate_sampled(self.model, users, candidates, self.config.ks, self.device, shard=self.dist if self.dist.active else None)
        except ValueError as exc:
            raise TrainingError(f"cannot rank the {split} candidates: {exc} (the model's weights are not finite)") from None

    def evaluate_full(self) -> dict[str, float]:
        """Full-catalogue test metrics, masking each user's training (and validation) items."""
        return self._rank_full()[0]

    def _rank_full(self) -> tuple[dict[str, float], np.ndarray | None, np.ndarray | None]:
        if isinstance(self.data, HeldOutSetsData):  # its test split is full-catalogue already
            return self._rank_split("test")
        users, items = self.data.train_users, self.data.train_items
        if self.data.valid_users is not None:
            users = np.r_[users, self.data.valid_users]
            items = np.r_[items, self.data.valid_candidates[:, 0]]
        exclude = InteractionIndex(users, items, self.data.num_items)
        return evaluate_full_ranking(
            self.model, self.data.test_users, self.data.test_candidates[:, 0], exclude, self.config.ks, self.device,
            shard=self.dist if self.dist.active else None,
        )

    # ------------------------------------------------------------------ training
    def fit(self) -> FitResult:
        """Train, select the epoch on validation, restore it, and score the test set once.

        Returns:
            FitResult with the summary (also written to ``summary.json``) and per-epoch history.

        Raises:
            TrainingError: if the training loss becomes NaN or infinite.
        """
        cfg = self.config
        self.model.to(self.device)
        torch.manual_seed(rank_seed(self.seed, self.dist.rank))
        rng = np.random.default_rng([self.seed, 2])  # the same examples and order on every rank
        order = torch.Generator().manual_seed(self.seed)
        has_validation = self.data.valid_candidates is not None
        trainable = any(p.requires_grad for p in self.model.parameters())
        history: list[dict[str, Any]] = []
        timings = {"sampling_s": 0.0, "train_s": 0.0, "eval_s": 0.0}
        started = time.perf_counter()

        if not trainable:
            # Non-parametric baselines (ItemPop) are fitted from counts: no epochs.
            self.model.fit_interactions(self.data.train_users, self.data.train_items)  # type: ignore[operator]
            epochs = 0
        else:
            epochs = cfg.epochs
        optimizer = build_optimizer(self.model, self.optimizer_name, self.lr, cfg.weight_decay) if trainable else None
        self.net = self.dist.wrap(self.model, self.device)  # DDP under torchrun, else the model itself
        index = self.data.train_index()

        def draw() -> EpochExamples:
            # Runs on the prefetch thread, one epoch after the other: rng and order are its own.
            pairs, labels = pointwise_examples(self.data.train_users, self.data.train_items, index, cfg.num_negatives, rng)
            perm = torch.randperm(len(pairs), generator=order)
            if self.dist.active:  # gather this rank's part of every global batch alone
                perm = perm[self.dist.positions(_plain_bounds(len(pairs), cfg.batch_size))]
            return EpochExamples(
                take_rows(torch.from_numpy(pairs), perm), take_rows(torch.from_numpy(labels), perm),
                rng.bit_generator.state, order.get_state(), len(pairs),
            )

        drawn = EpochExamples(torch.empty(0, 2, dtype=torch.int64), torch.empty(0, 1), rng.bit_generator.state, order.get_state())

        best_value, best_epoch, best_state, stale = -math.inf, 0, None, 0
        if not has_validation or epochs == 0:
            best_state = copy.deepcopy(self.model.state_dict())
        if has_validation and epochs > 0:
            # Epoch 0 (the initialisation, or the pre-trained combination) is a candidate too.
            initial = _prefixed("valid", self.evaluate_split("valid"))
            best_value, best_state = initial[self.monitor], copy.deepcopy(self.model.state_dict())
            history.append({"epoch": 0, **initial})
            if self.recorder:
                self.recorder.log_epoch(history[-1])
                self._checkpoint(0, optimizer, drawn)

        progress = self._progress()
        with progress, EpochPrefetcher(draw, epochs, background=prefetch_in_background()) as prefetcher:
            for epoch in range(1, epochs + 1):
                t0 = time.perf_counter()
                drawn, _ = prefetcher.next()  # drawn during the previous epoch, except the first
                t1 = time.perf_counter()
                loss = self._train_epoch(epoch, epochs, drawn.pairs, drawn.labels, optimizer, progress, drawn.rows)
                t2 = time.perf_counter()
                if not math.isfinite(loss):
                    raise TrainingError(
                        f"training loss became {loss} in epoch {epoch}; lower train.lr (now {self.lr}) or check the data"
                    )
                record: dict[str, Any] = {"epoch": epoch, "train/loss": loss}
                if has_validation:
                    record.update(_prefixed("valid", self.evaluate_split("valid")))
                if cfg.report_best_test_epoch and cfg.score_test:
                    record.update(_prefixed("test_every_epoch", self.evaluate_split("test")))
                t3 = time.perf_counter()
                record.update({"seconds/sampling": t1 - t0, "seconds/train": t2 - t1, "seconds/eval": t3 - t2})
                timings["sampling_s"] += t1 - t0
                timings["train_s"] += t2 - t1
                timings["eval_s"] += t3 - t2
                history.append(record)
                if self.recorder:
                    self.recorder.log_epoch(record)
                if self.console:
                    self._print_epoch(record)
                if self.on_epoch is not None:
                    self.on_epoch(record)

                if has_validation:
                    value = record[self.monitor]
                    if value > best_value:
                        best_value, best_epoch, stale = value, epoch, 0
                        best_state = copy.deepcopy(self.model.state_dict())
                        if self.recorder:
                            self._checkpoint(epoch, optimizer, drawn)
                    else:
                        stale += 1
                        if cfg.patience is not None and stale >= cfg.patience:
                            if self.console:
                                self.console.print(f"early stop: no {self.monitor} gain in {stale} epochs")
                            break
                else:
                    best_epoch = epoch
                    best_state = copy.deepcopy(self.model.state_dict())

        if not has_validation and self.recorder:
            self._checkpoint(best_epoch, optimizer, drawn)
        if epochs == 0 and self.recorder:
            self._checkpoint(0, optimizer, drawn)
        assert best_state is not None
        if has_validation and trained_epochs(history) > 0 and best_epoch == 0:
            warnings.warn(
                f"no training epoch beat the initial model on {self.monitor}; the initial weights are kept "
                f"(check train.lr = {self.lr} and the data)",
                stacklevel=2,
            )
        self.model.load_state_dict(best_state)

        t0 = time.perf_counter()
        # train.score_test false (tuning trials): the test split stays sealed, nothing is scored
        metrics, greater, ties = self._rank_split("test") if cfg.score_test else ({}, None, None)
        test = _prefixed("test", metrics)
        ranks = {"users": np.asarray(self.data.test_users, np.int64), "greater": greater, "ties": ties}
        if cfg.full_ranking and greater is not None:
            metrics, ranks["full_greater"], ranks["full_ties"] = self._rank_full()
            test.update(_prefixed("test_full", metrics))
        timings["test_s"] = time.perf_counter() - t0
        n_trained = trained_epochs(history)
        summary: dict[str, Any] = {
            "selected_epoch": best_epoch,
            "selection": (
                "no training epochs"
                if epochs == 0
                else f"best {self.monitor}" if has_validation else "last epoch (no validation split)"
            ),
            "epochs_run": n_trained,
            **{k: v for r in history if r["epoch"] == best_epoch for k, v in r.items() if k.startswith("valid/")},
            **test,
            "timings": {
                **timings,
                "seconds_per_epoch": (timings["sampling_s"] + timings["train_s"]) / max(n_trained, 1),
                "total_s": time.perf_counter() - started,
            },
            "train_examples_per_epoch": int(self.data.num_train * (1 + cfg.num_negatives)),
            **self.dist.describe(cfg.batch_size),
        }
        if isinstance(self.data, HeldOutSetsData):
            summary["split"] = split_info(self.data)  # the rule, and the users it left out or cut short
        hr_key = f"test_every_epoch/hit_rate@{cfg.ks[0]}"
        peeks = [r for r in history if hr_key in r]
        if peeks:
            # The NCF reference code reports the epoch with the best test HR (and that epoch's NDCG).
            peak = max(peeks, key=lambda r: r[hr_key])
            summary["optimistic_best_test_epoch"] = {
                "note": "epoch with the best test HR, as the paper reports it; optimistic (selected on test)",
                "epoch": peak["epoch"],
                **{k.split("/", 1)[1]: v for k, v in peak.items() if k.startswith("test_every_epoch/")},
            }
        if self.recorder:
            if greater is not None:  # per-user ranks of one held-out item (paired comparisons)
                self.recorder.write_arrays("test_ranks.npz", **ranks)
            self.recorder.write_summary(summary)
        return FitResult(summary=summary, history=history)

    def _train_epoch(
        self,
        epoch: int,
        epochs: int,
        pairs: torch.Tensor,
        labels: torch.Tensor,
        optimizer: torch.optim.Optimizer,
        progress: Progress,
        rows: int = 0,
    ) -> float:
        if self.dist.active:
            return self._train_part_epoch(epoch, epochs, pairs, labels, optimizer, progress, rows)
        self.model.train()
        n_batches = math.ceil(len(pairs) / self.config.batch_size)
        task = progress.add_task(f"epoch {epoch}/{epochs}", total=n_batches)
        total = torch.zeros((), dtype=torch.float64, device=self.device)
        with EmbeddingL2(self.model, self.config.embedding_l2) as regulariser:
            batches = to_device(iterate_batches(pairs, labels, self.config.batch_size, shuffle=False), self.device)
            for step, batch in enumerate(batches, start=1):
                with autocast(self.device, self.config.precision):  # train.precision bf16: the forward pass only
                    logits = self.model(batch).float()
                loss = F.binary_cross_entropy_with_logits(logits, batch.labels[:, 0])
                optimizer.zero_grad(set_to_none=True)
                (loss + regulariser.penalty() if regulariser.active else loss).backward()
                optimizer.step()
                total.add_(loss.detach(), alpha=len(batch))  # one op per step; the logged loss is the BCE alone
                if step % PROGRESS_EVERY == 0:
                    progress.update(task, completed=step)
        progress.update(task, completed=n_batches, visible=False)
        return float(total.item()) / len(pairs)

    def _train_part_epoch(
        self,
        epoch: int,
        epochs: int,
        pairs: torch.Tensor,
        labels: torch.Tensor,
        optimizer: torch.optim.Optimizer,
        progress: Progress,
        rows: int,
    ) -> float:
        """One DDP epoch over this rank's part of each global batch of the epoch's ``rows`` examples.

        Each rank's loss is W x (BCE summed over its part) / (rows of the global batch), so DDP's
        average of the rank gradients (Li et al. 2020) is the gradient of the single-process mean
        BCE of the global batch, also for unequal or empty parts; the embedding penalty
        (lambda / B_r x the part's rows) is scaled by W x B_r / B likewise.

        Returns:
            The epoch's mean training BCE over all ranks' examples (all-reduced).
        """
        self.net.train()
        world = self.dist.world_size
        bounds = _plain_bounds(rows, self.config.batch_size)
        task = progress.add_task(f"epoch {epoch}/{epochs}", total=len(bounds))
        total = torch.zeros((), dtype=torch.float64, device=self.device)
        offset = 0
        with EmbeddingL2(self.model, self.config.embedding_l2) as regulariser:
            for step, (start, end) in enumerate(bounds, start=1):
                mine = self.dist.part(end - start)  # this rank's rows of the global batch
                part = slice(offset, offset + mine.stop - mine.start)
                offset = part.stop
                batch = Batch(sparse_features=pairs[part], labels=labels[part]).to(self.device)
                with autocast(self.device, self.config.precision):  # train.precision bf16: the forward pass only
                    logits = self.net(batch).float()
                summed = F.binary_cross_entropy_with_logits(logits, batch.labels[:, 0], reduction="sum")
                loss = summed * (world / (end - start))
                objective = loss
                if regulariser.active:
                    penalty = regulariser.penalty()  # always taken: it also forgets this step's rows
                    if len(batch):
                        objective = loss + penalty * (world * len(batch) / (end - start))
                optimizer.zero_grad(set_to_none=True)
                objective.backward()
                optimizer.step()
                total.add_(summed.detach())
                if step % PROGRESS_EVERY == 0:
                    progress.update(task, completed=step)
        progress.update(task, completed=len(bounds), visible=False)
        return float(self.dist.all_reduce_sum(total).item()) / max(rows, 1)

    def _checkpoint(self, epoch: int, optimizer: torch.optim.Optimizer | None, drawn: EpochExamples) -> None:
        assert self.recorder is not None
        self.recorder.save_checkpoint(
            {
                "epoch": epoch,
                "schema": {"num_users": self.data.num_users, "num_items": self.data.num_items},
                "model": self.model.state_dict(),
                "optimizer": optimizer.state_dict() if optimizer is not None else None,
                "torch_rng": torch.get_rng_state(),
                "order_rng": drawn.order_rng,
                "numpy_rng": drawn.numpy_rng,
            }
        )

    def _progress(self) -> Progress:
        return Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("batches"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self.console,
            disable=self.console is None,
            transient=True,
        )

    def _print_epoch(self, record: dict[str, Any]) -> None:
        assert self.console is not None
        parts = [f"epoch {record['epoch']:>3}", f"loss {record['train/loss']:.4f}"]
        for key in (f"valid/hit_rate@{self.config.ks[0]}", f"valid/ndcg@{self.config.ks[0]}"):
            if key in record:
                parts.append(f"{key} {record[key]:.4f}")
        parts.append(f"{record['seconds/sampling'] + record['seconds/train']:.1f}s train")
        self.console.print("  ".join(parts), soft_wrap=True, highlight=False)
