"""DIN, the Deep Interest Network (Zhou et al., KDD 2018, arXiv:1706.06978), and its base model.

The schema pairs each behaviour sequence with the target feature whose table it shares
(``FeatureSpec.table``): ``hist_item_id`` with ``item_id``, ``hist_item_category`` with
``item_category``. A behaviour vector e_j is the concatenation over the pairs (item ⊕ category),
and so is the target (candidate) vector v_A.

* ``din``: the user interest v_U(A) = sum_j a(e_j, v_A) e_j from the local activation unit
  (Sec. 4.3, Eq. 3; no softmax), then MLP 200-80 over [other features, v_U(A), v_A] with Dice or
  PReLU, and one logit (Sec. 6.3 / Fig. 2).
* ``base``: the same network with the behaviours sum-pooled (the paper's Base Model, Sec. 4.2).

Other categorical features (user profile, context) are embedded and concatenated; dense features
are appended. Defaults follow the authors' code for Amazon: 64-dim item and category embeddings,
attention MLP 80-40, MLP 200-80.
Shape: batch -> logits [B].
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from recforge.data.batches import Batch
from recforge.data.schema import Schema
from recforge.errors import ConfigError
from recforge.layers.attention import ACTIVATIONS, FeedForward, TargetAttention
from recforge.layers.embedding import EmbeddingCollection, masked_pool
from recforge.models.ctr_config import check_ctr_config
from recforge.models.registry import register_model


@dataclass(frozen=True)
class DINConfig:
    """DIN / base-model settings.

    Attributes:
        embedding_dim: D of each categorical feature (a behaviour vector has D x pairs dims).
        hidden_units: the final MLP (200, 80 in the paper).
        attention_units: the local activation unit's MLP (80, 40 in the authors' code).
        activation: ``dice`` (the paper's) or ``prelu`` (the paper's comparator), also ``relu``.
        attention_activation: activation inside the local activation unit.
        dropout: dropout after each final-MLP layer.
        init_std: embeddings start from N(0, init_std^2).
    """

    embedding_dim: int = 64
    hidden_units: tuple[int, ...] = (200, 80)
    attention_units: tuple[int, ...] = (80, 40)
    activation: str = "dice"
    attention_activation: str = "dice"
    dropout: float = 0.0
    init_std: float = 1e-4

    def __post_init__(self) -> None:
        check_ctr_config("din", self.embedding_dim, (*self.hidden_units, *self.attention_units), self.dropout, init_std=self.init_std)
        for key in ("activation", "attention_activation"):
            if getattr(self, key) not in ACTIVATIONS:
                raise ConfigError(f"din: model.{key} must be one of {', '.join(ACTIVATIONS)}, got {getattr(self, key)!r}")


def behaviour_pairs(schema: Schema) -> list[tuple[str, str]]:
    """(target feature, behaviour sequence) pairs: each sequence sharing a sparse feature's table.

    Raises:
        ConfigError: if the schema has no such pair or the sequences' lengths could differ.
    """
    pairs = [(s.table, s.name) for s in schema.sequence if s.table and schema[s.table].kind == "sparse"]
    if not pairs:
        raise ConfigError(
            "DIN needs a behaviour sequence that shares a target feature's table, e.g. "
            "{name: hist_item_id, kind: sequence, table: item_id}; the schema has none"
        )
    if len({schema[s].max_length for _, s in pairs}) > 1:
        raise ConfigError(f"DIN's behaviour sequences must share one max_length: {[(s, schema[s].max_length) for _, s in pairs]}")
    return pairs


class _InterestModel(nn.Module):
    """Shared body of DIN and the base model; ``attention`` chooses the pooling."""

    attention: bool

    def __init__(self, schema: Schema, config: DINConfig):
        super().__init__()
        self.pairs = behaviour_pairs(schema)
        used = {t for t, _ in self.pairs} | {s for _, s in self.pairs}
        self.others = [n for n in schema.embedded() if n not in used]
        self.embeddings = EmbeddingCollection(
            schema, [*self.others, *(t for t, _ in self.pairs), *(s for _, s in self.pairs)],
            config.embedding_dim, init_std=config.init_std,
        )
        width = sum(self.embeddings.dims[: len(self.others)])
        behaviour = sum(self.embeddings.dims[len(self.others) : len(self.others) + len(self.pairs)])
        if self.attention:
            self.local_activation = TargetAttention(behaviour, config.attention_units, config.attention_activation)
        self.mlp = FeedForward(width + 2 * behaviour + len(schema.dense), config.hidden_units, config.activation, config.dropout)
        self.out = nn.Linear(self.mlp.output_dim, 1)

    def forward(self, batch: Batch) -> Tensor:
        target = torch.cat([self.embeddings.lookup(batch, t) for t, _ in self.pairs], dim=-1)  # [B, D']
        history = torch.cat([self.embeddings.lookup(batch, s) for _, s in self.pairs], dim=-1)  # [B, L, D']
        lengths = batch.sequence_lengths[self.pairs[0][1]]
        if self.attention:
            interest, _ = self.local_activation(history, target, lengths)
        else:
            interest = masked_pool(history, lengths, "sum")
        parts = [self.embeddings.lookup(batch, n) for n in self.others]
        if any(p.dim() == 3 for p in parts):  # other sequence features: mean-pool them
            parts = [p if p.dim() == 2 else p.mean(1) for p in parts]
        x = torch.cat([*parts, interest, target, batch.dense_features], dim=1)
        return self.out(self.mlp(x)).squeeze(1)


@register_model("din", DINConfig)
class DIN(_InterestModel):
    """Deep Interest Network: target attention over the behaviour sequence (Zhou et al. 2018)."""

    attention = True


@register_model("base", DINConfig)
class BaseModel(_InterestModel):
    """DIN's Base Model: the same network with sum-pooled behaviours (Zhou et al. 2018, Sec. 4.2)."""

    attention = False
