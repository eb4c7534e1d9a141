"""Multi-layer perceptron tower."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

_ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "prelu": nn.PReLU, "identity": nn.Identity}


class MLP(nn.Module):
    """A stack of Linear -> [BatchNorm] -> activation -> [Dropout] layers.

    Args:
        input_dim: width of the input.
        hidden_units: width of each hidden layer, in order (may be empty: identity).
        activation: one of relu, tanh, sigmoid, prelu, identity.
        dropout: dropout probability after each activation.
        batch_norm: add BatchNorm1d before each activation.
        init: ``xavier_uniform`` (Keras' default, used by the NCF reference code) or ``default``
            (PyTorch's own).

    Shape:
        [B, input_dim] -> [B, hidden_units[-1]] (or [B, input_dim] when empty).
    """

    def __init__(
        self,
        input_dim: int,
        hidden_units: Sequence[int],
        activation: str = "relu",
        dropout: float = 0.0,
        batch_norm: bool = False,
        init: str = "xavier_uniform",
    ):
        super().__init__()
        if activation not in _ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; valid: {sorted(_ACTIVATIONS)}")
        layers: list[nn.Module] = []
        width = input_dim
        for units in hidden_units:
            linear = nn.Linear(width, units)
            if init == "xavier_uniform":
                nn.init.xavier_uniform_(linear.weight)
                nn.init.zeros_(linear.bias)
            layers.append(linear)
            if batch_norm:
                layers.append(nn.BatchNorm1d(units))
            layers.append(_ACTIVATIONS[activation]())
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = units
        self.layers = nn.Sequential(*layers)
        self.output_dim = width

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)


def lecun_uniform_(linear: nn.Linear) -> nn.Linear:
    """LeCun-uniform weights U(-sqrt(3/fan_in), sqrt(3/fan_in)) and zero bias, in place.

    The NCF reference code initialises its prediction layers this way.
    """
    bound = (3.0 / linear.in_features) ** 0.5
    with torch.no_grad():
        linear.weight.uniform_(-bound, bound)
        linear.bias.zero_()
    return linear
