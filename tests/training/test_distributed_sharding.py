"""Row sharding for data-parallel training: every row once per epoch, the same global batches for
any world size, parts of near-equal size (no processes needed)."""

import numpy as np
import pytest
import torch

from recforge.data.preprocessing import EncodedColumns
from recforge.data.tabular import TensorColumns, batch_bounds, shard_bounds, shard_positions
from recforge.training.distributed import DistributedContext, rank_seed


@pytest.mark.parametrize("n, world", [(10, 3), (7, 2), (2, 3), (0, 4), (1000, 7)])
def test_shard_bounds_are_array_split(n, world):
    parts = [shard_bounds(n, r, world) for r in range(world)]
    expected = np.array_split(np.arange(n), world)
    assert [list(range(lo, hi)) for lo, hi in parts] == [e.tolist() for e in expected]


def test_shard_bounds_reject_a_rank_outside_the_world():
    with pytest.raises(ValueError, match="0 <= rank < world_size"):
        shard_bounds(10, 3, 3)


def _columns(n: int) -> TensorColumns:
    rows = np.arange(n, dtype=np.int64)
    return TensorColumns(EncodedColumns(rows[:, None], np.zeros((n, 0), np.float32), rows[:, None].astype(np.float32)))


@pytest.mark.parametrize("n, batch_size, world", [(10, 4, 3), (601, 64, 3), (11, 5, 2), (5, 2, 3), (9, 8, 2)])
def test_every_row_once_per_epoch_and_the_global_batches_do_not_depend_on_the_world(n, batch_size, world):
    cols = _columns(n)
    single = [b.sparse_features[:, 0].tolist() for b in cols.batches(batch_size, torch.Generator().manual_seed(3))]
    per_rank = [
        [b.sparse_features[:, 0].tolist() for b in cols.batches(batch_size, torch.Generator().manual_seed(3), shard=(r, world))]
        for r in range(world)
    ]
    assert all(len(p) == len(single) for p in per_rank)  # every rank steps once per global batch
    for k, batch in enumerate(single):
        # rank r's part of global batch k is its contiguous np.array_split piece, in rank order
        assert [p[k] for p in per_rank] == [part.tolist() for part in np.array_split(np.array(batch, np.int64), world)]
        sizes = [len(p[k]) for p in per_rank]
        assert max(sizes) - min(sizes) <= 1
    seen = sorted(row for p in per_rank for batch in p for row in batch)
    assert seen == list(range(n))  # no row twice, none left out
    assert [len(b) for b in single] == [e - s for s, e in batch_bounds(n, batch_size)]


def test_the_single_process_batches_are_unchanged_by_the_shard_parameter():
    cols = _columns(101)
    plain = [b.labels for b in cols.batches(16, torch.Generator().manual_seed(0))]
    sharded = [b.labels for b in cols.batches(16, torch.Generator().manual_seed(0), shard=(0, 1))]
    assert all(torch.equal(a, b) for a, b in zip(plain, sharded)) and len(plain) == len(sharded)


def test_shard_positions_cover_every_position_of_the_batches_once():
    bounds = [(s, min(s + 7, 40)) for s in range(0, 40, 7)]
    positions = [shard_positions(bounds, r, 3) for r in range(3)]
    assert sorted(np.concatenate(positions).tolist()) == list(range(40))
    assert positions[0][:3].tolist() == [0, 1, 2] and positions[1][:2].tolist() == [3, 4]


def test_the_trivial_context_is_the_identity():
    ctx = DistributedContext()
    assert not ctx.active and ctx.is_main and ctx.shard == (0, 1)
    local = np.arange(6.0).reshape(3, 2)
    assert ctx.gather_rows(local, 3) is local
    assert ctx.part(5) == slice(0, 5)
    assert ctx.describe(256) == {}
    with pytest.raises(ValueError, match="holds 2 rows"):
        ctx.gather_rows(local[:2], 3)
    assert rank_seed(42, 0) == 42 and rank_seed(42, 1) != rank_seed(42, 2)


# ---------------------------------------------------------------------- what DDP refuses
def test_ddp_refuses_sparse_embedding_gradients_under_nccl():
    from recforge.errors import ConfigError

    model = torch.nn.Sequential(torch.nn.Embedding(10, 4, sparse=True))
    with pytest.raises(ConfigError, match="train.sparse_embeddings is not supported by DDP on CUDA"):
        DistributedContext(rank=0, world_size=2, backend="nccl").wrap(model, torch.device("cuda", 0))


def _fake_rank(monkeypatch, world: int) -> None:
    import recforge.training.pointwise as pointwise

    monkeypatch.setattr(pointwise, "current_context", lambda: DistributedContext(rank=0, world_size=world, backend="gloo"))


def test_ddp_refuses_batchnorm_parts_of_one_row_and_resuming_on_another_world_size(monkeypatch):
    from recforge.config import TrainConfig
    from recforge.errors import ConfigError
    from recforge.models import build_model
    from recforge.models.deepfm import DeepFMConfig
    from recforge.training.pointwise import PointwiseTrainer
    from tests.training.test_pointwise import SCHEMA, _data

    _fake_rank(monkeypatch, 4)
    model = build_model("deepfm", SCHEMA, DeepFMConfig(embedding_dim=4, hidden_units=(8,), batch_norm=True))
    with pytest.raises(ConfigError, match="train.batch_size 6 over 4 processes leaves a rank 1 row"):
        PointwiseTrainer(model, _data(), TrainConfig(batch_size=6), seed=0)
    with pytest.warns(UserWarning, match="batch statistics are taken over each rank's 16 rows"):
        trainer = PointwiseTrainer(model, _data(), TrainConfig(batch_size=64), seed=0)
    with pytest.raises(ConfigError, match="trained on 2 process\\(es\\) and is resumed on 4"):
        trainer._resumed_rng({"world_size": 2, "torch_rng_ranks": [], "torch_rng": torch.get_rng_state()})
