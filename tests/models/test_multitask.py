"""Multi-task models and training: missing labels, loss weights, per-task metrics."""

import numpy as np
import pytest
import torch

from recforge.config import TrainConfig
from recforge.data.preprocessing import EncodedColumns
from recforge.data.schema import FeatureSpec, Schema
from recforge.data.tabular import TabularData
from recforge.evaluation.protocols import pointwise_metrics
from recforge.metrics.classification import auc
from recforge.models import build_model
from recforge.training.pointwise import PointwiseTrainer

SCHEMA = Schema((FeatureSpec("a", vocab_size=9), FeatureSpec("b", vocab_size=7), FeatureSpec("x", "dense")), labels=("click", "buy"))


def _split(n, rng, missing=0.3):
    sparse = np.stack([rng.integers(1, 9, n), rng.integers(1, 7, n)], 1).astype(np.int64)
    dense = rng.normal(size=(n, 1)).astype(np.float32)
    click = (rng.random(n) < 1 / (1 + np.exp(-(sparse[:, 0] % 3 - 1.0)))).astype(np.float32)
    buy = (rng.random(n) < 1 / (1 + np.exp(-dense[:, 0]))).astype(np.float32)
    buy[rng.random(n) < missing] = np.nan  # not every row has the second label
    return EncodedColumns(sparse, dense, np.stack([click, buy], 1))


def _data(seed=0):
    rng = np.random.default_rng(seed)
    return TabularData("toy-mt", SCHEMA, _split(800, rng), _split(300, rng), _split(300, rng), {})


@pytest.mark.parametrize("name", ["shared_bottom", "mmoe", "ple", "adatt"])
def test_each_model_trains_both_tasks(name):
    torch.manual_seed(0)
    model = build_model(name, SCHEMA)
    out = model(PointwiseTrainer(model, _data(), TrainConfig(epochs=1), seed=0).columns["train"].batch(0, 5))
    assert set(out) == {"click", "buy"} and all(v.shape == (5,) for v in out.values())
    summary = PointwiseTrainer(model, _data(), TrainConfig(epochs=3, batch_size=64, lr=0.01), seed=0).fit().summary
    assert {"test/click/auc", "test/buy/auc", "test/auc"} <= set(summary)
    assert summary["test/auc"] == pytest.approx((summary["test/click/auc"] + summary["test/buy/auc"]) / 2)


def test_a_zero_loss_weight_leaves_that_tower_untrained():
    torch.manual_seed(0)
    model = build_model("mmoe", SCHEMA)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    PointwiseTrainer(model, _data(), TrainConfig(epochs=1, batch_size=64, lr=0.01), seed=0, task_weights=(1.0, 0.0)).fit()
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before if k.startswith("towers.buy"))
    assert not all(torch.equal(before[k], after[k]) for k in before if k.startswith("towers.click"))


def test_missing_labels_are_left_out_of_that_tasks_metrics():
    rng = np.random.default_rng(0)
    labels = np.array([[1, np.nan], [0, 1], [1, 0], [0, np.nan]], dtype=np.float64)
    logits = rng.normal(size=(4, 2))
    m = pointwise_metrics(labels, logits, ("click", "buy"))
    assert m["buy/auc"] == auc([1, 0], logits[1:3, 1])
    assert m["click/auc"] == auc(labels[:, 0], logits[:, 0])


def test_a_zero_weight_task_does_not_count_in_the_selection_metric():
    """Issue 13, item 7: valid/auc (the monitor) is the task-weighted mean, so weight-0 tasks do not count."""
    torch.manual_seed(0)
    model = build_model("mmoe", SCHEMA)
    trainer = PointwiseTrainer(model, _data(), TrainConfig(epochs=2, batch_size=64, lr=0.01, task_weights={"buy": 0.0}), seed=0)
    result = trainer.fit()
    for record in result.history:
        assert record["valid/auc"] == pytest.approx(record["valid/click/auc"])
        assert record["valid/auc"] != pytest.approx((record["valid/click/auc"] + record["valid/buy/auc"]) / 2)
    assert result.summary["test/auc"] == pytest.approx(result.summary["test/click/auc"])
    assert "weight-0 tasks do not count" in result.summary["selection"]


def test_task_weights_weight_the_mean_over_tasks():
    labels = np.array([[1, 0], [0, 1], [1, 1], [0, 0]], dtype=np.float64)
    logits = np.array([[2.0, 0.1], [-1.0, 0.3], [0.5, -0.2], [0.0, 0.0]])
    plain = pointwise_metrics(labels, logits, ("click", "buy"))
    weighted = pointwise_metrics(labels, logits, ("click", "buy"), task_weights=(3.0, 1.0))
    assert plain["auc"] == pytest.approx((plain["click/auc"] + plain["buy/auc"]) / 2)
    assert weighted["auc"] == pytest.approx((3 * plain["click/auc"] + plain["buy/auc"]) / 4)
    assert weighted["log_loss"] == pytest.approx((3 * plain["click/log_loss"] + plain["buy/log_loss"]) / 4)
    with pytest.raises(ValueError, match="not all 0"):
        pointwise_metrics(labels, logits, ("click", "buy"), task_weights=(0.0, 0.0))


def test_all_zero_task_weights_are_a_config_error():
    from recforge.errors import ConfigError

    with pytest.raises(ConfigError, match="weight 0"):
        PointwiseTrainer(build_model("mmoe", SCHEMA), _data(), TrainConfig(epochs=1, task_weights={"click": 0, "buy": 0}), seed=0)
