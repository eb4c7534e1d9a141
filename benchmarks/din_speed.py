"""DIN and base-model training speed (batch 1024, history up to 50), beside DeepCTR-Torch 0.3.0's DIN,
and GAUC over 100 k rows.

Synthetic behaviour data with the shapes of the Amazon setting: 10,000 items in 100 categories,
histories of 0..50 items (uniform length), embedding 64, attention MLP 80-40, MLP 200-80 (Dice or PReLU),
Adam lr 1e-3, one epoch of 200,000 rows. ``--peers PYTHON`` runs ``benchmarks/peers/deepctr_din_speed.py``
on the same arrays with that interpreter (a separate environment; never a recforge dependency).

Run:  .venv/bin/python benchmarks/din_speed.py [--peers /path/to/peer-venv/bin/python]
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from recforge.config import TrainConfig
from recforge.data.preprocessing import EncodedColumns
from recforge.data.schema import FeatureSpec, Schema
from recforge.data.tabular import TabularData
from recforge.metrics.classification import gauc
from recforge.models import build_model
from recforge.models.din import DINConfig
from recforge.training.pointwise import PointwiseTrainer

HERE = Path(__file__).resolve().parent
ITEMS, CATEGORIES, MAX_LEN = 10_000, 100, 50


def synthetic(rows: int, seed: int = 0) -> tuple[Schema, EncodedColumns, np.ndarray]:
    rng = np.random.default_rng(seed)
    category_of = rng.integers(2, CATEGORIES + 2, ITEMS + 2)
    users = rng.integers(0, 20_000, rows)
    target = rng.integers(2, ITEMS + 2, rows)
    lengths = rng.integers(0, MAX_LEN + 1, rows)
    hist = rng.integers(2, ITEMS + 2, (rows, MAX_LEN)) * (np.arange(MAX_LEN)[None, :] < lengths[:, None])
    hist_cat = np.where(hist > 0, category_of[hist], 0)
    labels = (rng.random(rows) < 0.5).astype(np.float32)[:, None]
    schema = Schema((
        FeatureSpec("item_id", vocab_size=ITEMS + 2), FeatureSpec("item_category", vocab_size=CATEGORIES + 2),
        FeatureSpec("hist_item_id", "sequence", table="item_id", max_length=MAX_LEN),
        FeatureSpec("hist_item_category", "sequence", table="item_category", max_length=MAX_LEN),
    ), labels=("label",))
    cols = EncodedColumns(
        np.stack([target, category_of[target]], 1).astype(np.int64), np.zeros((rows, 0), np.float32), labels,
        {"hist_item_id": hist.astype(np.int64), "hist_item_category": hist_cat.astype(np.int64)},
        {"hist_item_id": lengths.astype(np.int64), "hist_item_category": lengths.astype(np.int64)}, users,
    )
    return schema, cols, category_of


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--peers", help="python of an environment with deepctr-torch==0.3.0")
    args = parser.parse_args()
    print(f"machine: {platform.machine()} | {os.cpu_count()} CPUs | torch {torch.__version__} ({torch.get_num_threads()} threads)")
    schema, cols, _ = synthetic(args.rows)
    small = cols.take(np.arange(min(5000, args.rows)))
    data = TabularData("synthetic-behaviour", schema, cols, small, small, {})
    print(f"\n{'model':<34} {'batch':>6} {'samples/s':>10}")
    ours = {}
    # (model, final-MLP activation, attention activation)
    for name, act, att in (("din", "dice", "dice"), ("din", "prelu", "prelu"), ("din", "prelu", "dice"), ("base", "dice", "dice")):
        torch.manual_seed(0)
        model = build_model(name, schema, DINConfig(activation=act, attention_activation=att))
        summary = PointwiseTrainer(model, data, TrainConfig(epochs=1, batch_size=args.batch_size), seed=0).fit().summary
        ours[(name, act, att)] = summary["timings"]["train_samples_per_s"]
        label = f"recforge {name} (mlp {act}" + (f", att {att})" if name == "din" else ")")
        print(f"{label:<34} {args.batch_size:>6} {ours[(name, act, att)]:>10,.0f}")

    rng = np.random.default_rng(1)
    y, s, g = rng.integers(0, 2, 100_000), rng.random(100_000), rng.integers(0, 10_000, 100_000)
    t = time.perf_counter()
    value, counts = gauc(y, s, g)
    print(f"\nGAUC over 100,000 rows / 10,000 users: {time.perf_counter() - t:.3f} s ({counts['users']:,} users used)")

    if args.peers:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "behaviour.npz"
            np.savez(path, sparse=cols.sparse, hist=cols.sequences["hist_item_id"], hist_cat=cols.sequences["hist_item_category"],
                     lengths=cols.lengths["hist_item_id"], labels=cols.labels[:, 0], items=ITEMS + 2, categories=CATEGORIES + 2)
            out = subprocess.run([args.peers, str(HERE / "peers" / "deepctr_din_speed.py"), str(path), str(args.batch_size)],
                                 capture_output=True, text=True, check=False)
            lines = [line for line in out.stdout.splitlines() if "samples/s" in line]
            print("\n" + ("\n".join(lines) if lines else f"peer run failed:\n{out.stderr[-2000:]}"))
            for line in lines:
                theirs = float(line.split(":")[1].split("samples/s")[0].replace(",", ""))
                print(f"recforge din / deepctr-torch din, same settings (mlp prelu, att dice): {ours[('din', 'prelu', 'dice')] / theirs:.2f}x")


if __name__ == "__main__":
    main()
