"""Out-of-core CTR training: peak memory on a Kaggle-sized file, and the block shuffle's AUC cost.

Two measurements (issue 16, item 3), each on a generated Criteo-format file
(:func:`recforge.data.criteo.generate_criteo`) prepared as ``recforge data prepare`` does
(:func:`recforge.data.criteo.encode_criteo_file`, min_count 10) in ``--work-dir``:

* ``memory`` (``--rows``, default 45,000,000, the Kaggle size): DeepFM (paper settings) trains one
  epoch with ``train.shuffle: block`` from the memory-mapped folder through the same path as
  ``recforge train deepfm --dataset criteo --set data.encoded=DIR`` (run files, checkpoints, the
  validation and test scores). The training runs in a child process that reports its own peak
  resident memory (``resource.getrusage``: ``ru_maxrss``, which counts every page the process
  ever held, file-backed ones included) and the training samples/s. The target is <= 4 GiB.
* ``auc`` (``--auc-rows``, default 2,000,000): the same DeepFM, seed and epochs trained twice on
  one file, ``train.shuffle: full`` (a new full permutation every epoch) and ``block``; the test
  AUCs should agree within 0.002. The generated rows are i.i.d. (no drift), the favourable case
  for the block shuffle; ``--sorted`` adds the worst case, a third run (block) on a copy whose
  training rows are sorted by label, so every 64 Ki-row block holds one class.

One JSON line per run goes to stdout (and ``--output FILE``). Disk space is checked before
generating (about 250 bytes of text and 165 bytes of columns per row: 45 M rows need ~18 GiB).
The generated files are deleted at the end unless ``--keep``; with ``--keep`` a later call reuses
them.

Usage:
    python benchmarks/out_of_core.py --quick                  # 200,000 rows, scaled-down blocks, minutes
    python benchmarks/out_of_core.py                          # 45 M rows (memory) + 2 M rows (auc)
    python benchmarks/out_of_core.py --part auc --auc-rows 2000000 --sorted --seeds 3

Measured: nothing recorded yet; figures come from a quiet machine (see the README's
"Out-of-core data" section).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TEXT_BYTES_PER_ROW = 250  # generated Criteo text: 10.4 GiB for 45 M rows
COLUMN_BYTES_PER_ROW = 165  # 26 int32 ids + 13 float32 + 1 float32 label, plus headers
QUICK_ROWS = 200_000
QUICK_BLOCK_ROWS, QUICK_BUFFER_ROWS = 4096, 32_768  # a 160 k-row split spans 5 buffers of 8 blocks


def machine() -> dict:
    import numpy as np
    import torch

    return {
        "python": platform.python_version(), "numpy": np.__version__, "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "load_average_1min": os.getloadavg()[0],
    }


def peak_rss_bytes() -> int:
    """This process's peak resident set: Linux ``VmHWM``, else ``ru_maxrss`` (KiB on Linux,
    bytes on macOS). On Linux ``ru_maxrss`` survives ``exec``, so a training child started by
    the process that encoded the file would report the encoder's peak; ``VmHWM`` is its own."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def prepared(work: Path, rows: int, seed: int, min_count: int, output: Path | None = None) -> Path:
    """A generated, encoded folder of ``rows`` rows in ``work`` (reused if a complete one is there)."""
    from recforge.data.criteo import criteo_schema, encode_criteo_file, generate_criteo

    folder = work / f"encoded-{rows}-seed{seed}-min{min_count}"
    if (folder / "meta.json").is_file():
        return folder
    need = rows * (TEXT_BYTES_PER_ROW + COLUMN_BYTES_PER_ROW)
    free = shutil.disk_usage(work).free
    if need > free * 0.9:
        raise SystemExit(f"error: {rows:,} rows need about {need / 2**30:.1f} GiB in {work}, {free / 2**30:.1f} GiB free; pass --work-dir on a larger disk")
    text = work / f"generated-{rows}-seed{seed}.tsv"
    started = time.perf_counter()
    if not text.is_file():
        generate_criteo(text, rows, seed=seed)
    generated = time.perf_counter()
    summary = encode_criteo_file(text, folder, criteo_schema(min_count=min_count), seed=seed)
    text.unlink()  # the columns are what training reads; the text is half the disk
    emit({"step": "prepare", "rows": rows, "generate_s": generated - started, "encode_s": time.perf_counter() - generated,
          "split_rows": summary.split_rows, "folder": str(folder)}, output)
    return folder


