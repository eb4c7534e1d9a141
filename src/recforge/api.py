"""The Python API: train, load, predict and recommend from a notebook or a script.

::

    import recforge

    run = recforge.train("deepfm", dataset="uci-adult", epochs=1, batch_size=1024)
    run.metrics["test/auc"]                      # summary metrics of the selected epoch
    scores = run.predict(rows)                   # p_income per row (rows: DataFrame / Arrow table / dicts)
    run = recforge.load(run.path)                # the same run, later

    ncf = recforge.train("neumf", dataset="movielens-1m-ncf", epochs=1)
    ncf.recommend([17, 42], k=10)                # top-10 items per user (raw ids)

``train`` builds its config exactly as ``recforge train`` does (:func:`train_config`): a raw
config dict (a ``config=`` YAML file, or empty), then dotted overrides. Keyword arguments map onto
the same dotted keys as the CLI options: ``dataset`` -> ``data.name``, ``data`` -> ``data.path``,
``label`` -> ``data.label``, ``epochs`` -> ``train.epochs``, ``seed`` -> ``seed``; any other
keyword is looked up as a field of ``train``, then of ``data``, else given to ``model``
(``batch_size=512`` -> ``train.batch_size``, ``hidden_units=[32]`` -> ``model.hidden_units``);
``set={"pretrain.enabled": True}`` takes dotted keys as they are. Unknown keys are rejected
(:func:`recforge.config.from_dict`) with the same one-line ConfigError as the CLI.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from functools import cached_property
from pathlib import Path
from typing import Any

from recforge.config import DataConfig, ExperimentConfig, TrainConfig, apply_overrides, from_dict, read_yaml
from recforge.errors import ConfigError


def train_config(
    model: str, raw: dict[str, Any], overrides: dict[str, Any] | None = None, set_: list[str] | tuple[str, ...] = (), where: str = "the config"
) -> ExperimentConfig:
    """The resolved config of training ``model``: ``raw`` with typed dotted ``overrides``, then
    ``--set``-style ``key=value`` strings, then ``model.name``.

    Args:
        model: registered model name.
        raw: a nested config dict (a YAML file's content, or ``{}``).
        overrides: dotted keys to values (``{"train.epochs": 2}``); None values are skipped.
        set_: ``section.key=value`` strings, values parsed as YAML (as ``--set``).
        where: what names another model, for the error (the CLI: ``config FILE`` or ``--set model.name``).

    Raises:
        ConfigError: an unknown key or bad value, or a config naming another model.
    """
    values = {k: v for k, v in (overrides or {}).items() if v is not None}
    raw = apply_overrides(raw, list(set_), values)
    data = raw.get("data") if isinstance(raw.get("data"), dict) else {}
    if data.get("path") and data.get("user_col") and not data.get("name"):  # an own log's runs are named after its file
        from recforge.data.datasets.interaction_log import LogOptions

        paths = (data["path"],) if isinstance(data["path"], str) else tuple(data["path"])
        data["name"] = LogOptions(paths, str(data["user_col"]), "").name
    section = raw.get("model") if isinstance(raw.get("model"), dict) else None
    if section is not None and section.get("name", model) != model:
        raise ConfigError(f"{where} names model {section['name']!r}, but the command trains {model!r}")
    return from_dict(apply_overrides(raw, [], {"model.name": model}))


def run_training(
    config: ExperimentConfig,
    data_dir: str | Path | None = None,
    output_dir: str | Path = "runs",
    console: Any = None,
    resume: str | Path | None = None,
    on_schema: Callable[[Any, Any, Any], None] | None = None,
) -> Any:
    """Train a resolved config (a registered dataset, an own table or an own log) and write its run.

    An own table (``data.path`` + ``data.label``) is read and encoded first, and its schema (as
    declared, or inferred) is saved as ``schema.yaml`` in the run when none was given.

    Args:
        config: the resolved config (:func:`train_config`).
        data_dir: data directory of registered datasets.
        output_dir: where the run directory goes.
        console: a rich Console for progress, or None.
        resume: a run directory to continue (CTR runs).
        on_schema: own tables: called as ``on_schema(schema, source, data)`` once the table is
            read and encoded, before training (the CLI prints the inferred schema,
            ``source.report`` and the imputed counts in ``data.info`` there).

    Returns:
        The :class:`~recforge.training.experiment.RunResult`.

    Raises:
        ConfigError, DataError, TrainingError: as :func:`recforge.training.experiment.run_experiment`.
    """
    from recforge.training.experiment import run_experiment

    schema = data = None
    if getattr(config.data, "label", None):
        from recforge.training.experiment import table_source

        source = table_source(config)
        data = source.load(seed=config.data.split_seed)
        schema = source.default_schema()
        if on_schema is not None:
            on_schema(schema, source, data)
    result = run_experiment(config, data_dir=data_dir, output_dir=output_dir, console=console, resume=resume, data=data)
    if schema is not None and not config.data.schema:
        import yaml

        from recforge.data.files import atomic_write_text

        atomic_write_text(result.path / "schema.yaml", yaml.safe_dump(schema.to_dict(), sort_keys=False))
    return result


def _dotted(key: str) -> str:
    """The config key a ``train(...)`` keyword sets (see the module doc)."""
    if key == "seed" or "." in key:
        return key
    for section, cls in (("train", TrainConfig), ("data", DataConfig)):
        if key in {f.name for f in dataclasses.fields(cls)}:
            return f"{section}.{key}"
    return f"model.{key}"


def train(
    model: str,
    dataset: str | None = None,
    data: str | Path | list[str | Path] | None = None,
    label: str | list[str] | None = None,
    epochs: int | None = None,
    *,
    config: str | Path | None = None,
    set: dict[str, Any] | None = None,  # noqa: A002 - mirrors the CLI's --set
    data_dir: str | Path | None = None,
    output_dir: str | Path = "runs",
    quiet: bool = True,
    **overrides: Any,
) -> "Run":
    """Train ``model`` as ``recforge train`` does and return the finished run.

    Args:
        model: registered model name (``recforge models``).
        dataset: registered dataset name (``data.name``).
        data: your own table file(s) (``data.path``); with ``label`` (``data.label``).
        label: the label column(s) of ``data`` (``"a,b"`` or a list: multi-task).
        epochs: maximum epochs (``train.epochs``).
        config: a YAML config file to start from.
        set: dotted keys to values, applied as ``--set`` is.
        data_dir: the data directory of registered datasets.
        output_dir: where the run directory is written.
        quiet: no progress output (else on stderr, as the CLI).
        **overrides: other config keys (see the module doc).

    Returns:
        The finished :class:`Run`.

    Raises:
        ConfigError: no dataset and no data, unknown keys, a model/data mismatch.
        DataError: missing or malformed data.
    """
    raw = read_yaml(config) if config is not None else {}
    if dataset is None and data is None and not (isinstance(raw.get("data"), dict) and (raw["data"].get("name") or raw["data"].get("path"))):
        raise ConfigError("give dataset=NAME (see `recforge data list`) or data=FILE with label=COLUMN")
    paths = labels = None
    if data is not None:  # absolute, as the CLI writes them: evaluate may run elsewhere
        paths = [str(Path(p).resolve()) for p in (data if isinstance(data, (list, tuple)) else [data])]
    if label is not None:
        labels = [t.strip() for t in label.split(",") if t.strip()] if isinstance(label, str) else list(label)
    values: dict[str, Any] = {"data.name": dataset, "data.path": paths, "data.label": labels, "train.epochs": epochs}
    for key, value in overrides.items():
        values[_dotted(key)] = value
    values.update(set or {})
    resolved = train_config(model, raw, values)
    console = None
    if not quiet:
        from rich.console import Console

        console = Console(stderr=True, soft_wrap=True)
    result = run_training(resolved, data_dir=data_dir, output_dir=output_dir, console=console)
    run = Run(result.path, data_dir=data_dir)
    run.__dict__["config"] = resolved
    return run


def load(run_dir: str | Path, data_dir: str | Path | None = None) -> "Run":
    """A finished (or interrupted) run directory.

    Raises:
        ConfigError: if ``run_dir`` is not a run directory.
    """
    run = Run(Path(run_dir), data_dir=data_dir)
    run.config  # noqa: B018 - fails now, with a clear message, for a folder that is not a run
    return run


class Run:
    """A run directory written by ``recforge train`` (or :func:`train`).

    Args:
        path: the run directory.
        data_dir: data directory of registered datasets (for ``recommend`` on runs that need
            their dataset's raw ids).

    Attributes:
        path: the run directory.
    """

    def __init__(self, path: str | Path, data_dir: str | Path | None = None):
        self.path = Path(path)
        self.data_dir = data_dir

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r})"

    @cached_property
    def config(self) -> ExperimentConfig:
        """The run's resolved config (``config.yaml``)."""
        from recforge.training.records import load_run_config

        if not self.path.is_dir():
            raise ConfigError(f"{self.path} is not a run directory: {'it is a file' if self.path.exists() else 'it does not exist'}")
        return load_run_config(self.path)

    @property
    def summary(self) -> dict[str, Any]:
        """``summary.json`` (selected epoch, metrics, timings, environment).

        Raises:
            ConfigError: if the run did not finish (no ``summary.json``).
        """
        path = self.path / "summary.json"
        if not path.is_file():
            raise ConfigError(f"{self.path} has no summary.json: the run did not finish")
        return json.loads(path.read_text(encoding="utf-8"))

    @property
    def metrics(self) -> dict[str, float]:
        """The summary's validation and test metrics of the selected epoch: ``{"test/auc": ...,
        "valid/auc": ..., "test/income/auc": ...}``."""
        return {
            k: float(v) for k, v in self.summary.items()
            if k.startswith(("test/", "valid/", "test_full/")) and isinstance(v, (int, float)) and not isinstance(v, bool)
        }

    @property
    def schema(self) -> Any:
        """The fitted feature :class:`~recforge.data.schema.Schema` (``preprocessing.json``);
        for NCF / MF / ItemPop runs, the (user, item) schema from the checkpoint."""
        prep = self.path / "preprocessing.json"
        if prep.is_file():
            from recforge.data.preprocessing import Preprocessor

            return Preprocessor.load(prep).schema
        from recforge.data.schema import user_item_schema
        from recforge.training.records import load_checkpoint

        sizes = load_checkpoint(self.path).get("schema") or {}
        if "num_users" not in sizes:
            raise ConfigError(f"{self.path} has neither preprocessing.json nor the schema sizes in its checkpoint")
        return user_item_schema(sizes["num_users"], sizes["num_items"])

    @cached_property
    def predictor(self) -> Any:
        """The run's :class:`~recforge.serving.predictor.Predictor` (loaded once)."""
        from recforge.serving.predictor import Predictor

        return Predictor.from_run(self.path)

    def predict(self, rows: Any) -> Any:
        """Probabilities of raw rows, one column ``p_<task>`` per task, in row order.

        Args:
            rows: a pandas DataFrame, a pyarrow Table, a list of row dicts or a dict of columns;
                columns matched by name, extra columns ignored.

        Returns:
            A pandas DataFrame (with the input's index) for a DataFrame, else a pyarrow Table.

        Raises:
            DataError: a missing feature column (named), or a value a feature cannot take.
            ConfigError: an NCF / MF / ItemPop run (use :meth:`recommend`).
        """
        table = self.predictor.predict_table(rows)
        if type(rows).__module__.startswith("pandas") and hasattr(rows, "index"):
            frame = table.to_pandas()
            frame.index = rows.index
            return frame
        return table

    def recommend(self, users: Any, k: int = 10, include_seen: bool = False) -> Any:
        """Top-``k`` items per user (raw ids), training items left out unless ``include_seen``;
        a cold user gets the popularity ranking, marked ``cold``.

        Returns:
            A pyarrow Table ``user, rank, item, score, cold`` (see
            :mod:`recforge.serving.recommender`); a DataFrame if pandas is installed and
            ``users`` is a pandas object.
        """
        from recforge.serving.recommender import Recommender

        recommender = self.__dict__.get("_recommender")
        if recommender is None:
            recommender = self.__dict__["_recommender"] = Recommender.from_run(self.path, self.data_dir)
        table = recommender.recommend(users, k=k, include_seen=include_seen)
        return table.to_pandas() if type(users).__module__.startswith("pandas") else table
