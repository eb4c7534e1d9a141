"""Write a comparison's report files: ``report.md``, ``curves.png``, ``metrics.png``,
``report.html`` (self-contained) and ``comparison.json`` (the numbers, for other tools)."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

from recforge.data.files import atomic_write_text
from recforge.reporting.analysis import Comparison
from recforge.reporting.html import comparison_html
from recforge.reporting.markdown import comparison_markdown
from recforge.reporting.plots import plot_curves, plot_metrics


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def comparison_dict(comparison: Comparison) -> dict[str, Any]:
    """The comparison's numbers as plain JSON-safe data (non-finite values become null)."""
    return _json_safe({
        "dataset": comparison.dataset,
        "models": comparison.labels,
        "seeds": comparison.seeds,
        "metrics": comparison.metrics,
        "values": comparison.values,
        "spreads": {lab: {m: dataclasses.asdict(s) for m, s in per.items()} for lab, per in comparison.spreads.items()},
        "pairs": [
            {"metric": p.metric, "a": p.a, "b": p.b, "difference": p.difference,
             **{name: dataclasses.asdict(test) if test else None
                for name, test in (("seed_t", p.seed_t), ("user_t", p.user_t), ("user_wilcoxon", p.user_wilcoxon))}}
            for p in comparison.pairs
        ],
        "warnings": comparison.warnings,
        "runs": {lab: [str(r.path) for r in runs] for lab, runs in comparison.runs.items()},
    })


def write_report(comparison: Comparison, output_dir: str | Path, command: str | None = None) -> dict[str, Path]:
    """Write the report files into ``output_dir`` (created; files replaced atomically).

    Returns:
        kind -> path: ``markdown``, ``html``, ``json``, ``metrics_png`` and ``curves_png`` (when
        the runs recorded epochs).
    """
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    images: dict[str, Path] = {}
    curves = plot_curves(comparison, out / "curves.png")
    if curves is not None:
        files["curves_png"] = images["Training curves"] = curves
    files["metrics_png"] = images["Test metrics"] = plot_metrics(comparison, out / "metrics.png")
    files["markdown"] = out / "report.md"
    atomic_write_text(files["markdown"], comparison_markdown(comparison, {k: v.name for k, v in images.items()}, command))
    files["html"] = out / "report.html"
    atomic_write_text(files["html"], comparison_html(comparison, images, command))
    files["json"] = out / "comparison.json"
    atomic_write_text(files["json"], json.dumps(comparison_dict(comparison), indent=2) + "\n")
    return files
