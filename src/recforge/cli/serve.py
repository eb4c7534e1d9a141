"""``recforge serve BUNDLE|RUN``: the HTTP scoring service (:mod:`recforge.serving.app`) on uvicorn.

Registered in :mod:`recforge.cli.app` (wrapped in its ``user_errors``: a bad bundle, run, backend
or port is one line and exit code 2). SIGTERM or Ctrl-C stops it gracefully: uvicorn stops
accepting connections, lets the requests in flight finish, runs the app's shutdown (the scoring
thread finishes its queue) and exits 0.

With ``--workers N`` (N > 1) uvicorn starts N processes, each loading the model itself through
:func:`worker_app`, which reads the settings from ``RECFORGE_SERVE_*`` environment variables
(uvicorn imports worker apps by name, so they cannot be handed over as objects).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from recforge.errors import ConfigError

SETTINGS_ENV = "RECFORGE_SERVE_SETTINGS"
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def serve(
    source: Annotated[Path, typer.Argument(metavar="BUNDLE|RUN", help="A bundle (`recforge export`) or a run directory (`recforge train`).")],
    host: Annotated[str, typer.Option(help="Address to listen on (127.0.0.1: this machine only; 0.0.0.0: every interface).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    workers: Annotated[int, typer.Option(help="Server processes, each with its own copy of the model.")] = 1,
    backend: Annotated[str, typer.Option(help="auto (a bundle's ONNX graph, else TorchScript, else eager), eager, torchscript or onnx.")] = "auto",
    max_batch_rows: Annotated[int, typer.Option("--max-batch-rows", help="Most rows in one /predict request (more: 422).")] = 1024,
    threads: Annotated[Optional[int], typer.Option(help="torch / ONNX Runtime threads per worker (default: the idle CPUs shared among the workers; env RECFORGE_THREADS).")] = None,
    micro_batching: Annotated[bool, typer.Option("--micro-batching/--no-micro-batching", help="Score requests that wait while the model is busy in one call.")] = True,
) -> None:
    """Serve a model over HTTP: POST /predict (raw rows -> probabilities per task), POST /recommend
    (NCF / MF / ItemPop: top-K items of a user), GET /health, GET /metadata."""
    try:
        import fastapi  # noqa: F401
        import uvicorn
    except ImportError as exc:
        raise ConfigError(f"recforge serve needs FastAPI and uvicorn ({exc.name} is missing): pip install 'recforge[serve]'") from None

    from recforge.serving.app import BACKENDS, create_app, load_served_model
    from recforge.training.records import load_run_config
    from recforge.training.threads import choose_threads

    if backend not in BACKENDS:
        raise ConfigError(f"--backend {backend!r}: expected one of {', '.join(BACKENDS)}")
    if workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {workers}")
    if max_batch_rows < 1:
        raise ConfigError(f"--max-batch-rows must be >= 1, got {max_batch_rows}")
    if not 1 <= port <= 65535:
        raise ConfigError(f"--port must be in 1..65535, got {port}")
    if threads is not None and threads < 1:
        raise ConfigError(f"--threads must be >= 1, got {threads}")
    _check_port(host, port)
    models: tuple[str, ...] = ()
    if (source / "config.yaml").is_file():
        models = (load_run_config(source).model_name,)
    chosen, _ = choose_threads(threads, models)
    per_worker = threads if threads is not None else max(1, chosen // workers)
    settings = {"source": str(source), "backend": backend, "max_batch_rows": max_batch_rows, "threads": per_worker, "micro_batching": micro_batching}
    _configure_logging()
    _set_threads(per_worker)
    served = load_served_model(source, backend)  # errors here are one line and exit 2, before anything listens
    options: dict[str, Any] = {"host": host, "port": port, "access_log": False, "log_level": "info", "timeout_graceful_shutdown": None}
    logging.getLogger("recforge.serving").info("%d worker(s), %d thread(s) each, on http://%s:%d", workers, per_worker, host, port)
    stopped = _exit_cleanly_on_stop_signals()
    if workers == 1:
        uvicorn.run(create_app(served, max_batch_rows=max_batch_rows, micro_batching=micro_batching), **options)
    else:
        del served
        os.environ[SETTINGS_ENV] = json.dumps(settings)
        uvicorn.run("recforge.cli.serve:worker_app", factory=True, workers=workers, **options)
    if stopped:
        logging.getLogger("recforge.serving").info("stopped by %s after finishing the requests in flight", stopped[0])


def worker_app() -> Any:
    """The app of one ``--workers`` process, from the settings in ``RECFORGE_SERVE_SETTINGS``."""
    from recforge.serving.app import create_app

    settings = json.loads(os.environ[SETTINGS_ENV])
    _configure_logging()
    _set_threads(int(settings["threads"]))
    return create_app(
        settings["source"], settings["backend"], max_batch_rows=int(settings["max_batch_rows"]), micro_batching=bool(settings["micro_batching"])
    )


def _check_port(host: str, port: int) -> None:
    """Fail in one line if ``host:port`` cannot be listened on (uvicorn would exit 1 with a log line)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ConfigError(f"--host {host!r}: not an address of this machine ({exc.strerror})") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            probe.bind(address)
        except OSError as exc:
            raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


def _exit_cleanly_on_stop_signals() -> list[str]:
    """Make SIGTERM / SIGINT a clean stop (exit 0) and return the list that records which came.

    uvicorn catches them, shuts down gracefully, restores the handlers it found and then raises
    the signal again; with the default handlers that would end the process by the signal (exit
    -15) or a KeyboardInterrupt after a shutdown that went as asked.
    """
    received: list[str] = []

    def note(signum: int, _: Any) -> None:
        received.append(signal.Signals(signum).name)

    for stop in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop, note)
    return received


def _set_threads(count: int) -> None:
    import torch

    torch.set_num_threads(count)  # before the model loads: ONNX Runtime sessions take torch's count


def _configure_logging() -> None:
    """Request lines of ``recforge.serving`` on stderr (uvicorn configures its own loggers)."""
    logger = logging.getLogger("recforge.serving")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
