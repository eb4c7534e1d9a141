"""Reusable network layers that models are composed from."""

from recforge.layers.mlp import MLP

__all__ = ["MLP"]
