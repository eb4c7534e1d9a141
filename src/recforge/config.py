"""Typed experiment configuration from YAML files and ``--set key=value`` overrides.

Layout of a config file (every key optional; unknown keys are rejected with their dotted path)::

    model: {name: neumf, factors: 8}        # remaining keys go to the model's config dataclass
    data: {name: movielens-1m-ncf}
    train: {epochs: 20, batch_size: 256, optimizer: adam, lr: 0.001, num_negatives: 4}
    pretrain: {enabled: false, alpha: 0.5, optimizer: sgd, lr: 0.001}
    seed: 42
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from recforge.errors import ConfigError

OPTIMIZERS = ("adam", "sgd", "adagrad", "ftrl")
PRECISIONS = ("fp32", "bf16")  # train.precision: float32, or bfloat16 autocast of the training forward pass
RANKING_MONITORS = ("hit_rate", "ndcg")
#: ranking metrics of several held-out items per user (``--split last:N`` / ``time:COL`` on an own log) only
HELD_OUT_MONITORS = ("recall", "precision", "map")
POINTWISE_MONITORS = ("valid/auc", "valid/log_loss")
_GROUP_KEYS = ("optimizer", "lr", "weight_decay", "l1", "l2")


@dataclass(frozen=True)
class DataConfig:
    """Which dataset to use and how to split it.

    Attributes:
        name: registered dataset name (``recforge data list``).
        split_seed: fixes random hold-outs and sampled evaluation negatives; the same for every
            model and training seed so comparisons share one split.
        validation: hold out one random training interaction per user for model selection.
        schema: path of a YAML schema replacing a tabular dataset's default features
            (see :mod:`recforge.data.schema`).
        tasks: label columns to learn (multi-task), in order; empty: the dataset's default label.
        encoded: folder written by ``recforge data prepare NAME --input FILE --output DIR`` for a
            Criteo-format dataset: train on its encoded columns (split, vocabularies and schema as
            they were encoded) instead of the registered files.
        path: own data files (``--data``) instead of a registered dataset.
        user_col, item_col: with ``path``: the log's user and item id columns (integers or
            strings); ``path`` is then an interaction log
            (:mod:`recforge.data.datasets.interaction_log`).
        time_col: the log's event-time column (integers or timestamps); None: no times.
        category_col: the log's item-category column for sequence models; None: one category.
        columns: names of the fields of headerless CSV/TSV files, in order (empty: a header).
        sep: field separator of CSV/TSV files (default: tab for ``.tsv``, else comma).
        label: with ``path`` (and no ``user_col``): the label column(s) of an own CTR table
            (:mod:`recforge.data.datasets.own`); ``name`` then becomes the first file's stem
            (the run directory's dataset name) and cannot name a registered dataset.
        split: own table: ``random`` (seeded stratified 0.8 / 0.1 / 0.1) or ``time:COL`` (a
            global cut at the 80 % / 90 % quantiles of COL). Own log (``user_col``): ``random`` or
            ``leave-one-out`` (each user's latest item), ``last:N`` or ``time:COL`` (several test
            items per user, :mod:`recforge.data.held_out_sets`).
        valid_path, test_path: own table: the user's validation / test files.
        positive: own table: the label value that means 1 (None: labels are 0/1 or true/false).
        ignore: own table: columns never used as features by the inferred schema.
        sequence: own table: string columns of ``a|b|c`` lists, inferred as sequence features.
    """

    name: str = "movielens-1m-ncf"
    split_seed: int = 0
    validation: bool = True
    schema: str | None = None
    tasks: tuple[str, ...] = ()
    encoded: str | None = None
    path: tuple[str, ...] = ()
    user_col: str | None = None
    item_col: str | None = None
    time_col: str | None = None
    category_col: str | None = None
    columns: tuple[str, ...] = ()
    sep: str | None = None
    label: tuple[str, ...] = ()
    split: str = "random"
    valid_path: tuple[str, ...] = ()
    test_path: tuple[str, ...] = ()
    positive: str | None = None
    ignore: tuple[str, ...] = ()
    sequence: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        check_seed("data.split_seed", self.split_seed)
        if len(set(self.tasks)) != len(self.tasks) or any(not isinstance(t, str) or not t for t in self.tasks):
            raise ConfigError(f"data.tasks must be distinct label names, got {list(self.tasks)}")
        if self.encoded is not None and (self.schema or self.tasks):
            raise ConfigError("data.encoded: the encoded folder fixes the features and labels; data.schema and data.tasks cannot be given with it")
        if (self.user_col or self.item_col or self.time_col or self.category_col) and not self.path:
            raise ConfigError("data.user_col / item_col / time_col / category_col describe an own log: give its file with --data (data.path)")
        if bool(self.user_col) != bool(self.item_col):
            raise ConfigError("an interaction log needs both data.user_col (--user-col) and data.item_col (--item-col)")
        if len(set(self.columns)) != len(self.columns):
            raise ConfigError(f"data.columns must be distinct names, got {list(self.columns)}")
        self._check_own_table()

    def _check_own_table(self) -> None:
        """The own-table keys (``label`` ...) need ``path``; ``name`` becomes the file's stem."""
        table_keys = {"label": self.label, "valid_path": self.valid_path, "test_path": self.test_path, "positive": self.positive,
                      "ignore": self.ignore, "sequence": self.sequence, "split": self.split != "random"}
        given = [k for k, v in table_keys.items() if v]
        if self.user_col and not self.label:  # an own log's split: leave-one-out, last:N or time:COL
            from recforge.data.held_out_sets import parse_log_split

            parse_log_split(self.split)
            given = [k for k in given if k != "split"]
        if not self.label:
            if given:
                raise ConfigError(f"data.{given[0]} applies to an own table: give its file with --data (data.path) and its label with --label (data.label)")
            return
        if not self.path:
            raise ConfigError("data.label names the label of an own table: give its file with --data (data.path)")
        if self.user_col:
            raise ConfigError("data.label is for a CTR table; an interaction log (data.user_col) has no label column")
        if self.tasks:
            raise ConfigError("data.tasks: for an own table name the label column(s) with --label (data.label)")
        if len(set(self.label)) != len(self.label) or any(not isinstance(t, str) or not t for t in self.label):
            raise ConfigError(f"data.label must be distinct column names, got {list(self.label)}")
        if not (self.split == "random" or (self.split.startswith("time:") and self.split[5:].strip())):
            raise ConfigError(f"data.split must be 'random' or 'time:COLUMN', got {self.split!r}")
        from recforge.data.table_files import table_name

        stem = table_name(Path(self.path[0]))
        if self.name not in (DataConfig.name, stem):
            raise ConfigError(f"data.name {self.name!r} and data.path are exclusive: train on a registered dataset or on your own file, not both")
        object.__setattr__(self, "name", stem)


@dataclass(frozen=True)
class TrainConfig:
    """Training loop settings (defaults: He et al. 2017, Sec. 4.1).

    Attributes:
        epochs: maximum epochs.
        batch_size: examples per step (positives and negatives together).
        optimizer: adam, sgd or adagrad.
        lr: learning rate.
        weight_decay: L2 penalty added by the optimiser (to every row of every table, every step).
        embedding_l2: lambda of a per-example L2 penalty on the embedding rows each batch looks
            up, lambda / B * sum ||e||^2 (0: off); see ``recforge.training.regularization``.
        num_negatives: sampled negatives per observed interaction, redrawn every epoch.
        monitor: validation metric used for model selection and early stopping; ``auto`` is
            ``valid/ndcg@K`` (first K) for implicit feedback and ``valid/auc`` for CTR data.
        patience: stop after this many epochs without improvement (None: run all epochs).
        lr_patience: multiply the learning rate by ``lr_decay`` after this many epochs without
            improvement of the monitor (ReduceLROnPlateau; None: constant rate).
        lr_decay: the factor of ``lr_patience``.
        sparse_embeddings: embedding tables produce sparse (row-wise) gradients, and their
            optimiser updates only the rows in the batch (Adam becomes PyTorch's SparseAdam, the
            "lazy Adam" whose moments of absent rows do not decay).
        groups: optimiser per parameter group of models that name groups (for example Wide &
            Deep's ``wide`` and ``deep``): ``{wide: {optimizer: ftrl, lr: 0.2, l1: 0.001}}``.
            None: the model's paper setting if it states one, else one optimiser for all.
        eval_batch_size: rows per forward pass when scoring validation and test rows.
        shuffle: CTR data order. ``full``: the split in memory, a new full permutation every
            epoch; ``block``: out of core, the split read from its (memory-mapped) columns one
            buffer at a time, blocks of rows permuted and then the rows within each buffer
            (bounded memory; its statistical cost is in :mod:`recforge.data.row_order`);
            ``auto``: ``block`` for memory-mapped splits (``data.encoded``, the prepared
            ``criteo``) of more than 2 M rows, else ``full``.
        task_weights: multi-task loss weight per task name (lambda_t; missing tasks weigh 1).
        ks: cut-offs for HR@K / NDCG@K.
        full_ranking: also score the selected model against the whole catalogue at the end.
        report_best_test_epoch: also score the test set every epoch, only to report the paper-style
            best-test-epoch figure beside the honest one (optimistic; never used for selection or
            early stopping; the reported test metrics are those of the validation-selected epoch).
        score_test: score the test split at the selected epoch (and, with
            ``report_best_test_epoch``, every epoch). False seals the test set: the run reads
            validation metrics only and its summary has no ``test/...`` keys (``recforge tune``
            trials; the winner is scored afterwards, see :mod:`recforge.tuning.selection`).
        device: cpu, cuda, or cuda:N.
        precision: ``fp32``, or ``bf16`` for bfloat16 autocast of the training forward pass
            (matrix products and embeddings in bfloat16, the loss, the optimiser state and
            every evaluation in float32; Micikevicius et al. 2018, "Mixed Precision Training",
            with bfloat16 needing no loss scaling). Where it helps: GPUs with bf16 tensor cores.
    """

    epochs: int = 20
    batch_size: int = 256
    optimizer: str = "adam"
    lr: float = 0.001
    weight_decay: float = 0.0
    embedding_l2: float = 0.0
    num_negatives: int = 4
    monitor: str = "auto"
    patience: int | None = None
    lr_patience: int | None = None
    lr_decay: float = 0.1
    sparse_embeddings: bool = False
    groups: dict[str, Any] | None = None
    eval_batch_size: int = 16384
    shuffle: str = "auto"
    task_weights: dict[str, float] | None = None
    ks: tuple[int, ...] = (10,)
    full_ranking: bool = True
    report_best_test_epoch: bool = True
    score_test: bool = True
    device: str = "cpu"
    precision: str = "fp32"

    def __post_init__(self) -> None:
        _positive("train.epochs", self.epochs, allow_zero=True)
        _positive("train.batch_size", self.batch_size)
        if self.lr <= 0:
            raise ConfigError(f"train.lr must be > 0, got {self.lr}")
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"train.optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        if self.weight_decay < 0:
            raise ConfigError(f"train.weight_decay must be >= 0, got {self.weight_decay}")
        if not 0.0 <= self.embedding_l2 < float("inf"):
            raise ConfigError(f"train.embedding_l2 must be a finite number >= 0, got {self.embedding_l2}")
        if self.num_negatives < 1:
            raise ConfigError(f"train.num_negatives must be >= 1 (BCE needs negatives), got {self.num_negatives}")
        if not self.ks:
            raise ConfigError("train.ks must list at least one cut-off, for example [10]")
        for k in self.ks:
            _positive("train.ks", k)
        valid_monitors = (["auto"] + [f"valid/{m}@{k}" for k in self.ks for m in RANKING_MONITORS + HELD_OUT_MONITORS]
                          + ["valid/mrr", *POINTWISE_MONITORS])
        if self.monitor not in valid_monitors:
            raise ConfigError(f"train.monitor must be one of {', '.join(valid_monitors)} (validation only), got {self.monitor!r}")
        if self.patience is not None:
            _positive("train.patience", self.patience)
        if self.lr_patience is not None:
            _positive("train.lr_patience", self.lr_patience)
        if not 0.0 < self.lr_decay < 1.0:
            raise ConfigError(f"train.lr_decay must be in (0, 1), got {self.lr_decay}")
        _positive("train.eval_batch_size", self.eval_batch_size)
        from recforge.data.row_order import SHUFFLES

        if self.shuffle not in SHUFFLES:
            raise ConfigError(f"train.shuffle must be one of {', '.join(SHUFFLES)}, got {self.shuffle!r}")
        for task, weight in (self.task_weights or {}).items():
            if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight) or weight < 0:
                raise ConfigError(f"train.task_weights.{task} must be a non-negative number, got {weight!r}")
        _check_device(self.device)
        if self.precision not in PRECISIONS:
            raise ConfigError(f"train.precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.groups is not None:
            if not isinstance(self.groups, dict):
                raise ConfigError(f"train.groups must map group names to optimiser settings, got {self.groups!r}")
            for group, spec in self.groups.items():
                if not isinstance(spec, dict):
                    raise ConfigError(f"train.groups.{group} must be a mapping such as {{optimizer: adam, lr: 0.001}}, got {spec!r}")
                bad = sorted(set(spec) - set(_GROUP_KEYS))
                if bad:
                    raise ConfigError(f"unknown key train.groups.{group}.{bad[0]}; valid: {', '.join(_GROUP_KEYS)}")
                if spec.get("optimizer", self.optimizer) not in OPTIMIZERS:
                    raise ConfigError(f"train.groups.{group}.optimizer must be one of {', '.join(OPTIMIZERS)}, got {spec.get('optimizer')!r}")
                for key in ("lr", "weight_decay", "l1", "l2"):
                    if key in spec and (isinstance(spec[key], bool) or not isinstance(spec[key], (int, float)) or spec[key] < 0 or (key == "lr" and spec[key] == 0)):
                        raise ConfigError(f"train.groups.{group}.{key} must be a {'positive' if key == 'lr' else 'non-negative'} number, got {spec[key]!r}")

    def resolved_monitor(self, kind: str) -> str:
        """The monitor for data of ``kind`` (``implicit`` or ``tabular``).

        Raises:
            ConfigError: if the monitor does not apply to that kind of data.
        """
        if self.monitor == "auto":
            return f"valid/ndcg@{self.ks[0]}" if kind == "implicit" else "valid/auc"
        if (self.monitor in POINTWISE_MONITORS) != (kind == "tabular"):
            valid = POINTWISE_MONITORS if kind == "tabular" else (
                "valid/ndcg@K", "valid/hit_rate@K", "valid/mrr", "valid/recall@K, precision@K, map@K (last:N / time:COL splits)")
            raise ConfigError(f"train.monitor {self.monitor!r} does not apply to {kind} data; use one of {', '.join(valid)}")
        return self.monitor

    @staticmethod
    def higher_is_better(monitor: str) -> bool:
        return not monitor.endswith("log_loss")


@dataclass(frozen=True)
class PretrainConfig:
    """NeuMF pre-training (He et al. 2017, Sec. 3.4.1): train GMF and MLP, combine with alpha,
    then fine-tune with vanilla SGD ("we optimize NeuMF with the vanilla SGD rather than Adam").

    Attributes:
        enabled: run pre-training (``--pretrain``).
        alpha: weight of GMF in the combined prediction layer.
        optimizer: optimiser of the fine-tuning stage.
        lr: learning rate of the fine-tuning stage (the paper does not state one).
        gmf_run, mlp_run: reuse finished GMF / MLP run directories instead of training them.
    """

    enabled: bool = False
    alpha: float = 0.5
    optimizer: str = "sgd"
    lr: float = 0.001
    gmf_run: str | None = None
    mlp_run: str | None = None

    def __post_init__(self) -> None:
        if not 0.0 <= self.alpha <= 1.0:
            raise ConfigError(f"pretrain.alpha must be in [0, 1], got {self.alpha}")
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"pretrain.optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        if self.lr <= 0:
            raise ConfigError(f"pretrain.lr must be > 0, got {self.lr}")
        if not self.enabled and (self.gmf_run or self.mlp_run):
            raise ConfigError("pretrain.gmf_run / pretrain.mlp_run are set but pretrain.enabled is false (add --pretrain)")


@dataclass(frozen=True)
class ExperimentConfig:
    """Everything that determines a run. ``model`` holds the model's own config dataclass."""

    model_name: str
    model: Any
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    seed: int = 42

    def __post_init__(self) -> None:
        # Settings the model ignores are dropped (for example mlp_layers of a GMF), so runs that
        # differ only there have one config: reuse, resume and pre-training find each other.
        used_by = getattr(self.model, "used_by", None)
        if used_by is not None:
            object.__setattr__(self, "model", used_by(self.model_name))

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (YAML/JSON-safe); ``from_dict`` round-trips it."""
        return {
            "model": {"name": self.model_name, **_plain(dataclasses.asdict(self.model))},
            "data": _plain(dataclasses.asdict(self.data)),
            "train": _plain(dataclasses.asdict(self.train)),
            "pretrain": _plain(dataclasses.asdict(self.pretrain)),
            "seed": self.seed,
        }

    def fingerprint(self) -> str:
        """Short hash of the resolved config (names run directories, detects reuse)."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:8]

    def replace(self, **changes: Any) -> "ExperimentConfig":
        return dataclasses.replace(self, **changes)


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _check_device(device: str) -> None:
    import torch

    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError):
        raise ConfigError(f"train.device must be cpu, cuda or cuda:N, got {device!r}") from None
    if parsed.type not in ("cpu", "cuda"):
        raise ConfigError(f"train.device must be cpu, cuda or cuda:N, got {device!r}")


