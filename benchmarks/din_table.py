"""Test AUC and GAUC of DIN (Dice, PReLU) and its base model on the behaviour datasets, mean ± std
over seeds (Zhou et al. 2018 compare exactly these).

Each run: Adam lr 1e-3, batch 512, at most --epochs epochs with early stopping on validation AUC
(patience 1), the test split scored once at the selected epoch. Finished runs in --output-dir with
the same resolved config are reused.

Run:  .venv/bin/python benchmarks/din_table.py --data-dir ../shared/data --seeds 42 43 44 --markdown din.md
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path

import numpy as np
import torch
from rich.console import Console

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reproduce_ncf import find_finished  # noqa: E402

from recforge.config import apply_overrides, from_dict  # noqa: E402
from recforge.training.experiment import load_data, run_experiment  # noqa: E402

VARIANTS = {"base": ("base", "dice"), "din (dice)": ("din", "dice"), "din (prelu)": ("din", "prelu")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=os.environ.get("RECFORGE_DATA_DIR"))
    parser.add_argument("--datasets", nargs="+", default=["amazon-grocery", "movielens-100k-seq"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--output-dir", type=Path, default=Path("runs/din-table"))
    parser.add_argument("--threads", type=int)
    parser.add_argument("--markdown", type=Path)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    console = Console(stderr=True)
    results: dict[tuple[str, str], list[dict]] = {}
    for dataset in args.datasets:
        data = None
        for label, (model, act) in VARIANTS.items():
            for seed in args.seeds:
                raw = {
                    "model": {"name": model, "activation": act, "attention_activation": act},
                    "data": {"name": dataset},
                    "train": {"epochs": args.epochs, "patience": 1, "batch_size": 512},
                    "seed": seed,
                }
                config = from_dict(apply_overrides(raw, []))
                run = find_finished(args.output_dir, config)
                if run is None:
                    data = data or load_data(config, args.data_dir)
                    console.rule(f"{label} on {dataset}, seed {seed}")
                    summary = run_experiment(config, output_dir=args.output_dir, console=console, data=data).summary
                else:
                    summary = json.loads((run / "summary.json").read_text())
                results.setdefault((dataset, label), []).append(summary)
                console.print(f"{dataset} {label} seed {seed}: test AUC {summary['test/auc']:.4f} GAUC {summary['test/gauc']:.4f}")
    ms = lambda xs: f"{np.mean(xs):.4f} ± {np.std(xs, ddof=1) if len(xs) > 1 else 0.0:.4f}"  # noqa: E731
    lines = [
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}; seeds {args.seeds}.",
        "",
        "| dataset | model | test AUC | test GAUC | epochs selected | s/epoch |",
        "|---|---|---|---|---|---|",
    ]
    for (dataset, label), runs in results.items():
        lines.append(
            f"| {dataset} | {label} | {ms([r['test/auc'] for r in runs])} | {ms([r['test/gauc'] for r in runs])} | "
            f"{', '.join(str(r['selected_epoch']) for r in runs)} | {np.mean([r['timings']['seconds_per_epoch'] for r in runs]):.0f} |"
        )
    text = "\n".join(lines)
    print(text)
    if args.markdown:
        args.markdown.write_text(text + "\n")


if __name__ == "__main__":
    main()
