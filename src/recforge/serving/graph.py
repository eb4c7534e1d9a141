"""The scoring graph: a trained model behind named tensor inputs, returning probabilities.

This is the form that TorchScript and ONNX export (:mod:`recforge.serving.export`): a wrapper
module whose inputs are plain tensors, one per feature, in a fixed order derived from the schema
and written into the bundle's manifest (:class:`GraphSignature`), so a feature is always found
by its NAME, never by a position guessed by the caller. Encoding raw values into ids stays in
:class:`~recforge.serving.predictor.Predictor` (the one scoring path); the graph starts at ids.

Inputs of a feature-row model (CTR, DIN / base, multi-task), in this order:

* one int64 [B] tensor per sparse feature (schema order), named like the feature: its id
  (0 = missing, 1 = out-of-vocabulary, 2.. = known values, exactly as in training);
* one float32 [B] tensor per dense feature (schema order), the value after its transform;
* per sequence feature (schema order): int64 [B, L] ids named like the feature, zero-padded at
  the end, then int64 [B] ``<name>_length``.

Inputs of a (user, item) pair model (MF, GMF, MLP, NeuMF): int64 [B] ``user`` and ``item``,
internal ids (row k of the bundle's ``user_ids.parquet`` / ``item_ids.parquet`` is the raw id
of internal id k).

Outputs: one float32 [B] tensor per task, ``p_<task>``, the probability sigmoid(logit) (never
a logit), in the schema's task order.

Shape letters: B batch, L sequence length, T tasks.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from recforge.data.batches import Batch
from recforge.data.preprocessing import EncodedColumns
from recforge.data.schema import Schema
from recforge.errors import ConfigError
from recforge.evaluation.protocols import task_logits
from recforge.serving.predictor import probability_column

LENGTH_SUFFIX = "_length"
BATCH_AXIS = "batch"
_DTYPES = {"int64": (np.int64, torch.int64), "float32": (np.float32, torch.float32)}


def tensor_name(feature: str) -> str:
    """The graph tensor name of a feature: the feature's own name when it is an identifier
    (``[A-Za-z_][A-Za-z0-9_]*``), else ``f_`` + the name with every other character as ``_``
    (own tables often have columns named ``206`` or ``user-id``, which the ONNX exporter
    refuses as names). The manifest's signature lists both, ``name`` and ``feature``."""
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", feature):
        return feature
    return "f_" + re.sub(r"[^A-Za-z0-9_]", "_", feature)


@dataclass(frozen=True)
class GraphInput:
    """One input tensor of the scoring graph.

    Attributes:
        name: the tensor's name (ONNX input name; key of the arrays given to a runtime).
        feature: the schema feature it carries (``user`` / ``item`` for pair models).
        kind: ``sparse``, ``dense``, ``sequence``, ``length``, ``user`` or ``item``.
        dtype: ``int64`` or ``float32``.
        length: L for a ``sequence`` input (its padded width in training), else 0.
    """

    name: str
    feature: str
    kind: str
    dtype: str
    length: int = 0

    @property
    def shape(self) -> tuple[str | int, ...]:
        """``("batch",)`` or ``("batch", L)``."""
        return (BATCH_AXIS, self.length) if self.kind == "sequence" else (BATCH_AXIS,)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "feature": self.feature, "kind": self.kind, "dtype": self.dtype, "shape": list(self.shape)}


