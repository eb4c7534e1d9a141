"""Every all-item scoring route equals the model's forward pass over the (user, item) pairs."""

import numpy as np
import pytest
import torch

from recforge.data.schema import user_item_schema
from recforge.evaluation.protocols import score_pairs
from recforge.models.ncf import GMF, NCFConfig
from recforge.models.registry import build_model
from recforge.serving.catalogue_scores import CatalogueScorer

USERS, ITEMS = 23, 41


def _random_model(name, config=None):
    torch.manual_seed(0)
    model = build_model(name, user_item_schema(USERS, ITEMS), config or NCFConfig(factors=4))
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.5)  # far from the N(0, 0.01) start, so every term matters
    if name == "itempop":
        model.fit_interactions(np.zeros(200, np.int64), np.random.default_rng(0).integers(0, ITEMS, 200))
    return model


def _by_forward(model):
    users = np.repeat(np.arange(USERS), ITEMS)
    items = np.tile(np.arange(ITEMS), USERS)
    return score_pairs(model, users, items).reshape(USERS, ITEMS)


@pytest.mark.parametrize(
    "name, route, config",
    [
        ("mf", "matmul", None),
        ("gmf", "matmul", None),
        ("mlp", "tower", None),
        ("mlp", "tower", NCFConfig(factors=4, mlp_layers=(12, 6, 3))),
        ("neumf", "tower", None),
        ("itempop", "counts", None),
    ],
)
def test_route_equals_the_forward_pass(name, route, config):
    model = _random_model(name, config)
    scorer = CatalogueScorer(model, ITEMS)
    assert scorer.route == route
    users = torch.tensor([5, 0, 22, 5])  # any order, repeats allowed
    got = scorer(users).numpy()
    assert got.shape == (4, ITEMS)
    np.testing.assert_allclose(got, _by_forward(model)[users.numpy()], rtol=1e-5, atol=1e-5)


def test_an_unknown_model_is_scored_through_forward():
    class ShiftedGMF(GMF):  # a subclass may change forward: it must not take GMF's shortcut
        def forward(self, batch):
            return super().forward(batch) + batch.sparse_features[:, 1].float()

    model = ShiftedGMF(user_item_schema(USERS, ITEMS), NCFConfig(factors=4))
    scorer = CatalogueScorer(model, ITEMS)
    assert scorer.route == "forward"
    np.testing.assert_allclose(scorer(torch.arange(USERS)).numpy(), _by_forward(model), rtol=1e-6, atol=1e-6)
