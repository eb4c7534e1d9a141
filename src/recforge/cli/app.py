"""``recforge`` CLI (Typer): data | models | train | evaluate | compare | report.

Exit codes: 0 success, 2 user error (one clear line on stderr, no traceback), 1 internal error.
"""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path
from typing import Annotated, Any, Optional

import functools
from collections.abc import Callable

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from recforge.config import check_seed
from recforge.errors import ConfigError, RecforgeError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Deep-learning recommenders from their papers.")
data_app = typer.Typer(no_args_is_help=True, help="List, inspect, verify and download datasets.")
app.add_typer(data_app, name="data")

console = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True)

def user_errors(command: Callable[..., None]) -> Callable[..., None]:
    """Turn user errors (RecforgeError) into one red line on stderr and exit code 2."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        try:
            command(*args, **kwargs)
        except RecforgeError as exc:
            console.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            console.print("interrupted; files of finished epochs are kept")
            raise typer.Exit(130) from None

    return wrapper


OWN_DATA = "Own data (instead of --dataset)"
DataDir = Annotated[
    Optional[Path],
    typer.Option("--data-dir", help="Data directory (default: $RECFORGE_DATA_DIR, else ~/.local/share/recforge)."),
]


@data_app.command("list")
@user_errors
def data_list(data_dir: DataDir = None) -> None:
    """List the registered datasets and whether their folder is in the data directory."""
    from recforge.data.datasets import DATASETS
    from recforge.data.files import resolve_data_dir

    root = resolve_data_dir(data_dir)
    table = Table("name", "folder", "present", "description", title=f"data directory: {root}")
    for name, cls in sorted(DATASETS.items()):
        table.add_row(name, cls.folder, "yes" if (root / cls.folder).is_dir() else "no", escape(cls.description))
    out.print(table)


@data_app.command("info")
@user_errors
def data_info(
    name: str,
    data_dir: DataDir = None,
    seed: Annotated[int, typer.Option(help="Split seed (sampled negatives, random hold-outs).")] = 0,
) -> None:
    """Verify a dataset's files and print its counts, features, raw columns and split."""
    from recforge.data.datasets import get_dataset
    from recforge.data.files import resolve_data_dir

    source = get_dataset(name)
    data = source.load(data_dir, seed=check_seed("--seed", seed))  # verifies the files first
    folder = resolve_data_dir(data_dir) / source.folder
    table = Table("", name, show_header=True)
    table.add_row("folder", str(folder))
    table.add_row("checksums", escape(_checks_done(source, folder, data_dir)))
    for key, value in data.describe().items():
        table.add_row(key, f"{value:,}" if isinstance(value, (int, float)) else escape(str(value)))
    if hasattr(data, "with_validation"):
        with_valid = data.with_validation(seed)
        table.add_row("train interactions after the validation hold-out", f"{with_valid.num_train:,}")
    table.add_row("raw columns", escape(_raw_columns(source, data)))
    table.add_row("source", source.citation)
    table.add_row("licence", source.license)
    out.print(table)


def _checks_done(source: Any, folder: Path, data_dir: Optional[Path]) -> str:
    """What ``source.verify`` checked, file by file: the checksum kind, or what stands in for it."""
    if not source.files:  # no published checksum: the source's own verify() checks presence and format
        names = ", ".join(p.name for p in source.verify(data_dir).values())
        return f"none published; checked instead: {names} present and its first line parsed"
    by_kind: dict[str, list[str]] = {}
    for data_file in source.files:
        hit = data_file.locate(folder)
        if hit is not None:
            by_kind.setdefault(hit[1].checksum.kind, []).append(hit[0].name)
    named = {"sha256": "verified: sha256", "git_blob": "verified: git blob id (sha1)"}
    return "; ".join(f"{named.get(kind, 'checked: ' + kind)} of {', '.join(names)}" for kind, names in by_kind.items())


def _raw_columns(source: Any, data: Any) -> str:
    """The raw columns a ``--schema`` can name (recorded at encode time; Criteo's are fixed)."""
    from recforge.data.criteo import CRITEO_COLUMNS
    from recforge.data.datasets.criteo import CriteoFormat
    from recforge.data.datasets.tabular import TabularSource

    if not isinstance(source, TabularSource):
        return "none: --schema applies to tabular datasets; this one is (user, item) implicit feedback"
    columns = data.info.get("raw_columns") or (CRITEO_COLUMNS if isinstance(source, CriteoFormat) else None)
    if not columns:
        return "not recorded in this cached encoding (clear the cache directory to rebuild it)"
    return f"{len(columns)}: {', '.join(columns)}"


@data_app.command("inspect")
@user_errors
def data_inspect(
    files: Annotated[list[Path], typer.Argument(help="Your CSV/TSV (.gz) or Parquet file(s), or a directory of Parquet parts.")],
    label: Annotated[Optional[str], typer.Option("--label", help="Label column(s), comma-separated (shows their balance; needed for the schema).")] = None,
    ignore: Annotated[Optional[str], typer.Option("--ignore", help="Comma-separated columns never used as features.")] = None,
    sequence: Annotated[Optional[str], typer.Option("--sequence", help="Comma-separated 'a|b|c' columns to use as sequence features.")] = None,
    split: Annotated[Optional[str], typer.Option("--split", help="'time:COL' keeps COL out of the features.")] = None,
) -> None:
    """Column types, distinct counts, missing shares, label balance and the inferred schema (YAML) of your table."""
    import yaml

    from recforge.data.datasets.own import parse_split
    from recforge.data.inference import describe_columns, infer_schema
    from recforge.data.table_files import read_table

    table = read_table(files)
    labels, ignored, sequences = _names(label) or [], _names(ignore) or [], _names(sequence) or []
    time_column = parse_split(split) if split else None
    report = describe_columns(table, labels, ignored, sequences, time_column)
    view = Table("column", "type", "distinct", "missing", "kind", "detail", title=f"{table.num_rows:,} rows")
    for r in report:
        view.add_row(escape(r.name), escape(r.type), f"{r.distinct:,}", f"{r.missing_share:.2%}", r.kind, escape(r.detail))
    out.print(view)
    for r in report:
        if r.kind == "dense" and r.missing_share > 0:
            out.print(f"note: {round(r.missing_share * table.num_rows)} missing value(s) of {r.name!r} will be imputed (0 after the transform: the training mean for standardize)")
    if not labels:
        out.print("(give --label COL to see the inferred schema)")
        return
    schema, _ = infer_schema(table, labels, ignored, sequences, time_column)
    out.print("# inferred schema (save it, edit it, pass it with --schema)")
    out.print(yaml.safe_dump(schema.to_dict(), sort_keys=False), highlight=False, markup=False)


