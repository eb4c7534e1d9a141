"""DIN and its base model on a behaviour-sequence batch."""

import pytest
import torch

from recforge.data.batches import Batch
from recforge.data.schema import FeatureSpec, Schema
from recforge.errors import ConfigError
from recforge.models import build_model
from recforge.models.din import DINConfig

SCHEMA = Schema(
    features=(
        FeatureSpec("user_id", vocab_size=11),
        FeatureSpec("item_id", vocab_size=30),
        FeatureSpec("item_category", vocab_size=6),
        FeatureSpec("hist_item_id", "sequence", table="item_id", max_length=5),
        FeatureSpec("hist_item_category", "sequence", table="item_category", max_length=5),
    ),
    labels=("label",),
)


def _batch(n=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    sparse = torch.stack([torch.randint(2, 11, (n,), generator=g), torch.randint(2, 30, (n,), generator=g), torch.randint(2, 6, (n,), generator=g)], 1)
    lengths = torch.tensor([5, 3, 0, 1, 4, 2, 5, 0][:n])
    pad = torch.arange(5)[None, :] >= lengths[:, None]
    items = torch.randint(2, 30, (n, 5), generator=g).masked_fill(pad, 0)
    cats = torch.randint(2, 6, (n, 5), generator=g).masked_fill(pad, 0)
    return Batch(sparse, torch.zeros(n, 1), torch.zeros(n, 0),
                 {"hist_item_id": items, "hist_item_category": cats},
                 {"hist_item_id": lengths, "hist_item_category": lengths})


@pytest.mark.parametrize("name, act", [("din", "dice"), ("din", "prelu"), ("base", "dice")])
def test_scores_ignore_padding_and_batch_composition(name, act):
    torch.manual_seed(0)
    model = build_model(name, SCHEMA, DINConfig(embedding_dim=4, activation=act, attention_activation=act)).eval()
    batch = _batch()
    scores = model(batch)
    assert torch.isfinite(scores).all()  # rows 2 and 7 have empty histories
    lengths = batch.sequence_lengths["hist_item_id"]
    pad = torch.arange(5)[None, :] >= lengths[:, None]
    seqs = {k: v.masked_fill(pad, 7 if k == "hist_item_id" else 3) for k, v in batch.sequence_features.items()}
    assert torch.allclose(model(Batch(batch.sparse_features, batch.labels, batch.dense_features, seqs, batch.sequence_lengths)), scores, atol=1e-6)
    one = Batch(batch.sparse_features[3:4], batch.labels[3:4], batch.dense_features[3:4],
                {k: v[3:4] for k, v in batch.sequence_features.items()}, {k: v[3:4] for k, v in batch.sequence_lengths.items()})
    assert torch.allclose(model(one), scores[3:4], atol=1e-6)


def test_din_differs_from_base_only_by_pooling():
    torch.manual_seed(0)
    din = build_model("din", SCHEMA, DINConfig(embedding_dim=4))
    base = build_model("base", SCHEMA, DINConfig(embedding_dim=4))
    assert hasattr(din, "local_activation") and not hasattr(base, "local_activation")
    shared = {k for k in din.state_dict() if not k.startswith("local_activation")}
    assert shared == set(base.state_dict())


def test_schema_without_a_behaviour_sequence_is_rejected():
    flat = Schema((FeatureSpec("item_id", vocab_size=5),))
    with pytest.raises(ConfigError, match="behaviour sequence"):
        build_model("din", flat)
    with pytest.raises(ConfigError, match="activation"):
        DINConfig(activation="tanh")
