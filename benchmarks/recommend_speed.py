"""Top-10 recommendations for all 6,040 MovieLens-1M users over the full catalogue (3,706 items).

Issue 14's target: ``recommend`` for every user, K = 10, training items masked, in <= 2 s.
For GMF and NeuMF (factors 8) trained on ``movielens-1m-ncf`` (or runs given with ``--run``),
this measures, over ``--rounds`` repetitions:

* ``load``: :meth:`Recommender.from_run` (config, checkpoint, training interactions, id maps);
* ``recommend``: :meth:`Recommender.recommend` for all users (scoring, masking, top-K, raw ids);

and prints the median seconds, users per second and the machine (CPU, cores, torch threads, load
average: on a shared machine other processes slow every op down, so compare on a quiet one).

Run (the lead's full measurement):
    .venv/bin/python benchmarks/recommend_speed.py --data-dir ../shared/data
Quick check of the script itself (untrained models, 500 users, 1 round):
    .venv/bin/python benchmarks/recommend_speed.py --data-dir ../shared/data --epochs 0 --users 500 --rounds 1
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from recforge.config import from_dict
from recforge.errors import RecforgeError
from recforge.serving.recommender import Recommender
from recforge.training.experiment import run_experiment
from recforge.training.threads import apply_threads

TARGET_S = 2.0


def _train(model: str, epochs: int, data_dir: str | None, output_dir: Path) -> Path:
    config = from_dict(
        {"model": {"name": model, "factors": 8}, "data": {"name": "movielens-1m-ncf"},
         "train": {"epochs": epochs, "full_ranking": False}, "seed": 1}
    )
    started = time.perf_counter()
    path = run_experiment(config, data_dir=data_dir, output_dir=output_dir).path
    print(f"trained {model} ({epochs} epoch{'s' if epochs != 1 else ''}) in {time.perf_counter() - started:.1f} s: {path}", flush=True)
    return path


def _machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    load = " / ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    return f"{cpu}; {os.cpu_count()} CPUs; torch {torch.__version__}, {torch.get_num_threads()} thread(s); load average {load}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None, help="Data directory holding ml-1m-ncf/ (default: $RECFORGE_DATA_DIR).")
    parser.add_argument("--run", action="append", default=[], help="Use this run directory instead of training (repeatable).")
    parser.add_argument("--models", default="gmf,neumf", help="Models to train when no --run is given.")
    parser.add_argument("--epochs", type=int, default=1, help="Training epochs (0: untrained weights; the speed is the same).")
    parser.add_argument("--users", type=int, default=None, help="Only the first N users (default: all 6,040).")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3, help="Repetitions; the median is reported.")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: the CPUs other processes leave idle).")
    parser.add_argument("--output-dir", default=None, help="Where trained runs go (default: a temporary folder).")
    args = parser.parse_args()
    if args.rounds < 1 or args.k < 1 or (args.users is not None and args.users < 1):
        parser.error("--rounds, --k and --users must be >= 1")
    print(apply_threads(args.threads), flush=True)  # as `recforge recommend`: the CPUs left idle
    with tempfile.TemporaryDirectory(prefix="recommend-speed-") as tmp:
        try:
            runs = [Path(r) for r in args.run] or [
                _train(m.strip(), args.epochs, args.data_dir, Path(args.output_dir or tmp)) for m in args.models.split(",") if m.strip()
            ]
            rows = []
            for run in runs:
                loads, times = [], []
                for _ in range(args.rounds):
                    started = time.perf_counter()
                    recommender = Recommender.from_run(run, args.data_dir)
                    loads.append(time.perf_counter() - started)
                    users = recommender.known_users()
                    users = users[: args.users] if args.users else users
                    started = time.perf_counter()
                    table = recommender.recommend(users, k=args.k)
                    times.append(time.perf_counter() - started)
                seconds = statistics.median(times)
                model = recommender.scorer.model.__class__.__name__
                rows.append((run.name, model, recommender.scorer.route, len(users), table.num_rows, statistics.median(loads), seconds))
        except RecforgeError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    print(f"machine: {_machine()}")
    print(f"{'model':8} {'route':7} {'users':>6} {'rows':>7} {'load s':>7} {'recommend s':>12} {'users/s':>9}  target <= {TARGET_S:.0f} s")
    for _name, model, route, n_users, n_rows, load_s, seconds in rows:
        verdict = "met" if seconds <= TARGET_S else "MISSED"
        print(f"{model:8} {route:7} {n_users:6d} {n_rows:7d} {load_s:7.2f} {seconds:12.3f} {n_users / seconds:9,.0f}  {verdict}")
    print(f"(median of {args.rounds} round(s); K = {args.k}; full catalogue, training items masked)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