def label_sorted_copy(folder: Path) -> Path:
    """``folder`` with its training rows sorted by label (validation and test linked unchanged)."""
    import numpy as np

    out = folder.with_name(folder.name + "-label-sorted")
    if (out / "meta.json").is_file():
        return out
    out.mkdir(exist_ok=True)
    labels = np.load(folder / "train.labels.npy", mmap_mode="r")
    order = np.argsort(labels[:, 0], kind="stable")
    for name in ("sparse", "dense", "labels"):
        np.save(out / f"train.{name}.npy", np.load(folder / f"train.{name}.npy", mmap_mode="r")[order])
    for path in folder.iterdir():
        if not path.name.startswith("train.") and not (out / path.name).exists():
            (out / path.name).symlink_to(path.resolve())
    return out


def train_child(args: argparse.Namespace) -> None:
    """One training run in this (child) process; prints its JSON record."""
    import torch

    from recforge.api import run_training, train_config
    from recforge.data import mapped_columns
    from recforge.training import pointwise

    if args.block_rows or args.buffer_rows:  # --quick: blocks small enough for a small split to span several buffers
        sizes = {"block_rows": args.block_rows or mapped_columns.BLOCK_ROWS, "buffer_rows": args.buffer_rows or mapped_columns.BUFFER_ROWS}
        pointwise.split_columns = lambda columns, shuffle="auto": mapped_columns.split_columns(columns, shuffle, **sizes)
    torch.set_num_threads(args.threads or torch.get_num_threads())
    started_rss = peak_rss_bytes()
    config = train_config(
        "deepfm", {}, {"data.name": "criteo", "data.encoded": str(args.folder), "train.epochs": args.epochs,
                       "train.batch_size": args.batch_size, "train.shuffle": args.shuffle, "seed": args.seed},
    )
    started = time.perf_counter()
    result = run_training(config, output_dir=args.runs)
    s = result.summary
    emit({
        "step": "train", "folder": str(args.folder), "shuffle": args.shuffle, "seed": args.seed, "epochs": args.epochs,
        "batch_size": args.batch_size, "rows": s["rows"], "test/auc": s.get("test/auc"), "test/log_loss": s.get("test/log_loss"),
        "valid/auc": s.get("valid/auc"), "train_samples_per_s": s["timings"]["train_samples_per_s"],
        "wall_s": time.perf_counter() - started, "peak_rss_bytes": peak_rss_bytes(), "rss_after_imports_bytes": started_rss,
        "block_rows": args.block_rows or None, "buffer_rows": args.buffer_rows or None, "machine": machine(),
    }, args.output)


def run_child(folder: Path, shuffle: str, args: argparse.Namespace, seed: int) -> dict:
    command = [
        sys.executable, __file__, "_train", "--folder", str(folder), "--shuffle", shuffle, "--seed", str(seed),
        "--epochs", str(args.epochs), "--batch-size", str(args.batch_size), "--runs", str(args.work_dir / "runs"),
        "--threads", str(args.threads or 0), "--block-rows", str(args.block_rows), "--buffer-rows", str(args.buffer_rows),
    ]
    if args.output:
        command += ["--output", str(args.output)]
    done = subprocess.run(command, check=True, stdout=subprocess.PIPE, text=True)
    sys.stdout.write(done.stdout)
    return json.loads(done.stdout.strip().splitlines()[-1])