@data_app.command("prepare")
@user_errors
def data_prepare(
    name: Annotated[Optional[str], typer.Argument(help="Registered dataset (see `data list`); omit it with --data.")] = None,
    data_dir: DataDir = None,
    download: Annotated[bool, typer.Option("--download", help="Fetch missing files from the official source.")] = False,
    seed: Annotated[int, typer.Option(help="Split seed.")] = 0,
    input: Annotated[
        Optional[Path],
        typer.Option("--input", help="Criteo-format datasets: stream-encode this file (plain or .gz, any size) instead of the registered one."),
    ] = None,
    output: Annotated[
        Optional[Path], typer.Option("--output", help="With --input: folder for the encoded columns (default: under the cache directory).")
    ] = None,
    min_count: Annotated[
        Optional[int], typer.Option("--min-count", help="With --input: categories rarer than this in training map to the OOV id (default: the dataset's).")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar.")] = False,
    data: Annotated[Optional[list[Path]], typer.Option("--data", rich_help_panel=OWN_DATA, help="Own CSV/TSV (.gz) or Parquet table to stream-encode for out-of-core training (with --label and --output); repeat for several files.")] = None,
    label: Annotated[Optional[str], typer.Option("--label", rich_help_panel=OWN_DATA, help="With --data: the label column(s), comma-separated.")] = None,
    schema: Annotated[Optional[Path], typer.Option("--schema", rich_help_panel=OWN_DATA, help="With --data: YAML feature schema (default: inferred from the first --infer-rows rows).")] = None,
    positive: Annotated[Optional[str], typer.Option("--positive", rich_help_panel=OWN_DATA, help="With --data: the label value that means 1.")] = None,
    ignore: Annotated[Optional[str], typer.Option("--ignore", rich_help_panel=OWN_DATA, help="With --data: comma-separated columns never inferred as features.")] = None,
    chunk_rows: Annotated[int, typer.Option("--chunk-rows", rich_help_panel=OWN_DATA, help="With --data: rows read and encoded at a time (bounds memory; the random split is drawn per chunk).")] = 250_000,
    infer_rows: Annotated[int, typer.Option("--infer-rows", rich_help_panel=OWN_DATA, help="With --data and no --schema: rows the schema is inferred from.")] = 1_000_000,
) -> None:
    """Verify checksums and build the cached split (with --download: fetch files first).

    With --input FILE (Criteo-format datasets such as ``criteo``): encode FILE in two streaming
    passes into .npy columns, with a rows/s progress bar, and report rows, seconds, rows/s and the
    peak resident memory.

    With --data FILE --label COL --output DIR (no NAME): the same for your own table, then train
    on it out of core with `recforge train MODEL --encoded DIR`.
    """
    from recforge.data.datasets import get_dataset
    from recforge.data.files import resolve_cache_dir

    if data is not None or label is not None:
        if name is not None or input is not None or download:
            raise ConfigError("--data encodes your own table: give it without a dataset NAME, --input or --download")
        _prepare_own_table(data, _names(label), output, schema, positive, _names(ignore) or [], min_count, seed, chunk_rows, infer_rows, quiet)
        return
    if name is None:
        raise ConfigError("name a registered dataset (see `recforge data list`), or give --data FILE --label COL --output DIR")
    source = get_dataset(name)
    check_seed("--seed", seed)
    if input is not None or output is not None or min_count is not None:
        if output is not None:
            _check_output_path(output, "--output", "encoded folder")
        _prepare_criteo_input(source, input, output, min_count, seed, quiet)
        return
    if download:
        try:
            source.verify(data_dir)
            out.print(f"{name}: files already present and verified; nothing to download")
        except RecforgeError:
            source.download(data_dir)
    from recforge.data.datasets.criteo import CriteoKaggle

    data = source.load(data_dir, seed=seed, progress=not quiet) if isinstance(source, CriteoKaggle) else source.load(data_dir, seed=seed)
    if hasattr(data, "num_train"):
        out.print(f"{name}: checksums verified; {data.num_train:,} training interactions; split cached under {resolve_cache_dir()}")
    else:
        rows = ", ".join(f"{k} {v:,}" for k, v in data.info["rows"].items())
        out.print(f"{name}: checksums verified; rows: {rows}; {data.info['split']}; encoded columns cached under {resolve_cache_dir()}")


def _prepare_criteo_input(source: Any, input: Optional[Path], output: Optional[Path], min_count: Optional[int], seed: int, quiet: bool) -> None:
    """``data prepare NAME --input FILE``: stream-encode a Criteo-format file and report speed and memory."""
    import dataclasses

    from recforge.data.criteo import DEFAULT_CHUNK_ROWS
    from recforge.data.datasets.criteo import CriteoFormat
    from recforge.data.datasets.tabular import CACHE_FORMAT
    from recforge.data.files import resolve_cache_dir
    from recforge.data.fingerprint import cache_key
    from recforge.data.schema import Schema

    if not isinstance(source, CriteoFormat):
        raise ConfigError(f"--input, --output and --min-count apply to Criteo-format datasets (criteo, criteo-head-10k), not {source.name!r}")
    if input is None:
        raise ConfigError("--output and --min-count need --input FILE")
    if not input.is_file():
        raise ConfigError(f"--input {input}: no such file")
    schema = source.default_schema()
    if min_count is not None:
        if min_count < 1:
            raise ConfigError(f"--min-count must be >= 1, got {min_count}")
        schema = Schema(tuple(dataclasses.replace(f, min_count=min_count) if f.kind != "dense" else f for f in schema.features), schema.labels)
    if output is None:
        # keyed on the input's content (hashed once, then memoised), not its path and times
        key = cache_key(CACHE_FORMAT, source.name, seed, source.fractions, schema.to_dict(), DEFAULT_CHUNK_ROWS, paths={"input": input})
        output = resolve_cache_dir() / "criteo-input" / f"{input.name}-{key}"
    summary = source.encode_file(input, output, seed=seed, schema=schema, progress=not quiet)
    splits = ", ".join(f"{k} {v:,}" for k, v in summary.split_rows.items())
    out.print(
        f"{source.name}: encoded {summary.rows:,} rows of {input} in {summary.seconds:.2f} s "
        f"({summary.rows_per_second:,.0f} rows/s; fit {summary.fit_seconds:.2f} s, encode {summary.transform_seconds:.2f} s); "
        f"peak RSS {summary.peak_rss_bytes / 2**20:,.0f} MiB",
        highlight=False,
    )
    out.print(f"rows: {splits}; {summary.split}; ids stored as {summary.sparse_dtype}", highlight=False)
    out.print(f"output: {output}", highlight=False)


def _prepare_own_table(
    data: Optional[list[Path]], labels: Optional[list[str]], output: Optional[Path], schema_file: Optional[Path], positive: Optional[str],
    ignore: list[str], min_count: Optional[int], seed: int, chunk_rows: int, infer_rows: int, quiet: bool,
) -> None:
    """``data prepare --data FILE --label COL --output DIR``: stream-encode an own table."""
    import yaml

    from recforge.data.files import atomic_write_text
    from recforge.data.schema import Schema
    from recforge.data.table_encoding import encode_table_files

    if not data:
        raise ConfigError("--label needs the table: --data FILE")
    if not labels:
        raise ConfigError("--data needs its label column: --label COL")
    if output is None:
        raise ConfigError("--data needs --output DIR: the folder for the encoded columns (then `recforge train MODEL --encoded DIR`)")
    _check_output_path(output, "--output", "encoded folder")
    if chunk_rows < 1 or infer_rows < 1:
        raise ConfigError(f"--chunk-rows and --infer-rows must be >= 1, got {chunk_rows} and {infer_rows}")
    if (output / "meta.json").is_file():
        console.print(f"note: {output} holds an earlier encoding; it is replaced once the new one is complete")
    declared = Schema.from_yaml(schema_file) if schema_file else None
    if min_count is not None:
        if min_count < 1:
            raise ConfigError(f"--min-count must be >= 1, got {min_count}")
        if declared is not None:
            raise ConfigError("--min-count applies to an inferred schema; with --schema set min_count per feature")
    summary, schema, report = encode_table_files(
        data, labels, output, declared, positive=positive, ignore=ignore, seed=seed, chunk_rows=chunk_rows,
        infer_rows=infer_rows, min_count=min_count, progress=not quiet,
    )
    if report and not quiet:
        console.print(schema_table(schema, report))
        console.print(f"schema inferred from the first {min(infer_rows, summary.rows):,} rows (--infer-rows); vocabularies and moments from every training row")
    if declared is None:
        atomic_write_text(output / "schema.yaml", yaml.safe_dump(schema.to_dict(), sort_keys=False))
    splits = ", ".join(f"{k} {v:,}" for k, v in summary.split_rows.items())
    out.print(
        f"encoded {summary.rows:,} rows of {summary.input} in {summary.seconds:.2f} s ({summary.rows_per_second:,.0f} rows/s); "
        f"peak RSS {summary.peak_rss_bytes / 2**20:,.0f} MiB", highlight=False, soft_wrap=True,
    )
    out.print(f"rows: {splits}; {summary.split}; ids stored as {summary.sparse_dtype}", highlight=False, soft_wrap=True)
    out.print(f"output: {output}" + ("" if declared else f" (inferred schema: {output / 'schema.yaml'})"), highlight=False, soft_wrap=True)
    out.print(f"train on it: recforge train deepfm --encoded {output}", highlight=False, soft_wrap=True)


generate_app = typer.Typer(no_args_is_help=True, help="Write synthetic data files for scale tests.")
data_app.add_typer(generate_app, name="generate")


@generate_app.command("criteo")
@user_errors
def data_generate_criteo(
    rows: Annotated[int, typer.Option("--rows", help="Number of lines to write.")],
    output: Annotated[Path, typer.Option("--output", help="File to write (.gz: gzip-compressed).")],
    seed: Annotated[int, typer.Option(help="Fixes the content.")] = 0,
    short_lines: Annotated[float, typer.Option("--short-lines", help="Share of lines whose trailing empty fields are left out.")] = 0.0,
) -> None:
    """Write a synthetic Criteo-format file (heavy-tailed categories, ~20% missing integers, ~25% clicks)."""
    import time

    from recforge.data.criteo import generate_criteo

    check_seed("--seed", seed)
    _check_output_path(output, "--output", "output file")
    started = time.perf_counter()
    try:
        generate_criteo(output, rows, seed=seed, short_line_fraction=short_lines)
    except OSError as exc:  # for example a read-only or special file system that os.access cannot tell
        raise ConfigError(f"--output {output}: cannot write the file: {exc.strerror or exc}") from None
    seconds = time.perf_counter() - started
    out.print(
        f"wrote {rows:,} Criteo-format rows to {output} ({output.stat().st_size / 2**20:,.1f} MiB) in {seconds:.1f} s",
        highlight=False,
    )


@app.command("models")
@user_errors
def models() -> None:
    """List the registered models."""
    from recforge.models import MODELS

    table = Table("name", "model")
    for name, entry in sorted(MODELS.items()):
        table.add_row(name, escape(entry.summary))
    out.print(table)


@app.command("train")
@user_errors
def train(
    model: Annotated[str, typer.Argument(help="Model name (see `recforge models`).")],
    dataset: Annotated[Optional[str], typer.Option(help="Dataset name (see `recforge data list`).")] = None,
    factors: Annotated[Optional[int], typer.Option(help="Predictive factors (NCF models).")] = None,
    pretrain: Annotated[bool, typer.Option("--pretrain", help="NeuMF: pre-train GMF and MLP, then fine-tune.")] = False,
    epochs: Annotated[Optional[int], typer.Option(help="Maximum epochs.")] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="Examples per step.")] = None,
    lr: Annotated[Optional[float], typer.Option(help="Learning rate.")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Training seed (initialisation, negatives, order).")] = None,
    config: Annotated[Optional[Path], typer.Option("--config", help="YAML config file.")] = None,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Override a config key: section.key=value.")] = None,
    data_dir: DataDir = None,
    output_dir: Annotated[Path, typer.Option(help="Where run directories go.")] = Path("runs"),
    device: Annotated[Optional[str], typer.Option(help="cpu, cuda or cuda:N.")] = None,
    threads: Annotated[Optional[int], typer.Option(help="torch CPU threads (default: 1 for NCF/MF models, else the CPUs other processes leave idle, re-checked while training; env RECFORGE_THREADS).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress output.")] = False,
    schema: Annotated[Optional[Path], typer.Option("--schema", help="YAML feature schema for a tabular dataset.")] = None,
    tasks: Annotated[Optional[str], typer.Option("--tasks", help="Comma-separated label columns to learn together (multi-task).")] = None,
    resume: Annotated[Optional[Path], typer.Option("--resume", help="Continue a CTR / sequence run directory from its last epoch (give --epochs; --device, --threads and --data-dir may be given too).")] = None,
    nproc: Annotated[Optional[int], typer.Option("--nproc", help="Train on N local processes (DDP via torchrun: gloo on CPU, NCCL on CUDA); --batch-size stays the global batch, each process takes 1/N of it.")] = None,
    encoded: Annotated[Optional[Path], typer.Option("--encoded", help="Train out of core on a folder written by `data prepare --data FILE --label COL --output DIR` (your table) or `data prepare NAME --input FILE --output DIR` (Criteo-format).")] = None,
    data: Annotated[Optional[list[Path]], typer.Option("--data", rich_help_panel=OWN_DATA, help="Own data file(s) instead of --dataset: CSV/TSV (.gz) or Parquet; repeat for several files.")] = None,
    user_col: Annotated[Optional[str], typer.Option("--user-col", rich_help_panel=OWN_DATA, help="Interaction log: the user id column (with --item-col).")] = None,
    item_col: Annotated[Optional[str], typer.Option("--item-col", rich_help_panel=OWN_DATA, help="Interaction log: the item id column.")] = None,
    time_col: Annotated[Optional[str], typer.Option("--time-col", rich_help_panel=OWN_DATA, help="Interaction log: the event time column (latest per user = test).")] = None,
    category_col: Annotated[Optional[str], typer.Option("--category-col", rich_help_panel=OWN_DATA, help="Interaction log: item category column (sequence models).")] = None,
    columns: Annotated[Optional[str], typer.Option("--columns", rich_help_panel=OWN_DATA, help="Comma-separated names of the fields of a headerless file, e.g. user,item,rating,time.")] = None,
    sep: Annotated[Optional[str], typer.Option("--sep", rich_help_panel=OWN_DATA, help="Field separator of CSV/TSV files ('\\t' for tab; default: tab for .tsv, else comma).")] = None,
    label: Annotated[Optional[str], typer.Option("--label", rich_help_panel=OWN_DATA, help="Own CTR table (--data): its label column(s), comma-separated; 0/1, true/false or see --positive.")] = None,
    split: Annotated[Optional[str], typer.Option("--split", rich_help_panel=OWN_DATA, help="Own table: 'random' (seeded stratified 0.8/0.1/0.1, default) or 'time:COL' (cut at COL's 80 %/90 % quantiles). Interaction log (NCF/MF/ItemPop): 'leave-one-out' (default), 'last:N' (each user's latest N events) or 'time:COL' (global cut); the last two report recall/precision/ndcg/map@K over the full catalogue.")] = None,
    valid_data: Annotated[Optional[list[Path]], typer.Option("--valid-data", rich_help_panel=OWN_DATA, help="Own table: your validation file(s).")] = None,
    test_data: Annotated[Optional[list[Path]], typer.Option("--test-data", rich_help_panel=OWN_DATA, help="Own table: your test file(s).")] = None,
    positive: Annotated[Optional[str], typer.Option("--positive", rich_help_panel=OWN_DATA, help="Own table: the label value that means 1 (every other value is 0).")] = None,
    ignore: Annotated[Optional[str], typer.Option("--ignore", rich_help_panel=OWN_DATA, help="Own table: comma-separated columns never used as features.")] = None,
    sequence: Annotated[Optional[str], typer.Option("--sequence", rich_help_panel=OWN_DATA, help="Own table: comma-separated 'a|b|c' string columns to use as sequence features.")] = None,
) -> None:
    """Train MODEL on a dataset, select the epoch on validation, score the test set once."""
    from recforge.config import apply_overrides, read_yaml

    if resume is not None:
        if config or set_ or any(v is not None for v in (dataset, factors, batch_size, lr, seed, schema, tasks, encoded, data, user_col, item_col, time_col, category_col, columns, sep,
                                                  label, split, valid_data, test_data, positive, ignore, sequence)):
            raise ConfigError("--resume continues a run with its own config.yaml; only --epochs, --device and --threads may be given")
        config = resume / "config.yaml"
        if not config.is_file():
            raise ConfigError(f"{resume} is not a run directory: no config.yaml in it")
    raw: dict[str, Any] = read_yaml(config) if config else {}
    cli_values = {
        "data.schema": str(schema) if schema else None,
        "data.encoded": str(encoded.resolve()) if encoded else None,  # absolute: evaluate / --resume may run elsewhere
        "data.tasks": [t.strip() for t in tasks.split(",") if t.strip()] if tasks else None,
        "data.name": dataset,
        "model.factors": factors,
        "train.epochs": epochs,
        "train.batch_size": batch_size,
        "train.lr": lr,
        "train.device": device,
        "seed": seed,
        "pretrain.enabled": True if pretrain else None,
        "data.path": [str(p.resolve()) for p in data] if data else None,  # absolute: evaluate may run elsewhere
        "data.user_col": user_col,
        "data.item_col": item_col,
        "data.time_col": time_col,
        "data.category_col": category_col,
        "data.columns": [c.strip() for c in columns.split(",")] if columns else None,
        "data.sep": sep,
        "data.label": _names(label),
        "data.split": split,
        "data.valid_path": [str(p.resolve()) for p in valid_data] if valid_data else None,
        "data.test_path": [str(p.resolve()) for p in test_data] if test_data else None,
        "data.positive": positive,
        "data.ignore": _names(ignore),
        "data.sequence": _names(sequence),
    }
    from recforge.api import run_training, train_config
    from recforge.cli.launch import check_resume, launch_train

    if encoded is not None and dataset is None and not data:
        from recforge.data.encoded_folders import read_meta

        # the folder says what it holds: an own table (data prepare --data) or a Criteo-format dataset
        cli_values["data.name"] = read_meta(encoded, "write one with `recforge data prepare --data FILE --label COL --output DIR`")["name"]
    where = f"config {config}" if config else "--set model.name"
    merged = apply_overrides(raw, list(set_ or []), {k: v for k, v in cli_values.items() if v is not None})
    named = isinstance(merged.get("data"), dict) and any(merged["data"].get(k) for k in ("name", "path", "label"))
    resolved = train_config(model, raw, cli_values, list(set_ or []), where=where)
    if not named:
        raise ConfigError("--dataset is required (see `recforge data list`), or --data FILE, or a --config file naming data.name")
    if resume is None:
        _check_output_path(output_dir, "--output-dir", "run directory")
    if resume is not None:
        check_resume(resume, nproc)  # before torchrun starts N processes that would each fail
    launch_train(nproc, threads, device=resolved.train.device)  # --nproc N: re-run under torchrun (does not return)
    _set_threads(threads, (model,), quiet)
    result = run_training(
        resolved, data_dir=data_dir, output_dir=output_dir, console=None if quiet else console, resume=resume,
        on_schema=lambda schema, source, data: _show_own_table(resolved, schema, source, data, quiet),
    )
    if resolved.data.label and not resolved.data.schema:
        out.print(f"inferred schema saved as {result.path / 'schema.yaml'} (edit it and pass it back with --schema)", soft_wrap=True)
    out.print(summary_table(result.summary))
    out.print(f"run directory: {result.path}", soft_wrap=True)


