"""The training loop for pointwise (CTR and multi-task) data: BCE on logits over fixed rows,
selection on a validation metric, the test split scored once at the selected epoch.

* Loss: the sum over tasks of ``weight_t`` x mean BCE over the rows whose label t is known
  (a NaN label contributes nothing to that task's loss or gradient).
* Metrics (AUC, LogLoss) are computed over the whole split, never averaged over batches.
* Early stopping on ``train.monitor`` with the best weights always restored (also when the
  epoch limit is reached); optional learning-rate decay on plateau (ReduceLROnPlateau).
* One optimiser per parameter group (Wide & Deep: FTRL on the wide part, AdaGrad on the deep
  part) and optional sparse embedding gradients, see :func:`recforge.training.optim.build_optimizers`.
* ``last.pt`` after every epoch holds everything needed to resume exactly: model, optimisers,
  schedulers, RNG states (weights, dropout, data order), the best state so far and the history.
"""

from __future__ import annotations

import copy
import math
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from torch import Tensor, nn

from recforge.config import TrainConfig
from recforge.data.mapped_columns import split_columns
from recforge.data.tabular import TabularData
from recforge.errors import ConfigError, TrainingError
from recforge.evaluation.protocols import pointwise_metrics, score_rows, task_logits
from recforge.training.device_feed import to_device
from recforge.training.distributed import current_context, rank_seed
from recforge.training.optim import build_optimizers
from recforge.training.precision import autocast
from recforge.training.records import RunRecorder
from recforge.training.regularization import EmbeddingL2
from recforge.training.threads import ThreadGovernor, automatic_threads
from recforge.training.trainer import FitResult, resolve_device

CHECK_EVERY = 100  # batches between progress refreshes and NaN checks (each check syncs)


def masked_bce(logits: Tensor, labels: Tensor, weights: Tensor | None = None) -> Tensor:
    """Sum over tasks of weight_t x mean BCE over the rows whose label t is not NaN.

    Args:
        logits: [B, T].
        labels: [B, T], 0/1 or NaN (missing).
        weights: [T] task weights (None: all 1).

    Returns:
        Scalar loss; a task with no known label in the batch contributes 0.
    """
    known = ~torch.isnan(labels)
    if bool(known.all()):
        per_task = F.binary_cross_entropy_with_logits(logits, labels, reduction="none").mean(0)
    else:
        safe = torch.where(known, labels, torch.zeros_like(labels))
        losses = F.binary_cross_entropy_with_logits(logits, safe, reduction="none") * known
        per_task = losses.sum(0) / known.sum(0).clamp(min=1)
    return per_task.sum() if weights is None else (per_task * weights).sum()


