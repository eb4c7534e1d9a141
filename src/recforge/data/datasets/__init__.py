"""Dataset registry: each dataset is a class registered by name in its own module."""

from __future__ import annotations

from recforge.data.datasets.registry import DATASETS, DatasetSource, get_dataset, register_dataset

# Importing the modules registers their datasets.
from recforge.data.datasets import adult, avazu, census, criteo, frappe, movielens, movielens_ctr, sequence_sets  # noqa: E402,F401

__all__ = ["DATASETS", "DatasetSource", "get_dataset", "register_dataset"]
