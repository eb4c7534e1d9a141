"""``recforge tune``: hyper-parameter search on Optuna with the test set sealed (registered in app.py)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from recforge.errors import ConfigError

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    """Seconds of ``90``, ``90s``, ``30m``, ``2h``, ``1.5h`` or ``1d``.

    Raises:
        ConfigError: for anything else, or a duration that is not > 0.
    """
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text or "")
    if not match:
        raise ConfigError(f"--timeout expects a duration such as 90s, 30m or 2h, got {text!r}")
    seconds = float(match.group(1)) * _UNITS[match.group(2) or "s"]
    if seconds <= 0:
        raise ConfigError(f"--timeout must be > 0, got {text!r}")
    return seconds


def tune(
    model: Annotated[str, typer.Argument(help="Model name (see `recforge models`).")],
    dataset: Annotated[Optional[str], typer.Option(help="Dataset name (see `recforge data list`).")] = None,
    trials: Annotated[int, typer.Option("--trials", help="Finished trials wanted in the study, in total (resumed and parallel processes included).")] = 20,
    timeout: Annotated[Optional[str], typer.Option("--timeout", help="Start no new trial after this long (90s, 30m, 2h).")] = None,
    space: Annotated[Optional[Path], typer.Option("--space", help="Search-space YAML replacing (or with base: default, narrowing) the model's default space.")] = None,
    storage: Annotated[Optional[str], typer.Option("--storage", help="SQLAlchemy URL of the study (default: sqlite:///<output-dir>/tune.db).")] = None,
    study_name: Annotated[Optional[str], typer.Option("--study-name", help="Study name (default: <dataset>-<model>).")] = None,
    top_k: Annotated[int, typer.Option("--top-k", help="Best configurations re-trained over seeds (0: search only, for extra parallel workers).")] = 3,
    seeds: Annotated[int, typer.Option("--seeds", help="Training seeds per confirmed configuration (the first is --seed, the search's).")] = 3,
    sampler_seed: Annotated[Optional[int], typer.Option("--sampler-seed", help="Seed of the TPE sampler (default: random; give parallel processes different ones).")] = None,
    epochs: Annotated[Optional[int], typer.Option(help="Maximum epochs of every trial.")] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="Examples per step of every trial (then not searched).")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Training seed of the trials (default 42).")] = None,
    config: Annotated[Optional[Path], typer.Option("--config", help="YAML config shared by every trial.")] = None,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Fix a config key for every trial: section.key=value (then not searched).")] = None,
    data_dir: Annotated[Optional[Path], typer.Option("--data-dir", help="Data directory (default: $RECFORGE_DATA_DIR, else ~/.local/share/recforge).")] = None,
    threads: Annotated[Optional[int], typer.Option(help="torch CPU threads (default as for train; env RECFORGE_THREADS).")] = None,
    output_dir: Annotated[Path, typer.Option(help="Where trial runs, confirmation runs, the default study database and the report go.")] = Path("runs"),
    quiet: Annotated[bool, typer.Option("--quiet", help="Only the final summary.")] = False,
) -> None:
    """Search hyper-parameters on validation (TPE, median pruning), confirm the best over seeds, score the winner on test once.

    Trials never read the test split. The study lives in a database: the same command resumes an interrupted search (finished trials are reused, --trials counts them), and several processes given the same --storage and --study-name share one search.
    """
    from rich.markup import escape
    from rich.table import Table

    from recforge.cli.app import _check_output_path, _set_threads, check_seed, console, out
    from recforge.config import read_yaml
    from recforge.tuning.report import summarize, write_report
    from recforge.tuning.runner import tune as run_tune

    timeout_s = parse_duration(timeout) if timeout is not None else None
    if seed is not None:
        check_seed("--seed", seed)
    if sampler_seed is not None:
        check_seed("--sampler-seed", sampler_seed)
    raw: dict[str, Any] = read_yaml(config) if config else {}
    if not dataset and not (isinstance(raw.get("data"), dict) and raw["data"].get("name")):
        raise ConfigError("--dataset is required (see `recforge data list`), or a --config file naming data.name")
    if space is not None and not space.is_file():
        raise ConfigError(f"--space {space}: no such file")
    _check_output_path(output_dir, "--output-dir", "run directory")
    _set_threads(threads, (model,), quiet)
    values = {"data.name": dataset, "train.epochs": epochs, "train.batch_size": batch_size, "seed": seed}
    say = (lambda message: None) if quiet else (lambda message: console.print(escape(message), highlight=False))
    try:
        result = run_tune(
            model, values, trials, raw=raw, set_=list(set_ or []), space_file=space, storage=storage, study_name=study_name,
            timeout_s=timeout_s, top_k=top_k, seeds=seeds, output_dir=output_dir, data_dir=data_dir, sampler_seed=sampler_seed, say=say,
        )
    except KeyboardInterrupt:
        console.print("interrupted: the running trial is recorded as failed (interrupted); finished trials stay in the study and the same command resumes")
        raise typer.Exit(130) from None
    files = write_report(result, output_dir / f"tune-{result.study.study_name}")
    summary = summarize(result)
    states = ", ".join(f"{n} {s.lower()}" for s, n in sorted(summary["trials"].items()))
    out.print(f"study {escape(result.study.study_name)}: {summary['finished']} finished trials ({escape(states)}) on {result.monitor}", highlight=False)
    if result.outcome.timed_out:
        out.print(f"stopped by --timeout with {summary['finished']} of {trials} trials finished; the same command continues the search", highlight=False)
    if result.selection is not None:
        winner = result.selection.winner
        table = Table(title=f"winner: trial {winner.trial}, {result.monitor} mean {winner.mean:.4f} over seeds {', '.join(map(str, winner.seeds))}")
        table.add_column("test metric (scored once, after the choice)")
        table.add_column("mean ± std", justify="right")
        table.add_column("min .. max", justify="right")
        for key, s in summary["test"].items():
            std = "—" if s["std"] is None else f"{s['std']:.4f}"
            table.add_row(escape(key), f"{s['mean']:.4f} ± {std}", f"{s['min']:.4f} .. {s['max']:.4f}")
        out.print(table)
        out.print("parameters: " + escape(", ".join(f"{k}={v}" for k, v in winner.params.items() if not isinstance(v, dict))), highlight=False)
    for kind, path in files.items():
        out.print(f"{kind}: {path}", highlight=False)
