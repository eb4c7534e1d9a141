"""The one scoring path: raw rows in, probabilities out, with a run's fitted preprocessing.

:class:`Predictor` holds a trained CTR, sequence (DIN / base) or multi-task model and the
:class:`~recforge.data.preprocessing.Preprocessor` fitted on its training split. ``recforge
predict``, the Python API (:mod:`recforge.api`) and the later HTTP app and export parity check all
call it; none re-implements encoding.

Rows: a ``pyarrow.Table``, a pandas DataFrame (if pandas is installed), a list of row dicts or a
dict of columns. Columns are matched by NAME, never by position:

* every raw column a feature reads (its ``source``, or each column of a ``cross``) must be there,
  else a :class:`~recforge.errors.DataError` names the first missing one and its feature;
* other columns (ids, labels, anything) are ignored; label columns are never required;
* an unseen category gets the OOV id 1, exactly as in training (the Preprocessor does it);
* a sequence (behaviour history) column is a list column, or a string split on the feature's
  declared ``separator``; a string column of a sequence declared without one (the registered
  DIN datasets hold lists) is split on ``|`` (:data:`HISTORY_SEPARATOR`), since CSV cannot hold lists.

Output: probabilities sigmoid(logit) in float64, one array per task in the run's task order;
as a table, one column per task named ``p_<task>`` (``p_label``, ``p_income``,
``p_never_married``): the same rule for one task and many, and a name that says which label
it predicts.

NCF / MF / ItemPop runs score (user, item) pairs from ids, not feature rows: they are for
``recforge recommend``, and :meth:`Predictor.from_run` says so.

Shape letters: N rows, T tasks.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
from torch import nn

from recforge.data.preprocessing import OOV_ID, EncodedColumns, Preprocessor, Vocabulary
from recforge.data.schema import FeatureSpec
from recforge.data.tabular import TensorColumns
from recforge.errors import ConfigError, DataError
from recforge.evaluation.protocols import score_rows, task_logits
from recforge.models.registry import build_model
from recforge.serving.request_encoding import key_lookup
from recforge.training.records import load_checkpoint, load_model_weights, load_run_config

HISTORY_SEPARATOR = "|"
PROBABILITY_PREFIX = "p_"
#: at most this many keys of one column are looked up in a Python dict (see :class:`_RequestVocabulary`)
REQUEST_KEYS = 1024
#: models that score (user, item) id pairs: served by ``recforge recommend``, not by this module
PAIR_MODELS = ("itempop", "mf", "gmf", "mlp", "neumf")


def probability_column(task: str) -> str:
    """The output column of ``task``'s probabilities: ``p_<task>``."""
    return f"{PROBABILITY_PREFIX}{task}"


def as_table(rows: Any) -> pa.Table:
    """Rows as a PyArrow table: a Table (as is), a RecordBatch, a pandas DataFrame (its index
    dropped), a list of row dicts, or a dict of columns (lists or NumPy arrays).

    Raises:
        DataError: for anything else, or columns of unequal length.
    """
    if isinstance(rows, pa.Table):
        return rows
    if isinstance(rows, pa.RecordBatch):
        return pa.Table.from_batches([rows])
    if type(rows).__module__.startswith("pandas") and hasattr(rows, "columns"):
        return pa.Table.from_pandas(rows, preserve_index=False)
    try:
        if isinstance(rows, dict):
            return pa.table({str(k): v if isinstance(v, (pa.Array, pa.ChunkedArray, np.ndarray)) else list(v) for k, v in rows.items()})
        if isinstance(rows, (list, tuple)) and all(isinstance(r, dict) for r in rows):
            return pa.Table.from_pylist(list(rows))
    except (pa.ArrowException, TypeError, ValueError) as exc:
        raise DataError(f"cannot read the rows as columns: {exc}") from None
    raise DataError(
        f"rows must be a pyarrow Table, a pandas DataFrame, a list of row dicts or a dict of columns, got {type(rows).__name__}"
    )


