"""Report plots (matplotlib, Agg backend, PNG): training curves and test metrics with intervals."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from recforge.data.files import atomic_write
from recforge.reporting.analysis import Comparison


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, never a window
    import matplotlib.pyplot as plt

    return plt



def _save(fig, path: Path) -> None:
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=110, bbox_inches="tight"))


def curve_keys(comparison: Comparison, limit: int = 3) -> list[str]:
    """Per-epoch series to plot: ``train/loss`` and the first validation metrics recorded."""
    keys: list[str] = []
    for runs in comparison.runs.values():
        for run in runs:
            for record in run.history:
                for k, v in record.items():
                    if (k == "train/loss" or k.startswith("valid/")) and isinstance(v, (int, float)) and k not in keys:
                        keys.append(k)
    # Training loss first, then validation metrics in the order the trainer logs them
    # (HR, NDCG, MRR or AUC, LogLoss), overall ones before per-task ones.
    keys.sort(key=lambda k: (k != "train/loss", k.count("/")))
    return keys[:limit]


def plot_curves(comparison: Comparison, path: str | Path) -> Path | None:
    """Training loss and validation metrics per epoch: mean over seeds, band = min..max.

    Returns the file written, or None when no run recorded epochs.
    """
    keys = curve_keys(comparison)
    if not keys:
        return None
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(1, len(keys), figsize=(4.6 * len(keys), 3.4), squeeze=False)
    for ax, key in zip(axes[0], keys):
        for label, runs in comparison.runs.items():
            by_epoch: dict[int, list[float]] = {}
            for run in runs:
                for record in run.history:
                    value = record.get(key)
                    if isinstance(value, (int, float)) and math.isfinite(value) and isinstance(record.get("epoch"), int):
                        by_epoch.setdefault(int(record["epoch"]), []).append(float(value))
            if not by_epoch:
                continue
            epochs = sorted(by_epoch)
            mean = np.array([np.mean(by_epoch[e]) for e in epochs])
            line, = ax.plot(epochs, mean, marker="o", markersize=3, label=label)
            ax.fill_between(epochs, [min(by_epoch[e]) for e in epochs], [max(by_epoch[e]) for e in epochs],
                            color=line.get_color(), alpha=0.15, linewidth=0)
        ax.set_title(key, fontsize=10)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
        if len(ax.get_lines()) and max(len(line.get_xdata()) for line in ax.get_lines()) == 1:
            ax.set_xticks(sorted({int(x) for line in ax.get_lines() for x in line.get_xdata()}))
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.suptitle(f"Training curves ({comparison.dataset}; mean over seeds, band = min-max)", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.93))
    path = Path(path)
    _save(fig, path)
    plt.close(fig)
    return path


def plot_metrics(comparison: Comparison, path: str | Path, limit: int = 6) -> Path:
    """Bar chart of test metrics per model: mean over seeds with the 95 % confidence interval."""
    plt = _pyplot()
    metrics = comparison.metrics[:limit]
    cols = min(3, len(metrics))
    rows = -(-len(metrics) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(max(4.0 * cols, 4.5), 3.3 * rows), squeeze=False)
    for ax in axes.flat[len(metrics):]:
        ax.set_visible(False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, metric in zip(axes.flat, metrics):
        spreads = [comparison.spreads[lab][metric] for lab in comparison.labels]
        means = np.array([s.mean for s in spreads])
        errors = np.array([0.0 if math.isnan(s.half_width) else s.half_width for s in spreads])
        x = np.arange(len(spreads))
        ax.bar(x, means, yerr=errors, capsize=4, color=[colors[i % len(colors)] for i in x])
        low, high = float((means - errors).min()), float((means + errors).max())
        pad = max((high - low) * 0.6, abs(high) * 0.01, 1e-6)
        ax.set_ylim(low - pad, high + pad)  # zoomed: differences between models are small
        ax.set_xticks(x, comparison.labels, rotation=30, ha="right", fontsize=8)
        ax.set_title(metric, fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(f"Test metrics ({comparison.dataset}; mean over seeds, error bar = 95 % CI; axes zoomed)", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.94 if rows > 1 else 0.90))
    path = Path(path)
    _save(fig, path)
    plt.close(fig)
    return path
