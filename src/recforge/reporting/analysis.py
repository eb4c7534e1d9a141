"""Spread and pairwise significance of the test metrics of groups of runs.

* Per model (a group of runs that differ only by seed): mean, sample std and 95 % Student-t
  confidence interval of each test metric over seeds.
* Per pair of models and metric, paired tests of A - B:

  - every metric is paired **per seed** (runs of A and B with the same training seed), with the
    paired t-test over the common seeds: does the difference survive retraining?
  - ranking metrics (HR@K, NDCG@K, MRR, sampled or full-catalogue) are also paired **per user**:
    each user's metric is averaged over a model's seeds (the test users and sampled candidates
    are the same for every run), then the paired t-test and the Wilcoxon signed-rank test run
    over the users: does the difference hold across the test users? This one is blind to
    seed-to-seed variance, so both are shown.

  The effect size is Cohen's d_z = mean(A - B) / sd(A - B) over the paired units. p-values are
  not corrected for the number of pairs and metrics: with many rows, expect some p < 0.05 by
  chance.
* A warning when sampled and full-catalogue ranking order the models differently (sampled
  metrics can be inconsistent with the full ranking: Krichene & Rendle, KDD 2020).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from itertools import combinations

import numpy as np

from recforge.metrics.ranking import hit_rate, ndcg, reciprocal_rank
from recforge.metrics.statistics import PairedTest, Spread, paired_t_test, spread, wilcoxon_test
from recforge.reporting.runs import RunRecord

_RANKING = re.compile(r"^(test|test_full)/(hit_rate@(\d+)|ndcg@(\d+)|mrr)$")
LOWER_IS_BETTER = ("log_loss", "loss")


@dataclass(frozen=True)
class PairResult:
    """Paired comparison of models ``a`` and ``b`` on one metric (differences are a - b).

    Attributes:
        difference: mean of a's runs minus mean of b's runs.
        seed_t: paired t-test over the seeds both models ran (None with fewer than two): how
            reliably training with another seed reproduces the difference.
        user_t, user_wilcoxon: for ranking metrics, the paired t-test and Wilcoxon signed-rank
            test over test users (each user's metric averaged over a model's seeds): whether the
            difference holds across this test set's users. It does not see seed-to-seed
            variance, so a model with one bad seed can still differ "significantly" per user; read
            it together with ``seed_t``.
    """

    metric: str
    a: str
    b: str
    difference: float
    seed_t: PairedTest | None
    user_t: PairedTest | None = None
    user_wilcoxon: PairedTest | None = None


@dataclass
class Comparison:
    """Everything a report shows about groups of runs."""

    dataset: str
    labels: list[str]
    metrics: list[str]
    seeds: dict[str, list[int]]
    values: dict[str, dict[str, list[float]]]
    spreads: dict[str, dict[str, Spread]]
    pairs: list[PairResult]
    warnings: list[str] = field(default_factory=list)
    runs: dict[str, list[RunRecord]] = field(default_factory=dict)

    def better(self, metric: str) -> str:
        """``lower`` for losses, else ``higher``."""
        return "lower" if metric.rsplit("/", 1)[-1] in LOWER_IS_BETTER else "higher"


def _metric_order(key: str) -> tuple:
    match = _RANKING.match(key)
    if match:
        kind = match.group(2)
        order = 0 if kind.startswith("hit_rate") else 1 if kind.startswith("ndcg") else 2
        k = int(match.group(3) or match.group(4) or 0)
        return (0 if match.group(1) == "test" else 1, order, k, key)
    return (2, key.count("/"), key)


def per_user_values(run: RunRecord, metric: str) -> tuple[np.ndarray, np.ndarray] | None:
    """(users int64 [U], per-user metric float64 [U]) of a ranking metric, or None when the run
    has no per-user ranks for it."""
    match = _RANKING.match(metric)
    ranks = run.ranks() if match else None
    if match is None or ranks is None:
        return None
    prefix = "" if match.group(1) == "test" else "full_"
    if f"{prefix}greater" not in ranks:
        return None
    greater, ties = ranks[f"{prefix}greater"], ranks[f"{prefix}ties"]
    kind = match.group(2)
    if kind == "mrr":
        values = reciprocal_rank(greater, ties)
    elif kind.startswith("hit_rate"):
        values = hit_rate(greater, ties, int(match.group(3)))
    else:
        values = ndcg(greater, ties, int(match.group(4)))
    return ranks["users"], values


def _user_means(runs: list[RunRecord], metric: str) -> tuple[np.ndarray, np.ndarray] | None:
    parts = [per_user_values(r, metric) for r in runs]
    if not parts or any(p is None for p in parts):
        return None
    users = parts[0][0]  # type: ignore[index]
    if any(not np.array_equal(p[0], users) for p in parts):  # type: ignore[index]
        return None
    return users, np.mean([p[1] for p in parts], axis=0)  # type: ignore[index]


def analyze(runs: list[RunRecord], level: float = 0.95) -> Comparison:
    """Group runs by label and compute spreads, pairwise tests and warnings.

    Args:
        runs: finished runs, labelled (see :func:`recforge.reporting.runs.label_runs`).
        level: confidence level of the intervals.

    Raises:
        ValueError: if ``runs`` is empty, comes from more than one dataset, shares no numeric test
            metric, or holds a non-finite metric value (the run is named).
    """
    if not runs:
        raise ValueError("no runs to analyse")
    datasets = sorted({r.config.data.name for r in runs})
    if len(datasets) > 1:
        raise ValueError(f"the runs come from different datasets ({', '.join(datasets)}); report each dataset on its own")
    warnings: list[str] = []
    groups: dict[str, list[RunRecord]] = {}
    for run in runs:
        members = groups.setdefault(run.label, [])
        twin = next((m for m in members if m.seed == run.seed), None)
        if twin is not None:  # the same config and seed trained twice: the same numbers up to nondeterminism
            warnings.append(f"{run.label}, seed {run.seed}: two finished runs ({twin.path.name}, {run.path.name}); the first is used")
            continue
        members.append(run)
    for members in groups.values():
        members.sort(key=lambda r: r.seed)
    labels = list(groups)
    data_configs = {repr(members[0].config.data) for members in groups.values()}
    if len(data_configs) > 1:
        warnings.append("the models ran on different data settings (data.split_seed, schema or tasks differ): their "
                        "test users or rows are not the same, so paired tests compare different things")
    kept = [r for members in groups.values() for r in members]
    common = set.intersection(*(set(r.test_metrics()) for r in kept))
    if not common:
        raise ValueError("the runs share no numeric test metric (summary.json files without test/... values?)")
    partial = set.union(*(set(r.test_metrics()) for r in kept)) - common
    if partial:
        warnings.append(f"left out, not a number in every run: {', '.join(sorted(partial))}")
    metrics = sorted(common, key=_metric_order)
    values = {lab: {m: [r.test_metrics()[m] for r in groups[lab]] for m in metrics} for lab in labels}
    for lab in labels:
        for m in metrics:
            bad = [r.path.name for r, v in zip(groups[lab], values[lab][m]) if not np.isfinite(v)]
            if bad:
                raise ValueError(f"{lab}: {m} is not finite in {', '.join(bad)} (a diverged run?); leave it out or train it again")
    spreads = {lab: {m: spread(values[lab][m], level) for m in metrics} for lab in labels}
    pairs: list[PairResult] = []
    for a, b in combinations(labels, 2):
        for metric in metrics:
            pairs.append(_pair(metric, a, b, groups[a], groups[b]))
    warnings += _protocol_warnings(labels, metrics, spreads)
    counts = {lab: len(groups[lab]) for lab in labels}
    if len(set(counts.values())) > 1:
        warnings.append("models have different numbers of seeds: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    if min(counts.values()) < 2:
        warnings.append("a model has a single run: no spread or confidence interval for it; train more seeds")
    return Comparison(
        dataset=", ".join(datasets), labels=labels, metrics=metrics,
        seeds={lab: [r.seed for r in groups[lab]] for lab in labels},
        values=values, spreads=spreads, pairs=pairs, warnings=warnings, runs=groups,
    )


def _pair(metric: str, a: str, b: str, runs_a: list[RunRecord], runs_b: list[RunRecord]) -> PairResult:
    by_seed_a = {r.seed: r.test_metrics()[metric] for r in runs_a}
    by_seed_b = {r.seed: r.test_metrics()[metric] for r in runs_b}
    difference = float(np.mean(list(by_seed_a.values())) - np.mean(list(by_seed_b.values())))
    seeds = sorted(set(by_seed_a) & set(by_seed_b))
    seed_t = paired_t_test([by_seed_a[s] for s in seeds], [by_seed_b[s] for s in seeds]) if len(seeds) >= 2 else None
    users_a, users_b = _user_means(runs_a, metric), _user_means(runs_b, metric)
    if users_a is not None and users_b is not None and np.array_equal(users_a[0], users_b[0]) and len(users_a[0]) >= 2:
        return PairResult(metric, a, b, difference, seed_t, paired_t_test(users_a[1], users_b[1]), wilcoxon_test(users_a[1], users_b[1]))
    return PairResult(metric, a, b, difference, seed_t)


def _protocol_warnings(labels: list[str], metrics: list[str], spreads: dict[str, dict[str, Spread]]) -> list[str]:
    out = []
    if len(labels) < 2:
        return out
    for metric in metrics:
        if not metric.startswith("test/") or f"test_full/{metric[5:]}" not in metrics:
            continue
        full = f"test_full/{metric[5:]}"
        sampled_order = sorted(labels, key=lambda lab: -spreads[lab][metric].mean)
        full_order = sorted(labels, key=lambda lab: -spreads[lab][full].mean)
        if sampled_order != full_order:
            out.append(
                f"{metric[5:]}: sampled ranking orders the models {' > '.join(sampled_order)}, full-catalogue ranking "
                f"orders them {' > '.join(full_order)} (sampled metrics can disagree with the full ranking: "
                "Krichene & Rendle, KDD 2020)"
            )
    return out
