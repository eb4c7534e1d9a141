"""Evaluation protocols: leave-one-out ranking for implicit feedback (He et al., 2017, Sec. 4.1)
and pointwise hold-out scoring (AUC, LogLoss) for CTR and multi-task data.

* Sampled: each user's held-out item is ranked among its sampled negatives (NCF: 99).
  Candidates that equal the held-out item are ignored, as the NCF reference ``evaluate.py`` does
  by keying scores by item id (the authors' ML-1M negatives file repeats the test item 156 times).
* Full ranking: the held-out item is ranked against the whole catalogue minus the user's training
  items. Sampled metrics can order models differently from full ranking (Krichene & Rendle,
  KDD 2020), so both are available.
* Several relevant items per user (a temporal split, the last N items): the ``*_multi_relevant``
  functions rank every held-out item of a user against the same candidates and report Recall,
  Precision, NDCG, MAP, HR and MRR (:mod:`recforge.metrics.multi_relevant`). Full ranking streams
  the catalogue in item chunks, so a 1 M-item catalogue never needs a users x items matrix.

Shapes: U users, C candidates per user, I items.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import numpy as np
import torch
from torch import Tensor, nn

from recforge.data.batches import Batch
from recforge.data.sampling import InteractionIndex
from recforge.metrics.classification import auc, gauc, log_loss
from recforge.metrics.multi_relevant import (
    RelevantRankStatistics,
    candidate_counts,
    multi_relevant_metrics,
    rank_among_candidates,
    relevant_rank_statistics,
)
from recforge.metrics.ranking import rank_statistics, ranking_metrics



class RowSharder(Protocol):
    """Splits the rows of an evaluation over data-parallel ranks and gathers them back
    (:class:`recforge.training.distributed.DistributedContext`): each rank scores ``part(n)``,
    ``gather_rows`` returns all ``n`` rows in row order on every rank, so a metric computed on
    them equals the single-process metric exactly (never an average over ranks)."""

    def part(self, n: int) -> slice: ...

    def gather_rows(self, local: np.ndarray, n: int) -> np.ndarray: ...


if TYPE_CHECKING:
    from recforge.data.held_out_sets import HeldOutSetsData
    from recforge.data.tabular import TensorColumns


@torch.inference_mode()
def score_pairs(
    model: nn.Module, users: np.ndarray, items: np.ndarray, device: torch.device | str = "cpu", batch_size: int = 1 << 18
) -> np.ndarray:
    """Score (user, item) pairs with ``model`` in evaluation mode.

    Args:
        model: maps a Batch with sparse_features [B, 2] to scores [B].
        users, items: int64 [M].
        device: where to run the model.
        batch_size: rows per forward pass (bounded memory).

    Returns:
        float32 [M] scores (logits).
    """
    was_training = model.training
    model.eval()
    pairs = torch.from_numpy(np.stack([np.asarray(users, np.int64), np.asarray(items, np.int64)], axis=1))
    out = np.empty(len(pairs), dtype=np.float32)
    empty_labels = torch.empty((0, 1))
    try:
        for start in range(0, len(pairs), batch_size):
            chunk = pairs[start : start + batch_size]
            scores = model(Batch(sparse_features=chunk, labels=empty_labels).to(device))  # every field on the device
            out[start : start + len(chunk)] = scores.float().cpu().numpy()
    finally:
        model.train(was_training)
    return out


def evaluate_sampled(
    model: nn.Module,
    users: np.ndarray,
    candidates: np.ndarray,
    ks: tuple[int, ...] = (10,),
    device: torch.device | str = "cpu",
    shard: RowSharder | None = None,
) -> tuple[dict[str, float], np.ndarray, np.ndarray]:
    """Rank each user's positive (column 0 of ``candidates``) among the other columns.

    Args:
        model: the scorer.
        users: int64 [U].
        candidates: int64 [U, 1 + C], positive first.
        ks: cut-offs for HR@K and NDCG@K.
        device: where to run the model.
        shard: data-parallel runs: this rank ranks its part of the users, and the per-user rank
            statistics of all users are gathered before the metrics are computed once.

    Returns:
        (metrics, greater, ties): mean metrics, and the per-user rank statistics int64 [U]
        (for per-user paired comparisons).
    """
    n_users = len(users)
    if shard is not None:
        rows = shard.part(n_users)
        users, candidates = np.asarray(users)[rows], np.asarray(candidates)[rows]
    u = np.repeat(np.asarray(users, np.int64), candidates.shape[1])
    scores = score_pairs(model, u, candidates.reshape(-1), device).reshape(candidates.shape)
    mask = candidates[:, 1:] != candidates[:, :1]
    greater, ties = rank_statistics(scores[:, 0], scores[:, 1:], mask)
    if shard is not None:
        both = shard.gather_rows(np.stack([np.asarray(greater, np.int64), np.asarray(ties, np.int64)], axis=1), n_users)
        greater, ties = both[:, 0], both[:, 1]
    return ranking_metrics(greater, ties, ks), greater, ties


def evaluate_full_ranking(
    model: nn.Module,
    users: np.ndarray,
    positives: np.ndarray,
    exclude: InteractionIndex,
    ks: tuple[int, ...] = (10,),
    device: torch.device | str = "cpu",
    max_scores: int = 1 << 22,
    shard: RowSharder | None = None,
) -> tuple[dict[str, float], np.ndarray, np.ndarray]:
    """Rank each user's held-out item against every item except those in ``exclude``.

    Args:
        model: the scorer.
        users: int64 [U].
        positives: int64 [U] held-out items.
        exclude: the user's known interactions to mask (its training items); the held-out item
            itself is never masked.
        ks: cut-offs.
        device: where to run the model.
        max_scores: scores held in memory at once (users are processed in chunks).
        shard: data-parallel runs: this rank ranks its part of the users (see :func:`evaluate_sampled`).

    Returns:
        (metrics, greater, ties) as in :func:`evaluate_sampled`.
    """
    users = np.asarray(users, np.int64)
    positives = np.asarray(positives, np.int64)
    if shard is not None:
        n_users, rows = len(users), shard.part(len(users))
        _, greater, ties = evaluate_full_ranking(model, users[rows], positives[rows], exclude, ks, device, max_scores)
        both = shard.gather_rows(np.stack([greater, ties], axis=1), n_users)
        return ranking_metrics(both[:, 0], both[:, 1], ks), both[:, 0], both[:, 1]
    n_items = exclude.num_items
    all_items = np.arange(n_items, dtype=np.int64)
    chunk = max(1, max_scores // n_items)
    greater = np.empty(len(users), np.int64)
    ties = np.empty(len(users), np.int64)
    for start in range(0, len(users), chunk):
        u = users[start : start + chunk]
        p = positives[start : start + chunk]
        scores = score_pairs(model, np.repeat(u, n_items), np.tile(all_items, len(u)), device).reshape(len(u), n_items)
        mask = np.ones((len(u), n_items), dtype=bool)
        rows, items = exclude.positives_of(u)
        mask[rows, items] = False
        mask[np.arange(len(u)), p] = False  # the positive is compared against the others, not itself
        g, t = rank_statistics(scores[np.arange(len(u)), p], scores, mask)
        greater[start : start + len(u)] = g
        ties[start : start + len(u)] = t
    return ranking_metrics(greater, ties, ks), greater, ties


def relevant_sets(
    users: np.ndarray, items: np.ndarray, evaluated_users: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Group held-out (user, item) pairs into per-user relevant sets (CSR); a repeated pair counts once.

    Args:
        users, items: int64 [M], the held-out interactions (a user may appear many times).
        evaluated_users: int64 [U], the users to evaluate, in this order; a user with no pair
            gets an empty set (left out of the means and counted as ``users_without_relevant``).
            None: the users that appear in ``users``, sorted.

    Returns:
        (users [U], offsets [U + 1], relevant_items [P]), items sorted within each user.

    Raises:
        ValueError: if a pair's user is not among ``evaluated_users``, or shapes differ.
    """
    users, items = np.asarray(users, np.int64), np.asarray(items, np.int64)
    if users.shape != items.shape or users.ndim != 1:
        raise ValueError(f"expected users [M] and items [M], got {users.shape} and {items.shape}")
    pairs = np.unique(np.stack([users, items], axis=1), axis=0).reshape(-1, 2)  # sorted by user, then item
    if evaluated_users is None:
        evaluated_users = np.unique(pairs[:, 0])
    evaluated_users = np.asarray(evaluated_users, np.int64)
    order = np.argsort(evaluated_users, kind="stable")
    position = np.searchsorted(evaluated_users[order], pairs[:, 0])
    known = position < len(order)
    known[known] = evaluated_users[order][position[known]] == pairs[known, 0]
    if not known.all():
        raise ValueError(f"held-out pair of user {int(pairs[~known, 0][0])}, who is not among the evaluated users")
    row = order[position]
    counts = np.bincount(row, minlength=len(evaluated_users))
    by_row = np.argsort(row, kind="stable")
    return evaluated_users, np.r_[0, np.cumsum(counts)].astype(np.int64), pairs[by_row, 1]


