"""Model registry: name -> (model class, frozen config dataclass with the paper's defaults)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from recforge.data.schema import Schema
from recforge.errors import UnknownNameError


@dataclass(frozen=True)
class ModelEntry:
    """A registered model: its class, config class, and a one-line description."""

    name: str
    cls: type[nn.Module]
    config_cls: type
    summary: str


MODELS: dict[str, ModelEntry] = {}


def register_model(name: str, config_cls: type) -> Callable[[type[nn.Module]], type[nn.Module]]:
    """Class decorator registering a model under ``name`` with its config dataclass.

    The model's constructor must be ``cls(schema: Schema, config: config_cls)``.
    """

    def decorate(cls: type[nn.Module]) -> type[nn.Module]:
        if name in MODELS:
            raise ValueError(f"model {name!r} registered twice")
        if not dataclasses.is_dataclass(config_cls):
            raise TypeError(f"config of model {name!r} must be a dataclass")
        summary = (cls.__doc__ or name).strip().splitlines()[0]
        MODELS[name] = ModelEntry(name, cls, config_cls, summary)
        return cls

    return decorate


def get_model_entry(name: str) -> ModelEntry:
    """The registry entry for ``name``.

    Raises:
        UnknownNameError: listing the registered model names.
    """
    if name not in MODELS:
        raise UnknownNameError("model", name, MODELS)
    return MODELS[name]


def build_model(name: str, schema: Schema, config: Any = None) -> nn.Module:
    """Instantiate model ``name`` for ``schema`` with ``config`` (default: the paper's settings)."""
    entry = get_model_entry(name)
    return entry.cls(schema, config if config is not None else entry.config_cls())
