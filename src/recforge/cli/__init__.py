"""The ``recforge`` command-line interface."""