def _check_relevant(users: np.ndarray, offsets: np.ndarray, relevant_items: np.ndarray, num_items: int) -> np.ndarray:
    """Validate the CSR relevant sets; returns the row (0..U-1) of every relevant item."""
    if offsets.shape != (len(users) + 1,) or offsets[0] != 0 or (np.diff(offsets) < 0).any():
        raise ValueError(f"offsets must be non-decreasing [U + 1] = [{len(users) + 1}] from 0, got shape {offsets.shape}")
    if relevant_items.shape != (offsets[-1],):
        raise ValueError(f"expected {offsets[-1]} relevant items (offsets[-1]), got shape {relevant_items.shape}")
    if len(relevant_items) and (relevant_items.min() < 0 or relevant_items.max() >= num_items):
        raise ValueError(f"relevant item ids must lie in [0, {num_items})")
    rows = np.repeat(np.arange(len(users), dtype=np.int64), np.diff(offsets))
    if len(np.unique(rows * num_items + relevant_items)) != len(rows):
        raise ValueError("a user's relevant items repeat an item; build the sets with relevant_sets()")
    return rows


def evaluate_sampled_multi_relevant(
    model: nn.Module,
    users: np.ndarray,
    offsets: np.ndarray,
    relevant_items: np.ndarray,
    negatives: np.ndarray,
    ks: tuple[int, ...] = (10,),
    device: torch.device | str = "cpu",
) -> tuple[dict[str, float], RelevantRankStatistics]:
    """Rank each user's relevant items among its sampled negatives (the same negatives for all of them).

    A negative that is one of the user's relevant items is ignored (it is ranked as a relevant
    item), as :func:`evaluate_sampled` ignores a negative equal to the positive.

    Args:
        model: the scorer.
        users: int64 [U].
        offsets: int64 [U + 1]; user ``users[u]`` has ``relevant_items[offsets[u]:offsets[u + 1]]``
            (see :func:`relevant_sets`).
        relevant_items: int64 [P], distinct within each user.
        negatives: int64 [U, C].
        ks: cut-offs.
        device: where to run the model.

    Returns:
        (metrics, statistics): the means of :func:`~recforge.metrics.multi_relevant.multi_relevant_metrics`
        and the per-item rank statistics (per-user metrics for paired comparisons).

    Raises:
        ValueError: on inconsistent shapes, repeated relevant items, or no user with a relevant item.
    """
    users, offsets = np.asarray(users, np.int64), np.asarray(offsets, np.int64)
    relevant_items, negatives = np.asarray(relevant_items, np.int64), np.asarray(negatives, np.int64)
    if negatives.ndim != 2 or len(negatives) != len(users):
        raise ValueError(f"expected negatives [U, C] with U = {len(users)}, got {negatives.shape}")
    num_items = int(max(relevant_items.max(initial=-1), negatives.max(initial=-1))) + 1
    rows = _check_relevant(users, offsets, relevant_items, num_items)
    relevant_scores = score_pairs(model, users[rows], relevant_items, device)
    negative_scores = score_pairs(model, np.repeat(users, negatives.shape[1]), negatives.reshape(-1), device)
    negative_keys = np.arange(len(users), dtype=np.int64)[:, None] * num_items + negatives
    mask = ~np.isin(negative_keys, rows * num_items + relevant_items)
    stats = rank_among_candidates(relevant_scores, offsets, negative_scores.reshape(negatives.shape), mask)
    return multi_relevant_metrics(stats, ks), stats


