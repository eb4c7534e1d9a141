"""Models, each registered by name. Importing this package registers all of them."""

from recforge.models.registry import MODELS, build_model, get_model_entry, register_model

# Importing the model modules registers them.
from recforge.models import deepfm, din, dlrm, factorization, multitask, ncf, popularity, wide_deep  # noqa: E402,F401

__all__ = ["MODELS", "build_model", "get_model_entry", "register_model"]