def _names(text: Optional[str]) -> Optional[list[str]]:
    """``a,b`` -> ``["a", "b"]`` (None stays None)."""
    return [t.strip() for t in text.split(",") if t.strip()] if text else None


def _show_own_table(config: Any, schema: Any, source: Any, data: Any, quiet: bool) -> None:
    """Print an own table's inferred schema (unless declared or ``quiet``) and its imputed values."""
    if not quiet and not config.data.schema:
        leaks = {m.group(1) for m in (re.search(r"feature '([^']+)' alone separates", w) for w in data.info.get("leakage_warnings", [])) if m}
        console.print(schema_table(schema, source.report, leaks))
    for name, count in data.info.get("imputed", {}).items():
        console.print(f"note: {count} missing value(s) of dense feature {name!r} imputed (0 after the transform: the training mean for standardize)")


def schema_table(schema: Any, report: Any = (), leaks: Any = ()) -> Table:
    """The short table of a schema: feature, kind, settings, and why (the inference rule); a
    feature in ``leaks`` (one that alone separates a label, see :mod:`recforge.data.leakage`) is flagged."""
    why = {r.name: r.detail for r in report}
    for name in leaks:
        why[name] = f"LABEL LEAK? alone separates the label (see the warning); {why.get(name, '')}".rstrip("; ")
    table = Table("feature", "kind", "settings", "why", title="inferred schema" if report else "schema")
    for entry in schema.to_dict()["features"]:
        settings = ", ".join(f"{k}: {v}" for k, v in entry.items() if k not in ("name", "kind"))
        table.add_row(escape(entry["name"]), entry.get("kind", "sparse"), escape(settings), escape(why.get(entry["name"], "")))
    for r in report:
        if r.kind == "skipped":
            table.add_row(escape(r.name), "skipped", "", escape(r.detail))
    return table


