"""Serving latency and throughput of DeepFM on generated Criteo-format data (issue 15's benchmark).

Targets (one worker, 2 cores): batch-1 p50 <= 2 ms and p99 <= 5 ms inside the process (best
backend), <= 5 ms p50 over HTTP, >= 50 k rows/s with batch-256 requests.

Steps (all on loopback; every measurement is a bounded number of requests; it stops by itself):

1. a bundle: ``--bundle DIR``, or by default ``--rows`` (500 k) generated Criteo-format rows
   (seed 0) encoded with ``recforge data prepare criteo --min-count 10``, DeepFM trained 1 epoch
   with the paper's settings (``--hidden-units`` for a smaller one), exported with TorchScript and
   ONNX graphs (parity-checked by the export);
2. request rows: 4,096 other generated rows (seed 1), raw values as a JSON client sends them;
3. in process, per backend (eager, TorchScript, ONNX Runtime): the service's scoring call
   (:class:`RequestEncoder` -> :meth:`Predictor.predict_encoded`), ``--requests`` batch-1 calls and
   ``--requests / 10`` batch-256 calls, one after the other: p50 / p99 ms and rows/s; then the
   same through the Arrow path (:meth:`RequestColumns.to_arrays` -> :meth:`Predictor.predict`),
   the reference the ratios are against;
4. over HTTP, per backend: ``recforge serve BUNDLE --backend B --workers 1`` in a child process;
   sequential batch-1 and batch-256 requests on one keep-alive connection (p50 / p99 ms), then
   ``--clients`` concurrent connections of batch-256 requests (rows/s at saturation) and of
   batch-1 requests with and without ``--micro-batching`` (rows/s, and their ratio);
5. ``--load-seconds S`` (60 for the acceptance run): ``--clients`` connections sending a mix of
   batch-1 and batch-256 requests for S seconds to the default backend; every request must
   succeed (failures are counted and make the exit code 1).

The client runs on the same machine: over HTTP its own CPU time is part of what is measured.

Run (the lead's measurement, on a quiet machine):
    .venv/bin/python benchmarks/serve_latency.py --load-seconds 60
Smoke run of the script itself (small data and model, few requests, 3 s of load):
    .venv/bin/python benchmarks/serve_latency.py --quick
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

TARGETS = {"in_process_b1_p50_ms": 2.0, "in_process_b1_p99_ms": 5.0, "http_b1_p50_ms": 5.0, "rows_per_s_b256": 50_000}
BACKENDS = ("eager", "torchscript", "onnx")
REQUEST_ROWS = 4096


def recforge(*args: str, env: dict[str, str]) -> str:
    """Run a recforge command in a child process; its stdout (exit on failure)."""
    result = subprocess.run([sys.executable, "-m", "recforge.cli.app", *args], capture_output=True, text=True, env=env)
    if result.returncode != 0:
        sys.exit(f"recforge {' '.join(args)} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return result.stdout


def build_bundle(folder: Path, rows: int, hidden_units: str | None, env: dict[str, str]) -> Path:
    """Generate, encode, train DeepFM for one epoch and export it with both compiled graphs."""
    data, encoded, bundle = folder / "criteo.txt", folder / "criteo-encoded", folder / "bundle"
    recforge("data", "generate", "criteo", "--rows", str(rows), "--output", str(data), "--seed", "0", env=env)
    recforge("data", "prepare", "criteo", "--input", str(data), "--output", str(encoded), "--min-count", "10", "--quiet", env=env)
    extra = ["--set", f"model.hidden_units=[{hidden_units}]"] if hidden_units else []
    printed = recforge("train", "deepfm", "--dataset", "criteo", "--encoded", str(encoded), "--epochs", "1", "--batch-size", "4096",
                       "--output-dir", str(folder / "runs"), "--quiet", *extra, env=env)
    found = re.search(r"^run directory: (\S+)$", printed, flags=re.M)
    if not found:
        sys.exit(f"train printed no run directory:\n{printed[-2000:]}")
    recforge("export", found.group(1), "--output", str(bundle), "--format", "torchscript", "--format", "onnx", env=env)
    return bundle


def request_rows(folder: Path, n: int) -> list[dict]:
    """``n`` generated rows (seed 1) as JSON objects of raw values: I1..I13 numbers or null, C1..C26 strings or null."""
    import pyarrow as pa
    import pyarrow.csv as pcsv

    from recforge.data.criteo import CRITEO_COLUMNS, generate_criteo

    path = generate_criteo(folder / "requests.txt", n, seed=1)
    types = {c: pa.float64() if c == "label" or c.startswith("I") else pa.string() for c in CRITEO_COLUMNS}
    table = pcsv.read_csv(
        path, read_options=pcsv.ReadOptions(column_names=list(CRITEO_COLUMNS)), parse_options=pcsv.ParseOptions(delimiter="\t"),
        convert_options=pcsv.ConvertOptions(column_types=types, strings_can_be_null=True),
    )
    return table.drop(["label"]).to_pylist()


def percentiles(seconds: list[float]) -> tuple[float, float]:
    ms = np.asarray(seconds) * 1e3
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99))


def in_process(bundle: Path, backend: str, rows: list[dict], requests: int) -> dict[str, float]:
    from recforge.serving.bundle import load_bundle
    from recforge.serving.request_encoding import RequestEncoder
    from recforge.serving.requests import RequestColumns

    predictor = load_bundle(bundle, backend=backend)
    predictor.prepare_lookups()
    columns = RequestColumns.of(predictor.schema)
    encoder = RequestEncoder(predictor, columns)

    def service(part: list[dict]) -> None:  # what the app's scoring call does
        predictor.predict_encoded(encoder.encode(part))

    def arrow(part: list[dict]) -> None:  # the reference: the same rows through Predictor.encode (Arrow)
        predictor.predict(columns.to_arrays(part))

    def timed(call, batch: int, count: int) -> list[float]:
        out = []
        for i in range(count):
            start = (i * batch) % (len(rows) - batch)
            part = rows[start : start + batch]
            began = time.perf_counter()
            call(part)
            out.append(time.perf_counter() - began)
        return out

    figures = {}
    for name, call in (("", service), ("arrow_", arrow)):
        timed(call, 1, 50)
        timed(call, 256, 5)
        b1 = timed(call, 1, requests)
        b256 = timed(call, 256, max(requests // 10, 5))
        (b1_p50, b1_p99), (b256_p50, b256_p99) = percentiles(b1), percentiles(b256)
        figures.update({f"{name}b1_p50": b1_p50, f"{name}b1_p99": b1_p99, f"{name}b256_p50": b256_p50, f"{name}b256_p99": b256_p99,
                        f"{name}rows_per_s": 256 * len(b256) / sum(b256)})
    return figures


class Server:
    """``recforge serve`` in a child process on a free loopback port (stopped with SIGTERM)."""

    def __init__(self, bundle: Path, backend: str, threads: int, env: dict[str, str], extra: tuple[str, ...] = ()):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.log = tempfile.TemporaryFile("w+")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "recforge.cli.app", "serve", str(bundle), "--port", str(self.port), "--backend", backend,
             "--threads", str(threads), "--max-batch-rows", "1024", *extra],
            stdout=self.log, stderr=subprocess.STDOUT, env=env,
        )
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.log.seek(0)
                sys.exit(f"recforge serve exited {self.process.returncode}:\n{self.log.read()[-3000:]}")
            try:
                status, _ = self.post("GET", "/health", b"", http.client.HTTPConnection("127.0.0.1", self.port, timeout=2))
                if status == 200:
                    return
            except OSError:
                time.sleep(0.2)
        sys.exit("recforge serve did not become healthy within 180 s")

    def connection(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)

    @staticmethod
    def post(method: str, path: str, body: bytes, conn: http.client.HTTPConnection) -> tuple[int, bytes]:
        conn.request(method, path, body=body or None, headers={"Content-Type": "application/json"} if body else {})
        response = conn.getresponse()
        return response.status, response.read()

    def stop(self) -> int:
        self.process.terminate()
        return self.process.wait(timeout=120)


def bodies(rows: list[dict], batch: int, count: int, columnar: bool = False) -> list[bytes]:
    """``count`` /predict bodies of ``batch`` rows: ``{"rows": [...]}``, or ``{"columns": {...}}`` if ``columnar``."""
    out = []
    for i in range(count):
        part = rows[(i * batch) % (len(rows) - batch) :][:batch]
        out.append(json.dumps({"columns": {k: [r[k] for r in part] for k in part[0]}} if columnar else {"rows": part}).encode())
    return out


def rows_in(body: bytes) -> int:
    sent = json.loads(body)
    return len(sent["rows"]) if "rows" in sent else len(next(iter(sent["columns"].values())))


def sequential(server: Server, payloads: list[bytes]) -> list[float]:
    conn, out = server.connection(), []
    for body in payloads:
        began = time.perf_counter()
        status, _ = server.post("POST", "/predict", body, conn)
        out.append(time.perf_counter() - began)
        if status != 200:
            sys.exit(f"/predict answered {status}")
    conn.close()
    return out


def concurrent(server: Server, payloads: list[list[bytes]], seconds: float | None = None) -> dict[str, float]:
    """Each client sends its payloads in turn (cycling for ``seconds`` if given); rows/s, failures, latency."""
    lock, latencies, counts = threading.Lock(), [], {"rows": 0, "requests": 0, "failures": 0}
    rows_of = {id(b): rows_in(b) for client in payloads for b in client}
    stop_at = None if seconds is None else time.monotonic() + seconds

    def client(own: list[bytes]) -> None:
        conn = server.connection()
        i = 0
        while (i < len(own)) if stop_at is None else (time.monotonic() < stop_at):
            body = own[i % len(own)]
            i += 1
            began = time.perf_counter()
            try:
                status, _ = server.post("POST", "/predict", body, conn)
                ok = status == 200
            except (OSError, http.client.HTTPException):
                ok = False
                conn.close()
                conn = server.connection()
            with lock:
                latencies.append(time.perf_counter() - began)
                counts["requests"] += 1
                counts["rows" if ok else "failures"] += rows_of[id(body)] if ok else 1
        conn.close()

    threads = [threading.Thread(target=client, args=(own,)) for own in payloads]
    began = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - began
    p50, p99 = percentiles(latencies)
    return {"rows_per_s": counts["rows"] / wall, "requests": counts["requests"], "failures": counts["failures"], "p50": p50, "p99": p99, "seconds": wall}


def over_http(bundle: Path, backend: str, rows: list[dict], requests: int, clients: int, threads: int, env: dict[str, str]) -> dict[str, float]:
    server = Server(bundle, backend, threads, env)
    try:
        sequential(server, bodies(rows, 1, 30))
        (b1_p50, b1_p99) = percentiles(sequential(server, bodies(rows, 1, requests)))
        (b256_p50, b256_p99) = percentiles(sequential(server, bodies(rows, 256, max(requests // 10, 5))))
        per_client = max(requests // (10 * clients), 3)
        saturated = concurrent(server, [bodies(rows[c * 7 :], 256, per_client) for c in range(clients)])
        columnar = concurrent(server, [bodies(rows[c * 7 :], 256, per_client, columnar=True) for c in range(clients)])
        (c256_p50, _) = percentiles(sequential(server, bodies(rows, 256, max(requests // 10, 5), columnar=True)))
        merged = concurrent(server, [bodies(rows[c * 11 :], 1, max(requests // clients, 10)) for c in range(clients)])
    finally:
        code = server.stop()
    if code != 0:
        sys.exit(f"recforge serve exited {code} after SIGTERM")
    return {"b1_p50": b1_p50, "b1_p99": b1_p99, "b256_p50": b256_p50, "b256_p99": b256_p99, "rows_per_s": saturated["rows_per_s"],
            "columnar_rows_per_s": columnar["rows_per_s"], "columnar_b256_p50": c256_p50,
            "b1_concurrent_rows_per_s": merged["rows_per_s"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=500_000, help="generated training rows (default 500,000)")
    parser.add_argument("--bundle", type=Path, help="an exported DeepFM bundle with both graphs (default: build one)")
    parser.add_argument("--hidden-units", help="DeepFM MLP widths, e.g. 200,200 (default: the paper's 400,400,400)")
    parser.add_argument("--requests", type=int, default=2000, help="batch-1 requests per measurement (batch-256: a tenth)")
    parser.add_argument("--clients", type=int, default=8, help="concurrent connections for saturation and the load run")
    parser.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1), help="torch / ONNX Runtime threads (in process and per server)")
    parser.add_argument("--load-seconds", type=float, default=0.0, help="also run a concurrent load of this many seconds (60 for the acceptance)")
    parser.add_argument("--backends", default=",".join(BACKENDS), help="comma-separated subset of eager,torchscript,onnx")
    parser.add_argument("--quick", action="store_true", help="smoke run: 20,000 rows, a small MLP, few requests, 3 s of load")
    args = parser.parse_args(argv)
    if args.quick:
        args.rows, args.requests, args.clients = 20_000, 100, 4
        args.hidden_units = args.hidden_units or "16"
        args.load_seconds = args.load_seconds or 3.0
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    if not backends or set(backends) - set(BACKENDS) or args.rows < 1000 or args.requests < 10 or args.clients < 1:
        parser.error("need --backends among eager,torchscript,onnx, --rows >= 1000, --requests >= 10, --clients >= 1")
    env = {**os.environ, "RECFORGE_THREADS": str(args.threads)}
    import torch

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="serve-latency-") as tmp:
        folder = Path(tmp)
        began = time.perf_counter()
        bundle = args.bundle or build_bundle(folder, args.rows, args.hidden_units, env)
        built = time.perf_counter() - began
        rows = request_rows(folder, REQUEST_ROWS)
        local = {b: in_process(bundle, b, rows, args.requests) for b in backends}
        remote = {b: over_http(bundle, b, rows, args.requests, args.clients, args.threads, env) for b in backends}
        merged_off = None
        best = min(backends, key=lambda b: local[b]["b1_p50"])
        server = Server(bundle, best, args.threads, env, ("--no-micro-batching",))
        try:
            merged_off = concurrent(server, [bodies(rows[c * 11 :], 1, max(args.requests // args.clients, 10)) for c in range(args.clients)])
        finally:
            server.stop()
        load = None
        if args.load_seconds > 0:
            server = Server(bundle, "auto", args.threads, env)
            try:
                mix = [bodies(rows[c * 13 :], 1, 20) + bodies(rows[c * 17 :], 256, 2) for c in range(args.clients)]
                load = concurrent(server, mix, seconds=args.load_seconds)
            finally:
                exit_code = server.stop()
            load["exit_code"] = exit_code

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; "
          f"{args.threads} thread(s); python {platform.python_version()}, torch {torch.__version__}")
    print(f"bundle: {bundle if args.bundle else f'DeepFM on {args.rows:,} generated Criteo rows, built in {built:.0f} s'}"
          f"{f' (hidden units {args.hidden_units})' if args.hidden_units else ''}; {args.requests} batch-1 requests per figure")
    print("\n| backend | in-process b1 p50 / p99 ms | b256 p50 / p99 ms | rows/s (b256) | HTTP b1 p50 / p99 ms | b256 p50 / p99 ms | rows/s b256, "
          f"{args.clients} clients | columnar b256 p50 ms, rows/s {args.clients} clients | rows/s b1, {args.clients} clients |")
    print("|---|---|---|---|---|---|---|---|---|")
    for b in backends:
        lo, re_ = local[b], remote[b]
        print(f"| {b} | {lo['b1_p50']:.2f} / {lo['b1_p99']:.2f} | {lo['b256_p50']:.2f} / {lo['b256_p99']:.2f} | {lo['rows_per_s']:,.0f} "
              f"| {re_['b1_p50']:.2f} / {re_['b1_p99']:.2f} | {re_['b256_p50']:.2f} / {re_['b256_p99']:.2f} | {re_['rows_per_s']:,.0f} "
              f"| {re_['columnar_b256_p50']:.2f}, {re_['columnar_rows_per_s']:,.0f} | {re_['b1_concurrent_rows_per_s']:,.0f} |")
    if "eager" in local:
        for b in backends:
            print(f"{b} vs eager (> 1: {b} faster): in-process b1 p50 x{local['eager']['b1_p50'] / local[b]['b1_p50']:.2f}, "
                  f"b256 rows/s x{local[b]['rows_per_s'] / local['eager']['rows_per_s']:.2f}; HTTP b1 p50 "
                  f"x{remote['eager']['b1_p50'] / remote[b]['b1_p50']:.2f}, b256 rows/s x{remote[b]['rows_per_s'] / remote['eager']['rows_per_s']:.2f}")
    for b in backends:
        lo = local[b]
        print(f"{b}: request encoder vs the Arrow path (Predictor.encode, the service call before 2026-12-01) in process: "
              f"b1 p50 {lo['b1_p50']:.2f} vs {lo['arrow_b1_p50']:.2f} ms (x{lo['arrow_b1_p50'] / lo['b1_p50']:.2f}), "
              f"b256 {lo['rows_per_s']:,.0f} vs {lo['arrow_rows_per_s']:,.0f} rows/s (x{lo['rows_per_s'] / lo['arrow_rows_per_s']:.2f})")
    on = remote[best]["b1_concurrent_rows_per_s"]
    print(f"micro-batching ({best}, {args.clients} clients of batch-1 requests): {on:,.0f} rows/s on, "
          f"{merged_off['rows_per_s']:,.0f} off: x{on / merged_off['rows_per_s']:.2f}")
    fastest = {"in-process b1": min(local, key=lambda b: local[b]["b1_p50"]), "in-process b256": max(local, key=lambda b: local[b]["rows_per_s"]),
               "HTTP b1": min(remote, key=lambda b: remote[b]["b1_p50"]), "HTTP b256": max(remote, key=lambda b: remote[b]["rows_per_s"])}
    print("fastest: " + ", ".join(f"{k} {v}" for k, v in fastest.items()) + " (serve --backend auto picks onnx, then torchscript)")
    b = fastest["in-process b1"]
    print(f"targets: in-process b1 p50 {local[b]['b1_p50']:.2f} ms (<= {TARGETS['in_process_b1_p50_ms']}), p99 {local[b]['b1_p99']:.2f} ms "
          f"(<= {TARGETS['in_process_b1_p99_ms']}); HTTP b1 p50 {min(r['b1_p50'] for r in remote.values()):.2f} ms (<= {TARGETS['http_b1_p50_ms']}); "
          f"rows/s b256 over HTTP {max(r['rows_per_s'] for r in remote.values()):,.0f} rows form, "
          f"{max(r['columnar_rows_per_s'] for r in remote.values()):,.0f} columnar (>= {TARGETS['rows_per_s_b256']:,}); "
          f"in process {max(lo['rows_per_s'] for lo in local.values()):,.0f}")
    failed = False
    if load is not None:
        failed = load["failures"] > 0 or load["exit_code"] != 0
        print(f"load: {args.clients} clients for {load['seconds']:.0f} s (batch-1 and batch-256 mixed): {load['requests']:,} requests, "
              f"{load['failures']} failed, p50 {load['p50']:.2f} ms, p99 {load['p99']:.2f} ms, {load['rows_per_s']:,.0f} rows/s; "
              f"SIGTERM exit code {load['exit_code']}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
