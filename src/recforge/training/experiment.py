"""Experiment orchestration: data + model + trainer + run records, NeuMF pre-training, re-scoring."""

from __future__ import annotations

import dataclasses
import json
import shutil
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from torch import nn

from recforge.config import DataConfig, ExperimentConfig
from recforge.data.datasets import get_dataset
from recforge.data.datasets.interaction_log import is_interaction_log
from recforge.data.datasets.tabular import TabularSource
from recforge.data.interactions import LeaveOneOutData
from recforge.data.preprocessing import Preprocessor
from recforge.data.schema import Schema, user_item_schema
from recforge.data.tabular import TabularData
from recforge.errors import ConfigError, DataError, RecforgeError
from recforge.models.ncf import GMF, NCFMLP, NeuMF
from recforge.models.registry import build_model
from recforge.training.distributed import current_context, distributed_session, needs_session
from recforge.training.pointwise import PointwiseTrainer
from recforge.training.records import RunRecorder, load_checkpoint, load_model_weights, load_run_config, record_data_dir, run_data_dir
from recforge.training.trainer import FitResult, Trainer


_IMPLICIT_MODELS = ("itempop", "mf", "gmf", "mlp", "neumf")


@dataclass
class RunResult:
    """A finished run: its directory, summary, history and model."""

    path: Path
    summary: dict[str, Any]
    history: list[dict[str, Any]]
    model: nn.Module


def load_data(config: ExperimentConfig, data_dir: str | Path | None) -> LeaveOneOutData | TabularData:
    """The dataset split a config asks for: a leave-one-out split (with the validation hold-out
    if enabled) or encoded tabular splits (with ``data.schema`` replacing the default schema, or
    the folder ``data.encoded`` read as it was encoded).

    Raises:
        ConfigError: for a schema file on a non-tabular dataset, or ``data.encoded`` on a dataset
            that is not Criteo-format or naming a folder that is not its encoded Criteo folder.
        DataError: for an encoded folder that is incomplete or unreadable.
    """
    if is_interaction_log(config.data):
        return _load_interaction_log(config)
    if config.data.label:
        return table_source(config).load(seed=config.data.split_seed)
    if config.data.encoded is not None:
        own = _open_own_encoded(config.data.name, Path(config.data.encoded))
        if own is not None:
            return own
    source = get_dataset(config.data.name)
    if config.data.encoded is not None:
        return _open_encoded_folder(config.data.name, source, Path(config.data.encoded))
    if isinstance(source, TabularSource):
        schema = Schema.from_yaml(config.data.schema) if config.data.schema else None
        tasks = config.data.tasks
        if tasks:
            if schema is None and hasattr(source, "task_schema"):
                try:
                    schema = source.task_schema(tasks)  # drops the features a label is derived from
                except ValueError as exc:
                    raise ConfigError(f"data.tasks: {exc}") from None
            else:
                schema = Schema((schema or source.default_schema()).features, labels=tasks)
        return source.load(data_dir, seed=config.data.split_seed, schema=schema)
    if config.data.schema or config.data.tasks:
        raise ConfigError(f"data.schema and data.tasks apply to tabular datasets; {config.data.name} is implicit feedback")
    data = source.load(data_dir, seed=config.data.split_seed)
    if config.data.validation:
        data = data.with_validation(seed=config.data.split_seed)
    return data


def table_source(config: ExperimentConfig) -> Any:
    """The :class:`~recforge.data.datasets.own.TableSource` of an own table (``data.path`` + ``data.label``)."""
    from recforge.data.datasets.own import TableSource

    if config.data.encoded is not None:
        raise ConfigError("data.encoded trains on an encoded folder and data.path (--data) reads a table: give one of them "
                          "(an own table's folder comes from `recforge data prepare --data FILE --label COL --output DIR`)")
    d = config.data
    return TableSource(
        d.path, d.label, schema=Schema.from_yaml(d.schema) if d.schema else None, split=d.split,
        valid_paths=d.valid_path, test_paths=d.test_path, positive=d.positive, ignore=d.ignore, sequence=d.sequence,
    )


