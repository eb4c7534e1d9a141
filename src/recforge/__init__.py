"""recforge: deep-learning recommendation models implemented from their papers.

The package is layered so imports go one way:
``data -> layers -> models -> training / evaluation -> cli``.
"""

__version__ = "0.1.0"

__all__ = ["Run", "load", "train"]


def __getattr__(name: str):  # PEP 562: the API is imported on first use, so `import recforge` stays light (no torch)
    if name in __all__:
        from recforge import api

        return getattr(api, name)
    raise AttributeError(f"module 'recforge' has no attribute {name!r}")