def evaluate_full_ranking_multi_relevant(
    model: nn.Module,
    users: np.ndarray,
    offsets: np.ndarray,
    relevant_items: np.ndarray,
    exclude: InteractionIndex,
    ks: tuple[int, ...] = (10,),
    device: torch.device | str = "cpu",
    user_chunk: int = 256,
    item_chunk: int = 16384,
) -> tuple[dict[str, float], RelevantRankStatistics]:
    """Rank each user's relevant items against the whole catalogue except its ``exclude`` items.

    Users and items are both streamed: for a chunk of users, the catalogue is scored one item
    chunk at a time and each relevant item keeps running counts of the candidates scoring above
    and equal to it, so memory is O(user_chunk x item_chunk) whatever the catalogue size. The
    result does not depend on the chunk sizes (counts are sums over disjoint chunks).

    Args:
        model: the scorer.
        users, offsets, relevant_items: the relevant sets as in :func:`evaluate_sampled_multi_relevant`.
        exclude: the users' known interactions to mask (training items). A relevant item is never
            masked, even when it is also in ``exclude``.
        ks: cut-offs.
        device: where to run the model.
        user_chunk: users scored together (rows).
        item_chunk: catalogue items scored at once per user (columns).

    Returns:
        (metrics, statistics) as in :func:`evaluate_sampled_multi_relevant`.

    Raises:
        ValueError: on inconsistent input, chunk sizes below 1, or no user with a relevant item.
    """
    if user_chunk < 1 or item_chunk < 1:
        raise ValueError(f"chunk sizes must be >= 1, got user_chunk={user_chunk}, item_chunk={item_chunk}")
    users, offsets = np.asarray(users, np.int64), np.asarray(offsets, np.int64)
    relevant_items = np.asarray(relevant_items, np.int64)
    n_items = exclude.num_items
    rows = _check_relevant(users, offsets, relevant_items, n_items)
    relevant_scores = np.empty(len(relevant_items), dtype=np.float32)
    greater = np.zeros(len(relevant_items), dtype=np.int64)
    ties = np.zeros(len(relevant_items), dtype=np.int64)
    for u_start in range(0, len(users), user_chunk):
        u = users[u_start : u_start + user_chunk]
        p = slice(offsets[u_start], offsets[u_start + len(u)])
        p_rows, p_items = rows[p] - u_start, relevant_items[p]
        if len(p_items) == 0:  # users without a relevant item are only counted
            continue
        relevant_scores[p] = score_pairs(model, u[p_rows], p_items, device)
        train_rows, train_items = exclude.positives_of(u)
        for i_start in range(0, n_items, item_chunk):
            width = min(item_chunk, n_items - i_start)
            items = np.arange(i_start, i_start + width, dtype=np.int64)
            scores = score_pairs(model, np.repeat(u, width), np.tile(items, len(u)), device).reshape(len(u), width)
            mask = np.ones((len(u), width), dtype=bool)
            inside = (train_items >= i_start) & (train_items < i_start + width)
            mask[train_rows[inside], train_items[inside] - i_start] = False
            # relevant items are ranked among themselves by relevant_rank_statistics, never as candidates
            inside = (p_items >= i_start) & (p_items < i_start + width)
            mask[p_rows[inside], p_items[inside] - i_start] = False
            g, t = candidate_counts(relevant_scores[p], p_rows, scores, mask, max_cells=len(u) * width)
            greater[p] += g
            ties[p] += t
    stats = relevant_rank_statistics(relevant_scores, offsets, greater, ties)
    return multi_relevant_metrics(stats, ks), stats


