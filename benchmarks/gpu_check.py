"""The GPU path end to end: every registered model trained by recforge's own trainers on a device,
with throughput per model, and bf16 autocast beside fp32.

Self-contained (synthetic data only, nothing read from a data directory), short (about a minute on
one GPU with the defaults), and meant to be run on a machine that has a GPU:

    .venv/bin/python benchmarks/gpu_check.py                     # --device cuda
    .venv/bin/python benchmarks/gpu_check.py --device cpu --quick  # the same code path on CPU (a smoke run)

For each model it prints train samples/s, the selected validation metric, and, with
``--precision both`` (the default), the bf16-autocast run's figures and its metric difference from
fp32. It fails (exit 1) if a run raises, if a metric is not finite, or if a CUDA run leaves a model
parameter off the device: the checks behind issue 16's "no tensor created on the wrong device"
(DeepCTR-Torch #261, #240).

Data: CTR rows with 26 categorical fields of 1,000 values and 13 dense features (Criteo-shaped),
labels from a planted logistic model so AUC is meaningful; behaviour sequences of up to 20 items
for DIN/base; two correlated tasks for the multi-task models; 2,000 users x 1,000 items of
implicit feedback (leave-one-out, 99 sampled test negatives) for the NCF models.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import sys
import time

import numpy as np
import torch

from recforge.config import TrainConfig
from recforge.data.interactions import leave_one_out
from recforge.data.preprocessing import EncodedColumns
from recforge.data.schema import FeatureSpec, Schema
from recforge.data.tabular import TabularData
from recforge.models import MODELS, build_model, get_model_entry
from recforge.training.pointwise import PointwiseTrainer
from recforge.training.trainer import Trainer

FIELDS, VOCAB, DENSE, MAX_LEN = 26, 1000, 13, 20
NCF_MODELS = ("gmf", "mlp", "neumf", "mf", "itempop")
SEQUENCE_MODELS = ("din", "base")
MULTI_TASK = ("shared_bottom", "mmoe", "ple", "adatt")


def ctr_data(rows: int, tasks: tuple[str, ...] = ("label",), seed: int = 0) -> TabularData:
    """Criteo-shaped encoded rows with labels from a planted logistic model (ids >= 2: 0 and 1 are
    padding and OOV)."""
    rng = np.random.default_rng(seed)
    sparse = rng.integers(2, VOCAB + 2, (rows, FIELDS)).astype(np.int64)
    dense = rng.standard_normal((rows, DENSE)).astype(np.float32)
    effects = rng.normal(0, 0.7, (FIELDS, VOCAB + 2))
    base = effects[np.arange(FIELDS)[None, :], sparse].sum(1) / math.sqrt(FIELDS) + dense[:, 0]
    labels = np.stack([rng.random(rows) < 1 / (1 + np.exp(-(base + 0.3 * k))) for k in range(len(tasks))], 1).astype(np.float32)
    schema = Schema(
        tuple(FeatureSpec(f"c{j}", vocab_size=VOCAB + 2) for j in range(FIELDS))
        + tuple(FeatureSpec(f"i{j}", "dense") for j in range(DENSE)),
        labels=tasks,
    )
    return _splits("synthetic-ctr", schema, EncodedColumns(sparse, dense, labels))


def sequence_data(rows: int, seed: int = 0) -> TabularData:
    """Target item + category with a behaviour history of 0-20 items; the label is planted on
    whether the target's category occurs in the history."""
    rng = np.random.default_rng(seed)
    items, categories = 5000, 100
    category_of = rng.integers(2, categories + 2, items + 2)
    target = rng.integers(2, items + 2, rows)
    lengths = rng.integers(0, MAX_LEN + 1, rows)
    hist = rng.integers(2, items + 2, (rows, MAX_LEN)) * (np.arange(MAX_LEN)[None, :] < lengths[:, None])
    hist_cat = np.where(hist > 0, category_of[hist], 0)
    match = (hist_cat == category_of[target][:, None]).any(1)
    labels = (rng.random(rows) < np.where(match, 0.8, 0.3)).astype(np.float32)[:, None]
    schema = Schema((
        FeatureSpec("item_id", vocab_size=items + 2), FeatureSpec("item_category", vocab_size=categories + 2),
        FeatureSpec("hist_item_id", "sequence", table="item_id", max_length=MAX_LEN),
        FeatureSpec("hist_item_category", "sequence", table="item_category", max_length=MAX_LEN),
    ), labels=("label",))
    cols = EncodedColumns(
        np.stack([target, category_of[target]], 1).astype(np.int64), np.zeros((rows, 0), np.float32), labels,
        {"hist_item_id": hist.astype(np.int64), "hist_item_category": hist_cat.astype(np.int64)},
        {"hist_item_id": lengths.astype(np.int64), "hist_item_category": lengths.astype(np.int64)},
        rng.integers(0, 20_000, rows),
    )
    return _splits("synthetic-behaviour", schema, cols)


