"""Training speed on a busy machine: the OpenMP cliff and the thread policy that avoids it (issue 13, item 5).

For GMF (MovieLens-1M NCF split, factors 8, batch 256) and MMoE (census-income, 2 tasks, batch
1024), times training steps (forward, backward, Adam) in these settings, one after the other:

* quiet machine, 2 and 1 torch threads;
* one CPU-bound process beside the run ("busy"), 2 and 1 threads, and recforge's default
  (:func:`recforge.training.threads.choose_threads`, which measures the idle CPUs at start);
* recforge's default started on a quiet machine, with the CPU-bound process starting 3 s later
  (this setting runs 12 s and reports the steps after the start only): the
  :class:`~recforge.training.threads.ThreadGovernor` must notice it and lower the count.

Each setting runs ``--steps`` steps or ``--max-seconds`` seconds, whichever ends first, and
reports the median milliseconds per step over windows of 25 steps and the ratio to the quiet
2-thread figure. The CPU-bound process is a plain Python busy loop (one core).

Run:  .venv/bin/python benchmarks/busy_machine.py --data-dir ../shared/data
      (nothing else may run on the machine meanwhile: that is the point of the measurement)
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from recforge.data.batches import Batch
from recforge.data.datasets import get_dataset
from recforge.data.tabular import TensorColumns
from recforge.errors import RecforgeError
from recforge.evaluation.protocols import task_logits
from recforge.models import build_model
from recforge.models.ncf import NCFConfig
from recforge.training.pointwise import masked_bce
from recforge.training.threads import ThreadGovernor, available_cpus, choose_threads

BURNER = "import time\nt = time.time()\nwhile time.time() - t < 900: pass\n"


def gmf_step(data_dir: str) -> Callable[[], None]:
    data = get_dataset("movielens-1m-ncf").load(data_dir)
    torch.manual_seed(0)
    model = _gmf(data.num_users, data.num_items)
    opt = torch.optim.Adam(model.parameters(), lr=0.001)
    rng = np.random.default_rng(0)
    users = torch.as_tensor(data.train_users)
    items = torch.as_tensor(data.train_items)
    n = len(users)

    def step() -> None:
        rows = torch.as_tensor(rng.integers(0, n, 256))
        u, i = users[rows], items[rows]
        j = torch.as_tensor(rng.integers(0, data.num_items, 256))
        pairs = torch.cat([torch.stack([u, i], 1), torch.stack([u, j], 1)])
        labels = torch.cat([torch.ones(256), torch.zeros(256)])
        loss = F.binary_cross_entropy_with_logits(model(Batch(sparse_features=pairs, labels=labels[:, None])), labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def _gmf(num_users: int, num_items: int) -> torch.nn.Module:
    from recforge.data.schema import user_item_schema

    return build_model("gmf", user_item_schema(num_users, num_items), NCFConfig(factors=8))


def mmoe_step(data_dir: str) -> Callable[[], None]:
    source = get_dataset("census-income")
    data = source.load(data_dir, schema=source.task_schema(("income", "never_married")))
    torch.manual_seed(0)
    model = build_model("mmoe", data.schema)
    opt = torch.optim.Adam(model.parameters(), lr=0.001)
    cols = TensorColumns(data.train)
    order = torch.Generator().manual_seed(0)
    batches = iter(())

    def step() -> None:
        nonlocal batches
        batch = next(batches, None)
        if batch is None:
            batches = cols.batches(1024, order)
            batch = next(batches)
        loss = masked_bce(task_logits(model(batch), data.schema.labels), batch.labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def timed(step: Callable[[], None], steps: int, max_seconds: float, governor: ThreadGovernor | None = None,
          burner_after: float | None = None) -> tuple[float, int, list[int]]:
    """Median ms/step over 25-step windows, steps run, and the thread counts seen."""
    for _ in range(10):
        step()
    windows, seen, burner = [], [], None
    start = time.perf_counter()
    t0, done = start, 0
    try:
        while done < steps and time.perf_counter() - start < max_seconds:
            if burner_after is not None and burner is None and time.perf_counter() - start >= burner_after:
                burner = subprocess.Popen([sys.executable, "-c", BURNER])
                windows.clear()  # measure only with the other process running
            if governor is not None:
                governor.tick()
            step()
            done += 1
            if done % 25 == 0:
                now = time.perf_counter()
                windows.append((now - t0) / 25 * 1e3)
                seen.append(torch.get_num_threads())
                t0 = now
    finally:
        if burner is not None:
            burner.kill()
            burner.wait()
    return (statistics.median(windows) if windows else float("nan")), done, sorted(set(seen))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=os.environ.get("RECFORGE_DATA_DIR"))
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--max-seconds", type=float, default=25.0)
    parser.add_argument("--models", default="gmf,mmoe")
    args = parser.parse_args()
    if args.data_dir is None:
        parser.error("--data-dir (or RECFORGE_DATA_DIR) is required")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, {available_cpus()} available; "
          f"torch {torch.__version__}; python {platform.python_version()}")
    builders = {"gmf": gmf_step, "mmoe": mmoe_step}
    try:
        steps = {name: builders[name](args.data_dir) for name in args.models.split(",")}
    except RecforgeError as exc:
        sys.exit(f"error: {exc}")
    print(f"{'model':6} {'setting':44} {'ms/step':>9} {'x quiet-2':>10} {'steps':>6}  threads")
    for name, step in steps.items():
        reference = None
        for setting, threads, busy in (
            ("quiet, 2 threads", 2, False), ("quiet, 1 thread", 1, False),
            ("busy, 2 threads", 2, True), ("busy, 1 thread", 1, True), ("busy, recforge default", None, True),
            ("quiet start, busy after 3 s, recforge default", None, "later"),
        ):
            burner = subprocess.Popen([sys.executable, "-c", BURNER]) if busy is True else None
            try:
                if burner is not None:
                    time.sleep(0.5)
                if threads is None:
                    chosen, _ = choose_threads(None, ("mmoe",))  # the multi-thread policy for both models
                    torch.set_num_threads(chosen)
                    governor = ThreadGovernor(True)
                else:
                    torch.set_num_threads(threads)
                    governor = None
                later = busy == "later"  # runs by time: the other process must start during the run
                ms, done, seen = timed(step, 10**9 if later else args.steps, 12.0 if later else args.max_seconds, governor, 3.0 if later else None)
            finally:
                if burner is not None:
                    burner.kill()
                    burner.wait()
            reference = ms if reference is None else reference
            print(f"{name:6} {setting:44} {ms:9.2f} {ms / reference:10.2f} {done:6d}  {seen}", flush=True)


if __name__ == "__main__":
    main()
