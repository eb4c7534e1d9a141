"""Multi-task models: Shared-Bottom, MMoE, PLE and AdaTT, each returning a dict of logits per task.

All four embed every categorical feature (crosses left out), append the dense features, run a
multi-task body, and put one tower (MLP -> 1 logit) on each task's representation. The tasks are
the schema's labels (``--tasks`` on the CLI), in order.

* ``shared_bottom``: one bottom MLP shared by every tower (Caruana 1997).
* ``mmoe``: Multi-gate Mixture-of-Experts (Ma et al., KDD 2018).
* ``ple``: Progressive Layered Extraction, stacked CGC levels (Tang et al., RecSys 2020).
* ``adatt``: Adaptive Task-to-Task Fusion, AdaTT-sp by default, AdaTT-w with ``shared_experts``
  (Li et al., KDD 2023, arXiv:2304.04959).

Shape: batch -> {task: logits [B]}.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from recforge.data.batches import Batch
from recforge.data.schema import Schema
from recforge.errors import ConfigError
from recforge.layers.embedding import EmbeddingCollection
from recforge.layers.mlp import MLP
from recforge.layers.multitask import AdaTTLevel, CGCLevel, MMoELayer
from recforge.models.ctr_config import check_ctr_config
from recforge.models.registry import register_model


@dataclass(frozen=True)
class MultiTaskConfig:
    """Settings shared by the multi-task models.

    Attributes:
        embedding_dim: D of every categorical feature.
        expert_units: each expert's MLP widths (Shared-Bottom: the bottom MLP's).
        num_experts: MMoE's experts.
        task_experts: experts per task (PLE, AdaTT).
        shared_experts: shared experts (PLE; AdaTT-w when > 0).
        levels: stacked CGC / AdaTT fusion levels.
        tower_units: each task tower's hidden widths (a final 1-unit linear layer is added).
        init_std: embeddings start from N(0, init_std^2).
        layout: ``per_field`` embedding tables or one ``fused`` table (see ``EmbeddingCollection``).
    """

    embedding_dim: int = 8
    expert_units: tuple[int, ...] = (64,)
    num_experts: int = 8
    task_experts: int = 2
    shared_experts: int = 1
    levels: int = 2
    tower_units: tuple[int, ...] = (32,)
    init_std: float = 1e-4
    layout: str = "per_field"

    def __post_init__(self) -> None:
        check_ctr_config("multi-task", self.embedding_dim, (*self.expert_units, *self.tower_units), layout=self.layout, init_std=self.init_std)
        if not self.expert_units:
            raise ConfigError("model.expert_units must list at least one width")
        for key in ("num_experts", "task_experts", "levels"):
            if getattr(self, key) < 1:
                raise ConfigError(f"model.{key} must be >= 1, got {getattr(self, key)}")
        if self.shared_experts < 0:
            raise ConfigError(f"model.shared_experts must be >= 0, got {self.shared_experts}")


@dataclass(frozen=True)
class AdaTTConfig(MultiTaskConfig):
    """AdaTT settings: AdaTT-sp by default (no shared experts); ``shared_experts`` > 0 is AdaTT-w."""

    shared_experts: int = 0


class _MultiTask(nn.Module):
    """Embeddings + body + one tower per task; subclasses build ``self.body`` and set ``body_out``."""

    def __init__(self, schema: Schema, config: MultiTaskConfig):
        super().__init__()
        self.tasks = tuple(schema.labels)
        self.embeddings = EmbeddingCollection(schema, schema.embedded(), config.embedding_dim, config.layout, init_std=config.init_std)
        self.input_dim = self.embeddings.output_dim + len(schema.dense)
        body_out = self.build_body(config)
        self.towers = nn.ModuleDict(
            {t: nn.Sequential(MLP(body_out, config.tower_units, "relu", init="default"), nn.Linear(config.tower_units[-1] if config.tower_units else body_out, 1)) for t in self.tasks}
        )

    def build_body(self, config: MultiTaskConfig) -> int:
        raise NotImplementedError

    def represent(self, x: Tensor) -> Tensor:
        """Task representations [B, T, D] from the shared input [B, D_in]."""
        raise NotImplementedError

    def forward(self, batch: Batch) -> dict[str, Tensor]:
        x = torch.cat([self.embeddings.flat(batch), batch.dense_features], dim=1)
        reps = self.represent(x).unbind(1)
        return {t: self.towers[t](reps[i]).squeeze(1) for i, t in enumerate(self.tasks)}

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """``shared`` (embeddings and body) and one group per task tower (``tower_<task>``)."""
        tower_ids = {id(p) for p in self.towers.parameters()}
        groups = {"shared": [p for p in self.parameters() if id(p) not in tower_ids]}
        groups.update({f"tower_{t}": list(self.towers[t].parameters()) for t in self.tasks})
        return groups


@register_model("shared_bottom", MultiTaskConfig)
class SharedBottom(_MultiTask):
    """Shared-Bottom: one bottom MLP feeding a tower per task (Caruana 1997)."""

    def build_body(self, config: MultiTaskConfig) -> int:
        self.bottom = MLP(self.input_dim, config.expert_units, "relu", init="default")
        return self.bottom.output_dim

    def represent(self, x: Tensor) -> Tensor:
        return self.bottom(x).unsqueeze(1).expand(-1, len(self.tasks), -1)


@register_model("mmoe", MultiTaskConfig)
class MMoE(_MultiTask):
    """Multi-gate Mixture-of-Experts: shared experts, one softmax gate per task (Ma et al. 2018)."""

    def build_body(self, config: MultiTaskConfig) -> int:
        self.mmoe = MMoELayer(self.input_dim, len(self.tasks), config.num_experts, config.expert_units)
        return config.expert_units[-1]

    def represent(self, x: Tensor) -> Tensor:
        return self.mmoe(x)


@register_model("ple", MultiTaskConfig)
class PLE(_MultiTask):
    """Progressive Layered Extraction: stacked CGC levels of task and shared experts (Tang et al. 2020)."""

    def build_body(self, config: MultiTaskConfig) -> int:
        if config.shared_experts < 1:
            raise ConfigError("ple needs model.shared_experts >= 1")
        width, levels = self.input_dim, []
        for level in range(config.levels):
            levels.append(CGCLevel(width, len(self.tasks), config.task_experts, config.shared_experts, config.expert_units, last=level == config.levels - 1))
            width = config.expert_units[-1]
        self.levels = nn.ModuleList(levels)
        return width

    def represent(self, x: Tensor) -> Tensor:
        h = x  # the first level's modules all read the shared input
        for level in self.levels:
            h = level(h)
        return h


@register_model("adatt", AdaTTConfig)
class AdaTT(_MultiTask):
    """Adaptive Task-to-Task Fusion: per-task expert groups fused by gates plus a residual of each
    task's own experts, over stacked levels (Li et al. 2023; AdaTT-w with shared experts)."""

    def build_body(self, config: MultiTaskConfig) -> int:
        width, levels = self.input_dim, []
        self.with_shared = config.shared_experts > 0
        for level in range(config.levels):
            levels.append(AdaTTLevel(width, len(self.tasks), config.task_experts, config.expert_units, config.shared_experts, last=level == config.levels - 1))
            width = config.expert_units[-1]
        self.levels = nn.ModuleList(levels)
        return width

    def represent(self, x: Tensor) -> Tensor:
        h = x  # the first level's modules all read the shared input
        for level in self.levels:
            h = level(h)
        return h