class Predictor:
    """A trained model and its fitted preprocessing: raw rows -> probabilities.

    Args:
        model: a CTR, sequence or multi-task model (returns logits [N] or a dict of them).
        preprocessor: the run's fitted preprocessing (``preprocessing.json``).
        batch_size: rows per forward pass (scores do not depend on it: eval mode).
        device: ``cpu`` or a CUDA device.
        name: what to call the run in errors (its directory).
    """

    def __init__(self, model: nn.Module, preprocessor: Preprocessor, batch_size: int = 16384, device: str = "cpu", name: str = "the run"):
        if batch_size < 1:
            raise ConfigError(f"batch size must be >= 1, got {batch_size}")
        self.model = model.to(device).eval()
        self.preprocessor = _with_request_lookups(preprocessor)
        self.schema = preprocessor.schema
        self.tasks: tuple[str, ...] = tuple(self.schema.labels)
        self.batch_size = batch_size
        self.device = device
        self.name = name

    @classmethod
    def from_run(cls, run_dir: str | Path, batch_size: int | None = None, device: str = "cpu") -> "Predictor":
        """Load a run directory: ``config.yaml``, ``preprocessing.json`` and ``checkpoint.pt``.

        Args:
            run_dir: a run directory written by ``recforge train``.
            batch_size: rows per forward pass (default: the run's ``train.eval_batch_size``).
            device: where to score.

        Raises:
            ConfigError: not a run directory; an NCF / MF / ItemPop run (use ``recommend``);
                missing ``preprocessing.json``; a checkpoint that does not fit the config.
        """
        run = Path(run_dir)
        if not run.is_dir():
            raise ConfigError(f"{run} is not a run directory: {'it is a file' if run.exists() else 'it does not exist'}")
        config = load_run_config(run)
        if config.model_name in PAIR_MODELS:
            raise ConfigError(
                f"{run} is a {config.model_name} run, which scores (user, item) pairs, not feature rows; "
                f"use `recforge recommend {run} --users ...` (or Run.recommend) for its top-K items"
            )
        prep_file = run / "preprocessing.json"
        if not prep_file.is_file():
            raise ConfigError(f"{run}/preprocessing.json is missing: the run's vocabularies and transforms are needed to encode rows")
        preprocessor = Preprocessor.load(prep_file)
        model = build_model(config.model_name, preprocessor.schema, config.model)
        load_model_weights(model, load_checkpoint(run), run)
        return cls(model, preprocessor, batch_size or config.train.eval_batch_size, device, name=str(run))

    @classmethod
    def from_bundle(cls, bundle_dir: str | Path, backend: str = "eager", batch_size: int | None = None, device: str = "cpu") -> "Predictor":
        """Load a model bundle (``recforge export``): no data directory or run directory needed.

        Args:
            bundle_dir: a folder written by :func:`recforge.serving.bundle.export_bundle`.
            backend: ``eager``, ``torchscript`` or ``onnx`` (the bundle's compiled graph).
            batch_size: rows per forward pass (default: the run's ``train.eval_batch_size``).
            device: where to score.

        Raises:
            ConfigError / DataError: as :func:`recforge.serving.bundle.load_bundle`, or a bundle
                of an NCF / MF / ItemPop model (load it with ``load_bundle``: a Recommender).
        """
        from recforge.serving.bundle import load_bundle

        loaded = load_bundle(bundle_dir, backend, batch_size, device)
        if not isinstance(loaded, Predictor):
            raise ConfigError(f"{bundle_dir} is a bundle of a (user, item) pair model: it recommends items, it does not score feature rows")
        return loaded

    def prepare_lookups(self) -> None:
        """Build the per-request vocabulary lookups now (a server calls it at start-up, so its
        first request is not the one that pays for them: about 0.3 s per million known values)."""
        for vocabulary in self.preprocessor.vocabularies.values():
            if isinstance(vocabulary, _RequestVocabulary):
                vocabulary.prepare()

    # ------------------------------------------------------------------ columns
    @property
    def feature_columns(self) -> tuple[str, ...]:
        """The raw columns the features read, in schema order (each once)."""
        seen: dict[str, None] = {}
        for spec in self.schema.features:
            for column in spec.cross or (spec.column_source,):
                seen.setdefault(column, None)
        return tuple(seen)

    @property
    def output_columns(self) -> tuple[str, ...]:
        """``p_<task>`` per task, in task order."""
        return tuple(probability_column(t) for t in self.tasks)

    def column_types(self) -> dict[str, pa.DataType]:
        """Types to read the feature columns of a CSV as: categories (and histories) as strings,
        so a column that looks numeric in the first block does not fail on a later one; numbers
        (dense and bucketized features) as float64. (``recforge predict`` reads with
        :func:`recforge.serving.row_files.input_types` instead, which keeps the input's types
        for the pass-through and encodes the same.)"""
        types: dict[str, pa.DataType] = {}
        for spec in self.schema.features:
            numeric = spec.kind == "dense" or spec.bucketize is not None
            for column in spec.cross or (spec.column_source,):
                types[column] = pa.float64() if numeric else pa.string()
        return types

    def check_columns(self, names: list[str] | tuple[str, ...], where: str = "") -> None:
        """Check that every feature column is among ``names`` (extra names are fine).

        Raises:
            DataError: naming the first missing column, its feature, and ``where``.
        """
        present = set(names)
        for spec in self.schema.features:
            for column in spec.cross or (spec.column_source,):
                if column not in present:
                    raise DataError(
                        f"missing feature column {column!r} (feature {spec.name!r}); the run's features read: "
                        f"{', '.join(self.feature_columns)}",
                        path=where or None,
                    )

    # ------------------------------------------------------------------ scoring
    def encode(self, rows: Any, where: str = "", first_row: int = 0) -> EncodedColumns:
        """Model-ready columns of ``rows`` (see :meth:`Preprocessor.transform` for shapes).

        ``first_row``: rows of the same file before these (a streamed chunk), so an error's
        data row counts from the file's first row.

        Raises:
            DataError: a missing feature column (naming it and its feature), or a value the
                feature cannot take (non-numeric dense value, ...), naming ``where``.
        """
        table = as_table(rows)
        self.check_columns(table.column_names, where)
        columns = {name: table.column(name) for name in self.feature_columns}
        for spec in self.schema.sequence:
            columns[spec.column_source] = _history(columns[spec.column_source], spec)
        # Labels are not inputs: missing labels (NaN) satisfy the preprocessor's label columns.
        nulls = pa.nulls(table.num_rows, pa.float64())
        columns.update({label: nulls for label in self.tasks if label not in columns})
        return self.preprocessor.transform(_ColumnView(columns, table.num_rows), where, first_row)  # type: ignore[arg-type]

    def logits(self, rows: Any, where: str = "") -> np.ndarray:
        """Logits float64 [N, T] of ``rows``, in row order and task order."""
        return self.encoded_logits(self.encode(rows, where))

    def encoded_logits(self, encoded: EncodedColumns) -> np.ndarray:
        """Logits float64 [N, T] of rows already encoded by :meth:`encode` (a pipeline encodes
        the next chunk while this one is scored)."""
        with torch.inference_mode():
            if 0 < len(encoded) <= self.batch_size and not self.model.training:
                # One forward pass, as score_rows makes it, without its eval() / train() toggle: that
                # walks every module (~1 ms for DeepFM), more than a one-row request's forward pass.
                batch = TensorColumns(encoded).batch(0, len(encoded)).to(self.device)
                return task_logits(self.model(batch), self.tasks).double().cpu().numpy()
            return score_rows(self.model, TensorColumns(encoded), self.tasks, self.batch_size, self.device)

    def predict(self, rows: Any, where: str = "") -> dict[str, np.ndarray]:
        """Probabilities per task: ``{task: float64 [N]}``, sigmoid of the logits, in row order.

        Raises:
            DataError: as :meth:`encode`.
        """
        return self.predict_encoded(self.encode(rows, where))

    def predict_encoded(self, encoded: EncodedColumns) -> dict[str, np.ndarray]:
        """:meth:`predict` of rows already encoded (by :meth:`encode`, or the service's
        :class:`~recforge.serving.request_encoding.RequestEncoder`)."""
        probabilities = torch.sigmoid(torch.from_numpy(self.encoded_logits(encoded))).numpy()
        return {task: probabilities[:, t].copy() for t, task in enumerate(self.tasks)}

    def predict_table(self, rows: Any, where: str = "") -> pa.Table:
        """:meth:`predict` as a table with one float64 column ``p_<task>`` per task."""
        scores = self.predict(rows, where)
        return pa.table({probability_column(t): pa.array(scores[t], pa.float64()) for t in self.tasks})

    def score_with_passthrough(self, rows: pa.Table, where: str = "") -> pa.Table:
        """``rows`` with the ``p_<task>`` columns appended (every input column kept, row order kept).

        Raises:
            DataError: as :meth:`encode`, or an input column named like an output column.
        """
        clash = [c for c in self.output_columns if c in rows.column_names]
        if clash:
            raise DataError(f"the input already has a column {clash[0]!r}, the name of the predicted probabilities; rename it", path=where or None)
        scores = self.predict_table(rows, where)
        for name in scores.column_names:
            rows = rows.append_column(name, scores.column(name))
        return rows


