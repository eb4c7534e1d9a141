"""Model bundles: everything needed to score raw rows, without the data directory or training code.

``export_bundle(run_dir, output_dir, formats)`` writes a folder::

    manifest.json        format version, model, kind, tasks, graph signature (input order),
                         formats and graph files, parity figures, versions, and the sha256 and
                         size of every other file
    config.yaml          the run's resolved config (model name and settings, eval batch size)
    weights.pt           the model's state_dict (``torch.load(..., weights_only=True)``)
    schema.json          the fitted schema (table sizes) and the task names
    preprocessing.json   feature-row models: the fitted vocabularies and numeric transforms
    interactions.npz, user_ids.parquet, item_ids.parquet
                         (user, item) pair models: training pairs and raw-id maps, for top-K
    model.torchscript.pt, model.onnx
                         the compiled scoring graphs asked for (:mod:`recforge.serving.graph`)

The bundle is written into a temporary sibling folder and renamed into place at the end, so a
failure (an unwritable folder, an exporter error, a failed parity check) leaves nothing behind.
``load_bundle`` refuses a bundle whose format version it does not know (ConfigError) or any of
whose files is missing or differs from its checksum (DataError naming the file).

What each model family gets:

* CTR models, DIN / base and the multi-task models: eager, TorchScript and ONNX; loaded as a
  :class:`~recforge.serving.predictor.Predictor` (eager) or
  :class:`~recforge.serving.export.CompiledPredictor` that scores raw rows.
* MF, GMF, MLP, NeuMF: eager, and a compiled (user, item) pair scorer (internal ids -> probability);
  loaded as a :class:`~recforge.serving.recommender.Recommender` (top-K through the eager
  catalogue scoring routes, popularity for cold users).
* ItemPop: eager only (its scores are training counts, not logits: there is no probability to export).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from recforge import __version__
from recforge.config import ExperimentConfig, from_dict, read_yaml
from recforge.data.id_maps import INTERACTIONS_FILE, ITEM_IDS_FILE, USER_IDS_FILE, load_train_interactions
from recforge.data.preprocessing import EncodedColumns, Preprocessor
from recforge.data.schema import Schema, user_item_schema
from recforge.errors import ConfigError, DataError, RecforgeError
from recforge.models.registry import build_model
from recforge.serving.export import (
    COMPILED_FORMATS, FORMATS, GRAPH_FILES, PARITY_BATCH_SIZES, CompiledPredictor, check_parity, compile_graph, load_runtime,
    scoring_graph,
)
from recforge.serving.graph import GraphSignature
from recforge.serving.predictor import PAIR_MODELS, Predictor
from recforge.serving.recommender import Recommender, read_run_interactions

BUNDLE_FORMAT = 1
MANIFEST_FILE = "manifest.json"
CONFIG_FILE = "config.yaml"
WEIGHTS_FILE = "weights.pt"
SCHEMA_FILE = "schema.json"
PREPROCESSING_FILE = "preprocessing.json"
PAIR_FILES = (INTERACTIONS_FILE, USER_IDS_FILE, ITEM_IDS_FILE)
EAGER_ONLY = ("itempop",)


def export_bundle(
    run_dir: str | Path,
    output_dir: str | Path,
    formats: tuple[str, ...] | list[str] = ("eager",),
    rows: Any = None,
    data_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Write the bundle of a trained run, with the compiled graphs in ``formats`` parity-checked.

    Args:
        run_dir: a run directory written by ``recforge train``.
        output_dir: the bundle folder to create (must not exist, or be empty; parents are created).
        formats: any of ``eager`` (always written: the weights), ``torchscript``, ``onnx``.
        rows: rows to run the parity check on: raw rows for a feature-row model (anything
            :meth:`Predictor.encode` takes), int64 [N, 2] internal (user, item) ids for a pair
            model. Default: the first 1,024 rows of the run's test split (feature-row models,
            re-loaded from ``data_dir``) or of its training pairs (pair models).
        data_dir: the data directory for the test split (default: ``RECFORGE_DATA_DIR``).

    Returns:
        The manifest written (``parity`` holds the figures per compiled format).

    Raises:
        ConfigError: not a finished run (no config, no checkpoint, missing preprocessing or
            interactions), an unknown format, a format the model cannot have, an output folder
            that exists and is not empty or cannot be written, an exporter failure, or a failed
            parity check. Nothing is left at ``output_dir`` then.
        DataError: unreadable run files or parity rows.
    """
    run = Path(run_dir)
    out = Path(output_dir)
    wanted = _check_formats(formats)
    if not run.is_dir():
        raise ConfigError(f"{run} is not a run directory: {'it is a file' if run.exists() else 'it does not exist'}")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"{out} already exists{' and is not empty' if out.is_dir() else ' (a file)'}; choose a new output folder")
    from recforge.training.records import load_checkpoint, load_model_weights

    config = _run_config(run)
    state = load_checkpoint(run)
    compiled = [f for f in wanted if f in COMPILED_FORMATS]
    if compiled and config.model_name in EAGER_ONLY:
        raise ConfigError(
            f"{run} is an {config.model_name} run: its scores are training counts, not logits, so it exports as eager only "
            f"(drop --format {compiled[0]})"
        )
    pairs = config.model_name in PAIR_MODELS
    if pairs:
        sizes = state.get("schema") or {}
        if "num_users" not in sizes or "num_items" not in sizes:
            raise ConfigError(f"{run}/checkpoint.pt lacks the schema sizes (a run of an older version); re-train the run")
        missing = [name for name in PAIR_FILES if not (run / name).is_file()]
        if missing:
            raise ConfigError(f"{run} has no {missing[0]} (a run of an older version): re-train it to export its recommender")
        schema = user_item_schema(int(sizes["num_users"]), int(sizes["num_items"]))
        preprocessor = None
        signature = GraphSignature.for_pairs()
    else:
        prep_file = run / PREPROCESSING_FILE
        if not prep_file.is_file():
            raise ConfigError(f"{prep_file} is missing: the run's vocabularies and transforms are needed to encode rows")
        preprocessor = Preprocessor.load(prep_file)
        schema = preprocessor.schema
        signature = GraphSignature.for_rows(schema, preprocessor.max_lengths)
    model = build_model(config.model_name, schema, config.model)
    load_model_weights(model, state, run)
    model.eval()
    parity_rows, source = (None, "") if not compiled else _parity_rows(run, config, schema, preprocessor, model, rows, data_dir)

    tmp = _temporary_folder(out)
    try:
        _write_bytes(tmp / CONFIG_FILE, (run / CONFIG_FILE).read_bytes())
        _write_bytes(tmp / WEIGHTS_FILE, _state_bytes(model.state_dict()))
        _write_bytes(tmp / SCHEMA_FILE, json.dumps({"schema": schema.to_dict(), "tasks": list(schema.labels)}, indent=1).encode())
        if preprocessor is not None:
            _write_bytes(tmp / PREPROCESSING_FILE, json.dumps(preprocessor.to_dict()).encode())
        else:
            for name in PAIR_FILES:
                shutil.copyfile(run / name, tmp / name)
        graphs: dict[str, dict[str, Any]] = {}
        if compiled:
            graph = scoring_graph(model, signature)
            for fmt in compiled:
                path = tmp / GRAPH_FILES[fmt]
                compile_graph(graph, signature, schema, fmt, path)
                runtime = load_runtime(fmt, path, signature)
                parity = check_parity(fmt, runtime, model, signature, parity_rows, source)
                graphs[fmt] = {"file": GRAPH_FILES[fmt], "inputs": list(runtime.input_names), "parity": parity}
        manifest = {
            "format": "recforge-bundle",
            "format_version": BUNDLE_FORMAT,
            "model": config.model_name,
            "kind": "pairs" if pairs else "rows",
            "tasks": list(schema.labels),
            "signature": signature.to_dict(),
            "formats": [f for f in FORMATS if f == "eager" or f in graphs],
            "graphs": graphs,
            "parity": {fmt: g["parity"] for fmt, g in graphs.items()},
            "versions": _versions(compiled),
            "source_run": str(run.resolve()),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "files": {p.name: {"sha256": _sha256(p), "bytes": p.stat().st_size} for p in sorted(tmp.iterdir())},
        }
        _write_bytes(tmp / MANIFEST_FILE, (json.dumps(manifest, indent=2) + "\n").encode())
        if out.is_dir():
            out.rmdir()  # empty (checked above); a folder cannot be renamed over a non-empty one
        os.rename(tmp, out)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ConfigError(f"cannot write the bundle {out}: {exc.strerror or exc}") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


