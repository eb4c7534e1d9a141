"""Reproduce He et al. (2017) on MovieLens-1M: ItemPop, MF, GMF, MLP, NeuMF with and without
pre-training, at predictive factors 8/16/32/64, beside the paper's numbers.

Test HR@10 / NDCG@10 are scored once, at the epoch selected on the validation hold-out; the
paper-style best-test-epoch figure (optimistic) is shown beside it. Finished runs in
--output-dir with the same resolved config are reused, so the script can be stopped and resumed.

Paper values (He et al. 2017, arXiv:1708.05031): NeuMF from Table 2, MLP (3 hidden layers)
from Tables 3-4. GMF, MF and ItemPop appear only in Figure 4 (a plot), so no number is printed.

Run:  .venv/bin/python benchmarks/reproduce_ncf.py --data-dir ../shared/data --markdown results.md
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path
from typing import Any

import torch
from rich.console import Console

from recforge.config import apply_overrides, from_dict, read_yaml
from recforge.config import ExperimentConfig
from recforge.training.experiment import load_data, run_experiment
from recforge.training.records import find_finished_run

PAPER: dict[tuple[str, int], tuple[float, float]] = {
    # (model, factors): (HR@10, NDCG@10) on MovieLens-1M
    ("neumf", 8): (0.688, 0.410), ("neumf", 16): (0.696, 0.420), ("neumf", 32): (0.701, 0.425), ("neumf", 64): (0.705, 0.426),
    ("neumf+pretrain", 8): (0.684, 0.403), ("neumf+pretrain", 16): (0.707, 0.426),
    ("neumf+pretrain", 32): (0.726, 0.445), ("neumf+pretrain", 64): (0.730, 0.447),
    ("mlp", 8): (0.671, 0.399), ("mlp", 16): (0.684, 0.410), ("mlp", 32): (0.692, 0.425), ("mlp", 64): (0.702, 0.426),
}
MODELS = ("itempop", "mf", "gmf", "mlp", "neumf", "neumf+pretrain")


def find_finished(output_dir: Path, config: ExperimentConfig) -> Path | None:
    """A finished run directory whose resolved config equals ``config`` (see ``find_finished_run``)."""
    return find_finished_run(output_dir, config)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=os.environ.get("RECFORGE_DATA_DIR"))
    parser.add_argument("--output-dir", type=Path, default=Path("runs/reproduce-ncf"))
    parser.add_argument("--factors", type=int, nargs="+", default=[8, 16, 32, 64])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="config override, e.g. train.batch_size=1024")
    parser.add_argument("--markdown", type=Path, help="also write the table as Markdown here")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (1 avoids OpenMP spin-waits when runs share cores)")
    parser.add_argument("--no-train", action="store_true", help="only tabulate finished runs; train nothing")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    console = None if args.quiet else Console(stderr=True)

    rows: list[dict[str, Any]] = []
    threads_used: set[Any] = set()
    data = None
    for factors in args.factors:
        finished: dict[str, Path] = {}
        for label in args.models:
            if label == "itempop" and factors != args.factors[0]:
                continue
            model = "neumf" if label == "neumf+pretrain" else label
            # Selection on validation NDCG@10, stated explicitly so runs stay comparable across versions.
            raw: dict[str, Any] = {"model": {"name": model}, "data": {"name": "movielens-1m-ncf"}, "train": {"monitor": "valid/ndcg@10"}}
            if model != "itempop":
                raw["model"]["factors"] = factors
            raw = apply_overrides(raw, args.overrides)
            if label == "neumf+pretrain":
                if "gmf" not in finished or "mlp" not in finished:
                    if args.no_train:
                        continue
                    raise SystemExit("neumf+pretrain needs gmf and mlp in --models (listed before it)")
                raw.setdefault("pretrain", {}).update(enabled=True, gmf_run=str(finished["gmf"]), mlp_run=str(finished["mlp"]))
            config = from_dict(raw)
            run = find_finished(args.output_dir, config)
            if run is None and args.no_train:
                continue
            if run is None:
                if data is None:
                    data = load_data(config, args.data_dir)
                if console:
                    console.rule(f"{label}, factors {factors}")
                run = run_experiment(config, args.data_dir, args.output_dir, console=console, data=data).path
            finished[label] = run
            summary = json.loads((run / "summary.json").read_text())
            threads_used.add(summary.get("environment", {}).get("torch_threads"))
            best = summary.get("optimistic_best_test_epoch", {})
            paper = PAPER.get((label, factors))
            rows.append(
                {
                    "model": label,
                    "factors": "-" if label == "itempop" else factors,
                    "HR@10": summary["test/hit_rate@10"],
                    "NDCG@10": summary["test/ndcg@10"],
                    "epoch": summary["selected_epoch"],
                    "best-epoch HR@10": best.get("hit_rate@10"),
                    "best-epoch NDCG@10": best.get("ndcg@10"),
                    "paper HR@10": paper[0] if paper else None,
                    "paper NDCG@10": paper[1] if paper else None,
                    "full HR@10": summary.get("test_full/hit_rate@10"),
                    "s/epoch": summary["timings"]["seconds_per_epoch"] if summary["epochs_run"] else None,
                    "run": run.name,
                }
            )

    columns = ["model", "factors", "HR@10", "NDCG@10", "epoch", "best-epoch HR@10", "best-epoch NDCG@10",
               "paper HR@10", "paper NDCG@10", "full HR@10", "s/epoch"]
    fmt = lambda v: "—" if v is None else (f"{v:.3f}" if isinstance(v, float) else str(v))  # noqa: E731
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(r[c]) for c in columns) + " |" for r in rows]
    threads = ", ".join(str(t) for t in sorted(threads_used, key=str))
    machine = f"{platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}; runs used {threads} torch thread(s)"
    text = "\n".join(lines) + f"\n\nMachine: {machine}. Overrides: {args.overrides or 'none'}.\n"
    print(text)
    if args.markdown:
        args.markdown.write_text(text)


if __name__ == "__main__":
    main()
