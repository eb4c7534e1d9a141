"""NCF training and scoring speed on MovieLens-1M (NCF split), with a reference loop in the same process.

Measures, on this machine:
* NeuMF epochs (factors 8, 4 negatives per positive, ~4.97 M examples incl. negative
  sampling) at batch 256 and 1024, with recforge's Trainer path: the median of ``--epochs``
  epochs (this VM's epoch times vary by 10-30 % from one minute to the next);
* the same epochs with a minimal hand-written PyTorch loop (per-batch random index gather,
  default Adam), as the reference run;
* scoring and ranking all 6,040 test users (100 candidates each) and full-catalogue ranking.

Run:  .venv/bin/python benchmarks/ncf_speed.py --data-dir ../shared/data
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
from recforge.evaluation.protocols import evaluate_full_ranking, evaluate_sampled
from recforge.models import build_model
from recforge.models.ncf import NCFConfig
from recforge.training.trainer import Trainer


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


def reference_epochs(data, batch_size: int, seed: int, epochs: int) -> list[float]:
    """Seconds of each of ``epochs`` epochs of the hand-written loop, sampling included."""
    torch.manual_seed(seed)
    model = ReferenceNeuMF(data.num_users, data.num_items, 8)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    index, rng, times = data.train_index(), np.random.default_rng(seed), []
    for _ in range(epochs):
        t = time.perf_counter()
        pairs, labels = pointwise_examples(data.train_users, data.train_items, index, 4, rng)
        u, i, y = torch.from_numpy(pairs[:, 0]), torch.from_numpy(pairs[:, 1]), torch.from_numpy(labels[:, 0])
        perm = torch.randperm(len(y))
        for s in range(0, len(y), batch_size):
            idx = perm[s : s + batch_size]
            loss = F.binary_cross_entropy_with_logits(model(u[idx], i[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        times.append(time.perf_counter() - t)
    return times


def recforge_epochs(data, batch_size: int, seed: int, epochs: int) -> tuple[list[float], Trainer]:
    """Seconds (sampling + training) of each of ``epochs`` epochs of recforge's Trainer."""
    torch.manual_seed(seed)
    model = build_model("neumf", data.schema, NCFConfig(factors=8))
    cfg = TrainConfig(epochs=epochs, batch_size=batch_size, full_ranking=False, report_best_test_epoch=False)
    trainer = Trainer(model, data, cfg, seed=seed)
    result = trainer.fit()
    times = [r["seconds/sampling"] + r["seconds/train"] for r in result.history if r["epoch"] > 0]
    return times, trainer


def _spread(times: list[float]) -> str:
    return f"{statistics.median(times):.2f} ({min(times):.2f}-{max(times):.2f})" if len(times) > 1 else f"{times[0]:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=os.environ.get("RECFORGE_DATA_DIR"))
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[256, 1024])
    parser.add_argument("--epochs", type=int, default=3, help="epochs timed per setting; the median is reported")
    args = parser.parse_args()

    data = get_dataset("movielens-1m-ncf").load(args.data_dir)
    # Validation is not needed to time an epoch; the full 994,169 training pairs are used.
    print(f"machine: {platform.machine()} {platform.processor()} | {os.cpu_count()} CPUs | torch {torch.__version__} "
          f"({torch.get_num_threads()} threads) | numpy {np.__version__} | python {platform.python_version()}")
    print(f"examples per epoch: {data.num_train * 5:,} (994,169 positives + 4 sampled negatives each)\n")
    print(f"s/epoch: median of {args.epochs} epochs (min-max); speed-up: ratio of the medians\n")
    print(f"{'batch':>6} {'recforge s/epoch':>22} {'reference s/epoch':>22} {'speed-up':>9}")
    trainer = None
    for bs in args.batch_sizes:
        ours, trainer = recforge_epochs(data, bs, seed=0, epochs=args.epochs)
        ref = reference_epochs(data, bs, seed=0, epochs=args.epochs)
        ratio = statistics.median(ref) / statistics.median(ours)
        print(f"{bs:>6} {_spread(ours):>22} {_spread(ref):>22} {ratio:>8.2f}x")

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
