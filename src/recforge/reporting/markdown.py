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
    t, w = pair.t_test, pair.wilcoxon
    diff = "n/a" if t is None else f"{t.mean_difference:+.4f}"
    effect = "n/a" if t is None else f"{t.effect_size:+.3f}"
    units = f"{t.n} {pair.unit}" if t is not None else f"< 2 common {pair.unit}"
    return [pair.metric, pair.a, pair.b, diff, units, format_p(t.p_value if t else None),
            format_p(w.p_value) if w else "—", effect]


MULTI_TASK_NOTE = ("Multi-task runs: `test/<task>/...` are per task; `test/auc` and `test/log_loss` without a task "
                   "are the means over the tasks (the quantity early stopping monitors).")

PAIR_HEADER = ["metric", "A", "B", "A − B", "paired over", "p (paired t)", "p (Wilcoxon)", "effect d_z"]


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
                  "Differences A − B. Ranking metrics are paired per user (each user's metric averaged over seeds); "
                  "other metrics per seed. Effect size d_z = mean / sd of the paired differences. "
                  "p-values are not corrected for multiple comparisons.", "",
                  _table(PAIR_HEADER, [pair_cells(p) for p in comparison.pairs]), ""]
    if comparison.warnings:
        parts += ["## Warnings", ""] + [f"- {w}" for w in comparison.warnings] + [""]
    for caption, path in (images or {}).items():
        parts += [f"## {caption}", "", f"![{caption}]({path})", ""]
    return "\n".join(parts)
