"""``recforge tune`` from Python: search with the test set sealed, confirm over seeds, test once.

::

    from recforge.tuning.runner import tune

    result = tune("gmf", {"data.name": "movielens-100k", "train.epochs": 1}, n_trials=3)
    result.selection.winner.params       # the chosen overrides, e.g. {"train.lr": 0.0031, ...}
    result.selection.test["test/ndcg@10"]  # one value per confirmation seed

Every trial is an ordinary run (``run_experiment``) of the config ``train_config`` builds from
the fixed options and the sampled parameters, with ``train.score_test: false`` and
``train.report_best_test_epoch: false`` forced: the test split is never scored during the
search (:mod:`recforge.tuning.study` for storage and budget, :mod:`recforge.tuning.selection`
for what happens after).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recforge.api import train_config
from recforge.config import apply_overrides, check_seed
from recforge.errors import ConfigError
from recforge.tuning.selection import Selection, confirm, score_winner, top_trials
from recforge.tuning.space import IMPLICIT_MODELS, SearchSpace, default_space, load_space, overlaps
from recforge.tuning.study import SearchOutcome, finished_states, open_storage, open_study, run_search, sigint_deferred

SEALED = {"train.score_test": False, "train.report_best_test_epoch": False}  # forced on every run of a search


@dataclass
class TuneResult:
    """What :func:`tune` did.

    Attributes:
        study: the Optuna study (all processes' trials).
        space: the searched space.
        monitor: the validation metric searched (``valid/ndcg@10``, ``valid/auc`` ...).
        outcome: this process's share of the search.
        selection: the confirmed candidates, winner and its test metrics (None with ``top_k`` 0
            or when no trial completed).
        seconds: wall time of this call.
    """

    study: Any
    space: SearchSpace
    monitor: str
    outcome: SearchOutcome
    selection: Selection | None
    seconds: float


def tune(
    model: str,
    values: dict[str, Any],
    n_trials: int,
    *,
    raw: dict[str, Any] | None = None,
    set_: list[str] | tuple[str, ...] = (),
    space_file: str | Path | None = None,
    storage: str | None = None,
    study_name: str | None = None,
    timeout_s: float | None = None,
    top_k: int = 3,
    seeds: int = 3,
    output_dir: str | Path = "runs",
    data_dir: str | Path | None = None,
    sampler_seed: int | None = None,
    sampler: Any = None,
    pruner: Any = None,
    say: Callable[[str], None] = lambda message: None,
) -> TuneResult:
    """Search ``model``'s hyper-parameters, confirm the best over seeds and score the winner on test.

    Args:
        model: registered model name.
        values: typed dotted options applied to every trial (``data.name``, ``train.epochs``,
            ``train.batch_size``, ``seed`` ...; None values skipped). A key given here or in
            ``set_`` is fixed: it leaves the default space (and may not be in a space file).
        n_trials: finished trials wanted in the study, in total (resumed and parallel runs included).
        raw: a config file's content to start from.
        set_: ``--set`` strings applied to every trial.
        space_file: a search-space YAML (:mod:`recforge.tuning.space`); None: the model's default.
        storage: SQLAlchemy URL of the study (default ``sqlite:///<output_dir>/tune.db``).
        study_name: default ``<dataset>-<model>``.
        timeout_s: start no trial after this many seconds.
        top_k: configurations confirmed over seeds (0: search only, for extra parallel workers).
        seeds: training seeds per confirmed configuration (the search's seed first).
        output_dir: where the trial and confirmation runs and the report go.
        data_dir: data directory of registered datasets.
        sampler_seed: seed of the default TPE sampler (None: random).
        sampler, pruner: Optuna objects replacing the defaults (TPE, MedianPruner).
        say: progress messages.

    Raises:
        ConfigError: bad options, space, storage URL, or a stored study of another search.
        DataError: missing data.
    """
    from recforge.training import experiment
    from recforge.training.records import find_finished_run

    started = time.perf_counter()
    if n_trials < 1:
        raise ConfigError(f"--trials must be >= 1, got {n_trials}")
    if top_k < 0:
        raise ConfigError(f"--top-k must be >= 0, got {top_k}")
    if seeds < 1:
        raise ConfigError(f"--seeds must be >= 1, got {seeds}")
    if timeout_s is not None and timeout_s <= 0:
        raise ConfigError(f"--timeout must be > 0, got {timeout_s:g} s")
    values = {k: v for k, v in values.items() if v is not None}
    for item in set_:
        key = item.split("=", 1)[0].strip()
        if key in ("model.name", "model", "train.score_test", "train"):
            raise ConfigError(f"--set {key}: tune sets this itself (the model is the argument; trials never score the test split)")
    base_raw = apply_overrides(raw or {}, list(set_), values)
    base = train_config(model, base_raw, SEALED)  # checks the fixed options before anything else
    check_seed("--seed + --seeds - 1", base.seed + seeds - 1)
    fixed_keys = set(values) | {item.split("=", 1)[0].strip() for item in set_}
    space = _space(model, space_file, fixed_keys, say)

    def make_config(params: dict[str, Any], seed: int | None = None) -> Any:
        overrides = {**params, **SEALED}
        if seed is not None:
            overrides["seed"] = seed
        return train_config(model, base_raw, overrides)

    for corner in space.corners():  # every end of every range must make a valid config
        try:
            make_config(corner)
        except ConfigError as exc:
            raise ConfigError(f"search space {space.source}: {exc}") from None

    kind = "implicit" if model in IMPLICIT_MODELS else "tabular"
    monitor = base.train.resolved_monitor(kind)
    maximize = base.train.higher_is_better(monitor)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    url = storage or f"sqlite:///{(output_dir / 'tune.db').resolve()}"
    name = study_name or f"{base.data.name}-{model}"
    signature = {
        "model": model,
        "config": base.to_dict(),
        "space": {p.key: p.describe() for p in space.params},
        "fixed": {k: repr(v) for k, v in space.fixed.items()},
    }
    data = experiment.load_data(base, data_dir)  # before the storage: a search that cannot run leaves no study behind
    experiment.check_experiment(base, data)
    store = open_storage(url)
    study = open_study(store, name, "maximize" if maximize else "minimize", signature, sampler=sampler, pruner=pruner, seed=sampler_seed)

    def objective(trial: Any) -> float:
        import optuna

        params = space.suggest(trial)
        config = make_config(params)

        def report(record: dict[str, Any]) -> None:
            value = record.get(monitor)
            if value is None:
                return
            with sigint_deferred():  # a storage write: see recforge.tuning.study
                trial.report(float(value), step=int(record["epoch"]))
                prune = trial.should_prune()
            if prune:
                raise optuna.TrialPruned(f"pruned after epoch {record['epoch']}: {monitor} {value:.4f}")

        found = find_finished_run(output_dir, config)  # the sampler repeated a finished config: no need to train it again
        if found is not None:
            path, summary = found, json.loads((found / "summary.json").read_text(encoding="utf-8"))
        else:
            try:
                result = experiment.run_experiment(config, data_dir=data_dir, output_dir=output_dir, data=data, on_epoch=report)
            except optuna.TrialPruned as exc:
                say(f"  {exc}")
                raise
            path, summary = result.path, result.summary
        value = float(summary[monitor])
        trial.set_user_attr("run", str(path))
        say(f"  {monitor} {value:.4f}  " + _show(params) + f"  ({path.name}{', reused' if found is not None else ''})")
        return value

    done_before = len(study.get_trials(deepcopy=False, states=finished_states()))
    if done_before:
        say(f"study {name!r} in {url}: {done_before} finished trials reused, {max(n_trials - done_before, 0)} to run")
    outcome = run_search(store, study, objective, n_trials, timeout_s, say)
    selection = None
    if top_k > 0:
        def train(config: Any) -> Path:
            found = find_finished_run(output_dir, config)
            if found is None:
                found = experiment.run_experiment(config, data_dir=data_dir, output_dir=output_dir, data=data).path
            return found

        candidates = top_trials(study, top_k, lambda p: make_config(p).fingerprint(), space.decode)
        if candidates:
            first = base.seed
            say(f"confirming the best {len(candidates)} configuration(s) over seeds {first}..{first + seeds - 1}")
            ranked = confirm(candidates, list(range(first, first + seeds)), make_config, train, monitor, maximize, say)
            full = base.train.full_ranking

            def score(run: Path) -> dict[str, float]:
                return experiment.evaluate_run(run, data_dir, full_ranking=full)

            test = score_winner(ranked[0], score)
            selection = Selection(monitor, maximize, ranked, test)
    return TuneResult(study, space, monitor, outcome, selection, time.perf_counter() - started)


def _space(model: str, space_file: str | Path | None, fixed: set[str], say: Callable[[str], None]) -> SearchSpace:
    """The searched space less the keys fixed by the command (a file may not search them)."""
    if space_file is None:
        space = default_space(model)
        dropped = [p.key for p in space.params if any(overlaps(p.key, k) for k in fixed)]
        if dropped:
            say(f"fixed by the command, not searched: {', '.join(dropped)}")
        space = space.without(fixed)
        if not space.params:
            raise ConfigError(f"every parameter of {model}'s default space is fixed by the command; nothing to search")
        return space
    space = load_space(space_file, model)
    clash = sorted(p.key for p in space.params if any(overlaps(p.key, k) for k in fixed))
    if clash:
        raise ConfigError(f"{space_file}: {clash[0]} is searched there but also fixed by the command (--set or an option); drop one")
    return space


def _show(params: dict[str, Any]) -> str:
    parts = []
    for key, value in params.items():
        if isinstance(value, float):
            value = f"{value:.3g}"
        elif isinstance(value, dict):
            continue  # fixed groups: their searched rates are shown on their own
        parts.append(f"{key.split('.', 1)[1]}={value}")
    return " ".join(parts)
