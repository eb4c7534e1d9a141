"""EmbeddingCollection: layouts agree, padding is zero, pooling of empty sequences, shared tables;
EmbeddingTable matches nn.Embedding."""

import pytest
import torch
from torch import nn

from recforge.data.batches import Batch
from recforge.data.schema import FeatureSpec, Schema
from recforge.errors import ConfigError
from recforge.layers.embedding import EmbeddingCollection, EmbeddingTable, masked_pool

SCHEMA = Schema(
    features=(
        FeatureSpec("a", vocab_size=5),
        FeatureSpec("b", vocab_size=7),
        FeatureSpec("x", "dense"),
        FeatureSpec("hist", "sequence", table="b", max_length=4),
    ),
    labels=("y",),
)


def _batch():
    sparse = torch.tensor([[1, 6], [0, 2], [4, 0]])
    hist = torch.tensor([[1, 2, 0, 0], [0, 0, 0, 0], [6, 6, 6, 5]])
    return Batch(sparse, torch.zeros(3, 1), torch.zeros(3, 1), {"hist": hist}, {"hist": torch.tensor([2, 0, 4])})


def test_per_field_and_fused_give_the_same_numbers_for_the_same_weights():
    torch.manual_seed(0)
    per_field = EmbeddingCollection(SCHEMA, ["a", "b", "hist"], 3, "per_field", init_std=1.0)
    fused = EmbeddingCollection(SCHEMA, ["a", "b", "hist"], 3, "fused")
    with torch.no_grad():
        fused.fused.weight.copy_(torch.cat([per_field.tables["a"].weight, per_field.tables["b"].weight]))
    batch = _batch()
    assert torch.allclose(per_field(batch), fused(batch))
    assert per_field(batch).shape == (3, 3, 3)
    fused_only_sparse = EmbeddingCollection(SCHEMA, ["a", "b"], 3, "fused")
    fused_only_sparse.load_state_dict({"fused.weight": fused.fused.weight.detach()})
    assert torch.allclose(fused_only_sparse(batch), per_field(batch)[:, :2])


@pytest.mark.parametrize("layout", ["per_field", "fused"])
def test_missing_id_is_the_zero_vector_and_gets_no_effect(layout):
    emb = EmbeddingCollection(SCHEMA, ["a", "b"], 4, layout, init_std=1.0)
    out = emb(_batch())
    assert torch.equal(out[1, 0], torch.zeros(4)) and torch.equal(out[2, 1], torch.zeros(4))
    out.sum().backward()
    weight = emb.fused.weight if layout == "fused" else emb.tables["a"].weight
    assert torch.equal(weight.grad[0], torch.zeros(4))


def test_masked_pool_sum_mean_and_empty():
    values = torch.arange(24, dtype=torch.float32).reshape(2, 3, 4)
    lengths = torch.tensor([2, 0])
    assert torch.equal(masked_pool(values, lengths, "sum")[0], values[0, :2].sum(0))
    assert torch.equal(masked_pool(values, lengths, "mean")[0], values[0, :2].mean(0))
    assert torch.equal(masked_pool(values, lengths, "mean")[1], torch.zeros(4))  # empty: zeros, not NaN


def test_shared_table_is_one_module_and_errors():
    emb = EmbeddingCollection(SCHEMA, ["b", "hist"], 3)
    assert list(emb.tables) == ["b"]
    with pytest.raises(ConfigError, match="dense"):
        EmbeddingCollection(SCHEMA, ["x"], 3)
    with pytest.raises(ConfigError, match="layout"):
        EmbeddingCollection(SCHEMA, ["a"], 3, layout="sharded")
    unfitted = Schema((FeatureSpec("a"),))
    with pytest.raises(ConfigError, match="fit the preprocessing"):
        EmbeddingCollection(unfitted, ["a"], 3)
    mixed = Schema((FeatureSpec("a", vocab_size=3, embedding_dim=2), FeatureSpec("b", vocab_size=3)))
    with pytest.raises(ConfigError, match="one embedding_dim"):
        EmbeddingCollection(mixed, ["a", "b"], 4, layout="fused")
    assert EmbeddingCollection(mixed, ["a", "b"], 4).flat(Batch(torch.tensor([[1, 2]]), torch.zeros(1, 1))).shape == (1, 6)


@pytest.mark.parametrize("shape", [(7,), (3, 5)])
def test_embedding_table_matches_nn_embedding_in_values_and_gradients(shape):
    torch.manual_seed(0)
    ref = nn.Embedding(6, 4)
    table = EmbeddingTable(6, 4)
    table.load_state_dict(ref.state_dict())
    ids = torch.tensor([0, 2, 2, 5, 2, 1, 0, 3, 3, 4, 0, 1, 5, 5, 2]).reshape(-1)[: int(torch.tensor(shape).prod())].reshape(shape)
    upstream = torch.randn(*shape, 4)
    out_ref, out = ref(ids), table(ids)
    torch.testing.assert_close(out, out_ref)
    (out_ref * upstream).sum().backward()
    (out * upstream).sum().backward()
    torch.testing.assert_close(table.weight.grad, ref.weight.grad)


def test_embedding_table_with_a_padding_row_keeps_its_gradient_zero():
    table = EmbeddingTable(5, 3, padding_idx=0)
    table(torch.tensor([0, 0, 2])).sum().backward()
    assert torch.count_nonzero(table.weight.grad[0]) == 0
    assert torch.count_nonzero(table.weight.grad[2]) == 3
