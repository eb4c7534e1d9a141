"""Every registered model: forward/backward on a synthetic batch, finite logits, state_dict round trip."""

import numpy as np
import pytest
import torch

from recforge.data.batches import Batch
from recforge.data.schema import FeatureSpec, Schema, user_item_schema
from recforge.errors import ConfigError, UnknownNameError
from recforge.models import MODELS, build_model, get_model_entry
from recforge.models.ncf import GMF, NCFMLP, NCFConfig, NeuMF

SCHEMA = user_item_schema(num_users=13, num_items=29)
# A CTR schema whose first two sparse fields are user and item, so the NCF models run on it too:
# a plain field, a Wide & Deep cross, two dense features and a history sharing the item table.
RICH = Schema(
    features=(
        FeatureSpec("user", vocab_size=13),
        FeatureSpec("item", vocab_size=29),
        FeatureSpec("category", vocab_size=7),
        FeatureSpec("user_x_category", vocab_size=11, cross=("user", "category")),
        FeatureSpec("price", "dense"),
        FeatureSpec("age", "dense"),
        FeatureSpec("history", "sequence", table="item", max_length=5),
    ),
    labels=("click",),
)


def _batch(n=17):
    g = torch.Generator().manual_seed(0)
    ids = torch.stack(
        [torch.randint(0, 13, (n,), generator=g), torch.randint(0, 29, (n,), generator=g),
         torch.randint(0, 7, (n,), generator=g), torch.randint(0, 11, (n,), generator=g)], 1
    )
    lengths = torch.randint(0, 6, (n,), generator=g)
    history = torch.randint(1, 29, (n, 5), generator=g) * (torch.arange(5)[None, :] < lengths[:, None])
    return Batch(
        sparse_features=ids, labels=torch.randint(0, 2, (n, 1), generator=g).float(),
        dense_features=torch.randn(n, 2, generator=g),
        sequence_features={"history": history}, sequence_lengths={"history": lengths},
    )


def _single(output):
    """Multi-task models return {task: logits}; the rich schema has one task."""
    if isinstance(output, dict):
        assert list(output) == ["click"]
        return output["click"]
    return output


def _subset(batch, rows):
    return Batch(
        batch.sparse_features[rows], batch.labels[rows], batch.dense_features[rows],
        {k: v[rows] for k, v in batch.sequence_features.items()}, {k: v[rows] for k, v in batch.sequence_lengths.items()},
    )


@pytest.mark.parametrize("name", sorted(MODELS))
def test_forward_backward_round_trip(name):
    torch.manual_seed(0)
    model = build_model(name, RICH)
    if name == "itempop":
        model.fit_interactions(np.zeros(5, np.int64), np.array([1, 1, 2, 3, 1]))
    batch = _batch()
    logits = _single(model(batch))
    assert logits.shape == (len(batch),) and torch.isfinite(logits).all()
    if any(p.requires_grad for p in model.parameters()):
        torch.nn.functional.binary_cross_entropy_with_logits(logits, batch.labels[:, 0]).backward()
        grads = [p.grad for p in model.parameters() if p.requires_grad]
        assert all(g is not None and torch.isfinite(g).all() for g in grads)
    clone = build_model(name, RICH)
    clone.load_state_dict(model.state_dict())
    model.eval(), clone.eval()
    assert torch.equal(_single(model(batch)), _single(clone(batch)))
    # a batch of one and a reordered batch give the same scores
    assert torch.allclose(_single(model(_subset(batch, slice(0, 1)))), _single(model(batch))[:1], atol=1e-6)
    perm = torch.randperm(len(batch))
    assert torch.allclose(_single(model(_subset(batch, perm))), _single(model(batch))[perm], atol=1e-6)


def test_unknown_model_lists_names():
    with pytest.raises(UnknownNameError, match="adatt, base, deepfm, din, dlrm, fm, gmf, itempop, lr, mf, mlp, mmoe, neumf, ple, shared_bottom, wide_deep"):
        build_model("ncf++", SCHEMA)


def test_mlp_tower_follows_the_paper():
    # Sec. 4.1: three hidden layers; factors 8 -> neural CF layers 32 -> 16 -> 8, embedding size 16
    model = NCFMLP(SCHEMA, NCFConfig(factors=8))
    assert model.user_embedding.embedding_dim == 16
    linears = [m for m in model.tower.modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(32, 32), (32, 16), (16, 8)]
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


@pytest.mark.parametrize("layout", ["per_field", "fused"])
@pytest.mark.parametrize("name", ["fm", "deepfm", "dlrm", "wide_deep", "lr"])
def test_ctr_models_in_both_layouts_ignore_padded_history(name, layout):
    torch.manual_seed(0)
    cfg = get_model_entry(name).config_cls(layout=layout)
    model = build_model(name, RICH, cfg).eval()
    batch = _batch()
    scores = model(batch)
    # changing the ids behind the padding changes nothing
    lengths = batch.sequence_lengths["history"]
    pad = torch.arange(5)[None, :] >= lengths[:, None]
    noisy = batch.sequence_features["history"].masked_fill(pad, 3)
    other = Batch(batch.sparse_features, batch.labels, batch.dense_features, {"history": noisy}, batch.sequence_lengths)
    assert torch.allclose(model(other), scores, atol=1e-6)


def test_wide_deep_groups_split_every_parameter_once():
    model = build_model("wide_deep", RICH)
    groups = model.parameter_groups()
    ids = [id(p) for ps in groups.values() for p in ps]
    assert len(ids) == len(set(ids)) == len(list(model.parameters()))
    assert set(groups) == {"wide", "deep"}


def test_dlrm_interaction_width_follows_the_paper():
    # F = 3 embedded features (user, item, category; crosses excluded) + history pooled = 4, + 1 dense vector
    model = build_model("dlrm", RICH)
    d = model.embeddings.dims[0]
    assert model.embeddings.num_features == 4
    assert model.interaction.output_dim(d) == d + 5 * 4 // 2