def task_logits(output: Tensor | dict[str, Tensor], tasks: tuple[str, ...]) -> Tensor:
    """A model's output as logits [B, T] in ``tasks`` order (a [B] tensor is the single task).

    Raises:
        ValueError: if a multi-task output lacks one of ``tasks``.
    """
    if isinstance(output, dict):
        missing = [t for t in tasks if t not in output]
        if missing:
            raise ValueError(f"model output has tasks {sorted(output)}, missing {missing}")
        return torch.stack([output[t] for t in tasks], dim=1)
    return output.unsqueeze(1) if output.dim() == 1 else output.reshape(output.shape[0], -1)  # [0] too (an empty DDP part)


@torch.no_grad()
def score_rows(
    model: nn.Module,
    columns: "TensorColumns",
    tasks: tuple[str, ...],
    batch_size: int = 16384,
    device: torch.device | str = "cpu",
    shard: RowSharder | None = None,
) -> np.ndarray:
    """Logits of every row in evaluation mode, in row order.

    Args:
        shard: data-parallel runs: this rank scores its contiguous part of the rows and the
            logits of all rows are gathered (every rank gets all N rows, padding dropped).

    Returns:
        float64 [N, T]. Scores do not depend on the batch composition (eval mode: no dropout,
        BatchNorm uses its running statistics).
    """
    rows = shard.part(len(columns)) if shard is not None else slice(0, len(columns))
    was_training = model.training
    model.eval()
    try:
        parts = [
            task_logits(model(columns.batch(start, min(start + batch_size, rows.stop)).to(device)), tasks).double().cpu()
            for start in range(rows.start, rows.stop, batch_size)
        ]
    finally:
        model.train(was_training)
    logits = torch.cat(parts).numpy() if parts else np.zeros((0, len(tasks)))
    return shard.gather_rows(logits, len(columns)) if shard is not None else logits


