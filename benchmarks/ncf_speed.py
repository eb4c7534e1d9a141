"""NCF training and scoring speed on MovieLens-1M (NCF split), with a reference loop in the same process.

Measures, on this machine:
* one NeuMF epoch (factors 8, 4 negatives per positive, ~4.97 M examples incl. negative
  sampling) at batch 256 and 1024, with recforge's Trainer path;
* the same epoch with a minimal hand-written PyTorch loop (per-batch random index gather,
  default Adam), as the reference run;
* scoring and ranking all 6,040 test users (100 candidates each) and full-catalogue ranking.

Run:  .venv/bin/python benchmarks/ncf_speed.py --data-dir ../shared/data
"""

from __future__ import annotations

import argparse
import os
import platform
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


def reference_epoch(data, batch_size: int, seed: int) -> float:
    torch.manual_seed(seed)
    model = ReferenceNeuMF(data.num_users, data.num_items, 8)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    t = time.perf_counter()
    pairs, labels = pointwise_examples(data.train_users, data.train_items, data.train_index(), 4, np.random.default_rng(seed))
    u, i, y = torch.from_numpy(pairs[:, 0]), torch.from_numpy(pairs[:, 1]), torch.from_numpy(labels[:, 0])
    perm = torch.randperm(len(y))
    for s in range(0, len(y), batch_size):
        idx = perm[s : s + batch_size]
        loss = F.binary_cross_entropy_with_logits(model(u[idx], i[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return time.perf_counter() - t


def recforge_epoch(data, batch_size: int, seed: int) -> tuple[float, Trainer]:
    torch.manual_seed(seed)
    model = build_model("neumf", data.schema, NCFConfig(factors=8))
    cfg = TrainConfig(epochs=1, batch_size=batch_size, full_ranking=False, report_best_test_epoch=False)
    trainer = Trainer(model, data, cfg, seed=seed)
    result = trainer.fit()
    return result.summary["timings"]["seconds_per_epoch"], trainer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=os.environ.get("RECFORGE_DATA_DIR"))
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[256, 1024])
    args = parser.parse_args()

    data = get_dataset("movielens-1m-ncf").load(args.data_dir)
    # Validation is not needed to time an epoch; the full 994,169 training pairs are used.
    print(f"machine: {platform.machine()} {platform.processor()} | {os.cpu_count()} CPUs | torch {torch.__version__} "
          f"({torch.get_num_threads()} threads) | numpy {np.__version__} | python {platform.python_version()}")
    print(f"examples per epoch: {data.num_train * 5:,} (994,169 positives + 4 sampled negatives each)\n")
    print(f"{'batch':>6} {'recforge s/epoch':>17} {'reference s/epoch':>18} {'speed-up':>9}")
    trainer = None
    for bs in args.batch_sizes:
        ours, trainer = recforge_epoch(data, bs, seed=0)
        ref = reference_epoch(data, bs, seed=0)
        print(f"{bs:>6} {ours:>17.2f} {ref:>18.2f} {ref / ours:>8.2f}x")

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
