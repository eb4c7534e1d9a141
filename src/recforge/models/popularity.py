"""Item popularity baseline (ItemPop in He et al. 2017, Sec. 4.1): rank items by training count."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from recforge.data.batches import Batch
from recforge.data.schema import Schema
from recforge.models.registry import register_model


@dataclass(frozen=True)
class ItemPopConfig:
    """ItemPop has no settings."""


@register_model("itempop", ItemPopConfig)
class ItemPop(nn.Module):
    """Item popularity: the score of (u, i) is the number of training interactions of i.

    Non-parametric: ``fit_interactions`` sets the counts; there is nothing to train.

    Shape: batch.sparse_features [B, 2] (user, item) -> scores [B] (counts, used as logits).
    """

    def __init__(self, schema: Schema, config: ItemPopConfig):
        super().__init__()
        self.config = config
        self.register_buffer("counts", torch.zeros(schema["item"].vocab_size))

    def fit_interactions(self, users: np.ndarray, items: np.ndarray) -> None:
        """Count training interactions per item. ``users`` is unused (kept for a common signature)."""
        self.counts.copy_(torch.from_numpy(np.bincount(items, minlength=len(self.counts)).astype(np.float32)))

    def forward(self, batch: Batch) -> Tensor:
        return self.counts[batch.sparse_features[:, 1]]