def _load_interaction_log(config: ExperimentConfig) -> LeaveOneOutData | TabularData:
    """An own log (``data.path`` + ``data.user_col``): leave-one-out for NCF/MF/ItemPop, else
    behaviour sequences (:mod:`recforge.data.datasets.interaction_log`)."""
    from recforge.data.datasets.interaction_log import InteractionLogSequences, LogOptions, load_leave_one_out

    options = LogOptions.from_config(config.data)
    if config.model_name in _IMPLICIT_MODELS:
        if config.data.schema or config.data.tasks:
            raise ConfigError(f"data.schema and data.tasks apply to tabular data; {config.model_name} trains on the log's (user, item) pairs")
        data = load_leave_one_out(options, seed=config.data.split_seed)
        return data.with_validation(seed=config.data.split_seed) if config.data.validation else data
    if config.data.tasks:
        raise ConfigError("data.tasks: an interaction log as behaviour sequences has one label, label")
    schema = Schema.from_yaml(config.data.schema) if config.data.schema else None
    return InteractionLogSequences(options).load(seed=config.data.split_seed, schema=schema)


def _open_own_encoded(name: str, folder: Path) -> TabularData | None:
    """``data.encoded`` naming a folder of an own table (``recforge data prepare --data FILE``);
    None for any other folder (a Criteo-format encoding, or no folder: the dataset path says why).

    Raises:
        ConfigError: an own table's folder with a ``data.name`` other than its table's.
    """
    from recforge.data.encoded_folders import open_encoded, read_meta
    from recforge.data.table_encoding import OWN_KIND

    try:
        meta = read_meta(folder, "")
    except RecforgeError:
        return None
    if meta.get("kind") != OWN_KIND:
        return None
    if name not in (meta["name"], DataConfig.name):
        raise ConfigError(f"data.encoded {folder} holds your table {meta['name']!r}, not the dataset {name!r}: train it with --encoded alone")
    return open_encoded(folder)


def _open_encoded_folder(name: str, source: Any, folder: Path) -> TabularData:
    """``data.encoded``: the columns ``recforge data prepare NAME --input FILE --output folder`` wrote."""
    from recforge.data.criteo import open_encoded
    from recforge.data.datasets.criteo import CriteoFormat
    from recforge.data.encoded_folders import read_meta

    if not isinstance(source, CriteoFormat):
        raise ConfigError(f"data.encoded applies to Criteo-format datasets (criteo, criteo-head-10k) and to your own tables, not {name!r}")
    how = f"write one with `recforge data prepare {name} --input FILE --output {folder}`"
    meta = read_meta(folder, how)
    if meta.get("name") != name:
        raise ConfigError(f"data.encoded {folder} was encoded as {meta.get('name')!r}, not {name!r}; train it with --dataset {meta.get('name')}")
    return open_encoded(folder)


def check_experiment(config: ExperimentConfig, data: LeaveOneOutData | TabularData) -> None:
    """Check, before any training, that ``config`` can train on ``data``.

    Raises:
        ConfigError: a model of the wrong data kind (NCF models need user/item data, CTR models
            tabular data), pre-training on anything but NeuMF with implicit data, no epochs for a
            CTR run, a single-label model on multi-task data, loss weights of unknown tasks, or
            model settings the data's schema cannot take.
    """
    if isinstance(data, TabularData):
        if config.pretrain.enabled:
            raise ConfigError("pretrain applies to neumf on implicit-feedback data")
        if config.model_name in _IMPLICIT_MODELS:
            raise ConfigError(f"model {config.model_name} needs implicit-feedback (user, item) data; {config.data.name} is tabular CTR data")
        if config.train.epochs < 1:
            raise ConfigError("train.epochs must be >= 1 for CTR runs (there is no untrained epoch-0 candidate)")
        model = build_model(config.model_name, data.schema, config.model)
        if len(data.schema.labels) > 1 and not hasattr(model, "tasks"):
            raise ConfigError(
                f"model {config.model_name} predicts one label but the data has tasks {list(data.schema.labels)}; "
                "use a multi-task model (shared_bottom, mmoe, ple, adatt) or one task"
            )
        unknown = sorted(set(config.train.task_weights or {}) - set(data.schema.labels))
        if unknown:
            raise ConfigError(f"train.task_weights.{unknown[0]}: not a task; tasks: {', '.join(data.schema.labels)}")
        return
    if not hasattr(data, "train_users") or config.model_name not in _IMPLICIT_MODELS:
        raise ConfigError(f"model {config.model_name} needs tabular (CTR) data; {config.data.name} is implicit feedback")
    if config.pretrain.enabled and config.model_name != "neumf":
        raise ConfigError(f"pretrain.enabled applies to neumf only, not {config.model_name}")