class PointwiseTrainer:
    """Trains one model on a tabular split.

    Args:
        model: maps a Batch to logits [B] (one task) or a dict of logits per task.
        data: the encoded splits.
        config: training settings.
        seed: fixes dropout and the data order (the weights are fixed by the caller's seed).
        recorder: where run files go (None: keep nothing on disk).
        console: rich console for progress (None: silent).
        default_groups: per-group optimiser settings used when ``config.groups`` is None (the
            model's paper setting, for example Wide & Deep's FTRL + AdaGrad).
        task_weights: loss weight per task (None: ``config.task_weights``, 1 for a task it does not name).
            Multi-task validation means (``valid/auc``) weight the tasks the same way.

    Attributes:
        on_epoch: called with each epoch's record after it is logged and checkpointed (None:
            nothing); ``recforge tune`` reports the validation metric to Optuna's pruner there
            and may raise ``optuna.TrialPruned``, which ends the run like any other exception.
    """

    on_epoch: Callable[[dict[str, Any]], None] | None = None

    def __init__(
        self,
        model: nn.Module,
        data: TabularData,
        config: TrainConfig,
        seed: int,
        recorder: RunRecorder | None = None,
        console: Console | None = None,
        default_groups: dict[str, dict[str, Any]] | None = None,
        task_weights: tuple[float, ...] | None = None,
    ):
        self.model, self.data, self.config, self.seed = model, data, config, seed
        self.recorder, self.console = recorder, console
        self.dist = current_context()  # data-parallel rank (the trivial one in a single process)
        self.device = self.dist.place(resolve_device(config.device))
        self.monitor = config.resolved_monitor("tabular")
        self.maximize = TrainConfig.higher_is_better(self.monitor)
        self.tasks = tuple(data.schema.labels)
        self.groups = config.groups if config.groups is not None else default_groups
        if task_weights is None:  # the config's weights, so re-scoring a run aggregates tasks as training did
            task_weights = tuple(float((config.task_weights or {}).get(t, 1.0)) for t in self.tasks)
        if len(task_weights) != len(self.tasks):
            raise ConfigError(f"{len(task_weights)} task weights for {len(self.tasks)} tasks {self.tasks}")
        if sum(task_weights) <= 0:
            raise ConfigError(f"train.task_weights: every task ({', '.join(self.tasks)}) has weight 0; nothing would be trained")
        self.weights = tuple(float(w) for w in task_weights)
        self.task_weights = torch.tensor(self.weights, dtype=torch.float32, device=self.device)
        self.columns = {s: split_columns(data.split(s), config.shuffle) for s in ("train", "valid", "test")}
        if config.batch_size == 1 and any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
            raise ConfigError("train.batch_size 1 cannot train a model with BatchNorm (or Dice): a batch of one row has no variance; use >= 2")
        if self.dist.active:
            self._check_distributed()

    # ------------------------------------------------------------------ evaluation
    def evaluate(self, split: str) -> dict[str, float]:
        """AUC and LogLoss on ``valid`` or ``test`` (``train`` also works)."""
        cols = self.columns[split]
        logits = score_rows(self.model, cols, self.tasks, self.config.eval_batch_size, self.device, shard=self.dist if self.dist.active else None)
        if not np.isfinite(logits).all():
            raise TrainingError(f"the model's {split} scores are not finite (NaN or inf weights); lower train.lr (now {self.config.lr})")
        return pointwise_metrics(cols.labels.numpy(), logits, self.tasks, self.data.split(split).groups, self.weights)

    def _aggregation(self) -> str:
        """How a multi-task monitor combines the tasks, for the run summary ('' for one task)."""
        if len(self.tasks) == 1:
            return ""
        if len(set(self.weights)) == 1:
            return f" (mean over tasks {', '.join(self.tasks)})"
        parts = ", ".join(f"{t} {w:g}" for t, w in zip(self.tasks, self.weights))
        return f" (mean over tasks weighted by train.task_weights: {parts}; weight-0 tasks do not count)"

    # ------------------------------------------------------------------ training
    def fit(self, resume: dict[str, Any] | None = None) -> FitResult:
        """Train, select the epoch on validation, restore it, and score the test set once.

        Args:
            resume: a ``last.pt`` state from an interrupted run of the same config; training
                continues after its epoch and ends exactly as the uninterrupted run would.

        Raises:
            TrainingError: if the loss becomes NaN or infinite.
            ConfigError: for optimiser groups the model does not have.
        """
        cfg = self.config
        self.model.to(self.device)
        optimizers = build_optimizers(self.model, cfg.optimizer, cfg.lr, cfg.weight_decay, self.groups, cfg.sparse_embeddings)
        mode = "max" if self.maximize else "min"
        schedulers = (
            [torch.optim.lr_scheduler.ReduceLROnPlateau(o, mode=mode, factor=cfg.lr_decay, patience=cfg.lr_patience - 1, threshold=0.0) for o in optimizers]
            if cfg.lr_patience is not None
            else []
        )
        self.net = self.dist.wrap(self.model, self.device)  # DDP under torchrun, else the model itself
        order = torch.Generator().manual_seed(self.seed)  # the same global batch order on every rank
        torch.manual_seed(rank_seed(self.seed, self.dist.rank))
        history: list[dict[str, Any]] = []
        best_value = -math.inf if self.maximize else math.inf
        best_epoch, best_state, stale, start_epoch = 0, copy.deepcopy(self.model.state_dict()), 0, 1
        timings = {"train_s": 0.0, "eval_s": 0.0}
        if resume is not None:
            self.model.load_state_dict(resume["model"])
            for o, s in zip(optimizers, resume["optimizers"]):
                o.load_state_dict(s)
            for sch, s in zip(schedulers, resume.get("schedulers", [])):
                sch.load_state_dict(s)
            order.set_state(resume["order_rng"])
            torch.set_rng_state(self._resumed_rng(resume))
            history = list(resume["history"])
            best_value, best_epoch, stale = resume["best_value"], resume["best_epoch"], resume["stale"]
            best_state = resume["best_model"]
            start_epoch = resume["epoch"] + 1
            timings = dict(resume.get("timings", timings))
        # A resumed run adds its earlier wall time, so total_s covers the whole run.
        started = time.perf_counter() - (float(resume.get("elapsed_s", 0.0)) if resume is not None else 0.0)
        rows = len(self.columns["train"])
        notify = (lambda message: self.console.print(message, highlight=False)) if self.console else None
        # Under DDP the ranks share the CPUs by a fixed split (see recforge.training.distributed).
        self.governor = ThreadGovernor(automatic_threads() and self.device.type == "cpu" and not self.dist.active, notify)

        with self._progress() as progress:
            for epoch in range(start_epoch, cfg.epochs + 1):
                if cfg.patience is not None and stale >= cfg.patience:
                    break
                t0 = time.perf_counter()
                loss = self._train_epoch(epoch, optimizers, order, progress)
                t1 = time.perf_counter()
                record: dict[str, Any] = {"epoch": epoch, "train/loss": loss, **{f"valid/{k}": v for k, v in self.evaluate("valid").items()}}
                t2 = time.perf_counter()
                record.update({"seconds/train": t1 - t0, "seconds/eval": t2 - t1, "train/samples_per_s": rows / (t1 - t0)})
                record["lr"] = optimizers[0].param_groups[0]["lr"]
                timings["train_s"] += t1 - t0
                timings["eval_s"] += t2 - t1
                history.append(record)
                value = record[self.monitor]
                if not math.isfinite(value):
                    raise TrainingError(f"{self.monitor} is {value} in epoch {epoch} (single-class validation labels?)")
                improved = value > best_value if self.maximize else value < best_value
                if improved:
                    best_value, best_epoch, stale = value, epoch, 0
                    best_state = copy.deepcopy(self.model.state_dict())
                else:
                    stale += 1
                for sch in schedulers:
                    sch.step(value)
                rng_ranks = self.dist.all_gather_object(torch.get_rng_state()) if self.dist.active else None
                if self.recorder:
                    self.recorder.log_epoch(record)
                    if improved:
                        self.recorder.save_checkpoint({"epoch": epoch, "model": best_state})
                    self.recorder.save_checkpoint(
                        {
                            "epoch": epoch, "model": self.model.state_dict(),
                            "optimizers": [o.state_dict() for o in optimizers],
                            "schedulers": [s.state_dict() for s in schedulers],
                            "order_rng": order.get_state(), "torch_rng": torch.get_rng_state(),
                            "history": history, "best_value": best_value, "best_epoch": best_epoch,
                            "stale": stale, "best_model": best_state, "timings": timings,
                            "elapsed_s": time.perf_counter() - started,
                            **({"world_size": self.dist.world_size, "torch_rng_ranks": rng_ranks} if rng_ranks is not None else {}),
                        },
                        name="last.pt",
                    )
                if self.console:
                    self._print_epoch(record, improved)
                if self.on_epoch is not None:
                    self.on_epoch(record)
                if cfg.patience is not None and stale >= cfg.patience and self.console:
                    self.console.print(f"early stop: no {self.monitor} gain in {stale} epochs")

        self.model.load_state_dict(best_state)
        if self.recorder and best_epoch == 0:
            self.recorder.save_checkpoint({"epoch": 0, "model": best_state})
        t0 = time.perf_counter()
        # train.score_test false (tuning trials): the test split stays sealed, nothing is scored
        test = {f"test/{k}": v for k, v in self.evaluate("test").items()} if self.config.score_test else {}
        timings["test_s"] = time.perf_counter() - t0
        trained = [r for r in history if r["epoch"] > 0]
        selected = next((r for r in history if r["epoch"] == best_epoch), {})
        summary: dict[str, Any] = {
            "selected_epoch": best_epoch,
            "selection": f"best {self.monitor}{self._aggregation()}",
            "epochs_run": len(trained),
            **{k: v for k, v in selected.items() if k.startswith("valid/")},
            **test,
            "rows": {s: len(c) for s, c in self.columns.items()},
            "timings": {
                **timings,
                "seconds_per_epoch": timings["train_s"] / max(len(trained), 1),
                "train_samples_per_s": rows * len(trained) / timings["train_s"] if timings["train_s"] else None,
                "total_s": time.perf_counter() - started,
            },
            **self.dist.describe(cfg.batch_size),
        }
        return FitResult(summary=summary, history=history)

    def _train_epoch(self, epoch: int, optimizers: list[torch.optim.Optimizer], order: torch.Generator, progress: Progress) -> float:
        self.model.train()
        cols = self.columns["train"]
        n_batches = max(math.ceil(len(cols) / self.config.batch_size), 1)
        task = progress.add_task(f"epoch {epoch}/{self.config.epochs}", total=n_batches)
        total = torch.zeros((), dtype=torch.float64, device=self.device)
        # DDP: the sizes of the global batches this rank's parts belong to (None in one process).
        sizes = self.dist.batch_sizes(len(cols), self.config.batch_size) if self.dist.active else None
        with EmbeddingL2(self.model, self.config.embedding_l2) as regulariser:
            batches = to_device(cols.batches(self.config.batch_size, order, shard=self.dist.shard), self.device)
            for step, batch in enumerate(batches, start=1):
                self.governor.tick()
                with autocast(self.device, self.config.precision):  # train.precision bf16: the forward pass only
                    logits = task_logits(self.net(batch), self.tasks).float()
                if sizes is None:
                    loss = masked_bce(logits, batch.labels, self.task_weights)
                    objective, rows = (loss + regulariser.penalty() if regulariser.active else loss), len(batch)
                else:
                    loss, objective = self._part_objective(logits, batch.labels, sizes[step - 1], regulariser)
                    rows = sizes[step - 1] / self.dist.world_size
                for o in optimizers:
                    o.zero_grad(set_to_none=True)
                objective.backward()
                for o in optimizers:
                    o.step()
                total += loss.detach() * rows  # the logged loss is the BCE alone
                if step % CHECK_EVERY == 0:
                    if not torch.isfinite(self.dist.all_reduce_sum(total.clone()) if sizes is not None else total):
                        raise TrainingError(
                            f"training loss became non-finite in epoch {epoch}, batch {step}; lower train.lr (now {self.config.lr}) or check the data"
                        )
                    progress.update(task, completed=step)
        progress.update(task, completed=n_batches, visible=False)
        value = float(self.dist.all_reduce_sum(total).item()) / max(len(cols), 1)
        if not math.isfinite(value):
            raise TrainingError(f"training loss became {value} in epoch {epoch}; lower train.lr (now {self.config.lr}) or check the data")
        return value

    # ------------------------------------------------------------------ data parallel (DDP)
    def _check_distributed(self) -> None:
        """Refuse what DDP cannot train as one process would, before any training.

        Raises:
            ConfigError: a BatchNorm / Dice model whose per-rank part of some batch has < 2 rows.
        """
        world, batch_size = self.dist.world_size, self.config.batch_size
        self._labels_have_nan = bool(torch.isnan(self.columns["train"].labels).any())
        if any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in self.model.modules()):
            smallest = min(self.dist.batch_sizes(len(self.columns["train"]), batch_size) or [batch_size]) // world
            if smallest < 2:
                raise ConfigError(
                    f"train.batch_size {batch_size} over {world} processes leaves a rank {smallest} row(s) of a batch, and "
                    f"{type(self.model).__name__} has BatchNorm (or Dice), which needs >= 2 rows per rank; use a larger batch size"
                )
            if self.dist.is_main:
                warnings.warn(
                    f"{type(self.model).__name__} has BatchNorm (or Dice): under DDP its batch statistics are taken over each "
                    f"rank's {batch_size // world} rows, not the global batch of {batch_size}, so {world} processes do not "
                    "train exactly as one",
                    stacklevel=3,
                )

    def _part_objective(self, logits: Tensor, labels: Tensor, global_rows: int, regulariser: EmbeddingL2) -> tuple[Tensor, Tensor]:
        """This rank's share of a global batch's loss, scaled so that DDP's average of the rank
        gradients (Li et al. 2020) equals the gradient of the single-process loss :func:`masked_bce`
        over the whole global batch, also for unequal or empty parts.

        Per task t: W x (BCE summed over this rank's known labels) / (known labels of t in the global
        batch); with no NaN label in the split that count is the global batch size, else it is
        all-reduced. The embedding penalty (lambda / B_r x this rank's rows) is scaled by W x B_r / B.

        Args:
            logits, labels: [B_r, T] this rank's part.
            global_rows: B, rows of the global batch.

        Returns:
            (loss, objective): the scaled BCE (summing loss x B / W over ranks and batches gives the
            single-process epoch loss) and the loss plus the scaled penalty, to back-propagate.
        """
        world = self.dist.world_size
        known = ~torch.isnan(labels)
        if self._labels_have_nan:
            counts = self.dist.all_reduce_sum(known.sum(0).to(torch.float64))
        else:
            counts = torch.full((labels.shape[1],), float(global_rows), dtype=torch.float64, device=labels.device)
        safe = torch.where(known, labels, torch.zeros_like(labels))
        losses = F.binary_cross_entropy_with_logits(logits, safe, reduction="none") * known
        per_task = losses.sum(0) / counts.clamp(min=1).to(losses.dtype)
        loss = (per_task * self.task_weights).sum() * world
        if not regulariser.active:
            return loss, loss
        penalty = regulariser.penalty()  # always taken: it also forgets this step's looked-up rows
        return loss, (loss + penalty * (world * len(labels) / global_rows) if len(labels) else loss)

    def _resumed_rng(self, resume: dict[str, Any]) -> Tensor:
        """This rank's torch RNG state from a ``last.pt`` (dropout masks continue exactly).

        Raises:
            ConfigError: if the run was trained on another number of processes.
        """
        saved = int(resume.get("world_size", 1))
        if saved != self.dist.world_size:
            raise ConfigError(
                f"the run was trained on {saved} process(es) and is resumed on {self.dist.world_size}; "
                f"resume it with the same number (recforge train --resume RUN --nproc {saved})"
            )
        return resume["torch_rng_ranks"][self.dist.rank] if self.dist.active else resume["torch_rng"]

    def _progress(self) -> Progress:
        return Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("batches"),
            TimeElapsedColumn(), TimeRemainingColumn(),
            console=self.console, disable=self.console is None, transient=True,
        )

    def _print_epoch(self, record: dict[str, Any], improved: bool) -> None:
        assert self.console is not None
        parts = [f"epoch {record['epoch']:>3}", f"loss {record['train/loss']:.4f}"]
        parts += [f"{k} {record[k]:.4f}" for k in ("valid/auc", "valid/log_loss") if k in record]
        parts.append(f"{record['seconds/train']:.1f}s ({record['train/samples_per_s']:,.0f} rows/s)")
        if improved:
            parts.append("*")
        self.console.print("  ".join(parts), soft_wrap=True, highlight=False)
