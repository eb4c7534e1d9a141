"""Multi-task training speed (batch 1024): recforge's shared_bottom, mmoe, ple, adatt beside
DeepCTR-Torch 0.3.0's SharedBottom, MMOE and PLE at the same settings.

Synthetic census-shaped data: 200,000 rows, 30 categorical fields of 100 values, embedding 8,
2 binary tasks. Settings on both sides: experts 256-128, towers 64, linear softmax gates, MMoE 3
experts, PLE 1 task + 1 shared expert over 2 levels, Adam lr 1e-3, one epoch, no regularisation.
``--peers PYTHON`` runs ``benchmarks/peers/deepctr_multitask_speed.py`` on the same arrays.

Run:  .venv/bin/python benchmarks/multitask_speed.py [--peers /path/to/peer-venv/bin/python]
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import torch

from recforge.config import TrainConfig
from recforge.data.preprocessing import EncodedColumns
from recforge.data.schema import FeatureSpec, Schema
from recforge.data.tabular import TabularData
from recforge.models import build_model
from recforge.models.multitask import AdaTTConfig, MultiTaskConfig
from recforge.training.pointwise import PointwiseTrainer

HERE = Path(__file__).resolve().parent
FIELDS, VOCAB = 30, 100


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--peers", help="python of an environment with deepctr-torch==0.3.0")
    args = parser.parse_args()
    print(f"machine: {platform.machine()} | {os.cpu_count()} CPUs | torch {torch.__version__} ({torch.get_num_threads()} threads)")
    rng = np.random.default_rng(0)
    sparse = rng.integers(2, VOCAB + 2, (args.rows, FIELDS)).astype(np.int64)
    labels = (rng.random((args.rows, 2)) < 0.3).astype(np.float32)
    schema = Schema(tuple(FeatureSpec(f"c{j}", vocab_size=VOCAB + 2) for j in range(FIELDS)), labels=("task1", "task2"))
    cols = EncodedColumns(sparse, np.zeros((args.rows, 0), np.float32), labels)
    small = cols.take(np.arange(min(5000, args.rows)))
    data = TabularData("synthetic-multitask", schema, cols, small, small, {})
    common = dict(embedding_dim=8, expert_units=(256, 128), tower_units=(64,))
    configs = {
        "shared_bottom": MultiTaskConfig(**common),
        "mmoe": MultiTaskConfig(**common, num_experts=3),
        "ple": MultiTaskConfig(**common, task_experts=1, shared_experts=1, levels=2),
        "adatt": AdaTTConfig(**common, task_experts=1, levels=2),
    }
    ours = {}
    print(f"\n{'model':<28} {'batch':>6} {'samples/s':>10}")
    for name, cfg in configs.items():
        torch.manual_seed(0)
        model = build_model(name, schema, cfg)
        summary = PointwiseTrainer(model, data, TrainConfig(epochs=1, batch_size=args.batch_size), seed=0).fit().summary
        ours[name] = summary["timings"]["train_samples_per_s"]
        print(f"{'recforge ' + name:<28} {args.batch_size:>6} {ours[name]:>10,.0f}")
    if args.peers:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "multitask.npz"
            np.savez(path, sparse=sparse, labels=labels, vocab=VOCAB + 2)
            out = subprocess.run([args.peers, str(HERE / "peers" / "deepctr_multitask_speed.py"), str(path), str(args.batch_size)],
                                 capture_output=True, text=True, check=False)
            lines = [line for line in out.stdout.splitlines() if "samples/s" in line]
            print("\n".join(lines) if lines else f"peer run failed:\n{out.stderr[-2000:]}")
            names = {"SharedBottom": "shared_bottom", "MMOE": "mmoe", "PLE": "ple"}
            for line in lines:
                model = line.split()[1]
                theirs = float(line.split(":")[1].split("samples/s")[0].replace(",", ""))
                print(f"recforge {names[model]} / deepctr-torch {model}: {ours[names[model]] / theirs:.2f}x")


if __name__ == "__main__":
    main()
