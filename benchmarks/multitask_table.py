"""Per-task test AUC of Shared-Bottom, MMoE, PLE and AdaTT on census-income, mean ± std over seeds,
for the MMoE paper's two task groups (Ma et al. 2018, Sec. 6.2): income + never married, and
education (college or above) + never married.

Each run: model defaults (embedding 8, experts 64, towers 32; MMoE 8 experts; PLE/AdaTT 2 task
experts per task and 2 levels, PLE 1 shared expert, AdaTT-sp), Adam lr 1e-3, batch 1024, early
stopping on the mean validation AUC (patience 2, at most --epochs). Finished runs are reused.

Run:  .venv/bin/python benchmarks/multitask_table.py --data-dir ../shared/data --seeds 1 2 3 4 5 --markdown mt.md
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

GROUPS = {"group 1": ("income", "never_married"), "group 2": ("education_college", "never_married")}
MODELS = ("shared_bottom", "mmoe", "ple", "adatt")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=os.environ.get("RECFORGE_DATA_DIR"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--output-dir", type=Path, default=Path("runs/multitask-table"))
    parser.add_argument("--threads", type=int)
    parser.add_argument("--markdown", type=Path)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    console = Console(stderr=True)
    rows = []
    for group, tasks in GROUPS.items():
        data = None
        for model in args.models:
            runs = []
            for seed in args.seeds:
                raw = {"model": {"name": model}, "data": {"name": "census-income", "tasks": list(tasks)},
                       "train": {"epochs": args.epochs, "patience": 2, "batch_size": 1024}, "seed": seed}
                config = from_dict(apply_overrides(raw, []))
                folder = args.output_dir / group.replace(' ', '-')  # one folder per task group: `recforge report` it
                run = find_finished(folder, config)
                if run is None:
                    data = data or load_data(config, args.data_dir)
                    console.rule(f"{model}, {group}, seed {seed}")
                    summary = run_experiment(config, output_dir=folder, console=console, data=data).summary
                else:
                    summary = json.loads((run / "summary.json").read_text())
                runs.append(summary)
            rows.append((group, tasks, model, runs))
            console.print(f"{group} {model}: " + ", ".join(f"{t} {np.mean([r[f'test/{t}/auc'] for r in runs]):.4f}" for t in tasks))
    ms = lambda xs: f"{np.mean(xs):.4f} ± {np.std(xs, ddof=1) if len(xs) > 1 else 0.0:.4f}"  # noqa: E731
    lines = [f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}; seeds {args.seeds}.", "",
             "| group | model | task 1 | test AUC | task 2 | test AUC | epochs selected |", "|---|---|---|---|---|---|---|"]
    for group, tasks, model, runs in rows:
        lines.append(f"| {group} | {model} | {tasks[0]} | {ms([r[f'test/{tasks[0]}/auc'] for r in runs])} | {tasks[1]} | "
                     f"{ms([r[f'test/{tasks[1]}/auc'] for r in runs])} | {', '.join(str(r['selected_epoch']) for r in runs)} |")
    text = "\n".join(lines)
    print(text)
    if args.markdown:
        args.markdown.write_text(text + "\n")


if __name__ == "__main__":
    main()