def read_manifest(bundle_dir: str | Path) -> dict[str, Any]:
    """The verified manifest of a bundle: known format version, every listed file present with its checksum.

    Raises:
        ConfigError: not a bundle folder, or a format version this recforge does not read.
        DataError: an unreadable manifest, or a file missing or changed since export (naming it).
    """
    path = Path(bundle_dir)
    if not path.is_dir():
        raise ConfigError(f"{path} is not a model bundle: {'it is a file' if path.exists() else 'it does not exist'}")
    manifest_file = path / MANIFEST_FILE
    if not manifest_file.is_file():
        raise ConfigError(f"{path} is not a model bundle: it has no {MANIFEST_FILE} (write one with `recforge export RUN --output DIR`)")
    try:
        manifest = json.loads(manifest_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise DataError(f"not a readable bundle manifest ({exc})", manifest_file) from None
    if not isinstance(manifest, dict):
        raise DataError("not a bundle manifest (expected a JSON object)", manifest_file)
    version = manifest.get("format_version")
    if type(version) is not int or version != BUNDLE_FORMAT:
        raise ConfigError(
            f"{manifest_file}: bundle format version {version!r} is not supported; recforge {__version__} reads version "
            f"{BUNDLE_FORMAT} (re-export the run with this version)"
        )
    files = manifest.get("files")
    if not isinstance(files, dict) or not files:
        raise DataError("has no 'files' checksums", manifest_file)
    for name, entry in files.items():
        if not isinstance(name, str) or Path(name).name != name or name in ("", ".", ".."):
            raise DataError(f"lists {name!r}, which is not a file name inside the bundle", manifest_file)
        file = path / name
        if not file.is_file():
            raise DataError(f"missing: {MANIFEST_FILE} lists it (the bundle is incomplete)", file)
        expected = entry.get("sha256") if isinstance(entry, dict) else None
        digest = _sha256(file)
        if digest != expected:
            raise DataError(
                f"sha256 {digest[:16]}... does not match the manifest's {str(expected)[:16]}...: the file changed after export",
                file,
            )
    required = [CONFIG_FILE, WEIGHTS_FILE, SCHEMA_FILE] + (list(PAIR_FILES) if manifest.get("kind") == "pairs" else [PREPROCESSING_FILE])
    absent = [name for name in required if name not in files]
    if absent:
        raise DataError(f"does not list {absent[0]}, which every {manifest.get('kind', 'rows')} bundle holds", manifest_file)
    return manifest


def load_bundle(
    bundle_dir: str | Path, backend: str = "eager", batch_size: int | None = None, device: str = "cpu"
) -> Predictor | Recommender:
    """Load a bundle, verified (:func:`read_manifest`), as a scorer of raw rows or a recommender.

    Reads only the bundle folder: no data directory, no training code.

    Args:
        bundle_dir: a folder written by :func:`export_bundle`.
        backend: ``eager`` (the PyTorch model), ``torchscript`` or ``onnx`` (the bundle's
            compiled graph; feature-row bundles only).
        batch_size: rows per forward pass (default: the run's ``train.eval_batch_size``).
        device: where to score (eager and TorchScript).

    Returns:
        Feature-row models: a :class:`Predictor` (eager) or :class:`CompiledPredictor`.
        Pair models: a :class:`Recommender` (top-K of raw user ids; eager only).

    Raises:
        ConfigError: as :func:`read_manifest`; an unknown backend or one the bundle lacks;
            weights that do not fit the config.
        DataError: as :func:`read_manifest`.
    """
    path = Path(bundle_dir)
    if backend not in FORMATS:
        raise ConfigError(f"unknown backend {backend!r}; backends: {', '.join(FORMATS)}")
    manifest = read_manifest(path)
    config = from_dict(read_yaml(path / CONFIG_FILE))
    state = _load_state(path / WEIGHTS_FILE)
    if manifest.get("kind") == "pairs":
        if backend != "eager":
            raise ConfigError(
                f"{path} is a {config.model_name} bundle: its recommender scores the catalogue eagerly; its {backend} "
                f"pair scorer ({manifest.get('graphs', {}).get(backend, {}).get('file', 'not exported')}) is for use outside recforge"
            )
        schema = _read_schema(path / SCHEMA_FILE)
        model = _model(config, schema, state, path)
        interactions = read_run_interactions(path)
        return Recommender(model, interactions, name=str(path))
    preprocessor = Preprocessor.load(path / PREPROCESSING_FILE)
    model = _model(config, preprocessor.schema, state, path).to(device)
    size = batch_size or config.train.eval_batch_size
    if backend == "eager":
        return Predictor(model, preprocessor, size, device, name=str(path))
    graph = manifest.get("graphs", {}).get(backend)
    if not graph:
        have = ", ".join(manifest.get("formats", ["eager"]))
        raise ConfigError(f"{path} holds no {backend} graph (it has: {have}); re-export the run with --format {backend}")
    signature = GraphSignature.from_dict(manifest["signature"])
    runtime = load_runtime(backend, path / graph["file"], signature, device)
    return CompiledPredictor(model, preprocessor, runtime, signature, backend, size, device, name=str(path))


def export_summary(manifest: dict[str, Any], output_dir: str | Path) -> str:
    """One line for the CLI: where the bundle went, its formats, and the parity figures."""
    parts = [f"wrote {output_dir} ({manifest['model']}; {', '.join(manifest['formats'])})"]
    for fmt, record in manifest.get("parity", {}).items():
        sizes = ", ".join(str(b) for b in record["batch_sizes"])
        parts.append(f"{fmt} parity: max |exported - eager| = {record['max_abs_diff_all']:.2g} at B = {sizes} ({record['rows']})")
    return "; ".join(parts)


# ---------------------------------------------------------------------- internals
def _run_config(run: Path) -> ExperimentConfig:
    """The run's resolved config (ConfigError if it has none)."""
    from recforge.training.records import load_run_config

    return load_run_config(run)


def _check_formats(formats: tuple[str, ...] | list[str] | str) -> tuple[str, ...]:
    if isinstance(formats, str):
        formats = (formats,)
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise ConfigError(f"unknown export format {unknown[0]!r}; formats: {', '.join(FORMATS)}")
    return tuple(f for f in FORMATS if f in formats or f == "eager")


def _parity_rows(
    run: Path, config: ExperimentConfig, schema: Schema, preprocessor: Preprocessor | None, model: torch.nn.Module, rows: Any,
    data_dir: str | Path | None,
) -> tuple[EncodedColumns, str]:
    """Model-ready rows for the parity check and a description of where they came from."""
    limit = max(PARITY_BATCH_SIZES)
    if preprocessor is None:  # (user, item) pairs
        if rows is None:
            arrays = load_train_interactions(run)
            pairs = np.stack([arrays["train_users"], arrays["train_items"]], axis=1)[:limit]
            source = f"{len(pairs)} training pairs"
        else:
            pairs = np.asarray(rows)
            if pairs.ndim != 2 or pairs.shape[1] != 2 or not np.issubdtype(pairs.dtype, np.integer):
                raise DataError(f"parity rows of a pair model must be int [N, 2] (user, item) internal ids, got {pairs.dtype} {pairs.shape}")
            if len(pairs) and (pairs.min() < 0 or (pairs >= [schema["user"].vocab_size, schema["item"].vocab_size]).any()):
                raise DataError("parity rows hold a user or item id outside the model's tables")
            source = f"{len(pairs)} given pairs"
        pairs = pairs.astype(np.int64)
        return EncodedColumns(pairs, np.zeros((len(pairs), 0), np.float32), np.zeros((len(pairs), 1), np.float32)), source
    if rows is not None:
        encoded = Predictor(model, preprocessor, name=str(run)).encode(rows, "the parity rows")
        return encoded, f"{len(encoded)} given rows"
    from recforge.training.experiment import load_data

    try:
        data = load_data(config, data_dir)
    except RecforgeError as exc:
        raise ConfigError(f"the parity check runs on {run}'s test split, which cannot be loaded ({exc}); give --data-dir or rows") from None
    test = getattr(data, "test", None)
    if not isinstance(test, EncodedColumns) or len(test) == 0:
        raise ConfigError(f"the parity check needs {run}'s test split of rows, and {config.data.name} has none; give rows")
    encoded = test.take(np.arange(min(len(test), limit)))
    return encoded, f"{len(encoded)} rows of the {config.data.name} test split"


def _temporary_folder(out: Path) -> Path:
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o777 & ~mask)  # mkdtemp makes it 0700; the bundle gets a folder's usual permissions
        return tmp
    except OSError as exc:
        raise ConfigError(f"cannot write the bundle {out}: {exc.strerror or exc}") from None