@app.command("export")
@user_errors
def export(
    run: Annotated[Path, typer.Argument(help="A run directory written by `recforge train`.")],
    output: Annotated[Path, typer.Option("--output", help="The bundle folder to create (must not exist, or be empty).")],
    format: Annotated[Optional[list[str]], typer.Option("--format", help="eager (always), torchscript, onnx; repeat for several.")] = None,
    data_dir: DataDir = None,
) -> None:
    """Write a model bundle (weights, config, schema, fitted preprocessing, checksums), with
    TorchScript / ONNX graphs parity-checked against the eager model on the run's test rows."""
    from recforge.serving.bundle import export_bundle, export_summary

    manifest = export_bundle(run, output, formats=tuple(format or ("eager",)), data_dir=data_dir)
    out.print(export_summary(manifest, output), soft_wrap=True, highlight=False)


@app.command("evaluate")
@user_errors
def evaluate(
    run: Annotated[Path, typer.Argument(help="A run directory written by `recforge train`.")],
    data_dir: DataDir = None,
    full_ranking: Annotated[bool, typer.Option(help="Also rank against the whole catalogue.")] = True,
    device: Annotated[str, typer.Option(help="cpu, cuda or cuda:N.")] = "cpu",
) -> None:
    """Re-score a run's selected checkpoint on its validation and test splits."""
    from recforge.training.experiment import evaluate_run

    metrics = evaluate_run(run, data_dir, full_ranking=full_ranking, device=device)
    out.print(f"run directory: {run}", soft_wrap=True)
    table = Table("metric", "value")
    for key, value in metrics.items():
        table.add_row(key, f"{value:.4f}")
    out.print(table)


