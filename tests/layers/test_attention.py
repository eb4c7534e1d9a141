"""DIN's target attention and Dice: zero weight for padding, no softmax, batch-independent evaluation."""

import pytest
import torch

from recforge.errors import ConfigError
from recforge.layers.attention import Dice, TargetAttention, activation


def _inputs(b=5, length=6, d=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    history = torch.randn(b, length, d, generator=g)
    target = torch.randn(b, d, generator=g)
    lengths = torch.tensor([6, 3, 0, 1, 5][:b])
    pad = torch.arange(length)[None, :] >= lengths[:, None]
    return history.masked_fill(pad.unsqueeze(-1), 0.0), target, lengths, pad


@pytest.mark.parametrize("act", ["dice", "prelu", "sigmoid"])
def test_padded_positions_get_exactly_zero_weight_and_do_not_matter(act):
    torch.manual_seed(0)
    layer = TargetAttention(4, (8, 4), act)
    history, target, lengths, pad = _inputs()
    for mode in (True, False):  # training (batch statistics) and evaluation
        layer.train(mode)
        pooled, weights = layer(history, target, lengths)
        assert torch.equal(weights[pad], torch.zeros(int(pad.sum())))
        noisy = history + pad.unsqueeze(-1) * torch.randn_like(history) * 100  # garbage behind the padding
        pooled2, weights2 = layer(noisy, target, lengths)
        assert torch.allclose(weights2, weights) and torch.allclose(pooled2, pooled)


def test_weights_are_not_softmax_normalised_and_pooling_is_the_weighted_sum():
    torch.manual_seed(1)
    layer = TargetAttention(4, (8,), "prelu").eval()
    history, target, lengths, _ = _inputs()
    pooled, weights = layer(history, target, lengths)
    assert not torch.allclose(weights[0].sum(), torch.tensor(1.0))
    assert torch.allclose(pooled, (weights.unsqueeze(-1) * history).sum(1), atol=1e-6)


def test_empty_history_gives_finite_zero_interest():
    layer = TargetAttention(4, (8, 4), "dice")
    history, target, lengths, _ = _inputs()
    pooled, weights = layer(history, target, torch.zeros_like(lengths))
    assert torch.equal(pooled, torch.zeros_like(pooled)) and torch.isfinite(weights).all()


def test_dice_uses_batch_statistics_in_training_and_running_ones_in_evaluation():
    torch.manual_seed(0)
    dice = Dice(3)
    with torch.no_grad():
        dice.alpha.fill_(0.5)
    x = torch.randn(64, 3) * 2 + 1
    out = dice(x)
    p = torch.sigmoid((x - x.mean(0)) / torch.sqrt(x.var(0, unbiased=False) + 1e-8))
    assert torch.allclose(out, p * x + (1 - p) * 0.5 * x, atol=1e-5)
    dice.eval()
    single = dice(x[:1])
    assert torch.allclose(single, dice(x)[:1])  # evaluation does not depend on the batch
    dice.train()
    assert torch.isfinite(dice(x[:1])).all()  # a batch of one in training falls back to running stats


def test_unknown_activation():
    with pytest.raises(ConfigError, match="activation must be one of"):
        activation("swish", 3)