def pointwise_metrics(
    labels: np.ndarray,
    logits: np.ndarray,
    tasks: tuple[str, ...],
    groups: np.ndarray | None = None,
    task_weights: tuple[float, ...] | None = None,
) -> dict[str, float]:
    """AUC and LogLoss per task over the whole split (never averaged over batches), and GAUC
    (impression-weighted per-user AUC, Zhou et al. 2018) when ``groups`` gives each row's user.

    Rows whose label is NaN (missing for that task) are left out of that task's metrics. With
    one task the keys are ``auc`` / ``log_loss`` (/ ``gauc``, ``gauc_users``, ``gauc_skipped_users``);
    with several, ``<task>/auc`` and ``<task>/log_loss`` plus their means over tasks as ``auc`` /
    ``log_loss``. Those means are weighted by ``task_weights`` (the loss weights lambda_t), so they
    track the training objective sum_t lambda_t L_t: a task of weight 0 is reported per task but
    does not count in ``auc`` / ``log_loss`` (and so not in model selection on them).

    Args:
        labels: [N, T] 0/1 or NaN (missing).
        logits: [N, T].
        tasks: the T task names.
        groups: [N] user of each row, for GAUC (None: no GAUC).
        task_weights: [T] non-negative weights, not all 0 (None: 1 each).

    Raises:
        ValueError: for NaN or infinite logits, or task weights that are all 0 or of the wrong length.
    """
    out: dict[str, float] = {}
    for t, task in enumerate(tasks):
        known = ~np.isnan(labels[:, t])
        y, z = labels[known, t], logits[known, t]
        prefix = "" if len(tasks) == 1 else f"{task}/"
        out[f"{prefix}auc"] = auc(y, z)
        out[f"{prefix}log_loss"] = log_loss(y, logits=z)
        if groups is not None:
            value, counts = gauc(y, z, groups[known])
            out[f"{prefix}gauc"] = value
            out[f"{prefix}gauc_users"] = float(counts["users"])
            out[f"{prefix}gauc_skipped_users"] = float(counts["skipped_users"])
    if len(tasks) > 1:
        weights = np.asarray(task_weights if task_weights is not None else (1.0,) * len(tasks), dtype=np.float64)
        if weights.shape != (len(tasks),) or not (weights >= 0).all() or weights.sum() <= 0:
            raise ValueError(f"task_weights must be {len(tasks)} non-negative numbers, not all 0; got {task_weights}")
        counted = [t for t, w in zip(tasks, weights) if w > 0]
        w = weights[weights > 0]
        out["auc"] = float(np.dot(w, [out[f"{t}/auc"] for t in counted]) / w.sum())
        out["log_loss"] = float(np.dot(w, [out[f"{t}/log_loss"] for t in counted]) / w.sum())
    return out