def run_tabular(
    config: ExperimentConfig,
    data: TabularData,
    output_dir: str | Path = "runs",
    console: Console | None = None,
    resume: str | Path | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
) -> RunResult:
    """Train and evaluate one configuration on tabular data, writing (or continuing) a run directory.

    ``on_epoch`` is called with each epoch's record (:attr:`PointwiseTrainer.on_epoch`).

    Raises:
        ConfigError: for a model that needs user/item data, or a resume directory of another config.
    """
    if needs_session():  # launched by torchrun: join its process group for this run (DDP)
        with distributed_session(config.train.device):
            return run_tabular(config, data, output_dir, console, resume, on_epoch=on_epoch)
    ctx = current_context()
    console = console if ctx.is_main else None  # rank 0 alone prints and writes the run's files
    check_experiment(config, data)
    torch.manual_seed(config.seed)
    model = build_model(config.model_name, data.schema, config.model)
    paper = getattr(model, "paper_optimizers", None)
    weights = dict(config.train.task_weights or {})
    trainer = PointwiseTrainer(
        model, data, config.train, config.seed, console=console, default_groups=paper() if paper else None,
        task_weights=tuple(float(weights.get(t, 1.0)) for t in data.schema.labels),
    )
    trainer.on_epoch = on_epoch

    def open_run() -> tuple[dict[str, Any] | None, RunRecorder]:
        state = None
        if resume is not None:
            previous = load_run_config(resume)
            if previous.replace(train=config.train) != config or dataclasses.replace(previous.train, epochs=config.train.epochs) != config.train:
                raise ConfigError(f"{resume} was trained with another config; only train.epochs may change on --resume")
            state = load_checkpoint(resume, "last.pt")
            if config.train.epochs <= state["epoch"]:
                raise ConfigError(f"{resume} already ran {state['epoch']} epochs; pass --epochs N with N > {state['epoch']} to continue it")
            recorder = RunRecorder.reopen(resume, config)
            recorder.epochs = [r for r in recorder.epochs if r["epoch"] <= state["epoch"]]
        else:
            recorder = RunRecorder(output_dir, config)
        Preprocessor.from_dict(data.preprocessing).save(recorder.path / "preprocessing.json")
        return state, recorder

    state, recorder = ctx.on_main(open_run)  # under DDP rank 0 reads the run and sends it to the others
    trainer.recorder = recorder if ctx.is_main else None
    try:
        with ctx.lost_rank_errors():
            fit = trainer.fit(resume=state)
    except BaseException as exc:
        if resume is None and ctx.is_main:
            _keep_or_remove_partial_run(recorder.path, exc)
        raise
    summary = {"model": config.model_name, "dataset": config.data.name, **fit.summary, "data": data.info}
    if ctx.is_main:
        recorder.write_summary(summary)
    return RunResult(path=recorder.path, summary=summary, history=fit.history, model=model)


