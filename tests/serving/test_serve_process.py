"""``recforge serve`` as a real uvicorn process on 127.0.0.1: it starts, scores, and on SIGTERM
lets the requests in flight finish, then exits 0."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from recforge.serving.predictor import Predictor
from tests.serving.test_app import free_port, json_rows
from tests.serving.test_export import raw_rows, write_run

httpx = pytest.importorskip("httpx")
pytest.importorskip("uvicorn")

IN_FLIGHT, ROWS_EACH = 3, 5_000  # requests sent before SIGTERM; their rows (bounded by --max-batch-rows)


def wait_healthy(process: subprocess.Popen, url: str, log, timeout: float = 120.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log.seek(0)
            pytest.fail(f"recforge serve exited {process.returncode} before it was healthy:\n{log.read()[-3000:]}")
        try:
            return httpx.get(f"{url}/health", timeout=2).json()
        except httpx.TransportError:
            time.sleep(0.1)
    pytest.fail("recforge serve was not healthy within 120 s")


def post_raw(port: int, body: bytes, sent: threading.Event, result: dict) -> None:
    """POST /predict over a plain socket: ``sent`` is set once the whole request is written."""
    head = (f"POST /predict HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=60) as conn:
            conn.sendall(head + body)
            sent.set()
            chunks = []
            while chunk := conn.recv(1 << 16):
                chunks.append(chunk)
        result["finished"] = time.monotonic()
        result["response"] = b"".join(chunks)
    except OSError as exc:
        result["error"] = repr(exc)
        sent.set()


def test_real_server_scores_then_finishes_in_flight_requests_on_sigterm(tmp_path):
    run = write_run(tmp_path, "din")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = open(tmp_path / "serve.log", "w+")
    process = subprocess.Popen(
        [sys.executable, "-m", "recforge.cli.app", "serve", str(run), "--host", "127.0.0.1", "--port", str(port),
         "--threads", "1", "--max-batch-rows", str(ROWS_EACH)],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "RECFORGE_THREADS": "1"},
    )
    try:
        assert wait_healthy(process, url, log) == {"status": "ok", "model": "din", "backend": "eager", "requests_in_flight": 0}
        table = raw_rows(5, seed=21)
        response = httpx.post(f"{url}/predict", json={"rows": json_rows(table)}, timeout=30)
        assert response.status_code == 200, response.text
        got = np.array([p["click"] for p in response.json()["predictions"]])
        assert np.array_equal(got, Predictor.from_run(run).predict(table)["click"])
        # A body over the limit (16 MiB) gets its 413, not a connection reset mid-upload.
        huge = b'{"rows": [' + b" " * (17 * 2**20) + b"]}"
        result: dict = {}
        post_raw(port, huge, threading.Event(), result)
        assert "error" not in result and result["response"].startswith(b"HTTP/1.1 413"), result.get("error") or result["response"][:300]
        assert b"at most 16,777,216" in result["response"]

        body = json.dumps({"rows": json_rows(raw_rows(ROWS_EACH, seed=22))}).encode()
        results = [{} for _ in range(IN_FLIGHT)]
        sent = [threading.Event() for _ in range(IN_FLIGHT)]
        threads = [threading.Thread(target=post_raw, args=(port, body, s, r)) for s, r in zip(sent, results)]
        for thread in threads:
            thread.start()
        assert all(s.wait(60) for s in sent)
        # SIGTERM once the server has started all of them (headers read): uvicorn finishes those,
        # and closes a connection whose request it has not read yet, which a loaded machine can be slow to do.
        deadline = time.monotonic() + 60
        while httpx.get(f"{url}/health", timeout=30).json()["requests_in_flight"] < IN_FLIGHT and time.monotonic() < deadline:
            time.sleep(0.01)
        terminated = time.monotonic()
        process.send_signal(signal.SIGTERM)
        for thread in threads:
            thread.join(120)
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    log.seek(0)
    output = log.read()
    for result in results:
        assert "error" not in result, (result["error"], output[-3000:])
        head, _, payload = result["response"].partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), (head, output[-3000:])
        assert len(json.loads(payload)["predictions"]) == ROWS_EACH
    assert max(r["finished"] for r in results) > terminated  # at least one was still being scored at SIGTERM
    assert "Waiting for connections to close" in output and "Finished server process" in output
    assert "stopped by SIGTERM after finishing the requests in flight" in output
    assert output.count("POST /predict 200") == 1 + IN_FLIGHT  # one log line per request, with its latency
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{url}/health", timeout=2)
