"""First-order (linear) term over categorical and dense features: LR, FM's and DeepFM's
``<w, x> + b`` and Wide & Deep's wide part.

One scalar weight per categorical value (a 1-dimensional embedding table per feature, row 0 =
missing = 0), summed over a sequence's values, plus ``w_dense . x_dense`` and a bias.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from recforge.data.batches import Batch
from recforge.data.schema import Schema
from recforge.layers.embedding import EmbeddingCollection


class FirstOrder(nn.Module):
    """y = b + sum_f w_f[x_f] + w_dense . x_dense  (Rendle 2010, Eq. 1, first two terms).

    Args:
        schema: fitted schema.
        features: categorical (sparse / sequence) features with a weight per value.
        use_dense: include the dense features linearly.
        layout: embedding layout of the weight tables (``per_field`` or ``fused``).

    Shape:
        batch -> [B] logits.
    """

    def __init__(self, schema: Schema, features: Sequence[str], use_dense: bool = True, layout: str = "per_field"):
        super().__init__()
        # Zero start, as logistic regression and FTRL (McMahan et al. 2013) conventionally do.
        self.weights = EmbeddingCollection(schema, features, embedding_dim=1, layout=layout, init_std=1e-12, pooling="sum")
        for p in self.weights.parameters():
            nn.init.zeros_(p)
        self.num_dense = len(schema.dense) if use_dense else 0
        self.dense = nn.Linear(self.num_dense, 1, bias=False) if self.num_dense else None
        if self.dense is not None:
            nn.init.zeros_(self.dense.weight)
        self.bias = nn.Parameter(torch.zeros(()))

    def forward(self, batch: Batch) -> Tensor:
        out = self.bias + (self.weights.flat(batch).sum(1) if self.weights.num_features else 0.0)
        if self.dense is not None:
            out = out + self.dense(batch.dense_features).squeeze(1)
        return out if out.dim() == 1 else out.expand(len(batch))