def emit(record: dict, output: Path | None = None) -> None:
    line = json.dumps(record)
    print(line, flush=True)
    if output:
        with open(output, "a") as f:
            f.write(line + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=("memory", "auc", "both"), default="both")
    parser.add_argument("--rows", type=int, default=45_000_000, help="rows of the memory measurement's file")
    parser.add_argument("--auc-rows", type=int, default=2_000_000, help="rows of the full-vs-block AUC comparison's file")
    parser.add_argument("--quick", action="store_true", help=f"smoke run: {QUICK_ROWS:,} rows for both parts, blocks of {QUICK_BLOCK_ROWS}")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=4096)
    parser.add_argument("--seeds", type=int, default=1, help="AUC comparison: seeds 0..N-1, each trained both ways")
    parser.add_argument("--sorted", action="store_true", help="AUC comparison: also a block run on label-sorted training rows")
    parser.add_argument("--min-count", type=int, default=10)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--block-rows", type=int, default=0, help="block shuffle block size (0: the library's 65,536)")
    parser.add_argument("--buffer-rows", type=int, default=0, help="block shuffle buffer size (0: the library's 1,048,576)")
    parser.add_argument("--work-dir", type=Path, default=None, help="where the generated files go (default: a temp folder)")
    parser.add_argument("--keep", action="store_true", help="keep the generated files (a later call reuses them)")
    parser.add_argument("--output", type=Path, default=None)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--shuffle", help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--runs", type=Path, help=argparse.SUPPRESS)
    if len(sys.argv) > 1 and sys.argv[1] == "_train":
        train_child(parser.parse_args(sys.argv[2:]))
        return
    args = parser.parse_args()
    if args.quick:
        args.rows = args.auc_rows = QUICK_ROWS
        args.block_rows, args.buffer_rows = args.block_rows or QUICK_BLOCK_ROWS, args.buffer_rows or QUICK_BUFFER_ROWS
    made_work = args.work_dir is None
    args.work_dir = Path(tempfile.mkdtemp(prefix="recforge-ooc-")) if made_work else args.work_dir
    args.work_dir.mkdir(parents=True, exist_ok=True)
    try:
        if args.part in ("memory", "both"):
            record = run_child(prepared(args.work_dir, args.rows, 0, args.min_count, args.output), "block", args, seed=0)
            emit({"step": "memory", "rows": args.rows, "peak_rss_gib": record["peak_rss_bytes"] / 2**30,
                  "within_4_gib": record["peak_rss_bytes"] <= 4 * 2**30, "train_samples_per_s": record["train_samples_per_s"]}, args.output)
        if args.part in ("auc", "both"):
            folder = prepared(args.work_dir, args.auc_rows, 1, args.min_count, args.output)
            for seed in range(args.seeds):
                full = run_child(folder, "full", args, seed)
                block = run_child(folder, "block", args, seed)
                record = {"step": "auc", "rows": args.auc_rows, "seed": seed, "full/test_auc": full["test/auc"], "block/test_auc": block["test/auc"],
                          "full/test_log_loss": full["test/log_loss"], "block/test_log_loss": block["test/log_loss"],
                          "block_minus_full": block["test/auc"] - full["test/auc"], "within_0.002": abs(block["test/auc"] - full["test/auc"]) <= 0.002,
                          "full/peak_rss_bytes": full["peak_rss_bytes"], "block/peak_rss_bytes": block["peak_rss_bytes"]}
                if args.sorted:
                    ordered = run_child(label_sorted_copy(folder), "block", args, seed)
                    record.update({"block_label_sorted/test_auc": ordered["test/auc"], "block_label_sorted/test_log_loss": ordered["test/log_loss"],
                                   "label_sorted_minus_full": ordered["test/auc"] - full["test/auc"]})
                emit(record, args.output)
    finally:
        if not args.keep:
            shutil.rmtree(args.work_dir if made_work else args.work_dir / "runs", ignore_errors=True)
            if not made_work:
                for path in args.work_dir.glob("encoded-*"):
                    shutil.rmtree(path, ignore_errors=True)


if __name__ == "__main__":
    main()
