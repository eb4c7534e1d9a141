"""The pointwise (CTR) trainer: masked loss, selection, exact resume, NaN stop, batches of one."""

import numpy as np
import pytest
import torch
from torch import nn

from recforge.config import ExperimentConfig, TrainConfig
from recforge.data.preprocessing import EncodedColumns
from recforge.data.schema import FeatureSpec, Schema
from recforge.data.tabular import TabularData
from recforge.errors import ConfigError, TrainingError
from recforge.models import build_model
from recforge.models.deepfm import DeepFMConfig
from recforge.training.ftrl import FTRL
from recforge.training.optim import build_optimizers
from recforge.training.pointwise import PointwiseTrainer, masked_bce
from recforge.training.records import RunRecorder, load_checkpoint

SCHEMA = Schema(
    features=(FeatureSpec("a", vocab_size=12), FeatureSpec("b", vocab_size=9), FeatureSpec("x", "dense")),
    labels=("click",),
)


def _split(n, rng):
    sparse = np.stack([rng.integers(1, 12, n), rng.integers(1, 9, n)], 1).astype(np.int64)
    dense = rng.normal(size=(n, 1)).astype(np.float32)
    logit = (sparse[:, 0] % 3 - 1) + dense[:, 0]
    labels = (rng.random(n) < 1 / (1 + np.exp(-2 * logit))).astype(np.float32)[:, None]
    return EncodedColumns(sparse, dense, labels)


def _data(n_train=601, seed=0):
    rng = np.random.default_rng(seed)
    return TabularData("toy", SCHEMA, _split(n_train, rng), _split(200, rng), _split(200, rng), {})


def _trainer(data, recorder=None, seed=0, **train):
    torch.manual_seed(seed)
    model = build_model("deepfm", SCHEMA, DeepFMConfig(embedding_dim=4, hidden_units=(8,), dropout=0.2))
    cfg = TrainConfig(**{"epochs": 3, "batch_size": 64, "lr": 0.01, **train})
    return PointwiseTrainer(model, data, cfg, seed=seed, recorder=recorder)


def test_missing_labels_contribute_nothing_to_loss_or_gradient():
    logits = torch.tensor([[0.3, -1.0], [2.0, 0.5], [-0.7, 1.5]], requires_grad=True)
    labels = torch.tensor([[1.0, float("nan")], [0.0, 1.0], [1.0, float("nan")]])
    loss = masked_bce(logits, labels)
    loss.backward()
    assert torch.equal(logits.grad[[0, 2], 1], torch.zeros(2))
    bce = nn.functional.binary_cross_entropy_with_logits
    expected = bce(logits[:, 0], labels[:, 0]) + bce(logits[1:2, 1], labels[1:2, 1])
    assert torch.isclose(loss, expected)
    weighted = masked_bce(logits.detach(), labels, torch.tensor([1.0, 0.0]))
    assert torch.isclose(weighted, bce(logits[:, 0].detach(), labels[:, 0]))


def test_trains_selects_on_validation_and_restores_the_best_weights():
    trainer = _trainer(_data(), epochs=4)
    result = trainer.fit()
    best = max((r for r in result.history), key=lambda r: r["valid/auc"])
    assert result.summary["selected_epoch"] == best["epoch"]
    assert trainer.evaluate("valid")["auc"] == pytest.approx(best["valid/auc"], abs=1e-12)
    assert result.summary["test/auc"] > 0.6


def test_resume_reproduces_the_uninterrupted_run_exactly(tmp_path):
    data = _data()
    config = ExperimentConfig("deepfm", DeepFMConfig())
    full = _trainer(data, RunRecorder(tmp_path / "a", config), epochs=4).fit()
    first = RunRecorder(tmp_path / "b", config)
    _trainer(data, first, epochs=2).fit()
    resumed = _trainer(data, RunRecorder.reopen(first.path, config), seed=0, epochs=4).fit(resume=load_checkpoint(first.path, "last.pt"))
    assert [r["valid/auc"] for r in resumed.history] == [r["valid/auc"] for r in full.history]
    assert [r["train/loss"] for r in resumed.history] == [r["train/loss"] for r in full.history]
    assert resumed.summary["test/auc"] == full.summary["test/auc"]


