"""Top-K recommendations from a trained implicit-feedback run (NCF, MF, ItemPop, any (user, item) scorer).

For each requested user (a raw id, as in the user's data) the catalogue is scored, the user's
training items are masked (unless ``include_seen``) and the K best items are returned with their
raw ids. A user the run never saw in training (cold) gets the popularity ranking: items by
training count.

What a run must provide, looked up in this order:

1. Artefacts in the run directory (written for every implicit-feedback run, see
   :mod:`recforge.data.id_maps`): ``interactions.npz`` (``train_users``, ``train_items`` int64
   internal ids, ``num_users``, ``num_items``) and the raw-id maps ``user_ids.parquet`` /
   ``item_ids.parquet`` (column ``id``; row index = internal id).
2. Otherwise (runs from before those artefacts) the run's registered dataset, re-loaded with
   :func:`recforge.training.experiment.load_data` (``data_dir``: the data directory). Its raw ids: the raw GroupLens MovieLens datasets map ids
   to 0..n-1 in ascending raw-id order, so the map is the sorted raw ids read from the ratings
   file; files that already hold dense ids (``movielens-1m-ncf``) are their own map.

Matching raw ids: requested ids and the saved map are compared as strings (``str(17) == "17"``),
so ``17``, ``"17"`` and a CLI argument ``17`` find the same user whatever type the map holds. An
id that matches no user is cold (never an error: new users are what a popularity fallback is for).

Output: a ``pyarrow.Table`` with one row per (user, rank):

* ``user``: the requested id, in the map's type when every requested id converts to it
  (``"17"`` -> 17 for integer maps), else as strings; users in request order.
* ``rank``: 1..K.
* ``item``: the item's raw id (the map's type), never the internal id.
* ``score``: float32, the model's raw output: a logit for ``mf``/``gmf``/``mlp``/``neumf``
  (sigmoid(score) is the predicted probability), the training count for ``itempop``; for a
  cold user, the item's training count.
* ``cold``: bool, the user was not in training and got the popularity ranking.

Ties: equal scores rank the lower internal item id first (deterministic; for MovieLens the lower
raw id). A user with fewer than K unseen items gets fewer rows. Users are scored in chunks of at
most ``max_scores`` floats; BLAS picks its kernels by matrix shape, so a score can differ in the
last float32 bits between chunk sizes, and two items can then swap only where their scores tie
within that noise.

Shape letters: U users in a chunk, I catalogue items, K cut-off.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
from torch import Tensor, nn

from recforge.data.id_maps import INTERACTIONS_FILE, load_id_maps, load_train_interactions
from recforge.errors import ConfigError, DataError, RecforgeError
from recforge.serving.catalogue_scores import CatalogueScorer

_IMPLICIT_MODELS = ("itempop", "mf", "gmf", "mlp", "neumf")


@dataclass(frozen=True)
class TrainingInteractions:
    """A run's training interactions and raw-id maps.

    Attributes:
        num_users, num_items: internal id ranges (0..n-1).
        train_users, train_items: int64 [P] internal ids of the training interactions.
        user_ids: [num_users] raw user id of each internal id.
        item_ids: [num_items] raw item id of each internal id.
        source: where they came from (for messages): a file or a dataset name.
    """

    num_users: int
    num_items: int
    train_users: np.ndarray
    train_items: np.ndarray
    user_ids: pa.Array
    item_ids: pa.Array
    source: str

    def __post_init__(self) -> None:
        if len(self.user_ids) != self.num_users or len(self.item_ids) != self.num_items:
            raise DataError(
                f"id maps hold {len(self.user_ids)} users / {len(self.item_ids)} items, "
                f"expected {self.num_users} / {self.num_items}",
                self.source,
            )
        if self.train_users.shape != self.train_items.shape or self.train_users.ndim != 1:
            raise DataError("train_users and train_items must be equal-length 1-d arrays", self.source)
        for name, ids, n in (("train_users", self.train_users, self.num_users), ("train_items", self.train_items, self.num_items)):
            if len(ids) and (ids.min() < 0 or ids.max() >= n):
                raise DataError(f"{name} must lie in [0, {n})", self.source)


def read_run_interactions(run_dir: str | Path) -> TrainingInteractions | None:
    """The artefacts ``interactions.npz`` + id maps of a run directory, or None if it has none.

    Raises:
        DataError: for an unreadable or inconsistent file, or a missing id map.
    """
    if not (Path(run_dir) / INTERACTIONS_FILE).is_file():
        return None
    arrays = load_train_interactions(run_dir)
    user_ids, item_ids = load_id_maps(run_dir)
    return TrainingInteractions(
        int(arrays["num_users"]), int(arrays["num_items"]), arrays["train_users"], arrays["train_items"],
        user_ids, item_ids, source=str(Path(run_dir) / INTERACTIONS_FILE),
    )


def dataset_interactions(config: Any, data_dir: str | Path | None) -> TrainingInteractions:
    """Training interactions and raw-id maps from a run's registered dataset (see the module docstring).

    Args:
        config: the run's ExperimentConfig.
        data_dir: the data directory (None: ``RECFORGE_DATA_DIR`` or the default).

    Raises:
        DataError / DataMissingError: for missing or malformed dataset files.
    """
    from recforge.data.datasets import get_dataset
    from recforge.training.experiment import load_data

    data = load_data(config, data_dir)
    source = get_dataset(config.data.name)
    if hasattr(source, "read_ratings"):  # raw GroupLens files: internal ids are the sorted raw ids
        raw_users, raw_items, _ = source.read_ratings(source.verify(data_dir)["ratings"])
        user_ids, item_ids = pa.array(np.unique(raw_users)), pa.array(np.unique(raw_items))
    else:  # the files hold dense ids already
        user_ids, item_ids = pa.array(np.arange(data.num_users)), pa.array(np.arange(data.num_items))
    return TrainingInteractions(
        data.num_users, data.num_items, np.asarray(data.train_users, np.int64), np.asarray(data.train_items, np.int64),
        user_ids, item_ids, source=config.data.name,
    )


class Recommender:
    """Top-K items for users, from a model of (user, item) pairs and its training interactions.

    Args:
        model: maps ``batch.sparse_features`` [B, 2] (internal user, item) to scores [B].
        interactions: the training interactions and raw-id maps the model was trained with.
        max_scores: bound on the floats scored at once (users x items x the model's per-pair
            width); memory stays O(max_scores) whatever the number of users.
        name: what to call the run in messages.
    """

    def __init__(self, model: nn.Module, interactions: TrainingInteractions, max_scores: int = 1 << 22, name: str = "the run"):
        if max_scores < 1:
            raise ValueError(f"max_scores must be >= 1, got {max_scores}")
        self.interactions = interactions
        self.name = name
        self.max_scores = int(max_scores)
        self.scorer = CatalogueScorer(model, interactions.num_items)
        self._seen = _SeenItems(interactions.train_users, interactions.train_items, interactions.num_users)
        self._counts = np.bincount(interactions.train_items, minlength=interactions.num_items).astype(np.float32)
        self._popular = np.argsort(-self._counts, kind="stable")  # stable: ties keep the lower item id first
        self._user_keys = pc.cast(interactions.user_ids, pa.string())

    @classmethod
    def from_run(cls, run_dir: str | Path, data_dir: str | Path | None = None, max_scores: int = 1 << 22) -> "Recommender":
        """The recommender of a trained implicit-feedback run.

        Args:
            run_dir: a run directory written by ``recforge train`` (or the Python API).
            data_dir: data directory for runs without ``interactions.npz`` (their registered
                dataset is re-loaded from it).
            max_scores: see the class.

        Raises:
            ConfigError: a missing run directory, a run of a CTR or sequence model (score its
                rows with ``recforge predict``), or a checkpoint whose tables do not fit the
                training interactions.
            DataError: unreadable artefacts, or neither artefacts nor a loadable dataset.
        """
        from recforge.training.experiment import load_trained_model
        from recforge.training.records import load_checkpoint, load_run_config, run_data_dir

        run = Path(run_dir)
        if not run.is_dir():
            what = "it is a file" if run.exists() else "it does not exist"
            raise ConfigError(f"{run} is not a run directory: {what}")
        config = load_run_config(run)
        interactions = read_run_interactions(run)
        if interactions is None:
            _check_implicit_run(run, config)
            try:
                interactions = dataset_interactions(config, run_data_dir(run, data_dir))
            except RecforgeError as exc:
                raise DataError(
                    f"{run} holds no {INTERACTIONS_FILE} and re-loading its dataset {config.data.name} failed: {exc}"
                ) from None
        model = load_trained_model(run)
        sizes = load_checkpoint(run).get("schema") or {}
        if sizes and (sizes.get("num_users"), sizes.get("num_items")) != (interactions.num_users, interactions.num_items):
            raise ConfigError(
                f"{run} was trained with {sizes.get('num_users')} users / {sizes.get('num_items')} items, but its "
                f"interactions ({interactions.source}) have {interactions.num_users} / {interactions.num_items}"
            )
        return cls(model, interactions, max_scores=max_scores, name=str(run))

    def known_users(self) -> pa.Array:
        """The raw ids of every user seen in training, in internal-id order (for ``--all-users``)."""
        return self.interactions.user_ids

    def recommend(self, users: Any, k: int = 10, include_seen: bool = False) -> pa.Table:
        """The top-``k`` items of each user in ``users``.

        Args:
            users: raw user ids (a list, NumPy array, pandas Series or Arrow array), matched
                as strings against the run's user map; repeats are answered again.
            k: items per user (K >= 1; at most the catalogue size).
            include_seen: keep the user's training items among the candidates.

        Returns:
            A table with columns user, rank, item, score, cold (see the module docstring),
            users in request order, ranks 1..K within each user.

        Raises:
            ConfigError: for k < 1, no users, or a missing (null) user id.
        """
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ConfigError(f"k must be an integer >= 1, got {k!r}")
        requested = _as_array(users)
        if len(requested) == 0:
            raise ConfigError("no users given")
        if requested.null_count:
            raise ConfigError(f"user id {requested.to_pylist().index(None) + 1} of {len(requested)} is missing (null)")
        keys = pc.cast(requested, pa.string())
        internal = pc.index_in(keys, value_set=self._user_keys).fill_null(-1).to_numpy().astype(np.int64)
        k = int(min(k, self.interactions.num_items))

        items = np.empty((len(internal), k), np.int64)
        scores = np.empty((len(internal), k), np.float32)
        cold = internal < 0
        items[cold] = self._popular[:k]
        scores[cold] = self._counts[self._popular[:k]]
        warm, inverse = np.unique(internal[~cold], return_inverse=True)
        if len(warm):
            warm_items, warm_scores = self._top_k_of_known(warm, k, include_seen)
            items[~cold], scores[~cold] = warm_items[inverse], warm_scores[inverse]

        keep = np.isfinite(scores)  # -inf: a masked training item, for users with fewer than K unseen items
        request_row = np.repeat(np.arange(len(internal)), k).reshape(len(internal), k)[keep]
        ranks = np.cumsum(keep, axis=1)[keep]  # masked entries come last in a row, so ranks stay 1..n
        return pa.table(
            {
                "user": _user_column(requested, keys, self.interactions.user_ids.type).take(pa.array(request_row)),
                "rank": pa.array(ranks.astype(np.int32)),
                "item": self.interactions.item_ids.take(pa.array(items[keep])),
                "score": pa.array(scores[keep]),
                "cold": pa.array(cold[request_row]),
            }
        )

    @torch.inference_mode()
    def _top_k_of_known(self, users: np.ndarray, k: int, include_seen: bool) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (items, scores) [U, k] of distinct known internal users, in chunks of bounded size."""
        n_items = self.interactions.num_items
        chunk = max(1, self.max_scores // (n_items * self.scorer.pair_cost))
        items = np.empty((len(users), k), np.int64)
        scores = np.empty((len(users), k), np.float32)
        for start in range(0, len(users), chunk):
            u = users[start : start + chunk]
            s = self.scorer(torch.from_numpy(u))
            if torch.isnan(s).any():
                raise ConfigError(f"{self.name}: the model gives NaN scores (diverged weights?); re-train it")
            if not include_seen:
                rows, seen = self._seen.positives_of(u)
                s[torch.from_numpy(rows).to(s.device), torch.from_numpy(seen).to(s.device)] = float("-inf")
            values, indices = top_k(s, k)
            items[start : start + len(u)] = indices.cpu().numpy()
            scores[start : start + len(u)] = values.float().cpu().numpy()
        return items, scores


class _SeenItems:
    """Each user's training items (CSR by user; a repeated pair is masked twice, harmlessly).

    Built with one stable argsort (NumPy 2.4's ``np.unique`` of 1 M int64 keys, which
    ``InteractionIndex`` uses, takes ~0.9 s here against 0.02 s for the sort).
    """

    def __init__(self, users: np.ndarray, items: np.ndarray, num_users: int):
        order = np.argsort(users, kind="stable")
        self.items = np.asarray(items, np.int64)[order]
        self.offsets = np.r_[0, np.cumsum(np.bincount(users, minlength=num_users))].astype(np.int64)

    def positives_of(self, users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(rows, items) int64 [P']: ``items[p]`` is a training item of ``users[rows[p]]``."""
        starts, lengths = self.offsets[users], self.offsets[users + 1] - self.offsets[users]
        rows = np.repeat(np.arange(len(users), dtype=np.int64), lengths)
        within = np.arange(len(rows), dtype=np.int64) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        return rows, self.items[np.repeat(starts, lengths) + within]


def top_k(scores: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """The ``k`` largest scores of each row and their columns, ties broken by the lower column.

    ``torch.topk`` leaves the order of equal values unspecified. Here the top ``k + 1`` values
    show where a tie crosses the cut (the k-th value equals the next one); only those rows are
    resolved exactly (every score above the k-th value, then the lowest columns equal to it).
    Finally each row is ordered by score (descending), then column (ascending).

    Args:
        scores: [U, I] without NaN (-inf allowed).
        k: 1 <= k <= I.

    Returns:
        (values [U, k], columns int64 [U, k]).
    """
    wide = min(k + 1, scores.shape[1])
    values, columns = torch.topk(scores, wide, dim=1, sorted=True)
    crossing = (values[:, k - 1] == values[:, k]).nonzero()[:, 0] if wide > k else values[:0, 0].long()
    values, columns = values[:, :k].contiguous(), columns[:, :k].contiguous()
    if len(crossing):
        values[crossing], columns[crossing] = _top_k_exact(scores[crossing], k)
    by_column = columns.argsort(dim=1)
    values, columns = values.gather(1, by_column), columns.gather(1, by_column)
    order = torch.sort(values, dim=1, descending=True, stable=True).indices  # stable: lower column first
    return values.gather(1, order), columns.gather(1, order)


def _top_k_exact(scores: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Rows whose k-th value ties with the next: all scores above it, then the lowest columns equal to it."""
    threshold = torch.topk(scores, k, dim=1, sorted=True).values[:, -1:]
    above = scores > threshold
    at = scores == threshold
    chosen = above | (at & (at.cumsum(dim=1) <= k - above.sum(dim=1, keepdim=True)))
    columns = chosen.nonzero()[:, 1].view(len(scores), k)
    return scores.gather(1, columns), columns


def _as_array(users: Any) -> pa.Array:
    """Requested ids as one Arrow array (mixed Python types become strings)."""
    if isinstance(users, (str, bytes, int, np.integer)):
        users = [users]
    if isinstance(users, pa.ChunkedArray):
        return users.combine_chunks()
    if isinstance(users, pa.Array):
        return users
    values = users.to_numpy() if hasattr(users, "to_numpy") and not isinstance(users, np.ndarray) else users
    try:
        return pa.array(values) if isinstance(values, np.ndarray) else pa.array(list(values))
    except (pa.ArrowException, TypeError, ValueError, OverflowError):  # OverflowError: an int beyond int64
        return pa.array([None if v is None else str(v) for v in values], pa.string())


def _user_column(requested: pa.Array, keys: pa.Array, map_type: pa.DataType) -> pa.Array:
    """The ``user`` column: requested ids in the map's type if all of them convert losslessly, else as given."""
    if requested.type == map_type:
        return requested
    try:
        converted = pc.cast(keys, map_type)
    except (pa.ArrowException, NotImplementedError):
        return keys if pa.types.is_string(requested.type) or pa.types.is_large_string(requested.type) else requested
    if pc.all(pc.equal(pc.cast(converted, pa.string()), keys)).as_py():
        return converted
    return requested


def _check_implicit_run(run: Path, config: Any) -> None:
    """Refuse runs of tabular (CTR, sequence, multi-task) data: they have no user x item catalogue."""
    from recforge.data.datasets import get_dataset
    from recforge.data.datasets.tabular import TabularSource

    try:
        tabular = isinstance(get_dataset(config.data.name), TabularSource)
    except RecforgeError:
        tabular = False
    if tabular or (run / "preprocessing.json").is_file():
        raise ConfigError(
            f"{run} is a {config.model_name} run on tabular data ({config.data.name}); recommend ranks items for "
            f"implicit-feedback runs ({', '.join(_IMPLICIT_MODELS)}); score its rows with `recforge predict`"
        )
