"""Checks shared by the CTR models' config dataclasses."""

from __future__ import annotations

from collections.abc import Sequence

from recforge.errors import ConfigError
from recforge.layers.embedding import LAYOUTS


MLP_INITS = ("xavier_uniform", "default")


def check_ctr_config(
    model: str, embedding_dim: int, hidden_units: Sequence[int] = (), dropout: float = 0.0, layout: str = "per_field",
    init_std: float = 1e-4, mlp_init: str = "xavier_uniform",
) -> None:
    """Raise ConfigError naming the ``model.*`` field that is out of range."""
    if mlp_init not in MLP_INITS:
        raise ConfigError(f"{model}: model.mlp_init must be one of {', '.join(MLP_INITS)}, got {mlp_init!r}")
    if not init_std > 0:
        raise ConfigError(f"{model}: model.init_std must be > 0, got {init_std}")
    if embedding_dim < 1:
        raise ConfigError(f"{model}: model.embedding_dim must be >= 1, got {embedding_dim}")
    if any(int(u) < 1 for u in hidden_units):
        raise ConfigError(f"{model}: model.hidden_units must be positive widths, got {list(hidden_units)}")
    if not 0.0 <= dropout < 1.0:
        raise ConfigError(f"{model}: model.dropout must be in [0, 1), got {dropout}")
    if layout not in LAYOUTS:
        raise ConfigError(f"{model}: model.layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
