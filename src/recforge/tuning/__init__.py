"""Hyper-parameter search with the test set sealed (``recforge tune``).

``space`` (default and YAML search spaces), ``study`` (Optuna storage, sampler, pruner and the
exact trial budget), ``selection`` (top-k re-trained over seeds, winner on mean validation, test
scored once), ``report`` (tables, plot, importances) and ``runner`` (:func:`runner.tune`, which
ties them together). Optuna is an optional dependency: ``pip install 'recforge[tune]'``.
"""