def run_experiment(
    config: ExperimentConfig,
    data_dir: str | Path | None = None,
    output_dir: str | Path = "runs",
    console: Console | None = None,
    data: LeaveOneOutData | TabularData | None = None,
    resume: str | Path | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
) -> RunResult:
    """Train and evaluate one configuration, writing a run directory.

    ``on_epoch`` is called with each training epoch's record of the run's own model (not of
    NeuMF's GMF / MLP pre-training); ``recforge tune`` prunes trials there.

    With ``config.pretrain.enabled`` (NeuMF only), GMF and MLP with the same factors are trained
    first (each in its own run directory) unless ``pretrain.gmf_run`` / ``mlp_run`` name finished
    runs; NeuMF is initialised from them (He et al. 2017, Sec. 3.4.1) and fine-tuned with
    ``pretrain.optimizer`` at ``pretrain.lr``.

    Raises:
        ConfigError: for pre-training on a model other than NeuMF, or mismatched pre-trained runs.
        DataError / DataMissingError: for missing or malformed data.
        TrainingError: if the loss diverges.
    """
    if needs_session():  # launched by torchrun: join its process group for this run (DDP)
        with distributed_session(config.train.device):
            return run_experiment(config, data_dir, output_dir, console, data, resume, on_epoch=on_epoch)
    ctx = current_context()
    started = time.perf_counter()
    # a registered dataset read here from a data directory: the run records which one
    from_data_dir = data is None and not config.data.path and not config.data.encoded and ctx.is_main
    if data is None:
        data = ctx.main_first(lambda: load_data(config, data_dir))  # rank 0 fills the cache, the others read it
    if isinstance(data, TabularData):
        result = run_tabular(config, data, output_dir, console, resume, on_epoch=on_epoch)
        if from_data_dir:
            record_data_dir(result.path, data_dir)
        return result
    if resume is not None:
        raise ConfigError("--resume is available for tabular (CTR) runs; implicit-feedback runs are short enough to re-run")
    check_experiment(config, data)
    console = console if ctx.is_main else None
    torch.manual_seed(config.seed)  # the initial weights are part of what the seed fixes
    model = build_model(config.model_name, data.schema, config.model)
    optimizer, lr = config.train.optimizer, config.train.lr
    extra: dict[str, Any] = {}
    if config.pretrain.enabled:
        if not isinstance(model, NeuMF):
            raise ConfigError(f"pretrain.enabled applies to neumf only, not {config.model_name}")
        parts = {}
        for name, given in (("gmf", config.pretrain.gmf_run), ("mlp", config.pretrain.mlp_run)):
            sub_config = config.replace(
                model_name=name, pretrain=dataclasses.replace(config.pretrain, enabled=False, gmf_run=None, mlp_run=None)
            )
            if given:
                parts[name] = load_trained_model(given, expect=sub_config)
                extra[f"pretrained_{name}_run"] = str(given)
            else:
                if console:
                    console.rule(f"pre-training {name.upper()}")
                result = run_experiment(sub_config, output_dir=output_dir, console=console, data=data)
                parts[name] = result.model
                extra[f"pretrained_{name}_run"] = str(result.path)
        assert isinstance(parts["gmf"], GMF) and isinstance(parts["mlp"], NCFMLP)
        model.load_pretrained(parts["gmf"], parts["mlp"], alpha=config.pretrain.alpha)
        optimizer, lr = config.pretrain.optimizer, config.pretrain.lr
        if console:
            console.rule(f"fine-tuning NeuMF ({optimizer}, lr {lr})")
    trainer = Trainer(model, data, config.train, config.seed, optimizer=optimizer, lr=lr, console=console)
    trainer.on_epoch = on_epoch
    recorder = ctx.on_main(lambda: RunRecorder(output_dir, config))  # rank 0 alone writes run files
    trainer.recorder = recorder if ctx.is_main else None
    try:
        with ctx.lost_rank_errors():
            fit: FitResult = trainer.fit()
    except BaseException as exc:
        if ctx.is_main:
            _keep_or_remove_partial_run(recorder.path, exc)
        raise
    if ctx.is_main:
        _write_interactions(recorder.path, config, data, data_dir)
    summary = {"model": config.model_name, "dataset": config.data.name, **fit.summary, **extra}
    if extra:
        summary["timings"]["total_with_pretraining_s"] = time.perf_counter() - started
    if ctx.is_main:
        recorder.write_summary(summary)  # the trainer's summary plus model, dataset and pre-training runs
    if from_data_dir:
        record_data_dir(recorder.path, data_dir)
    return RunResult(path=recorder.path, summary=summary, history=fit.history, model=model)


