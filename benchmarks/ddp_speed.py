"""Data-parallel training speed on one machine: 2 processes x 1 thread (DDP, gloo) against
1 process x 2 threads, for DeepFM and DLRM at batch 4096 (issue 16, acceptance).

Both settings run the real training loop (:class:`recforge.training.pointwise.PointwiseTrainer`,
Adam, one epoch) on the same generated Criteo-format table (13 dense and 26 sparse fields, 1,000
ids per field, labels from a fixed logistic model), with the same global batch of 4096 rows: under
DDP each process takes 2048 rows of every batch and the gradients are all-reduced every step
(Li et al. 2020, "PyTorch Distributed", VLDB). The figure is training samples per second over
the epoch (evaluation excluded), and the ratio is DDP / threads.

What to expect on CPUs: the two settings do the same arithmetic; threads split each op across
cores and wait for the slowest at its end, processes run whole steps apart and pay an
all-reduce of every gradient each step (gloo over loopback) plus a second copy of the model and
optimiser state. Which wins depends on the model's op sizes and the gradient volume.

Run:  .venv/bin/python benchmarks/ddp_speed.py            (on a quiet machine: figures)
      .venv/bin/python benchmarks/ddp_speed.py --quick    (a smoke run on a few rows)
"""

from __future__ import annotations

import argparse
import os
import platform
import socket
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.multiprocessing as mp

from recforge.config import TrainConfig
from recforge.data.preprocessing import EncodedColumns
from recforge.data.schema import FeatureSpec, Schema
from recforge.data.tabular import TabularData
from recforge.models import build_model
from recforge.training.threads import available_cpus

MODELS = ("deepfm", "dlrm")
BATCH = 4096
FIELDS, DENSE, IDS = 26, 13, 1000


def criteo_like(rows: int, seed: int = 0) -> TabularData:
    """A generated table with Criteo's shape: 13 dense, 26 sparse fields, a 0/1 click label."""
    rng = np.random.default_rng(seed)
    schema = Schema(
        features=tuple(FeatureSpec(f"I{i}", "dense") for i in range(1, DENSE + 1))
        + tuple(FeatureSpec(f"C{i}", vocab_size=IDS + 2) for i in range(1, FIELDS + 1)),
        labels=("click",),
    )
    weights = rng.normal(scale=0.3, size=(FIELDS, IDS + 2))

    def split(n: int) -> EncodedColumns:
        sparse = rng.integers(2, IDS + 2, size=(n, FIELDS), dtype=np.int64)
        dense = rng.normal(size=(n, DENSE)).astype(np.float32)
        logit = weights[np.arange(FIELDS), sparse].sum(1) + dense[:, 0] - 1.0
        labels = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.float32)[:, None]
        return EncodedColumns(sparse, dense, labels)

    return TabularData("criteo-like", schema, split(rows), split(max(rows // 20, 2)), split(max(rows // 20, 2)), {})


def train_once(model_name: str, data: TabularData) -> float:
    """Training samples per second of one epoch in this process (under DDP when in a group)."""
    from recforge.training.pointwise import PointwiseTrainer

    torch.manual_seed(0)
    model = build_model(model_name, data.schema)
    result = PointwiseTrainer(model, data, TrainConfig(epochs=1, batch_size=BATCH, lr=0.001), seed=0).fit()
    return float(result.history[0]["train/samples_per_s"])


def _rank(rank: int, world: int, port: int, model_name: str, rows: int, out: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world), RECFORGE_THREADS="1",
    )
    torch.set_num_threads(1)
    from recforge.training.distributed import distributed_session

    with distributed_session("cpu") as ctx:
        speed = train_once(model_name, criteo_like(rows))
        if ctx.is_main:
            Path(out).write_text(str(speed))


def ddp_speed(model_name: str, rows: int, world: int = 2) -> float:
    """Samples per second of ``world`` processes x 1 thread (fresh interpreters, as torchrun starts)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "speed"
        mp.start_processes(_rank, args=(world, port, model_name, rows, str(out)), nprocs=world, join=True, start_method="spawn")
        return float(out.read_text())


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        names = [line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    return f"{cpu}; {available_cpus()} usable CPU(s); torch {torch.__version__}; {platform.system()} {platform.release()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=400_000, help="training rows of the generated table")
    parser.add_argument("--quick", action="store_true", help="smoke run: 20,000 rows (the figures mean nothing)")
    args = parser.parse_args()
    rows = 20_000 if args.quick else args.rows
    print(f"machine: {machine()}")
    print(f"rows: {rows:,} training rows, batch {BATCH} (global), 1 epoch, Adam" + (" [--quick: not a measurement]" if args.quick else ""))
    data = criteo_like(rows)
    print(f"{'model':<8} {'1 proc x 2 threads':>20} {'2 procs x 1 thread':>20} {'ratio':>7}")
    for name in MODELS:
        torch.set_num_threads(2)
        threads = train_once(name, data)
        processes = ddp_speed(name, rows)
        print(f"{name:<8} {threads:>16,.0f} /s {processes:>16,.0f} /s {processes / threads:>7.2f}")


if __name__ == "__main__":
    main()
