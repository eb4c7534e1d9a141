"""Logistic regression and the factorization machine, the CTR baselines.

* ``lr``: y = b + sum_f w[x_f] + w_dense . x_dense over every categorical feature, cross
  products included (crosses are how a linear model memorises interactions).
* ``fm``: Rendle (ICDM 2010, Eq. 1): the linear term plus sum_{f<g} <v_f, v_g> over the
  embedded categorical features (crosses left out), in the O(F·D) form of Lemma 3.1.

Shape: batch -> logits [B].
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from recforge.data.batches import Batch
from recforge.data.schema import Schema
from recforge.layers.embedding import EmbeddingCollection
from recforge.layers.interaction import FactorizationMachine
from recforge.layers.linear import FirstOrder
from recforge.models.ctr_config import check_ctr_config
from recforge.models.registry import register_model


@dataclass(frozen=True)
class LRConfig:
    """Logistic regression settings.

    Attributes:
        layout: weight-table layout, ``per_field`` or ``fused``.
    """

    layout: str = "per_field"

    def __post_init__(self) -> None:
        check_ctr_config("lr", 1, layout=self.layout)


@register_model("lr", LRConfig)
class LogisticRegression(nn.Module):
    """Logistic regression over sparse ids (crosses included) and dense features."""

    def __init__(self, schema: Schema, config: LRConfig):
        super().__init__()
        self.linear = FirstOrder(schema, schema.embedded(crosses=True), layout=config.layout)

    def forward(self, batch: Batch) -> Tensor:
        return self.linear(batch)


@dataclass(frozen=True)
class FMConfig:
    """Factorization machine settings (Rendle 2010).

    Attributes:
        embedding_dim: factor size k.
        init_std: factors start from N(0, init_std^2).
        layout: ``per_field`` or ``fused`` embedding tables.
    """

    embedding_dim: int = 10
    init_std: float = 1e-4
    layout: str = "per_field"

    def __post_init__(self) -> None:
        check_ctr_config("fm", self.embedding_dim, layout=self.layout, init_std=self.init_std)


@register_model("fm", FMConfig)
class FM(nn.Module):
    """Factorization machine: linear term + pairwise factor interactions (Rendle 2010, Eq. 1)."""

    def __init__(self, schema: Schema, config: FMConfig):
        super().__init__()
        features = schema.embedded()
        self.linear = FirstOrder(schema, features, layout=config.layout)
        self.embeddings = EmbeddingCollection(schema, features, config.embedding_dim, config.layout, config.init_std)
        self.fm = FactorizationMachine()

    def forward(self, batch: Batch) -> Tensor:
        return self.linear(batch) + self.fm(self.embeddings(batch))
