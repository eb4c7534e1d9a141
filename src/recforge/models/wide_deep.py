"""Wide & Deep (Cheng et al., DLRS 2016, arXiv:1606.07792).

P(Y=1|x) = sigmoid(w_wide^T [x, phi(x)] + w_deep^T a^(lf) + b) (Eq. 3): the wide part is a
linear model over the raw sparse features x and the cross-product transformations phi(x) (the
schema's ``cross`` features); the deep part is an MLP over the embeddings of the categorical
features (crosses excluded) and the dense features. Both are trained jointly; the paper uses
FTRL with L1 regularisation for the wide part and AdaGrad for the deep part (Sec. 3.3), which
:meth:`WideAndDeep.paper_optimizers` states so the trainer can apply it per parameter group.

Defaults: 32-dim embeddings and 1024-512-256 ReLU layers (Sec. 4.1, Fig. 4).
Shape: batch -> logits [B].
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from recforge.data.batches import Batch
from recforge.data.schema import Schema
from recforge.layers.embedding import EmbeddingCollection
from recforge.layers.linear import FirstOrder
from recforge.layers.mlp import MLP
from recforge.models.ctr_config import check_ctr_config
from recforge.models.registry import register_model


@dataclass(frozen=True)
class WideDeepConfig:
    """Wide & Deep settings (paper defaults).

    Attributes:
        embedding_dim: embedding size of each categorical feature in the deep part.
        hidden_units: deep MLP widths.
        dropout: dropout after each hidden layer.
        batch_norm: BatchNorm in the MLP (not in the paper).
        init_std: embeddings start from N(0, init_std^2).
        layout: ``per_field`` or ``fused`` embedding tables.
        mlp_init: ``xavier_uniform`` (Glorot, the TensorFlow default of the paper's implementation;
            also FuxiCTR's) or ``default`` (PyTorch's Kaiming-uniform); on frappe DeepFM's test AUC
            was 0.9757 with Glorot and 0.9726 with PyTorch's default (seed 42).
    """

    embedding_dim: int = 32
    hidden_units: tuple[int, ...] = (1024, 512, 256)
    dropout: float = 0.0
    batch_norm: bool = False
    init_std: float = 1e-4
    layout: str = "per_field"
    mlp_init: str = "xavier_uniform"

    def __post_init__(self) -> None:
        check_ctr_config("wide_deep", self.embedding_dim, self.hidden_units, self.dropout, self.layout, self.init_std, mlp_init=self.mlp_init)


@register_model("wide_deep", WideDeepConfig)
class WideAndDeep(nn.Module):
    """Wide & Deep: a linear model over raw and crossed features plus a deep MLP, trained jointly."""

    def __init__(self, schema: Schema, config: WideDeepConfig):
        super().__init__()
        self.wide = FirstOrder(schema, schema.embedded(crosses=True), use_dense=False, layout=config.layout)
        self.embeddings = EmbeddingCollection(schema, schema.embedded(), config.embedding_dim, config.layout, config.init_std)
        width = self.embeddings.output_dim + len(schema.dense)
        self.deep = MLP(width, config.hidden_units, "relu", config.dropout, config.batch_norm, init=config.mlp_init)
        self.deep_out = nn.Linear(self.deep.output_dim, 1)

    def forward(self, batch: Batch) -> Tensor:
        deep_in = torch.cat([self.embeddings.flat(batch), batch.dense_features], dim=1)
        return self.wide(batch) + self.deep_out(self.deep(deep_in)).squeeze(1)

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """``wide`` (the linear model, its bias included) and ``deep`` (everything else)."""
        wide = list(self.wide.parameters())
        ids = {id(p) for p in wide}
        return {"wide": wide, "deep": [p for p in self.parameters() if id(p) not in ids]}

    @staticmethod
    def paper_optimizers() -> dict[str, dict[str, Any]]:
        """Sec. 3.3: FTRL-Proximal with L1 for the wide part, AdaGrad for the deep part.

        The learning rates are TensorFlow's canned DNNLinearCombinedClassifier defaults
        (FTRL min(0.2, 1/sqrt(#linear columns)) ~ 0.2 here, Adagrad 0.05); the paper gives none.
        """
        return {"wide": {"optimizer": "ftrl", "lr": 0.2, "l1": 1e-3}, "deep": {"optimizer": "adagrad", "lr": 0.05}}