def check_seed(name: str, value: int) -> int:
    """Seeds must be in [0, 2**32) (NumPy's and PyTorch's common range)."""
    if not 0 <= value < 2**32:
        raise ConfigError(f"{name} must be an integer in [0, 2**32), got {value}")
    return value


def _positive(name: str, value: int, allow_zero: bool = False) -> None:
    if value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {value}")


def _coerce(value: Any, hint: Any, path: str) -> Any:
    """Check/convert a YAML value to the dataclass field type ``hint``."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, path)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{path}: invalid value {value!r}")
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{path}: expected a list, got {value!r}")
        inner = typing.get_args(hint)[0]
        return tuple(_coerce(v, inner, f"{path}[{i}]") for i, v in enumerate(value))
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{path}: expected true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{path}: expected an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, str):
            try:  # YAML 1.1 reads 1e-3 (no dot) as a string
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{path}: expected a number, got {value!r}")
        if not math.isfinite(value):
            raise ConfigError(f"{path}: expected a finite number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{path}: expected a string, got {value!r}")
        return value
    return value


def build_dataclass(cls: type, values: dict[str, Any], section: str) -> Any:
    """Instantiate dataclass ``cls`` from ``values``, rejecting unknown keys and wrong types.

    Raises:
        ConfigError: naming the dotted key (for example ``train.lr``) and what was expected.
    """
    if not isinstance(values, dict):
        raise ConfigError(f"{section}: expected a mapping of keys to values, got {values!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    unknown = sorted((str(k) for k in set(values) - set(names)))
    if unknown:
        raise ConfigError(f"unknown key {section}.{unknown[0]}; valid keys in {section}: {', '.join(names) or '(none)'}")
    kwargs = {k: _coerce(v, hints[k], f"{section}.{k}") for k, v in values.items()}
    try:
        return cls(**kwargs)
    except TypeError as exc:  # pragma: no cover - defensive
        raise ConfigError(f"{section}: {exc}") from exc


def from_dict(raw: dict[str, Any]) -> ExperimentConfig:
    """Build an ExperimentConfig from a nested dict (as read from YAML).

    Raises:
        ConfigError: on unknown keys, wrong types, invalid values or an unknown model.
    """
    from recforge.models.registry import get_model_entry

    raw = dict(raw or {})
    unknown = sorted(str(k) for k in set(raw) - {"model", "data", "train", "pretrain", "seed"})
    if unknown:
        raise ConfigError(f"unknown top-level key {unknown[0]!r}; valid: model, data, train, pretrain, seed")
    for section in ("model", "data", "train", "pretrain"):
        if raw.get(section) is not None and not isinstance(raw[section], dict):
            raise ConfigError(f"{section}: expected a mapping of keys to values, got {raw[section]!r}")
    model_section = dict(raw.get("model") or {})
    name = model_section.pop("name", None)
    if not isinstance(name, str):
        raise ConfigError("model.name is required (for example: neumf)")
    entry = get_model_entry(name)
    seed = raw.get("seed", 42)
    return ExperimentConfig(
        model_name=name,
        model=build_dataclass(entry.config_cls, model_section, "model"),
        data=build_dataclass(DataConfig, raw.get("data") or {}, "data"),
        train=build_dataclass(TrainConfig, raw.get("train") or {}, "train"),
        pretrain=build_dataclass(PretrainConfig, raw.get("pretrain") or {}, "pretrain"),
        seed=check_seed("seed", _coerce(seed, int, "seed")),
    )


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping.

    Raises:
        ConfigError: if the file is missing, not valid YAML (with its line), or not a mapping.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start}); expected a YAML file") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f", line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}{where}: invalid YAML: {getattr(exc, 'problem', exc)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def apply_overrides(raw: dict[str, Any], overrides: list[str], values: dict[str, Any] | None = None) -> dict[str, Any]:
    """Apply ``key.path=value`` strings (values parsed as YAML) and typed ``values`` to a copy of ``raw``.

    Args:
        raw: nested config dict.
        overrides: ``--set`` strings such as ``model.factors=16``.
        values: already-typed values by dotted key (from CLI options), applied first.

    Raises:
        ConfigError: if an override lacks ``=``, its value is not valid YAML, or a path crosses a value.
    """
    out = copy.deepcopy(raw)
    pairs: list[tuple[str, Any]] = list((values or {}).items())
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set expects key=value (for example model.factors=16), got {item!r}")
        key, text = item.split("=", 1)
        try:
            pairs.append((key, yaml.safe_load(text)))
        except yaml.YAMLError:
            raise ConfigError(f"--set {key}: value {text!r} is not valid YAML") from None
    for key, value in pairs:
        node = out
        parts = key.strip().split(".")
        for part in parts[:-1]:
            if node.get(part) is None:
                node[part] = {}
            node = node[part]
            if not isinstance(node, dict):
                raise ConfigError(f"{key}: {part} is not a section")
        node[parts[-1]] = value
    return out