@app.command("recommend")
@user_errors
def recommend(
    run: Annotated[Path, typer.Argument(help="A run directory of an implicit-feedback model (itempop, mf, gmf, mlp, neumf).")],
    users: Annotated[Optional[str], typer.Option("--users", help="Comma-separated raw user ids, e.g. 17,42.")] = None,
    users_file: Annotated[
        Optional[Path], typer.Option("--users-file", help="File of raw user ids: one per line, CSV/TSV with a 'user' column, or Parquet.")
    ] = None,
    all_users: Annotated[bool, typer.Option("--all-users", help="Every user seen in training.")] = False,
    k: Annotated[int, typer.Option("--k", help="Items per user.")] = 10,
    include_seen: Annotated[bool, typer.Option("--include-seen", help="Keep the user's training items among the candidates.")] = False,
    output: Annotated[
        Optional[Path], typer.Option("--output", help="Write the table here (.csv, .json or .parquet) instead of printing it.")
    ] = None,
    data_dir: DataDir = None,
    threads: Annotated[Optional[int], typer.Option(help="torch CPU threads (default: the CPUs other processes leave idle; env RECFORGE_THREADS).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", help="No messages on stderr.")] = False,
) -> None:
    """Top-K items for users of a trained run: raw item ids, scores (logits; ItemPop: counts), training items left out.

    A user not seen in training gets the most popular items (training counts), marked cold.
    Equal scores rank the lower item id first.
    """
    from recforge.serving.recommender import Recommender
    from recforge.serving.table_files import check_output_format, read_user_ids, write_table

    given = [name for name, value in (("--users", users), ("--users-file", users_file), ("--all-users", all_users or None)) if value is not None]
    if len(given) != 1:
        raise ConfigError(f"give exactly one of --users, --users-file, --all-users (got {', '.join(given) or 'none'})")
    if k < 1:
        raise ConfigError(f"--k must be >= 1, got {k}")
    if output is not None:
        check_output_format(output)
        _check_output_path(output, "--output", "output file")
    if users is not None:
        requested: Any = [u.strip() for u in users.split(",")]
        if any(not u for u in requested):
            raise ConfigError(f"--users {users!r}: an empty id between commas; give ids like 17,42")
    elif users_file is not None:
        requested = read_user_ids(users_file)
    # scoring a catalogue is a few large GEMMs (unlike training these models): as many threads as idle CPUs
    _set_threads(threads, (), quiet=True)
    recommender = Recommender.from_run(run, data_dir)
    if all_users:
        requested = recommender.known_users()
    table = recommender.recommend(requested, k=k, include_seen=include_seen)
    if output is not None:
        write_table(table, output)
        if not quiet:
            console.print(f"wrote {table.num_rows:,} recommendations for {len(requested):,} users to {output}", highlight=False)
        return
    shown = Table(*table.column_names)
    for row in zip(*(table.column(name).to_pylist() for name in table.column_names)):
        user, rank, item, score, cold = row
        shown.add_row(escape(str(user)), str(rank), escape(str(item)), f"{score:.4f}", "yes" if cold else "")
    out.print(shown)


