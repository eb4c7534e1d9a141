"""A comparison as one self-contained HTML page: tables, warnings and the plots embedded as
base64 PNG data, no external files, scripts or network requests."""

from __future__ import annotations

import base64
import html
from datetime import datetime, timezone
from pathlib import Path

from recforge.reporting.analysis import Comparison
from recforge.reporting.markdown import MULTI_TASK_NOTE, PAIR_HEADER, PAIR_NOTE, metric_rows, pair_cells

_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto; max-width: 1200px;
       padding: 0 1rem; color: #1b1f24; }
h1 { font-size: 1.5rem; } h2 { font-size: 1.15rem; margin-top: 2rem; }
table { border-collapse: collapse; margin: 0.5rem 0 1rem; font-size: 0.85rem; }
th, td { border: 1px solid #d0d7de; padding: 0.3rem 0.6rem; text-align: left; }
th { background: #f6f8fa; } tr:nth-child(even) td { background: #fbfcfd; }
td.best { font-weight: 600; } .warn { background: #fff8c5; border: 1px solid #d4a72c; padding: 0.5rem 1rem; }
img { max-width: 100%; border: 1px solid #eaeef2; } code, pre { background: #f6f8fa; padding: 0.2rem 0.4rem; }
pre { white-space: pre-wrap; overflow-wrap: anywhere; }
.note { color: #57606a; font-size: 0.85rem; }
"""


def _table(header: list[str], rows: list[list[str]], table_id: str) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = []
    for row in rows:
        cells = []
        for cell in row:
            best = cell.startswith("**") and cell.endswith("**")
            text = html.escape(cell.strip("*") if best else cell)
            cells.append(f'<td class="best">{text}</td>' if best else f"<td>{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f'<table id="{table_id}"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def comparison_html(comparison: Comparison, images: dict[str, Path] | None = None, command: str | None = None) -> str:
    """The report page.

    Args:
        comparison: from :func:`recforge.reporting.analysis.analyze`.
        images: caption -> PNG file, embedded as data URIs.
        command: the command that produced the runs.
    """
    title = f"recforge comparison on {comparison.dataset}"
    parts = [f"<h1>{html.escape(title)}</h1>",
             f'<p class="note">Generated {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC. Seeds: '
             + html.escape("; ".join(f"{lab}: {', '.join(map(str, comparison.seeds[lab]))}" for lab in comparison.labels))
             + ".</p>"]
    if command:
        parts.append(f"<pre><code>{html.escape(command)}</code></pre>")
    parts += ["<h2>Test metrics</h2>",
              '<p class="note">Mean ± sample std over seeds [95 % Student-t confidence interval of the mean]; '
              "best mean in bold (lower is better for log_loss).</p>",
              _table(*metric_rows(comparison), table_id="metrics")]
    if any(m.count("/") > 1 for m in comparison.metrics):
        parts.append(f'<p class="note">{html.escape(MULTI_TASK_NOTE.replace("`", ""))}</p>')
    if comparison.pairs:
        parts += ["<h2>Pairwise tests</h2>",
                  f'<p class="note">{html.escape(PAIR_NOTE)}</p>',
                  _table(PAIR_HEADER, [pair_cells(p) for p in comparison.pairs], table_id="pairs")]
    if comparison.warnings:
        parts.append('<h2>Warnings</h2><div class="warn"><ul>'
                     + "".join(f"<li>{html.escape(w)}</li>" for w in comparison.warnings) + "</ul></div>")
    for caption, path in (images or {}).items():
        data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
        parts.append(f'<h2>{html.escape(caption)}</h2><img alt="{html.escape(caption)}" src="data:image/png;base64,{data}">')
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{_STYLE}</style></head><body>\n" + "\n".join(parts) + "\n</body></html>\n")
