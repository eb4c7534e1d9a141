"""The HTTP scoring service (FastAPI): ``recforge serve BUNDLE|RUN``.

Endpoints (JSON in and out):

* ``POST /predict`` ``{"rows": [{column: raw value, ...}, ...]}`` -> ``{"predictions": [{task:
  probability, ...}, ...]}``, one object per row in request order, one key per task (``click``;
  ``income`` and ``never_married`` for a two-task model). Or columnar (TF Serving's "inputs"
  form, faster to parse): ``{"columns": {column: [raw value, ...], ...}}`` -> ``{"outputs":
  {task: [probability, ...], ...}}``. Rows hold the raw columns the features
  read, by name (``GET /metadata`` lists them); see :mod:`recforge.serving.requests` for types,
  nulls and the 422 errors. Raw values are encoded by the predictor's fitted preprocessing
  (:class:`~recforge.serving.request_encoding.RequestEncoder`, equal to :meth:`Predictor.encode`:
  unseen categories -> the OOV id, as in training). Feature-row models (CTR, DIN, multi-task).
* ``POST /recommend`` ``{"user": id, "k": 10, "include_seen": false}`` -> ``{"user", "cold",
  "items": [{"rank", "item", "score"}, ...]}`` from :class:`Recommender` (raw ids; ``score`` is
  the logit, ItemPop's a training count; a user unseen in training is ``cold`` and gets the most
  popular items). NCF / MF / ItemPop bundles and runs.
* ``GET /health`` ``{"status": "ok", "model", "backend", "requests_in_flight"}`` (503 if the
  scoring thread is gone); ``requests_in_flight``: other requests being served now.
* ``GET /metadata``: model, kind, tasks, request columns, backend, limits, versions (at export and
  now), and the bundle's parity figures (``null`` for a run directory: no compiled graph).

Errors: 422 ``{"detail": [{"loc": ["rows", 3, "C1"], "msg": ..., "type": ...}], "request_id"}``
for a body that does not validate (missing / unknown feature, wrong type, too many rows, invalid
JSON) or a value the preprocessing refuses; 413 for a body over ``max_body_bytes``; 404 for the
endpoint the model does not have; 500 ``{"detail": "internal error", "request_id"}`` for anything
else, never with a traceback (it is logged with the request id). Every response carries an
``X-Request-ID`` header, and every request is logged as one line with its latency.

Concurrency: one scoring thread (:class:`~recforge.serving.batching.MicroBatcher`); requests
that wait while it is busy are merged into one predictor call.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import platform
import time
import traceback
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError

from recforge import __version__
from recforge.data.preprocessing import NonFiniteValueError
from recforge.errors import ConfigError, RecforgeError
from recforge.serving.batching import MicroBatcher
from recforge.serving.predictor import PAIR_MODELS, Predictor
from recforge.serving.request_encoding import RequestBatch, RequestEncoder
from recforge.serving.requests import (
    MAX_ERRORS,
    RequestColumns,
    predict_request_adapter,
    recommend_request_adapter,
    request_batch,
    request_errors,
)

logger = logging.getLogger("recforge.serving")

BACKENDS = ("auto", "eager", "torchscript", "onnx")
#: ``auto``: the first of these that the bundle holds (run directories: eager)
AUTO_ORDER = ("onnx", "torchscript", "eager")
DEFAULT_MAX_BATCH_ROWS = 1024
DEFAULT_MAX_BODY_BYTES = 16 * 2**20
DRAIN_BYTES = 64 * 2**20  # the most of a too-large body read (and dropped) before its 413
DEFAULT_MAX_K = 1000
DEFAULT_K = 10


@dataclass
class ServedModel:
    """What a service scores with, loaded from a bundle or a run directory.

    Attributes:
        source: the folder it was loaded from.
        kind: ``rows`` (a :class:`Predictor`) or ``pairs`` (a :class:`Recommender`).
        scorer: the Predictor or Recommender.
        backend: ``eager``, ``torchscript`` or ``onnx``.
        info: model, tasks, versions, parity, ... for ``GET /metadata``.
    """

    source: Path
    kind: str
    scorer: Any
    backend: str
    info: dict[str, Any] = field(default_factory=dict)


def load_served_model(source: str | Path, backend: str = "auto") -> ServedModel:
    """Load a bundle (a folder with ``manifest.json``) or a run directory for serving.

    Args:
        source: a bundle written by ``recforge export`` or a run directory of ``recforge train``.
        backend: ``auto`` (bundles: the first of :data:`AUTO_ORDER` they hold; runs: eager),
            ``eager``, ``torchscript`` or ``onnx`` (bundles of feature-row models only).

    Raises:
        ConfigError: an unknown backend, a folder that is neither, a compiled backend for a run
            directory or for a pair model, or what loading the bundle / run raises.
        DataError: a bundle file that fails its checksum, unreadable run files.
    """
    from recforge.serving.bundle import load_bundle, read_manifest
    from recforge.serving.recommender import Recommender
    from recforge.training.records import load_run_config

    if backend not in BACKENDS:
        raise ConfigError(f"unknown backend {backend!r}; backends: {', '.join(BACKENDS)}")
    path = Path(source)
    if not path.is_dir():
        raise ConfigError(f"{path} is not a model bundle or a run directory: {'it is a file' if path.exists() else 'it does not exist'}")
    if (path / "manifest.json").is_file():
        manifest = read_manifest(path)
        pairs = manifest.get("kind") == "pairs"
        formats = manifest.get("formats", ["eager"])
        chosen = backend
        if backend == "auto":
            chosen = "eager" if pairs else next(f for f in (*AUTO_ORDER, "eager") if f in formats)
        scorer = load_bundle(path, backend=chosen)
        info = {
            "source": "bundle", "model": manifest.get("model"), "kind": manifest.get("kind"), "tasks": manifest.get("tasks"),
            "formats": formats, "parity": manifest.get("parity") or None, "exported": manifest.get("created"),
            "versions_at_export": manifest.get("versions"), "source_run": manifest.get("source_run"),
        }
        return ServedModel(path, "pairs" if pairs else "rows", scorer, chosen, info)
    if not (path / "config.yaml").is_file():
        raise ConfigError(f"{path} is neither a model bundle (no manifest.json) nor a run directory (no config.yaml)")
    if backend not in ("auto", "eager"):
        raise ConfigError(
            f"{path} is a run directory, which serves its eager model; for --backend {backend}, export a bundle first: "
            f"recforge export {path} --output BUNDLE --format {backend}"
        )
    config = load_run_config(path)
    summary = _read_json(path / "summary.json")
    if config.model_name in PAIR_MODELS:
        scorer: Any = Recommender.from_run(path)
        kind, tasks = "pairs", None
    else:
        scorer = Predictor.from_run(path)
        kind, tasks = "rows", list(scorer.tasks)
    info = {
        "source": "run", "model": config.model_name, "kind": kind, "tasks": tasks, "formats": ["eager"], "parity": None,
        "exported": None, "versions_at_export": (summary or {}).get("environment"), "source_run": str(path.resolve()),
    }
    return ServedModel(path, kind, scorer, "eager", info)


def create_app(
    bundle_or_run_dir: str | Path | ServedModel,
    backend: str = "auto",
    max_batch_rows: int = DEFAULT_MAX_BATCH_ROWS,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    max_k: int = DEFAULT_MAX_K,
    micro_batching: bool = True,
) -> Any:
    """The FastAPI app serving a bundle or a run directory (see the module docstring).

    Args:
        bundle_or_run_dir: a bundle, a run directory, or a :class:`ServedModel` already loaded.
        backend: see :func:`load_served_model` (ignored for a ServedModel).
        max_batch_rows: the most rows one ``/predict`` request may hold (larger: 422), and the
            most rows merged into one predictor call.
        max_body_bytes: the largest request body read (larger: 413).
        max_k: the largest ``k`` of ``/recommend``.
        micro_batching: merge requests that wait while the model is busy (see :mod:`recforge.serving.batching`).

    Raises:
        ConfigError: limits below 1, or as :func:`load_served_model`.
    """
    for name, value in (("max_batch_rows", max_batch_rows), ("max_body_bytes", max_body_bytes), ("max_k", max_k)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{name} must be an integer >= 1, got {value!r}")
    served = bundle_or_run_dir if isinstance(bundle_or_run_dir, ServedModel) else load_served_model(bundle_or_run_dir, backend)
    rows_model = served.kind == "rows"
    columns = RequestColumns.of(served.scorer.schema) if rows_model else None
    predict_body = predict_request_adapter(columns, max_batch_rows) if columns is not None else None
    recommend_body = recommend_request_adapter(max_k)
    limits = {"max_batch_rows": max_batch_rows, "max_body_bytes": max_body_bytes, "max_k": max_k, "micro_batching": micro_batching}
    metadata = _metadata(served, columns, limits)
    state: dict[str, Any] = {}

    def score(rows: RequestBatch) -> dict[str, np.ndarray]:
        return served.scorer.predict_encoded(state["encoder"].encode(rows, "the request"))

    @asynccontextmanager
    async def lifespan(_: Any) -> Any:
        if rows_model:
            served.scorer.prepare_lookups()
            state["encoder"] = RequestEncoder(served.scorer, columns)
            if state["encoder"].fallback:
                logger.info("request rows are encoded through the Arrow path: %s", state["encoder"].fallback)
            state["batcher"] = MicroBatcher(score, max_batch_rows, merge=micro_batching, concat=RequestBatch.concat)
        else:
            state["executor"] = ThreadPoolExecutor(max_workers=1, thread_name_prefix="recforge-scoring")
        logger.info("serving %s (%s, %s backend) from %s", served.info["model"], served.kind, served.backend, served.source)
        try:
            yield
        finally:
            if "batcher" in state:
                state.pop("batcher").close()
            if "executor" in state:
                state.pop("executor").shutdown(wait=True)

    app = FastAPI(title="recforge scoring service", version=__version__, lifespan=lifespan, docs_url="/docs", redoc_url=None)
    app.state.served = served

    in_flight = {"n": 0}  # HTTP requests started (headers read) and not finished (RequestLog counts them)

    def error(status: int, request: Request, detail: Any) -> Response:
        return JSONResponse({"detail": detail, "request_id": request.state.request_id}, status_code=status)

    async def too_large(request: Request, detail: str, read: int) -> Response:
        # Read the rest of the body (``read`` bytes are in already), up to DRAIN_BYTES in all,
        # before answering: a client still sending when the server answers and closes gets a
        # connection reset instead of the 413 (nginx's lingering close does the same).
        if read <= DRAIN_BYTES:
            async for chunk in request.stream():
                read += len(chunk)
                if read > DRAIN_BYTES:
                    break
        response = error(413, request, detail)
        response.headers["connection"] = "close"
        return response

    async def body(request: Request) -> bytes | Response:
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > max_body_bytes:
            # a declared size past DRAIN_BYTES is not drained: answer at once
            read = 0 if int(declared) <= DRAIN_BYTES else DRAIN_BYTES + 1
            return await too_large(request, f"the body has {int(declared):,} bytes; at most {max_body_bytes:,} are read", read)
        parts, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_body_bytes:
                return await too_large(request, f"the body has more than {max_body_bytes:,} bytes, which is the limit", size)
            parts.append(chunk)
        return b"".join(parts)

    @app.post("/predict", openapi_extra=_openapi_body(predict_body))
    async def predict(request: Request) -> Response:
        if predict_body is None:
            return error(404, request, f"this service holds a {served.info['model']} model, which recommends items: POST /recommend")
        raw = await body(request)
        if isinstance(raw, Response):
            return raw
        try:
            rows = request_batch(predict_body.validate_json(raw))
        except ValidationError as exc:
            return error(422, request, request_errors(exc, columns))
        if isinstance(rows, list):
            return error(422, request, rows)
        request.state.rows = len(rows)
        try:
            scores = await state["batcher"].predict(rows)
        except NonFiniteValueError as exc:  # an infinity under non_finite: error (the rows are this request's own)
            loc = ["columns", exc.column, exc.row] if rows.by_columns else ["rows", exc.row, exc.column]
            return error(422, request, [{"loc": loc, "type": "value_error", "msg": (
                f"feature {exc.column!r} must be a finite number or null, got {exc.value} (the model's feature "
                f"{exc.feature!r} reads it with non_finite: error; training refused infinities too)")}])
        except RecforgeError as exc:  # any other value the preprocessing refuses
            return error(422, request, [{"loc": ["columns" if rows.by_columns else "rows"], "msg": str(exc), "type": "value_error"}])
        tasks = served.scorer.tasks
        broken = np.flatnonzero(~np.all([np.isfinite(scores[t]) for t in tasks], axis=0))
        if len(broken):  # a finite input can still overflow float32 after its transform (1e300 standardized)
            return error(422, request, [
                {"loc": ["rows", int(i)], "type": "value_error",
                 "msg": "the model's score of this row is not a number: one of its numbers is too large for the model (float32 after the feature's transform)"}
                for i in broken[:MAX_ERRORS]
            ])
        values = [scores[t].tolist() for t in tasks]
        if rows.by_columns:
            answer: dict[str, Any] = {"outputs": dict(zip(tasks, values))}
        else:
            answer = {"predictions": [dict(zip(tasks, row)) for row in zip(*values)]}
        return Response(json.dumps(answer, allow_nan=False).encode(), media_type="application/json")

    @app.post("/recommend", openapi_extra=_openapi_body(recommend_body))
    async def recommend(request: Request) -> Response:
        if rows_model:
            return error(404, request, f"this service holds a {served.info['model']} model, which scores feature rows: POST /predict")
        raw = await body(request)
        if isinstance(raw, Response):
            return raw
        try:
            query = recommend_body.validate_json(raw)
        except ValidationError as exc:
            return error(422, request, request_errors(exc))
        k, include_seen = query.get("k", DEFAULT_K), query.get("include_seen", False)
        loop = asyncio.get_running_loop()
        table = await loop.run_in_executor(state["executor"], served.scorer.recommend, [query["user"]], k, include_seen)
        items = [
            {"rank": rank, "item": item, "score": score if math.isfinite(score) else None}
            for rank, item, score in zip(table.column("rank").to_pylist(), table.column("item").to_pylist(), table.column("score").to_pylist())
        ]
        cold = bool(table.column("cold")[0].as_py()) if table.num_rows else False  # no rows: a known user who has seen every item
        return Response(json.dumps({"user": query["user"], "cold": cold, "items": items}, allow_nan=False).encode(), media_type="application/json")

    @app.get("/health")
    async def health(request: Request) -> Response:
        worker = state.get("batcher") or state.get("executor")
        alive = worker is not None and (not isinstance(worker, MicroBatcher) or worker.alive)
        payload = {
            "status": "ok" if alive else "unavailable", "model": served.info["model"], "backend": served.backend,
            "requests_in_flight": in_flight["n"] - 1,  # started and not answered yet, this one not counted
        }
        return JSONResponse(payload, status_code=200 if alive else 503)

    @app.get("/metadata")
    async def get_metadata(request: Request) -> Response:
        return JSONResponse(metadata)

    app.add_middleware(RequestLog, in_flight=in_flight)
    return app


class RequestLog:
    """ASGI middleware: a request id per request (``X-Request-ID`` header), one log line per
    request with its status and latency, and a generic 500 for any exception (its traceback goes
    to the log under the request id, never to the client)."""

    def __init__(self, app: Any, in_flight: dict[str, int] | None = None):
        self.app = app
        self.in_flight = in_flight if in_flight is not None else {"n": 0}

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = uuid.uuid4().hex[:16]
        request_state = scope.setdefault("state", {})
        request_state["request_id"] = request_id
        started = time.perf_counter()
        status = {"code": 500, "sent": False}
        self.in_flight["n"] += 1

        async def send_with_id(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status["code"], status["sent"] = message["status"], True
                message = {**message, "headers": [*message.get("headers", []), (b"x-request-id", request_id.encode())]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:  # noqa: BLE001 - a bug must not reach the client as a traceback
            logger.error("request %s failed:\n%s", request_id, traceback.format_exc().rstrip())
            if not status["sent"]:
                payload = json.dumps({"detail": "internal error (logged on the server)", "request_id": request_id}).encode()
                await send_with_id(
                    {"type": "http.response.start", "status": 500,
                     "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]}
                )
                await send({"type": "http.response.body", "body": payload})
        finally:
            self.in_flight["n"] -= 1
            rows = request_state.get("rows")
            logger.info(
                "%s %s %d%s %.2f ms id=%s", scope.get("method", ""), scope.get("path", ""), status["code"],
                f" rows={rows}" if rows is not None else "", (time.perf_counter() - started) * 1e3, request_id,
            )


def _metadata(served: ServedModel, columns: RequestColumns | None, limits: dict[str, Any]) -> dict[str, Any]:
    """The ``GET /metadata`` document."""
    import fastapi
    import torch

    now: dict[str, Any] = {"recforge": __version__, "torch": torch.__version__, "fastapi": fastapi.__version__, "python": platform.python_version()}
    if served.backend == "onnx":
        import onnxruntime

        now["onnxruntime"] = onnxruntime.__version__
    out = {**served.info, "backend": served.backend, "limits": limits, "versions": now}
    if columns is not None:
        out["request_columns"] = columns.describe()
        out["schema"] = served.scorer.schema.to_dict()
    else:
        interactions = served.scorer.interactions
        out["catalogue"] = {"users": int(interactions.num_users), "items": int(interactions.num_items)}
    return out


def _openapi_body(adapter: Any) -> dict[str, Any] | None:
    """The request body's JSON schema for ``/docs`` (the body is validated by hand, from bytes)."""
    if adapter is None:
        return None
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": adapter.json_schema()}}}}


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None