def _write_interactions(run_dir: Path, config: ExperimentConfig, data: LeaveOneOutData, data_dir: str | Path | None) -> None:
    """The run artefacts ``recforge recommend`` reads (:mod:`recforge.data.id_maps`): training pairs and raw-id maps.

    An own log carries its vocabularies; the raw GroupLens datasets map ids in ascending raw-id
    order (the sorted raw ids of the ratings file); other registered files hold dense ids already.
    """
    import numpy as np
    import pyarrow as pa

    from recforge.data.id_maps import write_run_artefacts

    user_ids, item_ids = getattr(data, "user_ids", None), getattr(data, "item_ids", None)
    if user_ids is None or item_ids is None:
        source = get_dataset(config.data.name)
        if hasattr(source, "read_ratings"):
            try:
                raw_users, raw_items, _ = source.read_ratings(source.verify(data_dir)["ratings"])
            except RecforgeError as exc:  # data given directly (tests, compare) without its files
                warnings.warn(f"no {run_dir.name}/interactions.npz written: {exc}", stacklevel=2)
                return
            user_ids, item_ids = pa.array(np.unique(raw_users)), pa.array(np.unique(raw_items))
        else:
            user_ids, item_ids = pa.array(np.arange(data.num_users)), pa.array(np.arange(data.num_items))
    if (len(user_ids), len(item_ids)) != (data.num_users, data.num_items):
        warnings.warn(f"no {run_dir.name}/interactions.npz written: the id maps do not match the data's sizes", stacklevel=2)
        return
    write_run_artefacts(run_dir, data.train_users, data.train_items, data.num_users, data.num_items, user_ids, item_ids)


def _keep_or_remove_partial_run(path: Path, exc: BaseException) -> None:
    """After a failed run: delete a directory that holds no checkpoint yet, else say where it is."""
    if not (path / "checkpoint.pt").exists():
        shutil.rmtree(path, ignore_errors=True)
        return
    note = f"partial run kept in {path} (checkpoint of the best epoch so far; no summary.json)"
    if isinstance(exc, RecforgeError):
        exc.args = (f"{exc.args[0] if exc.args else exc}; {note}",)
    elif isinstance(exc, KeyboardInterrupt):
        print(note, file=sys.stderr)


def load_trained_model(run_dir: str | Path, expect: ExperimentConfig | None = None) -> nn.Module:
    """Rebuild a run's model from its config and load the selected checkpoint.

    Args:
        run_dir: a run directory.
        expect: if given, the run's model name and model config must equal this one's.

    Raises:
        ConfigError: if the directory is not a finished run or does not match ``expect``.
    """
    config = load_run_config(run_dir)
    if expect is not None:
        if config.data != expect.data:
            raise ConfigError(f"{run_dir} was trained on {config.data}, expected {expect.data}")
        if (config.model_name, config.model) != (expect.model_name, expect.model):
            raise ConfigError(
                f"{run_dir} trained {config.model_name} {config.model}, expected {expect.model_name} {expect.model}"
            )
    state = load_checkpoint(run_dir)
    tabular = not config.data.path and not config.data.encoded and isinstance(get_dataset(config.data.name), TabularSource)
    if tabular and not (Path(run_dir) / "preprocessing.json").is_file():
        raise ConfigError(f"{run_dir}/preprocessing.json is missing: the run's vocabularies are needed to rebuild its model")
    if (Path(run_dir) / "preprocessing.json").is_file():
        schema = Preprocessor.load(Path(run_dir) / "preprocessing.json").schema
        model = build_model(config.model_name, schema, config.model)
        _load_weights(model, state, run_dir)
        return model
    sizes = state.get("schema")
    if not sizes or "model" not in state:
        raise ConfigError(f"{run_dir}/checkpoint.pt lacks the schema sizes; re-train the run with this version")
    model = build_model(config.model_name, user_item_schema(sizes["num_users"], sizes["num_items"]), config.model)
    _load_weights(model, state, run_dir)
    return model


