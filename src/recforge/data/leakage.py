"""Label leakage: refuse features that read a label's columns, warn about features that give it away.

Two checks, both run where a dataset source meets a schema (:meth:`TabularSource.encode`):

* :func:`refuse_label_leaks`, from the schema alone, before anything is encoded: no feature
  (plain, ``source:``, ``cross:`` part, bucketized) may read a label column or a raw column a
  label is derived from (a source's ``label_sources``, for example UCI Adult's ``income`` is
  ``income_bracket > 50K``). A :class:`~recforge.errors.ConfigError`.
* :func:`audit_leakage`, from the encoded data, since a user's own table can hide a copy of the
  label under another column name: every single feature is scored alone on the *validation*
  rows (a sparse feature by its per-id positive rate fitted on the training rows, i.e. target
  encoding with unseen ids scored at the training prior; a dense feature by its value) and a
  feature whose AUC exceeds :data:`LEAK_AUC` is a :class:`LabelLeakWarning`. The scores and the
  warnings are kept in ``TabularData.info`` (``single_feature_auc``, ``leakage_warnings``), so a
  cached dataset re-emits them.

AUC here is the Mann-Whitney statistic over mid-ranks (ties count 1/2), as in
:mod:`recforge.metrics.classification`; it is re-implemented in a few lines because data code
must not import metrics (imports go ``data -> layers -> models -> ... -> metrics``).

Shape letters: N rows, F sparse fields, T tasks.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy.stats import rankdata

from recforge.data.preprocessing import EncodedColumns
from recforge.data.schema import FeatureSpec, Schema
from recforge.data.tabular import TabularData
from recforge.errors import ConfigError

#: A single feature separating the validation labels better than this is reported as a leak.
LEAK_AUC = 0.99
#: Features kept per task in ``info["single_feature_auc"]`` (the highest AUCs).
TOP_FEATURES = 5


class LabelLeakWarning(UserWarning):
    """A single feature predicts a label almost perfectly: it probably is (a copy of) the label."""


def feature_columns(spec: FeatureSpec) -> tuple[str, ...]:
    """The raw columns feature ``spec`` reads: its ``cross`` parts, else its ``source`` (or name)."""
    return tuple(spec.cross) if spec.cross else (spec.column_source,)


def refuse_label_leaks(schema: Schema, label_sources: Mapping[str, Sequence[str]], dataset: str = "") -> None:
    """Refuse a schema with a feature that reads a label column or a column a label is made from.

    Args:
        schema: the declared (or fitted) schema.
        label_sources: label name -> raw columns it is derived from (the source's ``label_sources``;
            a label missing from it is a raw column of its own).
        dataset: the dataset name, for the message.

    Raises:
        ConfigError: naming the feature, the column and the label.
    """
    where = f"{dataset}: " if dataset else ""
    for label in schema.labels:
        forbidden = {label, *label_sources.get(label, ())}
        for spec in schema.features:
            for column in feature_columns(spec):
                if column in forbidden:
                    what = f"the label column {column!r}" if column == label else f"column {column!r}, from which label {label!r} is derived"
                    raise ConfigError(f"{where}feature {spec.name!r} reads {what}; it would reveal the label: remove it from the schema")


def rank_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """AUC of ``scores`` for 0/1 ``labels``: P(positive scores above negative), ties count 1/2.

    Args:
        labels: 0/1 [N].
        scores: finite real scores [N].

    Returns:
        The AUC in [0, 1]; NaN (silently) when there are no positives or no negatives.
    """
    y = np.asarray(labels, dtype=np.float64) == 1
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(np.asarray(scores, dtype=np.float64))  # mid-ranks for ties, 1-based
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def target_encoding_scores(train_ids: np.ndarray, train_labels: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Score each of ``ids`` by the positive rate of that id among the training rows.

    Args:
        train_ids: int64 [N_train] ids of one sparse field in the training split.
        train_labels: 0/1 [N_train] one task's training labels (no missing ones).
        ids: int64 [N] ids to score; an id absent from the training rows scores the training prior.

    Returns:
        float64 [N] positive rates in [0, 1].
    """
    size = int(max(train_ids.max(initial=-1), ids.max(initial=-1))) + 1
    counts = np.bincount(train_ids, minlength=size)
    positives = np.bincount(train_ids, weights=train_labels, minlength=size)
    prior = float(train_labels.mean()) if len(train_labels) else 0.5
    rates = np.divide(positives, counts, out=np.full(size, prior), where=counts > 0)
    return rates[ids]