@app.command("predict")
@user_errors
def predict(
    run: Annotated[Path, typer.Argument(help="A run directory of a CTR, sequence (DIN) or multi-task model.")],
    input: Annotated[Path, typer.Option("--input", help="Rows to score: CSV / TSV with a header line (plain or .gz) or Parquet.")],
    output: Annotated[Path, typer.Option("--output", help="Scores file (.csv or .parquet): the input's columns, then p_<task> per task.")],
    batch_rows: Annotated[int, typer.Option("--batch-rows", help="Rows read, encoded, scored and written at a time (bounds memory).")] = 100_000,
    threads: Annotated[Optional[int], typer.Option(help="torch CPU threads (default: the CPUs other processes leave idle; env RECFORGE_THREADS).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar or messages on stderr.")] = False,
) -> None:
    """Score new rows with a trained run: probabilities per task, columns matched by name.

    Every input column is passed through (ids to join on), in input row order; a missing feature
    column is an error naming it; unseen categories get the OOV id, as in training. The output is
    written atomically: after an error there is no output file.
    """
    import time

    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from recforge.serving.predictor import Predictor
    from recforge.serving.row_files import check_input, check_output_format, predict_file
    from recforge.training.records import load_run_config

    if batch_rows < 1:
        raise ConfigError(f"--batch-rows must be >= 1, got {batch_rows}")
    check_input(input)
    check_output_format(output)
    _check_output_path(output, "--output", "output file")
    if output.resolve() == input.resolve():
        raise ConfigError(f"--output {output} is the --input file; give another file name")
    if run.is_dir():
        _set_threads(threads, (load_run_config(run).model_name,), quiet=True)
    predictor = Predictor.from_run(run)
    started = time.perf_counter()

    columns = (TextColumn("scoring {task.fields[rate]}"), BarColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, disable=quiet, transient=True) as bar:
        task = bar.add_task("scoring", total=None, rate="")

        def progress(rows: int) -> None:
            rate = rows / max(time.perf_counter() - started, 1e-9)
            bar.update(task, completed=rows, rate=f"{rows:,} rows, {rate:,.0f} rows/s")

        done = predict_file(predictor, input, output, batch_rows, on_chunk=progress)
    seconds = time.perf_counter() - started
    if not quiet:
        console.print(
            f"wrote {done:,} rows with {', '.join(predictor.output_columns)} to {output} in {seconds:.2f} s "
            f"({done / max(seconds, 1e-9):,.0f} rows/s)",
            highlight=False,
        )