def evaluate_held_out_pairs(
    model: nn.Module,
    users: np.ndarray,
    items: np.ndarray,
    exclude: InteractionIndex,
    ks: tuple[int, ...] = (10,),
    device: torch.device | str = "cpu",
    users_left_out: int = 0,
) -> dict[str, float]:
    """Full-catalogue metrics of several held-out items per user given as (user, item) pairs.

    Groups the pairs with :func:`relevant_sets` and ranks them with
    :func:`evaluate_full_ranking_multi_relevant` (chunked; the ``exclude`` items masked), the
    protocol of ``last:N`` and ``time:COL`` splits (:mod:`recforge.data.held_out_sets`).

    Args:
        model: the scorer.
        users, items: int64 [M] held-out pairs (a user repeats once per item).
        exclude: known interactions to mask (training, and for the test split validation, items).
        ks: cut-offs.
        device: where to run the model.
        users_left_out: users the split left out (no held-out item, or no training item); reported
            as ``users_without_relevant``, never counted as 0 in the means.

    Returns:
        ``recall@K``, ``precision@K``, ``ndcg@K``, ``map@K``, ``hit_rate@K``, ``mrr``, ``users``,
        ``users_without_relevant``.

    Raises:
        ValueError: if there is no pair.
    """
    evaluated, offsets, relevant = relevant_sets(users, items)
    metrics, _ = evaluate_full_ranking_multi_relevant(model, evaluated, offsets, relevant, exclude, ks, device)
    metrics["users_without_relevant"] = float(metrics["users_without_relevant"] + users_left_out)
    return metrics


def evaluate_held_out_split(
    model: nn.Module, data: "HeldOutSetsData", split: str, ks: tuple[int, ...] = (10,), device: torch.device | str = "cpu"
) -> dict[str, float]:
    """:func:`evaluate_held_out_pairs` on the ``valid`` or ``test`` pairs of a ``last:N`` / ``time:COL`` split.

    Masked: the training items, and for ``test`` the validation items too (both are known by
    then); the users the split left out are counted in ``users_without_relevant``.

    Raises:
        ValueError: for a split other than valid/test, or one that holds no pair.
    """
    if split not in ("valid", "test"):
        raise ValueError(f"split must be 'valid' or 'test', got {split!r}")
    users, items = data.train_users, data.train_items
    if split == "test" and data.valid_users is not None:
        users, items = np.r_[users, data.valid_users], np.r_[items, data.valid_candidates[:, 0]]
    held_users, held = (data.valid_users, data.valid_candidates) if split == "valid" else (data.test_users, data.test_candidates)
    if held_users is None or len(held_users) == 0:
        raise ValueError(f"the {split} split holds no (user, item) pair")
    exclude = InteractionIndex(users, items, data.num_items)
    return evaluate_held_out_pairs(model, held_users, held[:, 0], exclude, ks, device, data.users_left_out(split))
