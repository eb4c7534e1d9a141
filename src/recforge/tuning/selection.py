"""After the search: confirm the best configurations over seeds, choose on validation, then test once.

One trial is one seed, and with a small validation split the best trial is partly the luckiest
one. So the ``top_k`` best distinct configurations of the search are re-trained with
``seeds`` training seeds each (the trial's own run is reused as its first seed), the winner is
the configuration with the best *mean* validation value, and only then is the test split
scored: once per seed run of the winner, from the checkpoint of its selected epoch
(:func:`recforge.training.experiment.evaluate_run`). This is the protocol Rendle et al.
(RecSys 2020) ask for: the test set plays no part in any choice, and the result carries its
spread over seeds. The test metrics are added to those runs' ``summary.json`` (with
``test_scored_after_selection: true``) so ``recforge report`` / ``compare`` read them as any run.
Confirmation runs are ordinary runs in the output folder: a finished one of the same config and
seed is reused, so a resumed ``tune`` repeats no work.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recforge.config import ExperimentConfig
from recforge.data.files import atomic_write_text


@dataclass
class Candidate:
    """One configuration re-trained over seeds.

    Attributes:
        trial: the Optuna trial number it came from.
        params: its sampled config overrides (dotted keys).
        search_value: the trial's validation value.
        seeds: the training seeds, in order.
        runs: one run directory per seed.
        values: the validation monitor of each run (at its selected epoch).
    """

    trial: int
    params: dict[str, Any]
    search_value: float
    seeds: list[int] = field(default_factory=list)
    runs: list[Path] = field(default_factory=list)
    values: list[float] = field(default_factory=list)

    @property
    def mean(self) -> float:
        """Mean validation value over the seeds."""
        return sum(self.values) / len(self.values)


@dataclass
class Selection:
    """The confirmed candidates (best mean first), the winner and its test metrics per seed.

    Attributes:
        monitor: the validation metric, for example ``valid/ndcg@10``.
        maximize: whether higher is better.
        candidates: sorted best mean validation first; ``candidates[0]`` is the winner.
        test: test metric name -> one value per seed run of the winner (``test/...``, ``test_full/...``).
    """

    monitor: str
    maximize: bool
    candidates: list[Candidate]
    test: dict[str, list[float]]

    @property
    def winner(self) -> Candidate:
        return self.candidates[0]


def top_trials(study: Any, k: int, fingerprint: Callable[[dict[str, Any]], str], decode: Callable[[dict[str, Any]], dict[str, Any]]) -> list[Candidate]:
    """The ``k`` best COMPLETE trials of ``study`` with distinct configurations (best first).

    Args:
        study: the Optuna study.
        k: how many.
        fingerprint: a config fingerprint of decoded params (two trials that sampled the same
            config, for example the same choices, count once).
        decode: stored trial params -> config overrides.
    """
    import optuna

    complete = [t for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)) if t.value is not None and math.isfinite(t.value)]
    maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
    complete.sort(key=lambda t: (-t.value if maximize else t.value, t.number))
    out: list[Candidate] = []
    seen: set[str] = set()
    for t in complete:
        params = decode(t.params)
        key = fingerprint(params)
        if key in seen:
            continue
        seen.add(key)
        out.append(Candidate(t.number, params, float(t.value)))
        if len(out) == k:
            break
    return out


def confirm(
    candidates: list[Candidate],
    seeds: list[int],
    make_config: Callable[[dict[str, Any], int], ExperimentConfig],
    train: Callable[[ExperimentConfig], Path],
    monitor: str,
    maximize: bool,
    say: Callable[[str], None] = lambda message: None,
) -> list[Candidate]:
    """Train (or reuse) every candidate with every seed; return them sorted best mean first.

    Args:
        candidates: from :func:`top_trials`.
        seeds: training seeds (the first is the search's, so each trial's run is reused).
        make_config: (params, seed) -> the sealed run config.
        train: config -> a finished run directory (reusing a finished run of that config).
        monitor, maximize: the validation metric and its direction.
        say: progress messages.
    """
    for n, cand in enumerate(candidates, start=1):
        for seed in seeds:
            run = train(make_config(cand.params, seed))
            summary = json.loads((run / "summary.json").read_text(encoding="utf-8"))
            cand.seeds.append(seed)
            cand.runs.append(run)
            cand.values.append(float(summary[monitor]))
        say(f"candidate {n}/{len(candidates)} (trial {cand.trial}): {monitor} " + ", ".join(f"{v:.4f}" for v in cand.values) + f"; mean {cand.mean:.4f}")
    order = sorted(range(len(candidates)), key=lambda i: (-candidates[i].mean if maximize else candidates[i].mean, i))
    return [candidates[i] for i in order]


def score_winner(winner: Candidate, score: Callable[[Path], dict[str, float]]) -> dict[str, list[float]]:
    """Score the test split once per seed run of ``winner`` and record it in each run's summary.

    Args:
        winner: the chosen candidate.
        score: run directory -> metrics (``test/...`` keys are kept).

    A run scored before (a resumed ``tune`` that chose the same winner) is read, not scored again.

    Returns:
        Test metric -> one value per seed, in ``winner.seeds`` order.
    """
    test: dict[str, list[float]] = {}
    for run in winner.runs:
        path = run / "summary.json"
        summary = json.loads(path.read_text(encoding="utf-8"))
        if summary.get("test_scored_after_selection"):
            metrics = {k: float(v) for k, v in summary.items() if k.startswith(("test/", "test_full/"))}
        else:
            metrics = {k: float(v) for k, v in score(run).items() if k.startswith(("test/", "test_full/"))}
            summary.update(metrics)
            summary["test_scored_after_selection"] = True
            atomic_write_text(path, json.dumps(summary, indent=2) + "\n")
        for key, value in metrics.items():
            test.setdefault(key, []).append(value)
    return test