@app.command("compare")
@user_errors
def compare(
    models: Annotated[list[str], typer.Argument(help="Models to compare (`neumf+pretrain` = NeuMF with pre-training).")],
    dataset: Annotated[Optional[str], typer.Option(help="Dataset name (see `recforge data list`).")] = None,
    seeds: Annotated[int, typer.Option("--seeds", help="Training seeds per model.")] = 3,
    first_seed: Annotated[int, typer.Option(help="Seeds are first_seed, first_seed + 1, ...")] = 1,
    epochs: Annotated[Optional[int], typer.Option(help="Maximum epochs of every run.")] = None,
    tasks: Annotated[Optional[str], typer.Option("--tasks", help="Comma-separated label columns (multi-task models).")] = None,
    config: Annotated[Optional[Path], typer.Option("--config", help="YAML config shared by every run.")] = None,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Override a config key of every run: section.key=value.")] = None,
    data_dir: DataDir = None,
    output_dir: Annotated[Path, typer.Option(help="Where run directories go (finished ones there are reused).")] = Path("runs"),
    report_dir: Annotated[Optional[Path], typer.Option(help="Where the report goes (default: <output-dir>/compare-<dataset>-<models>-seeds<first>-<last>).")] = None,
    threads: Annotated[Optional[int], typer.Option(help="torch CPU threads (default: 1 for NCF/MF models, else the CPUs other processes leave idle, re-checked while training; env RECFORGE_THREADS).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", help="Only the final tables.")] = False,
) -> None:
    """Train every model with every seed (same split and candidates), then report mean ± std, 95 % CIs and paired tests.

    Finished runs with the same config and seed are reused, so an interrupted comparison resumes
    with the same command.
    """
    import shlex
    import sys

    from recforge.config import apply_overrides, read_yaml
    from recforge.reporting.compare import plan_comparison, run_comparison

    if seeds < 1:
        raise ConfigError(f"--seeds must be >= 1, got {seeds}")
    check_seed("--first-seed", first_seed)
    check_seed("--first-seed + --seeds - 1", first_seed + seeds - 1)
    raw: dict[str, Any] = read_yaml(config) if config else {}
    values = {
        "data.name": dataset, "train.epochs": epochs,
        "data.tasks": [t.strip() for t in tasks.split(",") if t.strip()] if tasks else None,
    }
    raw = apply_overrides(raw, [], {k: v for k, v in values.items() if v is not None})
    if not isinstance(raw.get("data"), dict) or not raw["data"].get("name"):
        raise ConfigError("--dataset is required (see `recforge data list`), or a --config file naming data.name")
    _set_threads(threads, tuple(m.split("+")[0] for m in models), quiet)
    plan = plan_comparison(models, list(range(first_seed, first_seed + seeds)), raw, list(set_ or []))
    if report_dir is not None:
        _check_output_dir(report_dir, "--report-dir")
    _check_output_path(output_dir, "--output-dir", "run directory")
    runs = run_comparison(plan, output_dir, data_dir, console=None if quiet else console)
    comparison = _analyze(runs)
    name = "-".join(m.replace("+", "_") for m in models)
    seed_part = f"seed{first_seed}" if seeds == 1 else f"seeds{first_seed}-{first_seed + seeds - 1}"
    target = report_dir or output_dir / f"compare-{plan[0].config.data.name}-{name}-{seed_part}"
    files = _write_report(comparison, target, command=shlex.join(["recforge", *sys.argv[1:]]))
    _print_comparison(comparison, files)


@app.command("report")
@user_errors
def report(
    runs: Annotated[list[Path], typer.Argument(help="Run directories, or folders holding run directories.")],
    output: Annotated[Path, typer.Option("--output", help="Folder for report.md, report.html, the plots and comparison.json.")] = Path("report"),
    dataset: Annotated[Optional[str], typer.Option("--dataset", help="Report only the runs of this dataset.")] = None,
) -> None:
    """Tables, plots and an HTML page for finished runs: runs that differ only by seed form one model's group.

    Runs of several datasets get one report each, in ``<output>/<dataset>/`` (``--dataset NAME``:
    only that dataset's, in ``<output>``).
    """
    from recforge.reporting.runs import by_dataset, find_runs

    _check_output_dir(output, "--output")
    records = find_runs(list(runs), dataset=dataset)
    if (output / "config.yaml").is_file():
        raise ConfigError(f"--output {output} is a run directory; choose a folder of its own for the report")
    groups = by_dataset(records)
    if len(groups) == 1:
        targets = {name: output for name in groups}
    else:
        targets = {name: output / name for name in groups}
        out.print(f"runs of {len(groups)} datasets: one report each: " + ", ".join(f"{n} -> {t}" for n, t in targets.items()), highlight=False)
    for name, group in groups.items():
        _check_output_dir(targets[name], "--output")
        comparison = _analyze(group)
        files = _write_report(comparison, targets[name])
        _print_comparison(comparison, files)


def _check_output_dir(path: Path, option: str) -> None:
    if os.path.lexists(path) and not path.is_dir():
        raise ConfigError(f"{option} {path} is a file; give a folder for the report files")
    _check_output_path(path, option, "report folder")


