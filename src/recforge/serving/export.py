"""Compiled forms of a scoring graph (TorchScript, ONNX), their runtimes, and the parity check.

* TorchScript: ``torch.jit.trace`` of :class:`~recforge.serving.graph.ScoringGraph` on a small
  synthetic batch (B = 3, sequence lengths L .. 0). The models' forward passes have no
  data-dependent Python control flow except DIN's "any real position?" shortcut, which the
  example takes on its general branch; batch size and L are read from the tensors at run time,
  not frozen into the graph (the parity check runs B = 1, 7 and 1024 to prove it).
* ONNX: ``torch.onnx.export`` with the TorchScript-based exporter (``dynamo=False``: it needs
  the ``onnx`` package but not ``onnxscript``, and traces like TorchScript), opset :data:`ONNX_OPSET`,
  ``dynamic_axes`` for the batch of every input and output and for L of every sequence. It runs
  on ONNX Runtime (CPU provider), a dependency of the ``serve`` extra only. The exporter drops
  inputs a model never reads (for example a Wide & Deep cross feature under DeepFM); the runtime
  feeds the graph the inputs it has, and the manifest lists them per format.
* Parity: every compiled form is run next to the eager model on the same model-ready rows, for
  B = 1, 7 and 1024 (rows repeated cyclically when fewer are given); the largest absolute
  difference of probabilities must be at most :data:`PARITY_TOLERANCE`, else the export fails.
  The eager side is :func:`~recforge.evaluation.protocols.score_rows` plus a float64 sigmoid,
  exactly what :meth:`Predictor.predict` does after :meth:`Predictor.encode`.

Shape letters: N rows, B batch, T tasks.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from recforge.data.preprocessing import EncodedColumns, Preprocessor
from recforge.data.schema import Schema
from recforge.data.tabular import TensorColumns
from recforge.errors import ConfigError
from recforge.evaluation.protocols import score_rows
from recforge.serving.graph import BATCH_AXIS, GraphSignature, PairScoringGraph, ScoringGraph, example_inputs, take
from recforge.serving.predictor import Predictor

COMPILED_FORMATS = ("torchscript", "onnx")
FORMATS = ("eager", *COMPILED_FORMATS)
GRAPH_FILES = {"torchscript": "model.torchscript.pt", "onnx": "model.onnx"}
PARITY_BATCH_SIZES = (1, 7, 1024)
PARITY_TOLERANCE = 1e-5
ONNX_OPSET = 17


class GraphRuntime(Protocol):
    """A loaded compiled graph: named input arrays -> probabilities float32 [N, T]."""

    input_names: tuple[str, ...]

    def __call__(self, arrays: dict[str, np.ndarray]) -> np.ndarray: ...


def scoring_graph(model: nn.Module, signature: GraphSignature) -> nn.Module:
    """The graph wrapper of ``model`` (put in evaluation mode) for ``signature``."""
    model.eval()
    graph = PairScoringGraph(model) if signature.pairs else ScoringGraph(model, signature)
    return graph.eval()


def compile_graph(graph: nn.Module, signature: GraphSignature, schema: Schema, fmt: str, path: Path) -> None:
    """Write ``graph`` in format ``fmt`` (``torchscript`` or ``onnx``) to ``path``.

    Raises:
        ConfigError: ONNX Runtime missing for ``onnx``, or the exporter failing (its first line).
    """
    example = example_inputs(signature, schema)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # TracerWarnings on static shape checks, the exporter's deprecation note
            if fmt == "torchscript":
                torch.jit.trace(graph, example, check_trace=False).save(str(path))
            elif fmt == "onnx":
                onnxruntime()  # fail before the slow export if the runtime is not installed
                _require_onnx()
                axes: dict[str, dict[int, str]] = {}
                for spec in signature.inputs:
                    axes[spec.name] = {0: BATCH_AXIS, 1: f"{spec.name}_steps"} if spec.kind == "sequence" else {0: BATCH_AXIS}
                axes.update({name: {0: BATCH_AXIS} for name in signature.output_names})
                torch.onnx.export(
                    graph, example, str(path), input_names=list(signature.input_names), output_names=list(signature.output_names),
                    dynamic_axes=axes, opset_version=ONNX_OPSET, dynamo=False,
                )
            else:
                raise ConfigError(f"unknown export format {fmt!r}; formats: {', '.join(FORMATS)}")
    except ConfigError:
        raise
    except Exception as exc:  # noqa: BLE001 - an exporter failure is reported as one line, the export stops
        raise ConfigError(f"cannot export the model to {fmt}: {_first_line(exc)}") from exc  # cause kept for debugging


def onnxruntime() -> Any:
    """The ``onnxruntime`` module.

    Raises:
        ConfigError: if it is not installed (it comes with the ``serve`` extra).
    """
    try:
        import onnxruntime as ort
    except ImportError:
        raise ConfigError("the onnx format needs ONNX Runtime: pip install 'recforge[serve]' (or onnx and onnxruntime)") from None
    return ort


def _require_onnx() -> None:
    """The exporter writes its model through the ``onnx`` package."""
    try:
        import onnx  # noqa: F401
    except ImportError:
        raise ConfigError("exporting to onnx needs the onnx package: pip install 'recforge[serve]' (or onnx and onnxruntime)") from None


class TorchScriptRuntime:
    """A saved TorchScript graph.

    Args:
        path: the ``model.torchscript.pt`` file.
        signature: the graph's signature (argument order).
        device: where to run it.
    """

    def __init__(self, path: str | Path, signature: GraphSignature, device: str = "cpu"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # torch 2.13 marks TorchScript deprecated; it still runs
            self.module = torch.jit.load(str(path), map_location=device).eval()
        self.signature, self.device = signature, device
        self.input_names = signature.input_names

    def __call__(self, arrays: dict[str, np.ndarray]) -> np.ndarray:
        tensors = [torch.from_numpy(a).to(self.device) for a in self.signature.ordered(arrays)]
        with torch.inference_mode():
            outputs = self.module(*tensors)
        return torch.stack(list(outputs), dim=1).cpu().numpy()


class OnnxRuntime:
    """A saved ONNX graph on ONNX Runtime's CPU provider.

    Args:
        path: the ``model.onnx`` file.
        signature: the graph's signature (output names).
        threads: intra-op threads (default: torch's current thread count, which recforge sets
            from the idle CPUs).
    """

    def __init__(self, path: str | Path, signature: GraphSignature, threads: int | None = None):
        ort = onnxruntime()
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(threads or torch.get_num_threads())
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.signature = signature
        self.input_names = tuple(i.name for i in self.session.get_inputs())  # those the graph reads

    def __call__(self, arrays: dict[str, np.ndarray]) -> np.ndarray:
        self.signature.ordered(arrays)  # every input of the signature must be given, by name
        outputs = self.session.run(list(self.signature.output_names), {n: arrays[n] for n in self.input_names})
        return np.stack(outputs, axis=1)


def load_runtime(fmt: str, path: str | Path, signature: GraphSignature, device: str = "cpu") -> GraphRuntime:
    """The runtime of a compiled graph file of format ``fmt``.

    Raises:
        ConfigError: for an unknown format, or a file the runtime cannot load (naming it).
    """
    if fmt not in COMPILED_FORMATS:
        raise ConfigError(f"unknown compiled format {fmt!r}; formats: {', '.join(COMPILED_FORMATS)}")
    if fmt == "onnx":
        onnxruntime()
    try:
        return TorchScriptRuntime(path, signature, device) if fmt == "torchscript" else OnnxRuntime(path, signature)
    except Exception as exc:  # noqa: BLE001 - any unloadable file is a user-facing error
        raise ConfigError(f"{path}: cannot load the {fmt} graph ({_first_line(exc)})") from None


def eager_probabilities(model: nn.Module, tasks: tuple[str, ...], encoded: EncodedColumns, device: str = "cpu") -> np.ndarray:
    """Probabilities float64 [N, T] of the eager model on model-ready rows, as :class:`Predictor` scores them."""
    logits = score_rows(model, TensorColumns(encoded), tasks, max(len(encoded), 1), device)
    return torch.sigmoid(torch.from_numpy(logits)).numpy()


def check_parity(
    fmt: str,
    runtime: GraphRuntime,
    model: nn.Module,
    signature: GraphSignature,
    encoded: EncodedColumns,
    source: str,
    batch_sizes: tuple[int, ...] = PARITY_BATCH_SIZES,
    tolerance: float = PARITY_TOLERANCE,
) -> dict[str, Any]:
    """Compare a compiled graph with the eager model on the same rows, for each batch size.

    Args:
        fmt: the graph's format (for messages).
        runtime: the loaded graph.
        model: the eager model.
        signature: the graph's signature.
        encoded: model-ready rows (N >= 1; repeated cyclically up to the largest batch size).
        source: where the rows came from, for the record (``test split``, ``given rows``...).
        batch_sizes: B values to run.
        tolerance: the largest allowed |exported - eager| of a probability.

    Returns:
        The record stored in the manifest: ``rows`` (source), ``distinct_rows``, ``tolerance``,
        ``batch_sizes``, ``max_abs_diff`` per B (as a string key) and ``max_abs_diff_all``.

    Raises:
        ConfigError: no rows, a graph that fails or gives another shape, or a difference above
            ``tolerance`` (naming the format, B and the difference).
    """
    n = len(encoded)
    if n == 0:
        raise ConfigError(f"{fmt} parity check: no rows to score ({source} is empty)")
    diffs: dict[str, float] = {}
    for b in batch_sizes:
        part = encoded.take(np.arange(b) % n)
        eager = eager_probabilities(model, signature.tasks, part)
        try:
            exported = np.asarray(runtime(signature.arrays(part)), dtype=np.float64)
        except Exception as exc:  # noqa: BLE001 - a graph that cannot run fails the export, in one line
            raise ConfigError(f"the {fmt} graph fails at batch size {b}: {_first_line(exc)}") from exc
        if exported.shape != eager.shape:
            raise ConfigError(f"the {fmt} graph returns shape {exported.shape} at batch size {b}, expected {eager.shape}")
        diff = float(np.max(np.abs(exported - eager)))
        if not diff <= tolerance:  # NaN fails too
            raise ConfigError(
                f"the {fmt} export failed its parity check: max |exported - eager| = {diff:.3g} at batch size {b} "
                f"(tolerance {tolerance:g}, {source})"
            )
        diffs[str(b)] = diff
    return {
        "rows": source, "distinct_rows": min(n, max(batch_sizes)), "tolerance": tolerance,
        "batch_sizes": list(batch_sizes), "max_abs_diff": diffs, "max_abs_diff_all": max(diffs.values()),
    }


class CompiledPredictor(Predictor):
    """A :class:`Predictor` whose scores come from a compiled graph (TorchScript or ONNX Runtime).

    Raw rows are encoded by :meth:`Predictor.encode`, exactly as for the eager model (the one
    scoring path); only the forward pass differs. :meth:`predict` returns the graph's
    probabilities as float64; :meth:`logits` are their logit (derived, for API compatibility).

    Args:
        model: the eager model (kept for :attr:`model`; not used to score).
        preprocessor: the fitted preprocessing.
        runtime: the loaded graph.
        signature: its signature.
        backend: ``torchscript`` or ``onnx``.
        batch_size: rows per graph call.
        device: where the eager model lives.
        name: what to call the bundle in errors.
    """

    def __init__(
        self, model: nn.Module, preprocessor: Preprocessor, runtime: GraphRuntime, signature: GraphSignature,
        backend: str, batch_size: int = 16384, device: str = "cpu", name: str = "the bundle",
    ):
        super().__init__(model, preprocessor, batch_size, device, name)
        self.runtime, self.signature, self.backend = runtime, signature, backend

    def probabilities(self, rows: Any, where: str = "") -> np.ndarray:
        """Probabilities float64 [N, T] of ``rows`` from the compiled graph.

        Raises:
            DataError: as :meth:`Predictor.encode`.
        """
        return self.encoded_probabilities(self.encode(rows, where))

    def encoded_probabilities(self, encoded: EncodedColumns) -> np.ndarray:
        """:meth:`probabilities` of rows already encoded."""
        arrays = self.signature.arrays(encoded)
        n = len(encoded)
        parts = [self.runtime(take(arrays, slice(s, s + self.batch_size))) for s in range(0, n, self.batch_size)]
        return np.concatenate(parts).astype(np.float64) if parts else np.zeros((0, len(self.tasks)))

    def logits(self, rows: Any, where: str = "") -> np.ndarray:
        return torch.logit(torch.from_numpy(self.probabilities(rows, where))).numpy()

    def predict_encoded(self, encoded: EncodedColumns) -> dict[str, np.ndarray]:
        probabilities = self.encoded_probabilities(encoded)
        return {task: probabilities[:, t].copy() for t, task in enumerate(self.tasks)}


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
