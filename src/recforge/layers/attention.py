"""DIN's local activation unit (target attention) and Dice activation (Zhou et al., KDD 2018,
arXiv:1706.06978).

Shape letters: B batch, L history length, D embedding dim (of one behaviour vector), H hidden.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from recforge.errors import ConfigError

ACTIVATIONS = ("dice", "prelu", "relu", "sigmoid")


class Dice(nn.Module):
    """Data-adaptive activation (DIN, Sec. 4.3, Eq. 9): f(s) = p(s) s + (1 - p(s)) alpha s,
    p(s) = sigmoid((s - E[s]) / sqrt(Var[s] + eps)).

    E[s] and Var[s] are the mini-batch statistics in training and running averages in
    evaluation (a BatchNorm without affine parameters, as the authors' code), so evaluation
    scores do not depend on the other rows of the batch. alpha starts at 0, as in their code.

    Args:
        num_features: H, the size of the last dimension.
        eps: the paper's epsilon (1e-8).
        momentum: running-statistics momentum (PyTorch convention).

    Shape:
        [..., H] -> [..., H]; statistics are taken over every position of the leading dimensions.
    """

    def __init__(self, num_features: int, eps: float = 1e-8, momentum: float = 0.1):
        super().__init__()
        self.norm = nn.BatchNorm1d(num_features, eps=eps, momentum=momentum, affine=False)
        self.alpha = nn.Parameter(torch.zeros(num_features))

    def forward(self, x: Tensor) -> Tensor:
        flat = x if x.dim() == 2 else x.reshape(-1, x.shape[-1])  # 2-D as is: ONNX export needs BatchNorm's channel count
        if self.training and flat.shape[0] == 1:
            p = torch.sigmoid(nn.functional.batch_norm(flat, self.norm.running_mean, self.norm.running_var, training=False, eps=self.norm.eps))
        else:
            p = torch.sigmoid(self.norm(flat))
        p = p.reshape(x.shape)
        return p * x + (1 - p) * self.alpha * x


def activation(name: str, width: int) -> nn.Module:
    """The activation ``name`` (dice, prelu, relu, sigmoid) for ``width`` units."""
    if name == "dice":
        return Dice(width)
    if name == "prelu":
        return nn.PReLU(width, init=0.25)
    if name == "relu":
        return nn.ReLU()
    if name == "sigmoid":
        return nn.Sigmoid()
    raise ConfigError(f"activation must be one of {', '.join(ACTIVATIONS)}, got {name!r}")


class FeedForward(nn.Module):
    """Linear -> activation layers with a choosable activation (Dice needs its width).

    Shape: [..., input_dim] -> [..., hidden_units[-1]].
    """

    def __init__(self, input_dim: int, hidden_units: Sequence[int], act: str = "dice", dropout: float = 0.0):
        super().__init__()
        layers: list[nn.Module] = []
        width = input_dim
        for units in hidden_units:
            layers += [nn.Linear(width, units), _Last(activation(act, units))]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = units
        self.layers = nn.Sequential(*layers)
        self.output_dim = width

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)


class _Last(nn.Module):
    """Applies a per-unit activation (PReLU/Dice expect the unit axis) to the last dimension."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, x: Tensor) -> Tensor:
        if isinstance(self.inner, nn.PReLU) and x.dim() > 2:
            return self.inner(x.reshape(-1, x.shape[-1])).reshape(x.shape)
        return self.inner(x)


class TargetAttention(nn.Module):
    """DIN's local activation unit (Sec. 4.3, Eq. 3, Fig. 2): v_U(A) = sum_j a(e_j, v_A) e_j.

    The weight a(e_j, v_A) is an MLP over [e_j, v_A, e_j - v_A, e_j ⊙ v_A] ending in one linear
    unit. As the paper states, the weights are NOT normalised by a softmax ("to reserve the
    intensity of user interests"). Padded positions get exactly zero weight, and only real
    positions go through the MLP, so padding never touches Dice's batch statistics either.

    Args:
        embedding_dim: D of a behaviour vector (and of the target vector).
        hidden_units: the attention MLP (80, 40 in the authors' code).
        act: activation of the attention MLP (dice, prelu, relu, sigmoid).

    Shape:
        history [B, L, D], target [B, D], lengths int64 [B] -> (pooled [B, D], weights [B, L]).
    """

    def __init__(self, embedding_dim: int, hidden_units: Sequence[int] = (80, 40), act: str = "dice"):
        super().__init__()
        self.mlp = FeedForward(4 * embedding_dim, hidden_units, act)
        self.score = nn.Linear(self.mlp.output_dim, 1)

    def forward(self, history: Tensor, target: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        b, length, d = history.shape
        mask = torch.arange(length, device=history.device)[None, :] < lengths[:, None]  # [B, L]
        weights = history.new_zeros(b, length)
        if bool(mask.any()):
            h = history[mask]  # [P, D], the real positions only
            t = target.unsqueeze(1).expand(b, length, d)[mask]
            scores = self.score(self.mlp(torch.cat([h, t, h - t, h * t], dim=1))).squeeze(1)
            weights = weights.masked_scatter(mask, scores.to(weights.dtype))  # bf16 autocast: the MLP's scores are bfloat16
        pooled = torch.bmm(weights.unsqueeze(1), history).squeeze(1)
        return pooled, weights
