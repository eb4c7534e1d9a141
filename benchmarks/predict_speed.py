"""``recforge predict`` end to end on a generated Criteo-format file: rows/s and peak memory.

Issue 14's target: >= 200 k rows/s end to end (read, encode, score, write) over 1 M rows on a
2-core machine, with the peak resident memory bounded by the chunk size, not the file size.

Steps:

1. a DeepFM run: ``--run RUN`` or, by default, DeepFM trained 1 epoch on ``criteo-head-10k``
   (``--data-dir``), with the paper's settings (MLP 400-400-400: about 0.48 M multiply-adds a
   row, which alone bounds the rate on 2 cores; ``--hidden-units`` trains a smaller one);
2. ``--rows`` rows of :func:`recforge.data.criteo.generate_criteo` (seed 1, not the training
   rows), written as a TSV with a header line naming the Criteo columns (``label``, ``I1`` ..
   ``I13``, ``C1`` .. ``C26``): ``predict`` matches columns by name (not timed);
3. ``recforge predict RUN --input rows.tsv --output scores.csv --batch-rows N`` in a child
   process, timed from start to exit (``wall``: Python start-up and model loading included) and
   by the command itself (``predict``: its own rows/s line, reading to the renamed output);
   peak RSS of the child from ``resource.getrusage(RUSAGE_CHILDREN)``.

Run (the lead's measurement, on a quiet machine):
    .venv/bin/python benchmarks/predict_speed.py --data-dir ../shared/data --rows 1000000
Quick check of the script itself:
    .venv/bin/python benchmarks/predict_speed.py --data-dir ../shared/data --rows 20000
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_ROWS_PER_S = 200_000


def criteo_header() -> str:
    from recforge.data.criteo import CRITEO_COLUMNS

    return "\t".join(CRITEO_COLUMNS) + "\n"


def write_rows(path: Path, rows: int, seed: int) -> None:
    """A generated Criteo-format file with a header line (streamed: no whole file in memory)."""
    from recforge.data.criteo import generate_criteo

    raw = path.with_suffix(".raw")
    generate_criteo(raw, rows, seed=seed)
    with open(path, "wb") as out, open(raw, "rb") as src:
        out.write(criteo_header().encode())
        shutil.copyfileobj(src, out, 1 << 20)
    raw.unlink()


def trained_run(data_dir: str | None, output_dir: Path, hidden_units: list[int] | None) -> Path:
    import recforge

    extra = {} if hidden_units is None else {"hidden_units": hidden_units}
    return recforge.train("deepfm", dataset="criteo-head-10k", epochs=1, data_dir=data_dir, output_dir=output_dir, **extra).path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows to score")
    parser.add_argument("--batch-rows", type=int, default=100_000, help="predict's --batch-rows")
    parser.add_argument("--run", type=Path, help="a DeepFM run directory (default: train one on criteo-head-10k)")
    parser.add_argument("--data-dir", help="data directory holding criteo-head-10k")
    parser.add_argument("--output", choices=("csv", "parquet"), default="csv", help="output format")
    parser.add_argument("--threads", type=int, help="predict's --threads (default: recforge's choice)")
    parser.add_argument("--hidden-units", help="DeepFM MLP widths of the trained run, e.g. 200,200 (default: the paper's 400,400,400)")
    args = parser.parse_args(argv)
    if args.rows < 1:
        parser.error("--rows must be >= 1")
    with tempfile.TemporaryDirectory(prefix="predict-speed-") as tmp:
        folder = Path(tmp)
        hidden = [int(w) for w in args.hidden_units.split(",")] if args.hidden_units else None
        run = args.run or trained_run(args.data_dir, folder / "runs", hidden)
        rows_file = folder / "rows.tsv"
        write_rows(rows_file, args.rows, seed=1)
        output = folder / f"scores.{args.output}"
        command = [sys.executable, "-m", "recforge.cli.app", "predict", str(run), "--input", str(rows_file),
                   "--output", str(output), "--batch-rows", str(args.batch_rows)]
        if args.threads:
            command += ["--threads", str(args.threads)]
        started = time.perf_counter()
        result = subprocess.run(command, capture_output=True, text=True)
        wall = time.perf_counter() - started
        if result.returncode != 0:
            print(result.stderr, file=sys.stderr)
            return result.returncode
        peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KiB on Linux
        found = re.search(r"in ([\d.]+) s \(([\d,]+) rows/s\)", " ".join(result.stderr.split()))
        own_s = float(found.group(1)) if found else float("nan")
        input_mib = rows_file.stat().st_size / 2**20
        output_mib = output.stat().st_size / 2**20
    rate = args.rows / own_s
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    print(f"run: {run}")
    print(f"rows: {args.rows:,} ({input_mib:,.1f} MiB TSV in, {output_mib:,.1f} MiB {args.output} out), --batch-rows {args.batch_rows:,}")
    print(f"predict (read, encode, score, write): {own_s:.2f} s, {rate:,.0f} rows/s (target >= {TARGET_ROWS_PER_S:,})")
    print(f"wall incl. start-up and model load: {wall:.2f} s, {args.rows / wall:,.0f} rows/s")
    print(f"peak RSS of predict: {peak_kib / 1024:,.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
