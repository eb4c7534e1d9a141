"""The TorchRec seam: a Batch as a KeyedJaggedTensor, TorchRec tables computing what recforge's own
do, DLRM on either backend giving the same logits, and TorchRec's planner sharding DLRM's tables
over two gloo processes with unchanged outputs.

TorchRec needs an fbgemm-gpu build matching torch; recforge's pinned CPU torch 2.13.0 has none,
so CI skips these (the skip says why). They were run with torch 2.14.1 + fbgemm-gpu-cpu 1.9.0 +
torchrec 1.9.2 on CPU: ``pip install torch==2.14.1 fbgemm-gpu-cpu==1.9.0 torchrec==1.9.2`` in a
separate venv, then ``pip install -e '.[test]'`` and ``pytest tests/layers/test_torchrec_tables.py``.
"""

from __future__ import annotations

import os
import socket

import pytest
import torch

from recforge.errors import ConfigError
from recforge.layers.embedding import EmbeddingCollection
from recforge.models import build_model
from recforge.models.dlrm import DLRMConfig
from tests.models.test_registry import RICH, _batch


def _torchrec_or_skip():
    try:
        import torchrec  # noqa: F401
    except (ImportError, OSError) as exc:
        pytest.skip(f"torchrec with a matching fbgemm-gpu is not importable here (torch {torch.__version__}): {str(exc).splitlines()[0][:120]}")


def test_the_backend_choice_is_validated_without_torchrec():
    with pytest.raises(ConfigError, match="embedding_backend"):
        DLRMConfig(embedding_backend="tpu")
    with pytest.raises(ConfigError, match="per_field"):
        DLRMConfig(embedding_backend="torchrec", layout="fused")


def test_keyed_jagged_drops_padding_and_keeps_the_history_prefix():
    _torchrec_or_skip()
    from recforge.layers.torchrec_tables import keyed_jagged

    batch = _batch(5)
    batch.sparse_features[2, 0] = 0  # a missing id
    kjt = keyed_jagged(batch, [("user", 0)], ["history"])
    lengths = kjt.lengths().view(2, 5)
    assert lengths[0].tolist() == [1, 1, 0, 1, 1]
    hist, n = batch.sequence_features["history"], batch.sequence_lengths["history"]
    assert lengths[1].tolist() == [int((hist[r, : n[r]] != 0).sum()) for r in range(5)]


@pytest.mark.parametrize("pooling", ["mean", "sum"])
def test_torchrec_tables_compute_what_the_native_tables_do(pooling):
    _torchrec_or_skip()
    from recforge.layers.torchrec_tables import TorchRecEmbeddingCollection, copy_native_weights

    torch.manual_seed(0)
    features = ["user", "item", "category", "history"]
    native = EmbeddingCollection(RICH, features, 8, init_std=0.5, pooling=pooling)
    ours = TorchRecEmbeddingCollection(RICH, features, 8, pooling=pooling)
    copy_native_weights(ours, native)
    batch = _batch(33)
    assert torch.allclose(ours(batch), native(batch), atol=1e-6)


def test_dlrm_gives_the_same_logits_on_either_backend():
    _torchrec_or_skip()
    from recforge.layers.torchrec_tables import copy_native_weights

    torch.manual_seed(0)
    native = build_model("dlrm", RICH, DLRMConfig(embedding_dim=8, dense_arch=(16,), over_arch=(16,), init_std=0.3))
    torch.manual_seed(0)
    other = build_model("dlrm", RICH, DLRMConfig(embedding_dim=8, dense_arch=(16,), over_arch=(16,), init_std=0.3, embedding_backend="torchrec"))
    other.load_state_dict({k: v for k, v in native.state_dict().items() if not k.startswith("embeddings.")}, strict=False)
    copy_native_weights(other.embeddings, native.embeddings)
    batch = _batch(40)
    assert torch.allclose(other(batch), native(batch), atol=1e-5)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _shard_worker(rank: int, world: int, port: int, state: dict, queue) -> None:
    import torch.distributed as dist

    from recforge.training.model_parallel import shard_embedding_tables

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        torch.manual_seed(0)
        model = build_model("dlrm", RICH, DLRMConfig(embedding_dim=8, dense_arch=(16,), over_arch=(16,), init_std=0.3, embedding_backend="torchrec"))
        model.load_state_dict(state)
        sharded = shard_embedding_tables(model, torch.device("cpu"), sharding_types=["table_wise"])  # really split: tables on different ranks
        batch = _batch(40)
        rows = torch.arange(rank, 40, world)  # each rank scores its own rows
        from tests.models.test_registry import _subset

        with torch.no_grad():
            queue.put((rank, rows.tolist(), sharded(_subset(batch, rows)).tolist()))
    finally:
        dist.destroy_process_group()


def test_the_planner_shards_dlrm_tables_table_wise_over_two_processes_without_changing_scores():
    _torchrec_or_skip()
    import torch.multiprocessing as mp

    torch.manual_seed(0)
    model = build_model("dlrm", RICH, DLRMConfig(embedding_dim=8, dense_arch=(16,), over_arch=(16,), init_std=0.3, embedding_backend="torchrec"))
    with torch.no_grad():
        expected = model(_batch(40))
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    port = _free_port()
    procs = [ctx.Process(target=_shard_worker, args=(r, 2, port, model.state_dict(), queue)) for r in range(2)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=180) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    for _, rows, scores in results:
        assert torch.allclose(torch.tensor(scores), expected[rows], atol=1e-5)
