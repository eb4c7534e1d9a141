"""train.precision (bf16 autocast of the training forward pass) and the device feed, on the CPU."""

import numpy as np
import pytest
import torch

from recforge.config import TrainConfig
from recforge.data.batches import Batch
from recforge.data.preprocessing import EncodedColumns
from recforge.data.schema import FeatureSpec, Schema
from recforge.data.tabular import TabularData
from recforge.errors import ConfigError
from recforge.models import build_model
from recforge.models.deepfm import DeepFMConfig
from recforge.training.device_feed import to_device
from recforge.training.pointwise import PointwiseTrainer


def _data(rows=6000, fields=6, vocab=50, seed=0):
    rng = np.random.default_rng(seed)
    sparse = rng.integers(2, vocab + 2, (rows, fields)).astype(np.int64)
    effects = rng.normal(0, 1.0, (fields, vocab + 2))
    logit = effects[np.arange(fields)[None, :], sparse].sum(1) / np.sqrt(fields)
    labels = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(np.float32)[:, None]
    schema = Schema(tuple(FeatureSpec(f"c{j}", vocab_size=vocab + 2) for j in range(fields)), labels=("label",))
    cols = EncodedColumns(sparse, np.zeros((rows, 0), np.float32), labels)
    cut = int(rows * 0.8)
    valid = cols.take(np.arange(cut, rows))
    return TabularData("planted", schema, cols.take(np.arange(cut)), valid, valid, {})


def _fit(data, precision):
    torch.manual_seed(0)
    model = build_model("deepfm", data.schema, DeepFMConfig(embedding_dim=8, hidden_units=(32, 16), dropout=0.0))
    seen = []
    model.register_forward_hook(lambda m, i, o: seen.append(o.dtype) if m.training else None)
    for module in model.modules():
        if isinstance(module, torch.nn.Linear):
            module.register_forward_hook(lambda m, i, o: seen.append(o.dtype) if m.training else None)
    config = TrainConfig(epochs=3, batch_size=256, lr=3e-3, precision=precision, full_ranking=False)
    return PointwiseTrainer(model, data, config, seed=0).fit().summary, set(seen)


def test_bf16_autocast_trains_in_bfloat16_and_reaches_the_fp32_auc():
    data = _data()
    fp32, fp32_dtypes = _fit(data, "fp32")
    bf16, bf16_dtypes = _fit(data, "bf16")
    assert torch.bfloat16 not in fp32_dtypes and torch.bfloat16 in bf16_dtypes  # autocast really ran
    assert fp32["valid/auc"] > 0.7  # the planted signal is learned
    assert abs(bf16["valid/auc"] - fp32["valid/auc"]) < 0.01
    assert np.isfinite(bf16["test/log_loss"])


def test_an_unknown_precision_is_a_config_error():
    with pytest.raises(ConfigError, match="train.precision"):
        TrainConfig(precision="fp16")


def test_the_cpu_device_feed_passes_batches_through_in_order():
    batches = [Batch(sparse_features=torch.full((2, 1), k), labels=torch.zeros(2, 1)) for k in range(3)]
    out = list(to_device(iter(batches), torch.device("cpu")))
    assert [b is a for a, b in zip(batches, out)] == [True] * 3
    assert [t.shape for t in out[0].tensors()] == [(2, 1), (2, 1), (0, 0)]


@pytest.mark.parametrize("name", ["din", "base", "deepfm", "dlrm", "wide_deep", "mmoe", "ple", "adatt", "neumf"])
def test_every_model_family_trains_a_step_under_bf16_autocast(name):
    """DIN's attention failed under bf16 (masked_scatter of bfloat16 scores into float32 weights),
    found by benchmarks/gpu_check.py --device cpu."""
    from recforge.models import get_model_entry
    from recforge.training.precision import autocast
    from tests.models.test_registry import RICH, _batch, _single

    torch.manual_seed(0)
    model = build_model(name, RICH, get_model_entry(name).config_cls())
    with autocast(torch.device("cpu"), "bf16"):
        logits = _single(model(_batch())).float()
    logits.sum().backward()
    assert torch.isfinite(logits).all()