def _load_weights(model: nn.Module, state: dict[str, Any], run_dir: str | Path) -> None:
    load_model_weights(model, state, run_dir)  # shared with serving (recforge.serving.predictor)


def _unfinished_note(run_dir: Path, config: ExperimentConfig) -> str:
    """The warning for scoring a run that has no summary.json."""
    try:
        lines = (run_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
        epochs = max((json.loads(line).get("epoch", 0) for line in lines if line.strip()), default=0)
        done = f"{epochs} of {config.train.epochs} epochs trained"
    except (OSError, ValueError, AttributeError):  # missing or damaged log: say less
        done = f"of at most {config.train.epochs} epochs"
    return (
        f"{run_dir} has no summary.json: the run did not finish (interrupted?); scoring the checkpoint of its "
        f"best epoch so far ({done}), not a finished run's result"
    )


def evaluate_run(
    run_dir: str | Path, data_dir: str | Path | None = None, full_ranking: bool = True, device: str = "cpu"
) -> dict[str, float]:
    """Re-score a finished run's checkpoint on its test split (and validation split).

    A run without ``summary.json`` (interrupted) is scored too, from the checkpoint of its best
    epoch so far, with a warning saying so.

    Returns:
        Metrics keyed ``valid/...``, ``test/...`` and, with ``full_ranking``, ``test_full/...``.

    Raises:
        ConfigError: if ``run_dir`` does not exist, is not a run directory or has no checkpoint.
    """
    if not Path(run_dir).is_dir():
        what = "it is a file" if Path(run_dir).exists() else "it does not exist"
        raise ConfigError(f"{run_dir} is not a run directory: {what}")
    config = load_run_config(run_dir)
    data = load_data(config, run_data_dir(run_dir, data_dir))
    model = load_trained_model(run_dir)
    if not (Path(run_dir) / "summary.json").is_file():
        warnings.warn(_unfinished_note(Path(run_dir), config), stacklevel=2)
    if isinstance(data, TabularData):
        saved = Preprocessor.load(Path(run_dir) / "preprocessing.json").to_dict()
        if saved != data.preprocessing:
            raise ConfigError(f"{run_dir} was trained on a different preprocessing of {config.data.name} (files or schema changed)")
        tab = PointwiseTrainer(model, data, dataclasses.replace(config.train, device=device), config.seed)
        model.to(tab.device)
        return {f"{split}/{k}": v for split in ("valid", "test") for k, v in tab.evaluate(split).items()}
    sizes = load_checkpoint(run_dir)["schema"]
    if (sizes["num_users"], sizes["num_items"]) != (data.num_users, data.num_items):
        raise ConfigError(
            f"{run_dir} was trained with {sizes['num_users']} users / {sizes['num_items']} items, but "
            f"{config.data.name} has {data.num_users} / {data.num_items}"
        )
    train_config = dataclasses.replace(config.train, device=device)
    trainer = Trainer(model, data, train_config, config.seed)  # checks the device first
    model.to(trainer.device)
    metrics: dict[str, float] = {}
    if data.valid_candidates is not None:
        metrics.update({f"valid/{k}": v for k, v in trainer.evaluate_split("valid").items()})
    metrics.update({f"test/{k}": v for k, v in trainer.evaluate_split("test").items()})
    if full_ranking:
        metrics.update({f"test_full/{k}": v for k, v in trainer.evaluate_full().items()})
    return metrics