def _history(column: pa.ChunkedArray, spec: FeatureSpec) -> pa.ChunkedArray | pa.Array:
    """A string history column of a sequence declared without a separator, split on ``|``."""
    if spec.separator is None and (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        return pc.split_pattern(column, HISTORY_SEPARATOR)
    return column


class _RequestVocabulary(Vocabulary):
    """A :class:`Vocabulary` that looks a few keys up in a Python dict built on first use.

    ``Vocabulary.encode`` (``pc.index_in``) builds a hash table of the whole vocabulary on every
    call: right for a 100,000-row chunk, but for a one-row HTTP request it was most of the time
    (26 Criteo columns x a table build each). Up to :data:`REQUEST_KEYS` keys go through the
    dict instead: the same ids (known value -> its id, unknown -> OOV 1, null -> 0); more keys,
    the Arrow path.
    """

    _lookup: dict[Any, int] | None = None

    def encode(self, keys: pa.Array) -> np.ndarray:
        if len(keys) > REQUEST_KEYS:
            return super().encode(keys)
        get = self.lookup().get
        return np.array([get(k, OOV_ID) for k in keys.to_pylist()], np.int64)  # None -> 0: in the dict

    def lookup(self) -> dict[Any, int]:
        """The dict of :func:`~recforge.serving.request_encoding.key_lookup`, built on first use
        (shared with the service's :class:`~recforge.serving.request_encoding.RequestEncoder`)."""
        lookup = self._lookup
        if lookup is None:  # two threads may both build it; either result is the same
            lookup = self._lookup = key_lookup(self)
        return lookup

    def prepare(self) -> None:
        """Build the dict now (a server does it at start-up, not in its first request)."""
        self.lookup()


def _with_request_lookups(preprocessor: Preprocessor) -> Preprocessor:
    """A shallow copy of ``preprocessor`` whose vocabularies are :class:`_RequestVocabulary` (the caller's is untouched)."""
    prepared = copy.copy(preprocessor)
    prepared.vocabularies = {name: _RequestVocabulary(v.array) for name, v in preprocessor.vocabularies.items()}
    return prepared


class _ColumnView:
    """What :meth:`Preprocessor.transform` reads of a table (``column_names``, ``column(name)``,
    ``num_rows``), over the columns as given: ``pa.Table.column_names`` rebuilds its list on every
    access (~30 us for 40 columns), and a table's columns come back chunked, so transform would
    combine each one again; here each column is combined once and handed out as a ``pa.Array``.

    Raises:
        ValueError: if the columns differ in length.
    """

    def __init__(self, columns: dict[str, pa.Array | pa.ChunkedArray], num_rows: int):
        self._columns = {name: c.combine_chunks() if isinstance(c, pa.ChunkedArray) else c for name, c in columns.items()}
        if any(len(c) != num_rows for c in self._columns.values()):
            raise ValueError(f"columns of unequal length (expected {num_rows} rows)")
        self.column_names = list(self._columns)
        self.num_rows = num_rows

    def column(self, name: str) -> pa.Array:
        return self._columns[name]
