"""recforge: deep-learning recommendation models implemented from their papers.

The package is layered so imports go one way:
``data -> layers -> models -> training / evaluation -> cli``.
"""

__version__ = "0.1.0"
