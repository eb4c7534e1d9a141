"""NCF training and scoring speed on MovieLens-1M (NCF split), with a reference loop in the same process.

Measures, on this machine:
* NeuMF epochs (factors 8, 4 negatives per positive, ~4.97 M examples incl. negative
  sampling) at batch 256 and 1024, with recforge's Trainer path: wall time per epoch, the
  median of epochs 2+ (where torch's threads leave a CPU free, the Trainer draws epoch k+1's
  negatives on a second thread during epoch k) and of epoch 1 (always drawn on the spot) over
  ``--rounds`` runs of ``--epochs`` epochs
  (this VM's epoch times vary by 10-40 % from one minute to the next);
* the same number of epochs with a minimal hand-written PyTorch loop (per-batch random index
  gather, default Adam) as the reference, in blocks alternating with recforge's runs so that
  the machine's drift affects both alike;
* scoring and ranking all 6,040 test users (100 candidates each) and full-catalogue ranking.

Run:  OMP_NUM_THREADS=1 .venv/bin/python benchmarks/ncf_speed.py --data-dir ../shared/data
      (one torch thread leaves the second core of a 2-core machine to the prefetch thread)
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from recforge.config import TrainConfig
from recforge.data.datasets import get_dataset
from recforge.data.sampling import pointwise_examples
from recforge.errors import RecforgeError
from recforge.evaluation.protocols import evaluate_full_ranking, evaluate_sampled
from recforge.models import build_model
from recforge.models.ncf import NCFConfig
from recforge.training.trainer import Trainer, prefetch_in_background


class ReferenceNeuMF(nn.Module):
    """A textbook NeuMF, written as a user would without recforge."""

    def __init__(self, nu: int, ni: int, f: int):
        super().__init__()
        self.gu, self.gi = nn.Embedding(nu, f), nn.Embedding(ni, f)
        self.mu, self.mi = nn.Embedding(nu, 2 * f), nn.Embedding(ni, 2 * f)
        self.tower = nn.Sequential(
            nn.Linear(4 * f, 4 * f), nn.ReLU(), nn.Linear(4 * f, 2 * f), nn.ReLU(), nn.Linear(2 * f, f), nn.ReLU()
        )
        self.out = nn.Linear(2 * f, 1)

    def forward(self, u: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
        g = self.gu(u) * self.gi(i)
        m = self.tower(torch.cat([self.mu(u), self.mi(i)], 1))
        return self.out(torch.cat([g, m], 1)).squeeze(1)


class ReferenceLoop:
    """The hand-written loop: one call trains one epoch (sampling included) and returns its seconds."""

    def __init__(self, data, batch_size: int, seed: int):
        torch.manual_seed(seed)
        self.data, self.batch_size = data, batch_size
        self.model = ReferenceNeuMF(data.num_users, data.num_items, 8)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=1e-3)
        self.index, self.rng = data.train_index(), np.random.default_rng(seed)

    def epoch(self) -> float:
        t = time.perf_counter()
        pairs, labels = pointwise_examples(self.data.train_users, self.data.train_items, self.index, 4, self.rng)
        u, i, y = torch.from_numpy(pairs[:, 0]), torch.from_numpy(pairs[:, 1]), torch.from_numpy(labels[:, 0])
        perm = torch.randperm(len(y))
        for s in range(0, len(y), self.batch_size):
            idx = perm[s : s + self.batch_size]
            loss = F.binary_cross_entropy_with_logits(self.model(u[idx], i[idx]), y[idx])
            self.opt.zero_grad()
            loss.backward()
            self.opt.step()
        return time.perf_counter() - t


def recforge_epochs(data, batch_size: int, seed: int, epochs: int) -> tuple[list[float], Trainer]:
    """Wall seconds of each epoch of one recforge Trainer run: the time the loop waited for the
    epoch's examples plus the training. With prefetching on, from epoch 2 on the examples were
    drawn on a second thread during the previous epoch (``EpochPrefetcher``); epoch 1 always
    draws them on the spot."""
    torch.manual_seed(seed)
    model = build_model("neumf", data.schema, NCFConfig(factors=8))
    cfg = TrainConfig(epochs=epochs, batch_size=batch_size, full_ranking=False, report_best_test_epoch=False)
    trainer = Trainer(model, data, cfg, seed=seed)
    history = trainer.fit().history
    return [r["seconds/sampling"] + r["seconds/train"] for r in history if r["epoch"] > 0], trainer


def _spread(times: list[float]) -> str:
    return f"{statistics.median(times):.2f} ({min(times):.2f}-{max(times):.2f})" if len(times) > 1 else f"{times[0]:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=os.environ.get("RECFORGE_DATA_DIR"))
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[256, 1024])
    parser.add_argument("--epochs", type=int, default=3, help="epochs per run (>= 2: epoch 1 has no prefetched examples)")
    parser.add_argument("--rounds", type=int, default=2, help="recforge runs and reference blocks, alternating")
    args = parser.parse_args()
    if args.epochs < 2:
        parser.error("--epochs must be >= 2")
    if args.rounds < 1:
        parser.error("--rounds must be >= 1")
    if any(bs < 1 for bs in args.batch_sizes):
        parser.error(f"--batch-sizes must all be >= 1, got {args.batch_sizes}")
    try:
        data = get_dataset("movielens-1m-ncf").load(args.data_dir)
    except RecforgeError as exc:
        parser.exit(2, f"error: {exc}\n")
    # Validation is not needed to time an epoch; the full 994,169 training pairs are used.
    print(f"machine: {platform.machine()} {platform.processor()} | {os.cpu_count()} CPUs | torch {torch.__version__} "
          f"({torch.get_num_threads()} threads) | numpy {np.__version__} | python {platform.python_version()}")
    print(f"examples per epoch: {data.num_train * 5:,} (994,169 positives + 4 sampled negatives each)\n")
    ahead = ("on: epoch k+1's negatives are drawn on a second thread during epoch k" if prefetch_in_background()
             else "off: torch's threads use every CPU, so each epoch draws its negatives on the spot")
    print(f"prefetch {ahead}")
    print(f"s/epoch: median (min-max) over {args.rounds} rounds of {args.epochs} epochs; recforge: epochs 2+ and "
          "epoch 1 (never prefetched); speed-up: reference median / recforge epochs 2+ median\n")
    print(f"{'batch':>6} {'recforge s/epoch':>22} {'recforge epoch 1':>22} {'reference s/epoch':>22} {'speed-up':>9}")
    trainer = None
    for bs in args.batch_sizes:
        first, steady, ref = [], [], []
        ref_loop = ReferenceLoop(data, bs, seed=0)
        for r in range(args.rounds):  # alternate, so that the VM's drift hits both alike
            times, trainer = recforge_epochs(data, bs, seed=r, epochs=args.epochs)
            first.append(times[0])
            steady += times[1:]
            ref += [ref_loop.epoch() for _ in range(args.epochs)]
        ratio = statistics.median(ref) / statistics.median(steady)
        print(f"{bs:>6} {_spread(steady):>22} {_spread(first):>22} {_spread(ref):>22} {ratio:>8.2f}x")

    assert trainer is not None
    model = trainer.model
    t = time.perf_counter()
    metrics, _, _ = evaluate_sampled(model, data.test_users, data.test_candidates)
    sampled_s = time.perf_counter() - t
    t = time.perf_counter()
    evaluate_full_ranking(model, data.test_users, data.test_candidates[:, 0], data.train_index())
    full_s = time.perf_counter() - t
    print(f"\nscore + rank 6,040 test users x 100 candidates: {sampled_s:.3f} s (HR@10 {metrics['hit_rate@10']:.3f})")
    print(f"full-catalogue ranking, 6,040 users x 3,706 items: {full_s:.2f} s")


if __name__ == "__main__":
    main()
