"""Grouping, spreads, paired tests and warnings of a comparison, on hand-made run records."""

from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from recforge.config import from_dict
from recforge.metrics.ranking import hit_rate, ndcg
from recforge.reporting.analysis import analyze
from recforge.reporting.runs import RunRecord, label_runs

USERS = np.arange(200, dtype=np.int64)


def _run(model, seed, metrics, ranks=None, dataset="movielens-100k", **model_cfg):
    config = from_dict({"model": {"name": model, **model_cfg}, "data": {"name": dataset}, "seed": seed})
    record = RunRecord(Path(f"/runs/{model}-{seed}"), config, {f"test/{k}": v for k, v in metrics.items()},
                       [{"epoch": 1, "train/loss": 0.5, "valid/auc": 0.7}], model)
    record._ranks = ranks
    return record


def _ranked(model, seed, greater, full_greater=None):
    ties = np.zeros_like(greater)
    ranks = {"users": USERS, "greater": greater, "ties": ties}
    metrics = {"hit_rate@10": float(hit_rate(greater, ties, 10).mean()), "ndcg@10": float(ndcg(greater, ties, 10).mean())}
    run = _run(model, seed, metrics, ranks)
    if full_greater is not None:
        ranks.update(full_greater=full_greater, full_ties=ties)
        run.summary.update({"test_full/hit_rate@10": float(hit_rate(full_greater, ties, 10).mean()),
                            "test_full/ndcg@10": float(ndcg(full_greater, ties, 10).mean())})
    return run


def test_spreads_per_model_over_seeds():
    runs = [_run("gmf", s, {"auc": v}) for s, v in [(1, 0.70), (2, 0.72), (3, 0.71)]]
    c = analyze(runs)
    s = c.spreads["gmf"]["test/auc"]
    assert c.labels == ["gmf"] and s.n == 3 and s.mean == pytest.approx(0.71) and s.std == pytest.approx(0.01)
    assert c.seeds == {"gmf": [1, 2, 3]} and not c.pairs


def test_auc_type_metrics_are_paired_by_seed():
    a = {1: 0.801, 2: 0.806, 3: 0.799, 4: 0.803}
    b = {1: 0.795, 2: 0.801, 3: 0.796, 5: 0.9}  # seed 5 has no partner and is left out
    runs = [_run("deepfm", s, {"auc": v}) for s, v in a.items()] + [_run("lr", s, {"auc": v}) for s, v in b.items()]
    pair = analyze(runs).pairs[0]
    ref = stats.ttest_rel([a[1], a[2], a[3]], [b[1], b[2], b[3]])
    assert pair.seed_t.n == 3 and pair.user_t is None and pair.user_wilcoxon is None
    assert pair.seed_t.p_value == pytest.approx(ref.pvalue) and pair.seed_t.statistic == pytest.approx(ref.statistic)
    assert pair.difference == pytest.approx(np.mean(list(a.values())) - np.mean(list(b.values())))


def test_ranking_metrics_are_paired_per_user_over_seed_means():
    rng = np.random.default_rng(0)
    runs, per_user = [], {}
    for model, shift in (("neumf", 0), ("gmf", 4)):
        for seed in (1, 2):
            greater = np.clip(rng.integers(0, 30, len(USERS)) + shift, 0, 99)
            runs.append(_ranked(model, seed, greater))
            per_user.setdefault(model, []).append(hit_rate(greater, np.zeros_like(greater), 10))
    c = analyze(runs)
    pair = next(p for p in c.pairs if p.metric == "test/hit_rate@10")
    a, b = np.mean(per_user["neumf"], axis=0), np.mean(per_user["gmf"], axis=0)
    assert pair.user_t.n == len(USERS) and pair.seed_t.n == 2
    assert pair.user_wilcoxon.p_value == pytest.approx(stats.wilcoxon(a - b).pvalue)
    assert pair.user_t.p_value == pytest.approx(stats.ttest_rel(a, b).pvalue)
    assert pair.user_t.mean_difference > 0 and pair.user_wilcoxon.p_value < 0.05


def test_identical_models_are_not_significant():
    greater = np.random.default_rng(1).integers(0, 40, len(USERS))
    runs = [_ranked("gmf", s, greater) for s in (1, 2)]
    twin = [_ranked("mf", s, greater.copy()) for s in (1, 2)]
    for pair in analyze(runs + twin).pairs:
        for test in (pair.seed_t, pair.user_t, pair.user_wilcoxon):
            assert test.p_value == 1.0 and test.effect_size == 0.0


def test_warns_when_sampled_and_full_ranking_disagree():
    rng = np.random.default_rng(2)
    base = rng.integers(0, 30, len(USERS))
    runs = [_ranked("gmf", s, base, full_greater=base * 10) for s in (1, 2)]
    runs += [_ranked("mf", s, base + 3, full_greater=base * 5) for s in (1, 2)]  # worse sampled, better full
    warnings = analyze(runs).warnings
    assert any("hit_rate@10" in w and "gmf > mf" in w and "mf > gmf" in w for w in warnings)


def test_single_runs_are_flagged_and_mixed_datasets_refused():
    c = analyze([_run("gmf", 1, {"auc": 0.7}), _run("mf", 2, {"auc": 0.6})])
    assert any("single run" in w for w in c.warnings)
    assert c.pairs[0].seed_t is None  # no common seed: no test
    with pytest.raises(ValueError, match="different datasets"):
        analyze([_run("gmf", 1, {"auc": 0.7}), _run("mf", 1, {"auc": 0.6}, dataset="movielens-1m")])


def test_a_run_trained_twice_is_used_once_with_a_warning():
    c = analyze([_run("gmf", 1, {"auc": 0.7}), _run("gmf", 1, {"auc": 0.71}), _run("gmf", 2, {"auc": 0.72})])
    assert c.values["gmf"]["test/auc"] == [0.7, 0.72] and any("two finished runs" in w for w in c.warnings)


def test_non_finite_metric_names_the_run():
    with pytest.raises(ValueError, match="test/auc is not finite in gmf-2"):
        analyze([_run("gmf", 1, {"auc": 0.7}), _run("gmf", 2, {"auc": float("nan")})])


def test_labels_tell_configs_of_one_model_apart():
    runs = label_runs([_run("gmf", 1, {"auc": 0.7}, factors=8), _run("gmf", 2, {"auc": 0.7}, factors=8),
                       _run("gmf", 1, {"auc": 0.7}, factors=16)])
    assert runs[0].label == runs[1].label == "gmf (factors=8)" and runs[2].label == "gmf (factors=16)"


def test_one_bad_seed_shows_per_seed_but_not_per_user():
    """Per-user tests see the test set, not retraining: a model with one bad seed differs per user
    while the per-seed test says the difference does not survive retraining."""
    rng = np.random.default_rng(4)
    base = rng.integers(0, 30, len(USERS))
    runs = [_ranked("mlp", s, np.clip(base + 2 + rng.integers(-1, 2, len(USERS)), 0, 99)) for s in (1, 2, 3)]
    runs += [_ranked("neumf", s, np.clip(base + (0 if s < 3 else 4) + rng.integers(-1, 2, len(USERS)), 0, 99)) for s in (1, 2, 3)]
    pair = next(p for p in analyze(runs).pairs if p.metric == "test/ndcg@10")
    assert pair.user_t.p_value < 0.01 and pair.seed_t.p_value > 0.05
