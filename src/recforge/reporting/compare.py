"""The model x seed grid of a comparison: plan it, reuse what is finished, train the rest.

Every run of a comparison shares the dataset, its split (``data.split_seed``) and, for
leave-one-out data, the sampled test candidates; only the model and the training seed vary.
Finished runs with the same resolved config (seed included) are reused; an interrupted CTR run
(``last.pt`` without ``summary.json``) is resumed where it stopped. So a comparison can be
stopped at any point and started again with the same command.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from recforge.config import ExperimentConfig, apply_overrides, from_dict
from recforge.errors import ConfigError
from recforge.models import MODELS
from recforge.reporting.runs import RunRecord, load_run
from recforge.training.records import find_finished_run, find_resumable_run, load_run_config


@dataclass(frozen=True)
class PlannedRun:
    """One cell of the grid: a label (model, ``+pretrain`` for pre-trained NeuMF), seed and config."""

    label: str
    seed: int
    config: ExperimentConfig


def plan_comparison(models: Sequence[str], seeds: Sequence[int], base: dict[str, Any], overrides: Sequence[str] = ()) -> list[PlannedRun]:
    """The grid of resolved configs, model-major.

    Args:
        models: model names; ``neumf+pretrain`` is NeuMF with GMF + MLP pre-training.
        seeds: training seeds (at least one, distinct).
        base: a raw config (for example a YAML file's content) naming ``data.name``; its
            ``model.name`` and ``seed`` are replaced per cell.
        overrides: ``section.key=value`` strings applied to every cell.

    Raises:
        ConfigError: for an unknown model, a repeated model or seed, no seeds, an override of
            ``model.name`` or ``seed`` (the grid sets them), or a bad config.
    """
    if not models:
        raise ConfigError("name at least one model to compare")
    if len(set(models)) != len(models):
        raise ConfigError(f"a model is named twice: {list(models)}")
    if not seeds or len(set(seeds)) != len(seeds):
        raise ConfigError(f"seeds must be distinct and at least one, got {list(seeds)}")
    for item in overrides:
        key = item.split("=", 1)[0].strip()
        if key in ("model.name", "seed", "model", "pretrain.enabled"):
            raise ConfigError(f"--set {key}: compare sets the model and seed of each run; name the models as arguments "
                              "(neumf+pretrain for pre-trained NeuMF) and use --seeds / --first-seed")
    known = set(MODELS)
    plan = []
    for label in models:
        name, pretrain = (label.removesuffix("+pretrain"), label.endswith("+pretrain"))
        if name not in known:
            raise ConfigError(f"unknown model {name!r}; available: {', '.join(sorted(known))}")
        raw = apply_overrides(base, list(overrides))
        raw = apply_overrides(raw, [], {"model.name": name, "seed": 0, **({"pretrain.enabled": True} if pretrain else {})})
        for seed in seeds:
            plan.append(PlannedRun(label, seed, from_dict(apply_overrides(raw, [], {"seed": seed}))))
    return plan


def run_comparison(
    plan: Sequence[PlannedRun],
    output_dir: str | Path,
    data_dir: str | Path | None = None,
    console: Console | None = None,
) -> list[RunRecord]:
    """Train every planned run that is not finished in ``output_dir``; return all of them.

    Progress (runs done / total, elapsed, estimated time left from the runs trained so far) goes
    to ``console``. The data is loaded once, and only if something must be trained.

    Raises:
        ConfigError / DataError / TrainingError: from the runs themselves.
    """
    from recforge.training.experiment import check_experiment, load_data, run_experiment

    output_dir = Path(output_dir)
    records: list[RunRecord | None] = [None] * len(plan)
    todo = []
    for i, cell in enumerate(plan):
        done = finished_run(output_dir, cell.config)
        if done is not None:
            records[i] = load_run(done)
        else:
            todo.append(i)
    say = console.print if console else (lambda *a, **k: None)
    reused = len(plan) - len(todo)
    models, seeds = len({c.label for c in plan}), len({c.seed for c in plan})
    say(f"[bold]{_count(len(plan), 'run')}[/bold] ({_count(models, 'model')} x {_count(seeds, 'seed')}): "
        f"{reused} finished and reused, {len(todo)} to train")
    data: dict[str, Any] = {}
    if todo:
        # Every cell is checked against the data before the first one trains, so a model that
        # cannot run on this dataset fails now rather than after hours of the others.
        for config in {repr(plan[i].config.replace(seed=0)): plan[i].config for i in todo}.values():
            key = repr(config.data)
            if key not in data:
                data[key] = load_data(config, data_dir)
            check_experiment(config, data[key])
    started = time.perf_counter()
    for n, i in enumerate(todo):
        cell = plan[i]
        done = finished_run(output_dir, cell.config)  # another cell may have made it (NeuMF pre-training)
        if done is not None:
            records[i] = load_run(done)
            say(f"run {reused + n + 1}/{len(plan)}: {cell.label}, seed {cell.seed}: finished meanwhile, reused")
            continue
        elapsed = time.perf_counter() - started
        eta = f", about {_duration(elapsed / n * (len(todo) - n))} left" if n else ""
        say(f"[bold cyan]run {reused + n + 1}/{len(plan)}[/bold cyan]: {cell.label}, seed {cell.seed} "
            f"({_duration(elapsed)} elapsed{eta})")
        # An own table's interrupted run has no recorded fingerprint to check: it is trained afresh.
        resume = None if cell.config.data.label else find_resumable_run(output_dir, cell.config)
        if resume is not None:
            say(f"  resuming the interrupted run {resume}")
        result = run_experiment(cell.config, output_dir=output_dir, console=console, data=data[repr(cell.config.data)], resume=resume)
        records[i] = load_run(result.path)
    if todo:
        say(f"trained {_count(len(todo), 'run')} in {_duration(time.perf_counter() - started)}")
    finished = [r for r in records if r is not None]
    for record, cell in zip(finished, plan):
        record.label = cell.label  # one config per label: the grid varies only the seed
    return finished


def finished_run(output_dir: Path, config: ExperimentConfig) -> Path | None:
    """A finished run of ``config`` to reuse, or None.

    The config names an own table by its path, so for one (``data.label``) the run must also
    have been trained on the files' current content: its ``summary.json`` records
    ``data.fingerprint``, compared with the files' fingerprint now. A file changed in place is
    trained again, never served from a stale run.
    """
    if not config.data.label:
        return find_finished_run(output_dir, config)
    from recforge.training.experiment import table_source

    current = table_source(config).fingerprint()
    for run in sorted(output_dir.iterdir()) if output_dir.is_dir() else ():
        try:
            same = load_run_config(run) == config and json.loads((run / "summary.json").read_text())["data"]["fingerprint"] == current
        except Exception:  # noqa: BLE001 - unfinished, foreign or damaged folders are not reused
            continue
        if same:
            return run
    return None


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"