def _write_bytes(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _state_bytes(state: dict[str, Any]) -> bytes:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _versions(compiled: list[str]) -> dict[str, str | None]:
    import pyarrow

    versions: dict[str, str | None] = {
        "recforge": __version__, "torch": torch.__version__, "numpy": np.__version__, "pyarrow": pyarrow.__version__,
        "python": platform.python_version(),
    }
    if "onnx" in compiled:
        import onnxruntime

        versions["onnxruntime"] = onnxruntime.__version__
        try:
            import onnx

            versions["onnx"] = onnx.__version__
        except ImportError:
            versions["onnx"] = None
    return versions


def _load_state(path: Path) -> dict[str, Any]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - an unreadable file is a user-facing error
        text = str(exc).strip()
        raise DataError(f"not readable model weights ({text.splitlines()[0] if text else type(exc).__name__})", path) from None
    if not isinstance(state, dict):
        raise DataError("not a state_dict (expected a dict of tensors)", path)
    return state


def _read_schema(path: Path) -> Schema:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise DataError(f"not a readable schema ({exc})", path) from None
    return Schema.from_dict(raw.get("schema") if isinstance(raw, dict) else raw, where=str(path))


def _model(config: ExperimentConfig, schema: Schema, state: dict[str, Any], bundle: Path) -> torch.nn.Module:
    model = build_model(config.model_name, schema, config.model)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        lines = str(exc).strip().splitlines()
        raise ConfigError(f"{bundle}/{WEIGHTS_FILE} does not fit the model in its {CONFIG_FILE} ({(lines[1] if len(lines) > 1 else lines[0]).strip()})") from None
    return model.eval()
