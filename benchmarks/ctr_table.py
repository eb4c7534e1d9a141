"""Test AUC / LogLoss of every CTR model on every CTR dataset that exists in the data directory.

Each run trains with the model's paper defaults (Wide & Deep: FTRL on the wide part, AdaGrad on
the deep part; the others Adam lr 1e-3), selects the epoch on validation AUC with early stopping
(patience 2, at most 20 epochs), and scores the test split once. One seed; `recforge compare`
(multi-seed spread) is a later issue. Finished runs in --output-dir with the same resolved
config are reused, so the script can be stopped and resumed.

Run:  .venv/bin/python benchmarks/ctr_table.py --data-dir ../shared/data --markdown ctr.md
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from pathlib import Path

import torch
from rich.console import Console

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reproduce_ncf import find_finished  # noqa: E402

from recforge.config import apply_overrides, from_dict  # noqa: E402
from recforge.training.experiment import load_data, run_experiment  # noqa: E402

DATASETS = ("uci-adult", "movielens-100k-ctr", "frappe", "census-income", "criteo-head-10k", "avazu-head-10k")
MODELS = ("lr", "fm", "wide_deep", "deepfm", "dlrm")
SMALL = ("criteo-head-10k", "avazu-head-10k")  # 8k training rows: smaller batches


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=os.environ.get("RECFORGE_DATA_DIR"))
    parser.add_argument("--output-dir", type=Path, default=Path("runs/ctr-table"))
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS))
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--markdown", type=Path, default=None, help="also write the table to this file")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    console = Console(stderr=True)
    rows = []
    for dataset in args.datasets:
        data = None
        for model in args.models:
            raw = {
                "model": {"name": model},
                "data": {"name": dataset},
                "train": {"epochs": 20, "patience": 2, "batch_size": 256 if dataset in SMALL else 1024},
                "seed": 42,
            }
            config = from_dict(apply_overrides(raw, []))
            run = find_finished(args.output_dir, config)
            if run is None:
                if data is None:
                    data = load_data(config, args.data_dir)
                console.rule(f"{model} on {dataset}")
                result = run_experiment(config, output_dir=args.output_dir, console=console, data=data)
                summary, run = result.summary, result.path
            else:
                import json

                summary = json.loads((run / "summary.json").read_text())
            rows.append((dataset, model, summary))
            console.print(f"{dataset:>20} {model:>10}  test AUC {summary['test/auc']:.4f}  LogLoss {summary['test/log_loss']:.4f}")

    lines = [
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__} ({torch.get_num_threads()} threads).",
        "",
        "| dataset | model | test AUC | test LogLoss | valid AUC | epoch (of run) | s/epoch | rows/s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for dataset, model, s in rows:
        t = s["timings"]
        lines.append(
            f"| {dataset} | {model} | {s['test/auc']:.4f} | {s['test/log_loss']:.4f} | {s['valid/auc']:.4f} | "
            f"{s['selected_epoch']} ({s['epochs_run']}) | {t['seconds_per_epoch']:.1f} | {t['train_samples_per_s']:,.0f} |"
        )
    text = "\n".join(lines)
    print(text)
    if args.markdown:
        args.markdown.write_text(text + "\n")


if __name__ == "__main__":
    main()
