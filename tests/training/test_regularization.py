import pytest
import torch
from torch import nn

from recforge.config import TrainConfig
from recforge.data.batches import Batch
from recforge.data.schema import user_item_schema
from recforge.errors import ConfigError
from recforge.models import build_model
from recforge.models.ncf import NCFConfig
from recforge.training.regularization import EmbeddingL2
from recforge.training.trainer import Trainer

from tests.training.test_trainer import clustered_data


def gmf(factors=4):
    torch.manual_seed(0)
    return build_model("gmf", user_item_schema(5, 7), NCFConfig(factors=factors))


def batch(users, items):
    return Batch(sparse_features=torch.tensor([users, items]).T, labels=torch.zeros(len(users), 1))


def test_penalty_is_lambda_over_batch_times_squared_norm_of_the_looked_up_rows():
    model = gmf()
    users, items = [0, 3, 3], [1, 1, 6]
    with EmbeddingL2(model, 0.01) as reg:
        model(batch(users, items))
        got = reg.penalty()
    p, q = model.user_embedding.weight[users], model.item_embedding.weight[items]
    expected = 0.01 / 3 * (p.pow(2).sum() + q.pow(2).sum())
    assert got.item() == pytest.approx(expected.item(), rel=1e-6)


def test_only_rows_in_the_batch_get_a_penalty_gradient():
    model = gmf()
    with EmbeddingL2(model, 0.5) as reg:
        model(batch([1, 1], [2, 4]))
        penalty = reg.penalty()
    penalty.backward()
    grad, w = model.user_embedding.weight.grad, model.user_embedding.weight.detach()
    # d/dp_1 of 0.5/2 * (2 ||p_1||^2) = 2 * 0.5/2 * 2 p_1 (row 1 looked up twice)
    torch.testing.assert_close(grad[1], w[1] * 1.0)
    assert torch.count_nonzero(grad[[0, 2, 3, 4]]) == 0
    assert model.predict.weight.grad is None  # dense layers are not penalised


def test_lookups_in_eval_mode_and_outside_the_block_are_ignored():
    model = gmf()
    with EmbeddingL2(model, 1.0) as reg:
        model.eval()
        model(batch([0], [0]))
        assert reg.penalty() == 0.0
        model.train()
        model(batch([0], [0]))
        reg.penalty()
        assert reg.penalty() == 0.0  # each lookup counts once
    model(batch([0], [0]))
    assert reg.penalty() == 0.0  # hooks are removed on exit
    assert not model.user_embedding._forward_hooks


def test_zero_weight_is_off():
    model = gmf()
    with EmbeddingL2(model, 0.0) as reg:
        model(batch([0], [0]))
        assert reg.penalty() == 0.0
        assert not model.user_embedding._forward_hooks


@pytest.mark.parametrize("weight", [-1e-3, float("nan"), float("inf")])
def test_bad_weights_are_refused(weight):
    with pytest.raises(ConfigError, match="embedding_l2"):
        EmbeddingL2(gmf(), weight)
    with pytest.raises(ConfigError, match="train.embedding_l2"):
        TrainConfig(embedding_l2=weight)


def test_a_model_without_tables_is_refused():
    with pytest.raises(ConfigError, match="no embedding tables"):
        EmbeddingL2(nn.Linear(2, 1), 1e-3)


def test_training_with_the_penalty_keeps_embeddings_smaller():
    data = clustered_data()
    norms = {}
    for weight in (0.0, 0.05):
        torch.manual_seed(0)
        model = build_model("gmf", data.schema, NCFConfig(factors=8))
        cfg = TrainConfig(epochs=3, batch_size=32, lr=0.01, embedding_l2=weight, full_ranking=False, report_best_test_epoch=False)
        result = Trainer(model, data, cfg, seed=0).fit()
        assert result.history[-1]["train/loss"] < result.history[1]["train/loss"]
        norms[weight] = model.user_embedding.weight.norm(dim=1).mean().item()
    assert norms[0.05] < 0.8 * norms[0.0]
