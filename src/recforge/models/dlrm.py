"""DLRM (Naumov et al., 2019, arXiv:1906.00091).

A bottom MLP maps the dense features to a D-dim vector; each categorical feature has a D-dim
embedding; the interaction layer takes the dot products of all pairs of these F + 1 vectors
(no self-pairs) and concatenates them with the bottom output (Sec. 2-3, "dot" interaction);
a top MLP maps the result to one logit. Without dense features the bottom MLP is absent and
the F embeddings interact among themselves.

Defaults: the paper's Criteo Kaggle benchmark (bottom 512-256-D, top 512-256-1, D = 16).
Shape: batch -> logits [B].
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from recforge.data.batches import Batch
from recforge.data.schema import Schema
from recforge.errors import ConfigError
from recforge.layers.embedding import EmbeddingCollection
from recforge.layers.interaction import DotInteraction
from recforge.layers.mlp import MLP
from recforge.models.ctr_config import check_ctr_config
from recforge.models.registry import register_model


@dataclass(frozen=True)
class DLRMConfig:
    """DLRM settings (paper defaults for Criteo Kaggle).

    Attributes:
        embedding_dim: D, shared by the embeddings and the bottom MLP's output.
        dense_arch: bottom MLP hidden widths (a final layer of width D is appended).
        over_arch: top MLP hidden widths (a final 1-unit linear layer is appended).
        init_std: embeddings start from N(0, init_std^2).
        layout: ``per_field`` or ``fused`` embedding tables.
        mlp_init: ``xavier_uniform`` (Glorot; the reference implementation draws MLP weights from
            N(0, 2 / (fan_in + fan_out)), the same scale) or ``default`` (PyTorch's Kaiming-uniform).
        embedding_backend: ``native`` (recforge's tables) or ``torchrec`` (a TorchRec
            EmbeddingBagCollection that TorchRec's planner can shard; needs ``recforge[torchrec]``
            with an fbgemm-gpu build matching torch; per_field layout only).
    """

    embedding_dim: int = 16
    dense_arch: tuple[int, ...] = (512, 256)
    over_arch: tuple[int, ...] = (512, 256)
    init_std: float = 1e-4
    layout: str = "per_field"
    mlp_init: str = "xavier_uniform"
    embedding_backend: str = "native"

    def __post_init__(self) -> None:
        check_ctr_config("dlrm", self.embedding_dim, (*self.dense_arch, *self.over_arch), 0.0, self.layout, self.init_std, mlp_init=self.mlp_init)
        if self.embedding_backend not in ("native", "torchrec"):
            raise ConfigError(f"model.embedding_backend must be native or torchrec, got {self.embedding_backend!r}")
        if self.embedding_backend == "torchrec" and self.layout != "per_field":
            raise ConfigError("model.embedding_backend torchrec needs model.layout per_field (TorchRec fuses tables itself)")


@register_model("dlrm", DLRMConfig)
class DLRM(nn.Module):
    """DLRM: bottom MLP, embedding tables, pairwise dot interaction, top MLP (Naumov et al. 2019)."""

    def __init__(self, schema: Schema, config: DLRMConfig):
        super().__init__()
        d = config.embedding_dim
        if config.embedding_backend == "torchrec":
            from recforge.layers.torchrec_tables import TorchRecEmbeddingCollection  # optional dependency

            self.embeddings = TorchRecEmbeddingCollection(schema, schema.embedded(), d, config.init_std)
        else:
            self.embeddings = EmbeddingCollection(schema, schema.embedded(), d, config.layout, config.init_std)
        self.dense_arch = MLP(len(schema.dense), (*config.dense_arch, d), "relu", init=config.mlp_init) if schema.dense else None
        f = self.embeddings.num_features
        self.interaction = DotInteraction(f, with_dense=self.dense_arch is not None)
        width = self.interaction.output_dim(d)
        self.over_arch = MLP(width, config.over_arch, "relu", init=config.mlp_init)
        self.over_out = nn.Linear(self.over_arch.output_dim, 1)

    def forward(self, batch: Batch) -> Tensor:
        sparse = self.embeddings(batch)  # [B, F, D]
        dense = self.dense_arch(batch.dense_features) if self.dense_arch is not None else None
        return self.over_out(self.over_arch(self.interaction(dense, sparse))).squeeze(1)