def _splits(name: str, schema: Schema, cols: EncodedColumns) -> TabularData:
    n = len(cols.labels)
    cut_valid, cut_test = int(n * 0.8), int(n * 0.9)
    return TabularData(name, schema, cols.take(np.arange(cut_valid)), cols.take(np.arange(cut_valid, cut_test)), cols.take(np.arange(cut_test, n)), {})


def implicit_data(seed: int = 0):
    """2,000 users x 1,000 items, 40 interactions a user drawn from a low-rank preference."""
    rng = np.random.default_rng(seed)
    users, items, per_user = 2000, 1000, 40
    u, v = rng.standard_normal((users, 8)), rng.standard_normal((items, 8))
    picks = [rng.choice(items, per_user, replace=False, p=_softmax(u[k] @ v.T)) for k in range(users)]
    user_ids = np.repeat(np.arange(users), per_user)
    item_ids = np.concatenate(picks)
    times = np.tile(np.arange(per_user), users)
    data = leave_one_out("synthetic-implicit", user_ids, item_ids, times, users, items, num_negatives=99, seed=seed)
    return data.with_validation(seed)


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max())
    return e / e.sum()


def run_one(name: str, data, config: TrainConfig) -> dict[str, float]:
    torch.manual_seed(0)
    entry = get_model_entry(name)
    if name in NCF_MODELS:
        schema = Schema((FeatureSpec("user", vocab_size=data.num_users), FeatureSpec("item", vocab_size=data.num_items)), labels=("label",))
        model = build_model(name, schema, entry.config_cls())
        trainer = Trainer(model, data, config, seed=0)
    else:
        model = build_model(name, data.schema, entry.config_cls())
        trainer = PointwiseTrainer(model, data, config, seed=0)
    t = time.perf_counter()
    summary = trainer.fit().summary
    seconds = time.perf_counter() - t
    wanted = torch.device(config.device)
    stray = [p for p, t_ in model.named_parameters() if t_.device.type != wanted.type]
    if stray:
        raise RuntimeError(f"{name}: parameters off {wanted}: {stray[:3]}")
    metric = next((k for k in (f"valid/hit_rate@10", "valid/auc") if k in summary), None)
    value = float(summary[metric]) if metric else float("nan")
    if metric and not math.isfinite(value):
        raise RuntimeError(f"{name}: {metric} is {value}")
    timings = summary.get("timings", {})
    speed = timings.get("train_samples_per_s") or (summary.get("train_examples_per_epoch", 0) * summary.get("epochs_run", 0) / max(timings.get("train_s", seconds), 1e-9))
    return {"metric": metric or "-", "value": value, "samples_per_s": float(speed or 0), "seconds": seconds}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--rows", type=int, default=500_000, help="CTR / sequence / multi-task rows (train 80 %%)")
    parser.add_argument("--batch-size", type=int, default=4096)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--precision", choices=("fp32", "bf16", "both"), default="both")
    parser.add_argument("--models", default=",".join(sorted(MODELS)))
    parser.add_argument("--quick", action="store_true", help="20,000 rows, 1 epoch: a smoke run of the same path")
    args = parser.parse_args()
    if args.quick:
        args.rows, args.epochs = 20_000, 1
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print(f"gpu_check: --device {args.device} but torch {torch.__version__} sees no CUDA device", file=sys.stderr)
        return 2
    gpu = torch.cuda.get_device_name(torch.device(args.device)) if args.device.startswith("cuda") else "-"
    print(f"machine: {platform.node()} | {platform.machine()} | {os.cpu_count()} CPUs | torch {torch.__version__} | device {args.device} ({gpu})")
    precisions = ("fp32", "bf16") if args.precision == "both" else (args.precision,)
    datasets = {
        "ctr": ctr_data(args.rows), "sequence": sequence_data(args.rows),
        "multitask": ctr_data(args.rows, tasks=("click", "purchase")), "implicit": implicit_data(),
    }
    kind = lambda n: "implicit" if n in NCF_MODELS else "sequence" if n in SEQUENCE_MODELS else "multitask" if n in MULTI_TASK else "ctr"  # noqa: E731
    print(f"\n{'model':<14} {'precision':<9} {'samples/s':>11} {'metric':<18} {'value':>8} {'Δ vs fp32':>10} {'seconds':>8}")
    failures = 0
    for name in args.models.split(","):
        reference = None
        for precision in precisions:
            batch = 256 if name in NCF_MODELS else args.batch_size
            config = TrainConfig(epochs=args.epochs, batch_size=batch, device=args.device, precision=precision, eval_batch_size=65536)
            try:
                r = run_one(name, datasets[kind(name)], config)
            except Exception as exc:  # a failure is a result here: print it, keep checking the others
                failures += 1
                print(f"{name:<14} {precision:<9} FAILED: {type(exc).__name__}: {str(exc)[:200]}")
                continue
            reference = r["value"] if precision == "fp32" else reference
            delta = f"{r['value'] - reference:+.4f}" if reference is not None and precision != "fp32" else ""
            print(f"{name:<14} {precision:<9} {r['samples_per_s']:>11,.0f} {r['metric']:<18} {r['value']:>8.4f} {delta:>10} {r['seconds']:>8.1f}")
    print(f"\n{failures} failed run(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