def test_non_finite_loss_stops_with_a_clear_error():
    data = _data()
    data.train.dense[5, 0] = np.inf
    with pytest.raises(TrainingError, match="non-finite|became"):
        _trainer(data, lr=0.01).fit()


def test_a_last_batch_of_one_row_works_with_batch_norm():
    data = _data(n_train=129)  # 2 batches of 64 + 1 row
    torch.manual_seed(0)
    model = build_model("deepfm", SCHEMA, DeepFMConfig(embedding_dim=4, hidden_units=(8,), batch_norm=True))
    PointwiseTrainer(model, data, TrainConfig(epochs=1, batch_size=64), seed=0).fit()
    from recforge.data.tabular import TensorColumns

    sizes = [len(b) for b in TensorColumns(data.train).batches(64, torch.Generator().manual_seed(0))]
    assert sizes == [64, 65] and sum(sizes) == 129


def test_learning_rate_decays_after_a_plateau():
    rng = np.random.default_rng(3)
    noise = TabularData("noise", SCHEMA, *[_split(300, rng) for _ in range(3)], {})
    for split in (noise.train, noise.valid):
        split.labels[:] = (rng.random(split.labels.shape) < 0.5).astype(np.float32)
    result = _trainer(noise, epochs=6, lr_patience=1, lr_decay=0.5).fit()
    history = result.history
    best = -1.0
    for prev, nxt in zip(history, history[1:]):
        improved = prev["valid/auc"] > best
        best = max(best, prev["valid/auc"])
        assert nxt["lr"] == pytest.approx(prev["lr"] * (1.0 if improved else 0.5))
    assert history[-1]["lr"] < history[0]["lr"]


def test_sparse_embeddings_use_row_wise_optimisers():
    trainer = _trainer(_data(), sparse_embeddings=True, epochs=2)
    result = trainer.fit()
    assert result.summary["test/auc"] > 0.6
    opts = build_optimizers(trainer.model, "adam", 0.01, sparse_embeddings=True)
    assert {type(o).__name__ for o in opts} == {"SparseAdam", "Adam"}


def test_wide_and_deep_gets_ftrl_on_the_wide_part():
    schema = Schema(features=(FeatureSpec("a", vocab_size=4), FeatureSpec("ab", vocab_size=5, cross=("a", "b"))))
    model = build_model("wide_deep", schema)
    opts = build_optimizers(model, "adam", 1e-3, groups=model.paper_optimizers())
    kinds = [type(o) for o in opts]
    assert kinds == [FTRL, torch.optim.Adagrad]
    wide_ids = {id(p) for p in model.wide.parameters()}
    assert {id(p) for g in opts[0].param_groups for p in g["params"]} == wide_ids
    with pytest.raises(ConfigError, match="has groups wide, deep"):
        build_optimizers(model, "adam", 1e-3, groups={"linear": {"lr": 0.1}})
    with pytest.raises(ConfigError, match="no parameter groups"):
        build_optimizers(build_model("fm", schema), "adam", 1e-3, groups={"wide": {}})


def test_monitor_must_fit_the_data():
    with pytest.raises(ConfigError, match="does not apply to tabular"):
        TrainConfig(monitor="valid/ndcg@10").resolved_monitor("tabular")
    assert TrainConfig().resolved_monitor("tabular") == "valid/auc"
    assert TrainConfig().resolved_monitor("implicit") == "valid/ndcg@10"
    with pytest.raises(ConfigError, match="train.groups.wide.lr"):
        TrainConfig(groups={"wide": {"optimizer": "ftrl", "lr": -1}})
    with pytest.raises(ConfigError, match="unknown key train.groups.wide.momentum"):
        TrainConfig(groups={"wide": {"momentum": 0.9}})
