"""The report of a search: trials, best validation value per trial (a plot), parameter
importances, the confirmed candidates and the winner's test metrics with their spread.

Written to ``<output-dir>/tune-<study>/``: ``tune.json`` (everything, machine-readable),
``tune.md`` (the same as Markdown tables) and ``trials.png``. Importances are Optuna's default
(fANOVA, Hutter et al., ICML 2014) over the completed trials: the share of the variance of the
validation value each parameter explains; with fewer than two completed trials, or no
variation, there are none to give and the report says why.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from recforge.data.files import atomic_write, atomic_write_text
from recforge.metrics.statistics import spread
from recforge.tuning.runner import TuneResult


def trial_rows(study: Any) -> list[dict[str, Any]]:
    """One row per trial: number, state (``FAIL`` split into interrupted / surplus / error),
    value (pruned: the last reported epoch's), params and run directory."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        state = t.state.name
        if state == "FAIL":
            attrs = t.user_attrs
            state = "FAIL (interrupted)" if attrs.get("recforge_interrupted") else "FAIL (surplus claim, never trained)" if attrs.get("recforge_surplus") else "FAIL"
        value = t.value
        if value is None and t.intermediate_values:
            value = t.intermediate_values[max(t.intermediate_values)]
        rows.append({
            "number": t.number, "state": state, "value": value,
            "epochs_reported": len(t.intermediate_values), "params": dict(t.params), "run": t.user_attrs.get("run"),
            "error": t.user_attrs.get("recforge_error"),
        })
    return rows


def importances(study: Any) -> tuple[dict[str, float], str | None]:
    """Parameter importances over the completed trials, or ({}, why none)."""
    import optuna

    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if len(complete) < 2:
        return {}, f"{len(complete)} completed trial(s); importances need at least 2"
    try:
        values = optuna.importance.get_param_importances(study)
    except (RuntimeError, ValueError, ZeroDivisionError) as exc:
        return {}, f"not computable: {exc}"
    return {k: float(v) for k, v in values.items()}, None


def summarize(result: TuneResult) -> dict[str, Any]:
    """Everything the report shows, as plain JSON-safe data."""
    rows = trial_rows(result.study)
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["state"]] = counts.get(row["state"], 0) + 1
    weights, why = importances(result.study)
    out: dict[str, Any] = {
        "study": result.study.study_name,
        "monitor": result.monitor,
        "direction": result.study.direction.name.lower(),
        "space": {p.key: p.describe() for p in result.space.params},
        "trials": counts,
        "finished": result.outcome.finished,
        "this_process": {"ran": result.outcome.ran, "failed": result.outcome.failed, "timed_out": result.outcome.timed_out, "seconds": result.seconds},
        "importances": weights,
        "importances_note": why,
        "per_trial": rows,
    }
    sel = result.selection
    if sel is not None:
        out["candidates"] = [
            {"trial": c.trial, "params": c.params, "search_value": c.search_value, "seeds": c.seeds,
             "values": c.values, "mean": c.mean, "runs": [str(r) for r in c.runs]}
            for c in sel.candidates
        ]
        out["winner"] = {"trial": sel.winner.trial, "params": sel.winner.params, "runs": [str(r) for r in sel.winner.runs]}
        out["test"] = {k: _spread(v) for k, v in sel.test.items()}
    return out


def _spread(values: list[float]) -> dict[str, Any]:
    s = spread(values)
    def finite(x: float) -> float | None:  # one seed has no spread: null, not NaN, in the JSON
        return None if math.isnan(x) else x

    return {"values": values, "mean": s.mean, "std": finite(s.std), "ci95": [finite(s.low), finite(s.high)], "min": min(values), "max": max(values)}


def _cell(x: float | None) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.4f}"


