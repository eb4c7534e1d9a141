"""Every registered model: forward/backward on a synthetic batch, finite logits, state_dict round trip."""

import numpy as np
import pytest
import torch

from recforge.data.batches import Batch
from recforge.data.schema import user_item_schema
from recforge.errors import ConfigError, UnknownNameError
from recforge.models import MODELS, build_model
from recforge.models.ncf import GMF, NCFMLP, NCFConfig, NeuMF

SCHEMA = user_item_schema(num_users=13, num_items=29)


def _batch(n=17):
    g = torch.Generator().manual_seed(0)
    ids = torch.stack([torch.randint(0, 13, (n,), generator=g), torch.randint(0, 29, (n,), generator=g)], 1)
    return Batch(sparse_features=ids, labels=torch.randint(0, 2, (n, 1), generator=g).float())


@pytest.mark.parametrize("name", sorted(MODELS))
def test_forward_backward_round_trip(name):
    torch.manual_seed(0)
    model = build_model(name, SCHEMA)
    if name == "itempop":
        model.fit_interactions(np.zeros(5, np.int64), np.array([1, 1, 2, 3, 1]))
    batch = _batch()
    logits = model(batch)
    assert logits.shape == (len(batch),) and torch.isfinite(logits).all()
    if any(p.requires_grad for p in model.parameters()):
        torch.nn.functional.binary_cross_entropy_with_logits(logits, batch.labels[:, 0]).backward()
        grads = [p.grad for p in model.parameters() if p.requires_grad]
        assert all(g is not None and torch.isfinite(g).all() for g in grads)
    clone = build_model(name, SCHEMA)
    clone.load_state_dict(model.state_dict())
    model.eval(), clone.eval()
    assert torch.equal(model(batch), clone(batch))
    # a batch of one and a reordered batch give the same scores
    assert torch.allclose(model(Batch(batch.sparse_features[:1], batch.labels[:1])), model(batch)[:1])
    perm = torch.randperm(len(batch))
    assert torch.allclose(model(Batch(batch.sparse_features[perm], batch.labels[perm])), model(batch)[perm])


def test_unknown_model_lists_names():
    with pytest.raises(UnknownNameError, match="gmf, itempop, mf, mlp, neumf"):
        build_model("ncf++", SCHEMA)


def test_mlp_tower_follows_the_paper():
    # Sec. 4.1: factors 8 -> layers 32 -> 16 -> 8, embedding size 16
    model = NCFMLP(SCHEMA, NCFConfig(factors=8))
    assert model.user_embedding.embedding_dim == 16
    linears = [m for m in model.tower.modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(32, 16), (16, 8)]
    assert model.predict.in_features == 8
    custom = NCFMLP(SCHEMA, NCFConfig(factors=8, mlp_layers=(64, 32, 16, 8)))
    assert custom.user_embedding.embedding_dim == 32


def test_bad_mlp_layers_rejected():
    with pytest.raises(ConfigError, match="mlp_layers"):
        NCFConfig(factors=8, mlp_layers=(33, 8))


def test_neumf_pretrained_is_the_alpha_blend_of_gmf_and_mlp():
    torch.manual_seed(1)
    cfg = NCFConfig(factors=4)
    gmf, mlp = GMF(SCHEMA, cfg), NCFMLP(SCHEMA, cfg)
    with torch.no_grad():
        gmf.predict.bias.fill_(0.3)
        mlp.predict.bias.fill_(-0.1)
    batch = _batch()
    for alpha in (0.5, 0.2):
        neumf = NeuMF(SCHEMA, cfg).load_pretrained(gmf, mlp, alpha=alpha)
        expected = alpha * gmf(batch) + (1 - alpha) * mlp(batch)
        assert torch.allclose(neumf(batch), expected, atol=1e-6)


def test_neumf_pretrained_shape_mismatch():
    gmf = GMF(SCHEMA, NCFConfig(factors=4))
    mlp = NCFMLP(SCHEMA, NCFConfig(factors=8))
    with pytest.raises(ConfigError, match="does not match"):
        NeuMF(SCHEMA, NCFConfig(factors=4)).load_pretrained(gmf, mlp)