@dataclass(frozen=True)
class GraphSignature:
    """The inputs (in argument order) and outputs of a scoring graph.

    Attributes:
        inputs: the input tensors, in the graph's argument order.
        tasks: the task names, in output order.
        pairs: a (user, item) pair scorer rather than a feature-row model.
    """

    inputs: tuple[GraphInput, ...]
    tasks: tuple[str, ...]
    pairs: bool = False

    @property
    def input_names(self) -> tuple[str, ...]:
        return tuple(i.name for i in self.inputs)

    @property
    def output_names(self) -> tuple[str, ...]:
        """``p_<task>`` per task, in task order."""
        return tuple(probability_column(t) for t in self.tasks)

    @classmethod
    def for_rows(cls, schema: Schema, max_lengths: dict[str, int]) -> "GraphSignature":
        """The signature of a feature-row model of ``schema`` (see the module docstring).

        Args:
            schema: the fitted schema.
            max_lengths: padded width L of each sequence feature (``Preprocessor.max_lengths``).

        Raises:
            ConfigError: if two inputs would get one name (a feature named ``<sequence>_length``).
        """
        inputs = [GraphInput(tensor_name(s.name), s.name, "sparse", "int64") for s in schema.sparse]
        inputs += [GraphInput(tensor_name(s.name), s.name, "dense", "float32") for s in schema.dense]
        for s in schema.sequence:
            inputs += [
                GraphInput(tensor_name(s.name), s.name, "sequence", "int64", int(max_lengths[s.name])),
                GraphInput(tensor_name(s.name) + LENGTH_SUFFIX, s.name, "length", "int64"),
            ]
        names = [i.name for i in inputs] + [probability_column(t) for t in schema.labels]
        clash = sorted({n for n in names if names.count(n) > 1})
        if clash:
            raise ConfigError(
                f"the graph tensor name {clash[0]!r} would be used twice (a feature named like a sequence's length input "
                "or like an output p_<task>); rename the feature"
            )
        return cls(tuple(inputs), tuple(schema.labels))

    @classmethod
    def for_pairs(cls) -> "GraphSignature":
        """The signature of a (user, item) pair scorer: int64 ``user``, ``item`` -> ``p_label``."""
        return cls((GraphInput("user", "user", "user", "int64"), GraphInput("item", "item", "item", "int64")), ("label",), pairs=True)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form for the manifest (``from_dict`` round-trips it)."""
        return {"inputs": [i.to_dict() for i in self.inputs], "outputs": list(self.output_names), "tasks": list(self.tasks), "pairs": self.pairs}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> "GraphSignature":
        inputs = tuple(
            GraphInput(i["name"], i["feature"], i["kind"], i["dtype"], int(i["shape"][1]) if i["kind"] == "sequence" else 0)
            for i in raw["inputs"]
        )
        return cls(inputs, tuple(raw["tasks"]), bool(raw.get("pairs", False)))

    # ------------------------------------------------------------------ arrays
    def arrays(self, encoded: EncodedColumns) -> dict[str, np.ndarray]:
        """The graph's named inputs from model-ready columns (contiguous, the graph's dtypes).

        Args:
            encoded: columns from :meth:`Predictor.encode` (feature rows), or for a pair model
                ``EncodedColumns`` whose ``sparse`` is int64 [N, 2] (internal user, item).
        """
        out: dict[str, np.ndarray] = {}
        sparse_column = dense_column = 0
        for spec in self.inputs:
            if spec.kind in ("sparse", "user", "item"):
                values, sparse_column = encoded.sparse[:, sparse_column], sparse_column + 1
            elif spec.kind == "dense":
                values, dense_column = encoded.dense[:, dense_column], dense_column + 1
            elif spec.kind == "sequence":
                values = encoded.sequences[spec.feature]
            else:
                values = encoded.lengths[spec.feature]
            out[spec.name] = np.ascontiguousarray(values, dtype=_DTYPES[spec.dtype][0])
        return out

    def ordered(self, arrays: dict[str, np.ndarray]) -> list[np.ndarray]:
        """``arrays`` in argument order.

        Raises:
            ConfigError: naming the first missing input.
        """
        missing = [n for n in self.input_names if n not in arrays]
        if missing:
            raise ConfigError(f"missing graph input {missing[0]!r}; the graph takes {', '.join(self.input_names)}")
        return [arrays[n] for n in self.input_names]


def take(arrays: dict[str, np.ndarray], rows: np.ndarray | slice) -> dict[str, np.ndarray]:
    """The rows ``rows`` of every named input (contiguous copies)."""
    return {k: np.ascontiguousarray(v[rows]) for k, v in arrays.items()}


class ScoringGraph(nn.Module):
    """A feature-row model (CTR, DIN / base, multi-task) behind named tensor inputs.

    Args:
        model: the trained model, in evaluation mode (returns logits [B] or {task: logits [B]}).
        signature: :meth:`GraphSignature.for_rows` of its schema.

    Shape:
        the signature's inputs (sparse / length int64 [B], dense float32 [B], sequences int64
        [B, L]) -> a tuple of T float32 [B] probabilities, in task order.
    """

    def __init__(self, model: nn.Module, signature: GraphSignature):
        super().__init__()
        self.model = model
        self.tasks = signature.tasks
        kinds = [i.kind for i in signature.inputs]
        self.sparse_positions = [k for k, kind in enumerate(kinds) if kind == "sparse"]
        self.dense_positions = [k for k, kind in enumerate(kinds) if kind == "dense"]
        self.sequence_positions = {i.feature: k for k, i in enumerate(signature.inputs) if i.kind == "sequence"}
        self.length_positions = {i.feature: k for k, i in enumerate(signature.inputs) if i.kind == "length"}

    def forward(self, *inputs: Tensor) -> tuple[Tensor, ...]:
        if self.sparse_positions:
            sparse = torch.stack([inputs[k] for k in self.sparse_positions], dim=1)
        else:
            sparse = _no_columns(inputs[0], torch.int64)
        if self.dense_positions:
            dense = torch.stack([inputs[k] for k in self.dense_positions], dim=1)
        else:
            dense = _no_columns(inputs[0], torch.float32)
        batch = Batch(
            sparse_features=sparse,
            labels=torch.zeros((0, len(self.tasks))),  # never read: the model only computes logits
            dense_features=dense,
            sequence_features={name: inputs[k] for name, k in self.sequence_positions.items()},
            sequence_lengths={name: inputs[k] for name, k in self.length_positions.items()},
        )
        probabilities = torch.sigmoid(task_logits(self.model(batch), self.tasks))  # [B, T]
        return tuple(probabilities[:, t] for t in range(len(self.tasks)))


def _no_columns(reference: Tensor, dtype: torch.dtype) -> Tensor:
    """A [B, 0] tensor of ``dtype`` sliced from an input, so B stays the input's (never a traced constant)."""
    columns = reference if reference.dim() == 2 else reference.unsqueeze(1)
    return columns[:, :0].to(dtype)