def markdown(summary: dict[str, Any]) -> str:
    """``tune.md``: trials, importances, candidates, the winner's test metrics."""
    lines = [f"# recforge tune: {summary['study']}", ""]
    lines.append(f"Searched on `{summary['monitor']}` ({summary['direction']}); the test split was not read by any trial.")
    lines.append("")
    lines.append("Trials: " + ", ".join(f"{n} {state}" for state, n in sorted(summary["trials"].items())) + f" ({summary['finished']} finished).")
    lines += ["", "| trial | state | value | params |", "|---|---|---|---|"]
    for row in summary["per_trial"]:
        params = ", ".join(f"{k}={_short(v)}" for k, v in row["params"].items())
        lines.append(f"| {row['number']} | {row['state']} | {_cell(row['value'])} | {params} |")
    lines += ["", "## Parameter importances (fANOVA)", ""]
    if summary["importances"]:
        lines += ["| parameter | importance |", "|---|---|"] + [f"| {k} | {v:.3f} |" for k, v in summary["importances"].items()]
    else:
        lines.append(f"None: {summary['importances_note']}.")
    if "candidates" in summary:
        lines += ["", "## Confirmation over seeds (chosen on mean validation)", "", f"| trial | {summary['monitor']} per seed | mean | params |", "|---|---|---|---|"]
        for n, c in enumerate(summary["candidates"]):
            mark = " **winner**" if n == 0 else ""
            params = ", ".join(f"{k}={_short(v)}" for k, v in c["params"].items() if not isinstance(v, dict))
            lines.append(f"| {c['trial']}{mark} | {', '.join(f'{v:.4f}' for v in c['values'])} | {c['mean']:.4f} | {params} |")
        lines += ["", "## The winner's test metrics (scored once per seed, after the choice)", "", "| metric | mean ± std | 95 % CI | min .. max | n |", "|---|---|---|---|---|"]
        for key, s in summary["test"].items():
            lines.append(f"| {key} | {s['mean']:.4f} ± {_cell(s['std'])} | [{_cell(s['ci95'][0])}, {_cell(s['ci95'][1])}] | {s['min']:.4f} .. {s['max']:.4f} | {len(s['values'])} |")
    return "\n".join(lines) + "\n"


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def plot_trials(summary: dict[str, Any], path: Path) -> Path | None:
    """``trials.png``: each finished trial's validation value (pruned: its last epoch's) and the
    best so far, by trial number. None when no trial has a value."""
    points = [(r["number"], r["value"], r["state"]) for r in summary["per_trial"] if r["value"] is not None and r["state"] in ("COMPLETE", "PRUNED")]
    if not points:
        return None
    import matplotlib

    matplotlib.use("Agg")  # files only, never a window
    import matplotlib.pyplot as plt

    maximize = summary["direction"] == "maximize"
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    for state, marker, color in (("COMPLETE", "o", "tab:blue"), ("PRUNED", "x", "tab:gray")):
        xs = [n for n, _, s in points if s == state]
        ys = [v for _, v, s in points if s == state]
        if xs:
            ax.scatter(xs, ys, marker=marker, color=color, label=state.lower(), zorder=3)
    best, xs, ys = None, [], []
    for n, v, s in sorted(points):
        if s == "COMPLETE" and (best is None or (v > best if maximize else v < best)):
            best = v
        if best is not None:
            xs.append(n)
            ys.append(best)
    if xs:
        ax.step(xs, ys, where="post", color="tab:orange", label="best so far")
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("trial")
    ax.set_ylabel(summary["monitor"])
    ax.set_title(f"{summary['study']}: validation value per trial")
    ax.legend(loc="best", fontsize="small")
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=110, bbox_inches="tight"))
    plt.close(fig)
    return path


def write_report(result: TuneResult, folder: str | Path) -> dict[str, Path]:
    """Write ``tune.json``, ``tune.md`` and ``trials.png`` into ``folder`` (atomically).

    Returns:
        kind -> path of each file written.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    summary = summarize(result)
    files = {"json": folder / "tune.json", "markdown": folder / "tune.md"}
    atomic_write_text(files["json"], json.dumps(summary, indent=2, default=str) + "\n")
    atomic_write_text(files["markdown"], markdown(summary))
    plot = plot_trials(summary, folder / "trials.png")
    if plot is not None:
        files["plot"] = plot
    return files
