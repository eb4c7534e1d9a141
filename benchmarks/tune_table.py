"""The tuned-baselines tables of the README (issue 17, item 4): every model gets the same search.

Table 1 (Rendle et al., RecSys 2020, "Neural Collaborative Filtering vs. Matrix Factorization
Revisited": does a tuned dot-product MF match NeuMF on the NCF paper's own protocol?):
``mf``, ``gmf``, ``mlp`` and ``neumf`` on ``movielens-1m-ncf``. Table 2 (BARS-style equal
budgets for CTR models): ``deepfm``, ``dlrm`` and ``wide_deep`` on ``frappe`` and ``uci-adult``.

For each (dataset, model) this runs one ``recforge tune`` with the same budget (``--trials``,
``--epochs``, ``--top-k``, ``--seeds``; default search space of each model, TPE with a fixed
``--sampler-seed``), each study in its own SQLite file, then ``recforge report`` over the
winners' confirmation runs of a dataset (mean ± std, 95 % CIs and per-seed paired tests between
the tuned models), and writes ``<output-dir>/tune_table.md``: per model the winner's
parameters, its validation mean, its test metrics (scored once, after the choice) with spread,
and the wall time of its search. Every command is printed before it runs and written to the
table, so the table says exactly how it was made.

Run (the README figures; hours, on a quiet machine):
    .venv/bin/python benchmarks/tune_table.py --data-dir ../shared/data --trials 50 --epochs 20 --output-dir runs/tune-table
See the commands only:
    .venv/bin/python benchmarks/tune_table.py --dry-run
Smoke run of the whole pipeline at the tiniest size (movielens-100k and uci-adult, 2 trials of 1 epoch):
    .venv/bin/python benchmarks/tune_table.py --data-dir ../shared/data --smoke --output-dir /tmp/tune-smoke
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

NCF_MODELS = ("mf", "gmf", "mlp", "neumf")
CTR_MODELS = ("deepfm", "dlrm", "wide_deep")
TABLES = {  # dataset -> models, with the test metrics each table shows
    "movielens-1m-ncf": (NCF_MODELS, ("test/hit_rate@10", "test/ndcg@10")),
    "frappe": (CTR_MODELS, ("test/auc", "test/log_loss")),
    "uci-adult": (CTR_MODELS, ("test/auc", "test/log_loss")),
}
SMOKE = {  # the same pipeline on the smallest data
    "movielens-100k": (NCF_MODELS, ("test/hit_rate@10", "test/ndcg@10")),
    "uci-adult": (CTR_MODELS, ("test/auc", "test/log_loss")),
}
RECFORGE = str(Path(sys.executable).parent / "recforge")


def tune_command(args: argparse.Namespace, dataset: str, model: str) -> list[str]:
    """The ``recforge tune`` command of one cell."""
    out = Path(args.output_dir) / dataset
    command = [
        RECFORGE, "tune", model, "--dataset", dataset, "--trials", str(args.trials), "--epochs", str(args.epochs),
        "--top-k", str(args.top_k), "--seeds", str(args.seeds), "--sampler-seed", str(args.sampler_seed),
        "--storage", f"sqlite:///{(out / 'tune.db').resolve()}", "--study-name", f"{dataset}-{model}",
        "--output-dir", str(out), "--quiet",
    ]
    if args.data_dir:
        command += ["--data-dir", str(args.data_dir)]
    if args.timeout:
        command += ["--timeout", args.timeout]
    if args.threads:
        command += ["--threads", str(args.threads)]
    return command


def run(command: list[str], dry_run: bool) -> float:
    """Run ``command`` (printed first); its wall time in seconds (0 for a dry run)."""
    print("$ " + shlex.join(command), flush=True)
    if dry_run:
        return 0.0
    started = time.perf_counter()
    done = subprocess.run(command)
    if done.returncode != 0:
        sys.exit(f"command failed with exit code {done.returncode}: {shlex.join(command)}")
    return time.perf_counter() - started


def cell(spread: dict | None) -> str:
    if spread is None:
        return "—"
    std = "—" if spread["std"] is None else f"{spread['std']:.4f}"
    return f"{spread['mean']:.4f} ± {std}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None, help="Data directory (default: $RECFORGE_DATA_DIR).")
    parser.add_argument("--output-dir", default="runs/tune-table", help="Studies, runs, reports and tune_table.md go here.")
    parser.add_argument("--trials", type=int, default=50, help="Finished trials per model (the equal budget).")
    parser.add_argument("--epochs", type=int, default=20, help="Maximum epochs of every trial.")
    parser.add_argument("--top-k", type=int, default=3, help="Configurations confirmed over seeds.")
    parser.add_argument("--seeds", type=int, default=5, help="Seeds per confirmed configuration (paired tests need >= 3).")
    parser.add_argument("--sampler-seed", type=int, default=0, help="TPE seed, the same for every model.")
    parser.add_argument("--timeout", default=None, help="Per-model time budget instead of (or on top of) --trials, e.g. 2h.")
    parser.add_argument("--threads", type=int, default=None, help="torch threads of every trial (e.g. 1 to run two tables side by side).")
    parser.add_argument("--datasets", default=None, help="Comma-separated subset of the tables' datasets.")
    parser.add_argument("--smoke", action="store_true", help="Tiniest run of the pipeline: small datasets, 2 trials of 1 epoch, 2 seeds.")
    parser.add_argument("--dry-run", action="store_true", help="Print the commands only.")
    args = parser.parse_args()
    tables = SMOKE if args.smoke else TABLES
    if args.smoke:
        args.trials, args.epochs, args.top_k, args.seeds = 2, 1, 1, 2
    if args.datasets:
        wanted = [d.strip() for d in args.datasets.split(",") if d.strip()]
        unknown = sorted(set(wanted) - set(tables))
        if unknown:
            sys.exit(f"--datasets: {unknown[0]} is not in the tables ({', '.join(tables)})")
        tables = {d: tables[d] for d in wanted}

    lines = [
        "# Tuned baselines under equal budgets (benchmarks/tune_table.py)", "",
        f"Budget per model: {args.trials} finished trials of at most {args.epochs} epochs (TPE, median pruning, sampler seed "
        f"{args.sampler_seed}), then the top {args.top_k} re-trained over {args.seeds} seeds; winner on mean validation; "
        "test scored once per seed of the winner.", "",
    ]
    for dataset, (models, metrics) in tables.items():
        walls = {model: run(tune_command(args, dataset, model), args.dry_run) for model in models}
        out = Path(args.output_dir) / dataset
        winners: list[str] = []
        rows = []
        for model in models:
            summary_file = out / f"tune-{dataset}-{model}" / "tune.json"
            if args.dry_run or not summary_file.is_file():
                continue
            summary = json.loads(summary_file.read_text())
            winner = summary.get("winner")
            if winner is None:
                rows.append(f"| {model} | {summary['finished']} | no completed trial | | | {walls[model]:.0f} s |")
                continue
            winners += winner["runs"]
            params = ", ".join(f"{k.split('.', 1)[1]}={v:.3g}" if isinstance(v, float) else f"{k.split('.', 1)[1]}={v}"
                               for k, v in winner["params"].items() if not isinstance(v, dict))
            valid = summary["candidates"][0]["mean"]
            tests = " | ".join(cell(summary["test"].get(m)) for m in metrics)
            rows.append(f"| {model} | {summary['finished']} | {params} | {valid:.4f} | {tests} | {walls[model]:.0f} s |")
        report_dir = out / "report-winners"
        if winners or args.dry_run:
            run([RECFORGE, "report", *(winners or [f"{out}/<winner runs>"]), "--output", str(report_dir)], args.dry_run)
        monitor = "valid/ndcg@10" if models == NCF_MODELS else "valid/auc"
        lines += [f"## {dataset}", "", f"| model | trials | winner | {monitor} mean | " + " | ".join(metrics) + " | wall time of tune |",
                  "|---" * (5 + len(metrics)) + "|", *rows, "",
                  f"Paired tests between the tuned winners: `{report_dir}/report.md`.", "", "Commands:", "", "```"]
        lines += [shlex.join(["recforge", *tune_command(args, dataset, m)[1:]]) for m in models] + ["```", ""]
    if args.dry_run:
        return
    from recforge.data.files import atomic_write_text

    target = Path(args.output_dir) / "tune_table.md"
    atomic_write_text(target, "\n".join(lines) + "\n")
    print(f"table: {target}")


if __name__ == "__main__":
    main()
