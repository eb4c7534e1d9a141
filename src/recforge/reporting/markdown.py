"""A comparison as Markdown: the metric table (mean ± std, 95 % CI) and the pairwise tests."""

from __future__ import annotations

import math

from recforge.metrics.statistics import Spread
from recforge.reporting.analysis import Comparison, PairResult


def format_spread(s: Spread, digits: int = 4) -> str:
    """``mean ± std [low, high]`` (``mean`` alone for a single run)."""
    if s.n < 2 or math.isnan(s.std):
        return f"{s.mean:.{digits}f}"
    return f"{s.mean:.{digits}f} ± {s.std:.{digits}f} [{s.low:.{digits}f}, {s.high:.{digits}f}]"


def format_p(p: float | None) -> str:
    """A p-value for a table: ``< 1e-4`` below that, three significant digits otherwise."""
    if p is None or math.isnan(p):
        return "n/a"
    return "< 1e-4" if p < 1e-4 else f"{p:.3g}"


def pair_cells(pair: PairResult) -> list[str]:
    """The cells of one row of the pairwise table (see :data:`PAIR_HEADER`)."""
    seed, user_t, user_w = pair.seed_t, pair.user_t, pair.user_wilcoxon
    return [
        pair.metric, pair.a, pair.b, f"{pair.difference:+.4f}",
        format_p(seed.p_value) + f" ({seed.n})" if seed else "n/a (< 2 common seeds)",
        f"{seed.effect_size:+.2f}" if seed else "—",
        format_p(user_t.p_value) if user_t else "—",
        format_p(user_w.p_value) if user_w else "—",
        f"{user_t.effect_size:+.3f}" if user_t else "—",
    ]


PAIR_HEADER = ["metric", "A", "B", "A − B", "p per seed (t, n)", "d_z per seed", "p per user (t)", "p per user (Wilcoxon)", "d_z per user"]

PAIR_NOTE = ("Differences A − B of the means. Per seed: paired t-test over the seeds both models ran (does the "
             "difference survive retraining?). Per user, ranking metrics only: each user's metric averaged over a "
             "model's seeds, paired t-test and Wilcoxon signed-rank test over the test users (does it hold across "
             "users?); blind to seed-to-seed variance, so read both. Effect size d_z = mean / sd of the paired "
             "differences. p-values are not corrected for multiple comparisons.")

MULTI_TASK_NOTE = ("Multi-task runs: `test/<task>/...` are per task; `test/auc` and `test/log_loss` without a task "
                   "are the means over the tasks (the quantity early stopping monitors).")


def metric_rows(comparison: Comparison) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the metric table: one row per metric, one column per model."""
    header = ["metric", *(f"{lab} (n={len(comparison.seeds[lab])})" for lab in comparison.labels)]
    rows = []
    for metric in comparison.metrics:
        cells = [format_spread(comparison.spreads[lab][metric]) for lab in comparison.labels]
        means = [comparison.spreads[lab][metric].mean for lab in comparison.labels]
        best = (min if comparison.better(metric) == "lower" else max)(means)
        cells = [f"**{c}**" if m == best and len(means) > 1 else c for c, m in zip(cells, means)]
        rows.append([metric, *cells])
    return header, rows


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def comparison_markdown(comparison: Comparison, images: dict[str, str] | None = None, command: str | None = None) -> str:
    """The whole report as Markdown.

    Args:
        comparison: from :func:`recforge.reporting.analysis.analyze`.
        images: caption -> relative path of PNG files to embed.
        command: the command that produced the runs, shown at the top.
    """
    seeds = "; ".join(f"{lab}: {', '.join(map(str, comparison.seeds[lab]))}" for lab in comparison.labels)
    parts = [f"# Comparison on {comparison.dataset}", ""]
    if command:
        parts += ["```bash", command, "```", ""]
    parts += [f"Seeds — {seeds}.", "",
              "## Test metrics", "",
              "Mean ± sample std over seeds [95 % Student-t confidence interval of the mean]; best mean in bold "
              "(lower is better for log_loss).", "",
              _table(*metric_rows(comparison)), ""]
    if any(m.count("/") > 1 for m in comparison.metrics):
        parts += [MULTI_TASK_NOTE, ""]
    if comparison.pairs:
        parts += ["## Pairwise tests", "",
                  PAIR_NOTE, "",
                  _table(PAIR_HEADER, [pair_cells(p) for p in comparison.pairs]), ""]
    if comparison.warnings:
        parts += ["## Warnings", ""] + [f"- {w}" for w in comparison.warnings] + [""]
    for caption, path in (images or {}).items():
        parts += [f"## {caption}", "", f"![{caption}]({path})", ""]
    return "\n".join(parts)