def _check_output_path(path: Path, option: str, what: str) -> None:
    """Check, before any work, that ``path`` can be created: one clear line instead of an OSError.

    Args:
        path: the output file or folder (need not exist).
        option: the CLI option, for the message (``--output``).
        what: what is created there, for the message: ``"output file"`` (``path`` is a file), or
            a folder such as ``"run directory"`` (``path`` is a folder, or holds the folder).

    Raises:
        ConfigError: naming ``path``, for a name longer than the file system allows (ENAMETOOLONG),
            a file where a folder is needed or the reverse, or a folder that is not writable.
    """
    folder = what != "output file"
    existing = next(p for p in (path, *path.parents) if os.path.lexists(p))  # "." or "/" at the latest
    base = existing if os.path.isdir(existing) else existing.parent
    try:
        name_max, path_max = os.pathconf(base, "PC_NAME_MAX"), os.pathconf(base, "PC_PATH_MAX")
    except (OSError, ValueError):
        name_max, path_max = 255, 4096
    problem = None
    long_names = [part for part in path.parts if len(os.fsencode(part)) > name_max]
    writable = existing if existing != path or folder else existing.parent
    if long_names:
        problem = f"has a name of {len(os.fsencode(long_names[0]))} bytes ({long_names[0][:20]}...); the file system allows {name_max}"
    elif len(os.fsencode(os.path.abspath(path))) >= path_max:
        problem = f"is longer than the file system allows ({path_max} bytes)"
    elif existing != path and not os.path.isdir(existing):
        problem = f"is under {existing}, which is a file, not a folder"
    elif existing == path and folder and not os.path.isdir(path):
        problem = "is a file; give a folder"
    elif existing == path and not folder and os.path.isdir(path):
        problem = "is a folder; give a file name"
    elif not os.access(writable, os.W_OK | os.X_OK):
        problem = f"is in {writable}, which is not writable"
    if problem is not None:
        raise ConfigError(f"cannot create {what}: {option} {path} {problem}")


def _analyze(runs: Any) -> Any:
    from recforge.reporting.analysis import analyze

    try:
        return analyze(runs)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def _write_report(comparison: Any, target: Path, command: Optional[str] = None) -> dict[str, Any]:
    from recforge.reporting.report import write_report

    try:
        return write_report(comparison, target, command=command)
    except OSError as exc:
        raise ConfigError(f"cannot write the report to {target}: {exc.strerror or exc}") from None


def _set_threads(threads: Optional[int], models: tuple[str, ...] = (), quiet: bool = False) -> None:
    """Set torch's CPU threads: ``--threads`` if given, else the busy-machine-safe default of
    :func:`recforge.training.threads.choose_threads`; says which on stderr unless ``quiet``."""
    from recforge.training.threads import apply_threads

    message = apply_threads(threads, models)
    if not quiet and os.environ.get("RANK", "0") == "0":  # under torchrun: one line, not one per process
        console.print(message, highlight=False)


def _print_comparison(comparison: Any, files: dict[str, Path]) -> None:
    from recforge.reporting.markdown import metric_rows, pair_cells

    header, rows = metric_rows(comparison)
    table = Table(title=f"test metrics on {escape(comparison.dataset)}: mean ± std [95 % CI] over seeds")
    table.add_column(header[0], no_wrap=True)
    for name in header[1:]:
        table.add_column(escape(name))
    for row in rows:
        cells = [escape(c.strip("*").replace(" [", "\n[")) for c in row[1:]]
        table.add_row(escape(row[0]), *(f"[bold]{c}[/bold]" if raw.startswith("**") else c for c, raw in zip(cells, row[1:])))
    out.print(table)
    by_pair: dict[tuple[str, str], list[Any]] = {}
    for pair in comparison.pairs:
        by_pair.setdefault((pair.a, pair.b), []).append(pair)
    for (a, b), pairs in by_pair.items():
        table = Table(title=f"{escape(a)} − {escape(b)}: paired tests (uncorrected p)")
        table.add_column("metric", overflow="fold")  # long per-task names fold; the numbers never do
        for name in ("diff", "p seeds (n)", "d_z seeds", "p users t", "p users W"):
            table.add_column(name, no_wrap=True)
        for pair in pairs:
            cells = pair_cells(pair)
            table.add_row(escape(cells[0]), *cells[3:8])
        out.print(table)
    for warning in comparison.warnings:
        out.print(f"[yellow]warning:[/yellow] {escape(warning)}", highlight=False)
    for kind, path in files.items():
        out.print(f"{kind}: {path}", soft_wrap=True, highlight=False)


def summary_table(summary: dict[str, Any]) -> Table:
    """A readable table of a run summary: selection, validation, test, timings."""
    table = Table(title=f"{summary.get('model')} on {summary.get('dataset')}", show_header=True)
    table.add_column("")
    table.add_column("value", justify="right")
    table.add_row("selected epoch", f"{summary['selected_epoch']} ({summary['selection']})")
    for key, value in summary.items():
        if isinstance(value, float) and "/" in key:
            table.add_row(key, f"{value:,.0f}" if key.endswith("_users") else f"{value:.4f}")
    best = summary.get("optimistic_best_test_epoch")
    if best:
        for key, value in best.items():
            if isinstance(value, float):
                table.add_row(f"best test epoch ({best['epoch']}, optimistic) {key}", f"{value:.4f}")
    timings = summary.get("timings", {})
    if timings:
        label = "seconds per epoch (training)" if "train_samples_per_s" in timings else "seconds per epoch (sampling + training)"
        table.add_row(label, f"{timings['seconds_per_epoch']:.1f}")
        if timings.get("train_samples_per_s"):
            table.add_row("training rows per second", f"{timings['train_samples_per_s']:,.0f}")
        table.add_row("total seconds", f"{timings['total_s']:.1f}")
        if "total_with_pretraining_s" in timings:
            table.add_row("total seconds including GMF and MLP pre-training", f"{timings['total_with_pretraining_s']:.1f}")
    return table


def _show_warning(message: Any, category: Any, filename: str, lineno: int, file: Any = None, line: Any = None) -> None:
    console.print(f"[yellow]warning:[/yellow] {escape(str(message))}", highlight=False)


from recforge.cli.tune import tune as _tune  # noqa: E402 - the command lives in its own file

app.command("tune")(user_errors(_tune))

from recforge.cli.serve import serve as _serve  # noqa: E402 - the command lives in its own file

app.command("serve")(user_errors(_serve))


def main() -> None:
    """Entry point of the ``recforge`` command."""
    warnings.showwarning = _show_warning
    app()


if __name__ == "__main__":
    main()