class PairScoringGraph(nn.Module):
    """A (user, item) pair model (MF, GMF, MLP, NeuMF) behind ``user`` / ``item`` id tensors.

    Args:
        model: the trained model, in evaluation mode (``sparse_features`` [B, 2] -> logits [B]).

    Shape:
        user int64 [B], item int64 [B] (internal ids) -> (float32 [B] probabilities,).
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, user: Tensor, item: Tensor) -> tuple[Tensor]:
        batch = Batch(sparse_features=torch.stack([user, item], dim=1), labels=torch.zeros((0, 1)))
        return (torch.sigmoid(self.model(batch).reshape(-1)),)


def example_inputs(signature: GraphSignature, schema: Schema, batch_size: int = 3) -> tuple[Tensor, ...]:
    """Valid synthetic inputs to trace a graph with: ids spread over each table, sequence lengths
    from L down to 0 (so masked code paths are traced with real positions), dense values in [-1, 1].

    Args:
        signature: the graph's signature.
        schema: the fitted schema (table sizes bound the ids).
        batch_size: B of the example (>= 2, so no size-1 dimension is specialised).
    """
    rows = torch.arange(batch_size)
    out: list[Tensor] = []
    for spec in signature.inputs:
        if spec.kind == "dense":
            out.append(torch.linspace(-1.0, 1.0, batch_size))
        elif spec.kind == "sequence":
            size = max(schema.vocab_size(spec.feature), 1)
            ids = (rows[:, None] + torch.arange(spec.length)[None, :] + 1) % size
            lengths = _example_lengths(spec.length, batch_size)
            out.append(ids.masked_fill(torch.arange(spec.length)[None, :] >= lengths[:, None], 0))
        elif spec.kind == "length":
            length = next(i.length for i in signature.inputs if i.kind == "sequence" and i.feature == spec.feature)
            out.append(_example_lengths(length, batch_size))
        else:
            size = max(schema.vocab_size(spec.feature), 1)
            out.append((rows + 1) % size)
    return tuple(out)


def _example_lengths(length: int, batch_size: int) -> Tensor:
    return torch.clamp(length - torch.arange(batch_size), min=0).to(torch.int64)