def single_feature_auc(schema: Schema, train: EncodedColumns, valid: EncodedColumns) -> dict[str, dict[str, float]]:
    """How well each single sparse or dense feature separates the validation labels of each task.

    Sparse features are scored by :func:`target_encoding_scores` fitted on ``train``; dense
    features by their value, counted either way (max(AUC, 1 - AUC)). Sequence features are
    skipped. Rows with a missing (NaN) label are left out of that task.

    Args:
        schema: the fitted schema of ``train`` and ``valid``.
        train: encoded training split (sparse [N, F], dense [N, N_dense], labels [N, T]).
        valid: encoded validation split.

    Returns:
        task -> feature -> AUC, NaN where the validation rows hold one class only.
    """
    out: dict[str, dict[str, float]] = {}
    for t, task in enumerate(schema.labels):
        fit = ~np.isnan(train.labels[:, t])
        held = ~np.isnan(valid.labels[:, t])
        y_train = train.labels[fit, t].astype(np.float64)
        y_valid = valid.labels[held, t]
        scores: dict[str, float] = {}
        for j, spec in enumerate(schema.sparse):
            ids = target_encoding_scores(train.sparse[fit, j], y_train, valid.sparse[held, j])
            scores[spec.name] = rank_auc(y_valid, ids)
        for j, spec in enumerate(schema.dense):
            value = rank_auc(y_valid, valid.dense[held, j])
            scores[spec.name] = max(value, 1.0 - value)
        out[task] = scores
    return out


def leakage_info(schema: Schema, train: EncodedColumns, valid: EncodedColumns, dataset: str = "") -> dict[str, Any]:
    """The JSON-safe leakage entries of ``TabularData.info``.

    Returns:
        ``single_feature_auc``: task -> the :data:`TOP_FEATURES` highest single-feature AUCs
        (feature -> AUC, highest first); ``leakage_warnings``: one message per (task, feature)
        with an AUC above :data:`LEAK_AUC`.
    """
    where = f"{dataset}: " if dataset else ""
    top: dict[str, dict[str, float]] = {}
    messages: list[str] = []
    for task, scores in single_feature_auc(schema, train, valid).items():
        ranked = sorted(((a, f) for f, a in scores.items() if np.isfinite(a)), reverse=True)
        top[task] = {f: round(a, 6) for a, f in ranked[:TOP_FEATURES]}
        messages += [
            f"{where}feature {f!r} alone separates the validation labels of {task!r} with AUC {a:.4f} "
            f"(> {LEAK_AUC}); it probably is derived from the label: check how its column is made"
            for a, f in ranked
            if a > LEAK_AUC
        ]
    return {"single_feature_auc": top, "leakage_warnings": messages}


def audit_leakage(data: TabularData) -> TabularData:
    """Warn (:class:`LabelLeakWarning`) about every leak recorded in ``data.info``; returns ``data``.

    The entries are computed with :func:`leakage_info` and stored in ``data.info`` when missing
    (fresh data, or a cache written before they existed), else re-emitted from it.
    """
    if "leakage_warnings" not in data.info:
        data.info.update(leakage_info(data.schema, data.train, data.valid, data.name))
    for message in data.info["leakage_warnings"]:
        warnings.warn(message, LabelLeakWarning, stacklevel=3)
    return data
