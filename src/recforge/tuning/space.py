"""Search spaces: which config keys a tuning study samples, over which ranges.

A parameter is a dotted config key (``train.lr``, ``model.embedding_dim``,
``train.groups.deep.lr``), sampled per trial by Optuna (Akiba et al., KDD 2019) and applied
like a ``--set`` override. Every model has a default space built from the settings its config
has (:func:`default_space`): learning rate, embedding size (``factors`` for the NCF family,
``embedding_dim`` for the CTR models), L2 on the embedding rows each batch uses, dropout, MLP
widths, negatives per positive (NCF) and batch size. The ranges follow Rendle et al. (RecSys
2020, "Neural Collaborative Filtering vs. Matrix Factorization Revisited"), whose point is that
a baseline is only beaten fairly when both sides get the same search: every model here is
searched over the same learning-rate, regularisation and batch-size ranges.

A YAML file replaces the default space, or narrows it with ``base: default``::

    base: default                     # optional: start from the model's default space
    params:
      train.lr: {low: 1.0e-4, high: 3.0e-3, log: true}   # a range (int or float from the config field)
      model.factors: [8, 16, 32]                         # a list: categorical choices
      model.hidden_units: [[256, 128], [400, 400, 400]]  # choices may be lists
      train.batch_size: 1024                             # a single value: fixed, not searched
      train.num_negatives: null                          # with base: default, drop a parameter

Shape of a range: ``low`` <= ``high`` (inclusive), optional ``log: true`` (``low`` > 0) and
``step`` (not with ``log``).
"""

from __future__ import annotations

import dataclasses
import json
import math
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recforge.config import PretrainConfig, TrainConfig, read_yaml
from recforge.errors import ConfigError

IMPLICIT_MODELS = ("itempop", "mf", "gmf", "mlp", "neumf")  # leave-one-out models (the NCF family)
_SCALARS = (bool, int, float, str, type(None))


@dataclass(frozen=True)
class Param:
    """One searched config key.

    Attributes:
        key: dotted config key, for example ``train.lr``.
        kind: ``int``, ``float`` (a range from ``low`` to ``high``, inclusive) or ``categorical``.
        low, high: the range (unused for categorical).
        log: sample the range on a log scale.
        step: the grid of an int / float range (None: 1 for int, continuous for float).
        choices: the values of a categorical parameter (lists allowed).
    """

    key: str
    kind: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple[Any, ...] = ()

    def suggest(self, trial: Any) -> Any:
        """The value ``trial`` (an ``optuna.Trial``) samples for this parameter."""
        if self.kind == "int":
            return trial.suggest_int(self.key, int(self.low), int(self.high), step=int(self.step or 1), log=self.log)
        if self.kind == "float":
            return trial.suggest_float(self.key, float(self.low), float(self.high), step=self.step, log=self.log)
        return self.decode(trial.suggest_categorical(self.key, [self.encode(c) for c in self.choices]))

    def encode(self, value: Any) -> Any:
        """Optuna stores scalars only: a list choice is stored as its JSON text."""
        return value if isinstance(value, _SCALARS) else json.dumps(value)

    def decode(self, stored: Any) -> Any:
        """The config value of a stored Optuna parameter value."""
        if self.kind == "categorical" and isinstance(stored, str) and not any(isinstance(c, str) for c in self.choices):
            return json.loads(stored)
        return stored

    def describe(self) -> str:
        """A short human reading: ``[1e-4, 1e-2] log`` or ``{8, 16, 32}``."""
        if self.kind == "categorical":
            return "{" + ", ".join(json.dumps(c) for c in self.choices) + "}"
        return f"[{self.low:g}, {self.high:g}]" + (" log" if self.log else "") + (f" step {self.step:g}" if self.step else "")


@dataclass(frozen=True)
class SearchSpace:
    """The parameters of a study and the values every trial shares.

    Attributes:
        model: the registered model name.
        params: the searched parameters, in sampling order.
        fixed: dotted keys set in every trial before the sampled ones (for example Wide &
            Deep's paper optimiser groups, whose learning rates are then searched).
        source: where the space came from, for messages (``default`` or the YAML file).
    """

    model: str
    params: tuple[Param, ...]
    fixed: dict[str, Any] = dataclasses.field(default_factory=dict)
    source: str = "default"

    def suggest(self, trial: Any) -> dict[str, Any]:
        """The fixed values, then one sampled value per parameter (dotted key -> config value)."""
        values = dict(self.fixed)
        for param in self.params:
            values[param.key] = param.suggest(trial)
        return values

    def decode(self, stored: dict[str, Any]) -> dict[str, Any]:
        """The dotted overrides of a finished trial's stored ``params`` (fixed values included)."""
        by_key = {p.key: p for p in self.params}
        values = dict(self.fixed)
        for key, value in stored.items():
            values[key] = by_key[key].decode(value) if key in by_key else value
        return values

    def corners(self) -> list[dict[str, Any]]:
        """Overrides that together take every parameter to each end of its range and to each
        of its choices (the other parameters at their first value): the configs to check
        before a search so that a bad range fails at once, not in trial 37."""
        first = {p.key: (p.low if p.kind != "categorical" else p.choices[0]) for p in self.params}
        out = [dict(self.fixed) | first]
        for p in self.params:
            for value in ((p.low, p.high) if p.kind != "categorical" else p.choices[1:]):
                out.append(dict(self.fixed) | first | {p.key: value})
        return out

    def without(self, keys: set[str]) -> "SearchSpace":
        """This space less the parameters (and fixed values) under any of ``keys``."""
        keep = [p for p in self.params if not any(overlaps(p.key, k) for k in keys)]
        fixed = {k: v for k, v in self.fixed.items() if not any(overlaps(k, g) for g in keys)}
        return dataclasses.replace(self, params=tuple(keep), fixed=fixed)


def overlaps(a: str, b: str) -> bool:
    """Whether setting dotted key ``a`` and ``b`` touches the same value (one is a prefix of the other)."""
    return a == b or a.startswith(b + ".") or b.startswith(a + ".")


def _log_range(key: str, low: float, high: float) -> Param:
    return Param(key, "float", low, high, log=True)


def default_space(model: str) -> SearchSpace:
    """The documented default search space of ``model``.

    Every model: ``train.lr`` in [1e-4, 1e-2] (log), ``train.embedding_l2`` in [1e-7, 1e-2]
    (log; lambda of the per-batch L2 on the embedding rows used) and ``train.batch_size``
    (NCF: {256, 512, 1024, 2048}; CTR: {256, 1024, 4096}). Where the model's config has them:
    ``model.factors`` {8, 16, 32, 64} (NCF), ``model.embedding_dim`` {8, 16, 32} (DIN {16, 32,
    64}), ``model.dropout`` [0, 0.5], MLP widths as choices (``model.hidden_units``,
    ``dense_arch`` / ``over_arch``, ``expert_units`` / ``tower_units``), and for the NCF family
    ``train.num_negatives`` in [1, 8] (He et al. 2017, Fig. 7: 3-6 is best). Wide & Deep keeps
    its paper optimisers (FTRL wide, AdaGrad deep) and searches their learning rates
    ``train.groups.wide.lr`` [0.01, 0.5] and ``train.groups.deep.lr`` [0.005, 0.2] (log)
    instead of ``train.lr``, which those groups override.

    Raises:
        UnknownNameError: for an unregistered model.
        ConfigError: for a model with nothing to tune (``itempop``).
    """
    fields = _model_fields(model)
    implicit = model in IMPLICIT_MODELS
    params: list[Param] = []
    fixed: dict[str, Any] = {}
    groups = _paper_groups(model)
    if groups:
        fixed["train.groups"] = groups
        params += [_log_range("train.groups.wide.lr", 0.01, 0.5), _log_range("train.groups.deep.lr", 0.005, 0.2)]
    elif fields:
        params.append(_log_range("train.lr", 1e-4, 1e-2))
    if not fields:
        raise ConfigError(f"{model} has nothing to tune (no trained parameters); train it with `recforge train {model}`")
    if "factors" in fields:
        params.append(Param("model.factors", "categorical", choices=(8, 16, 32, 64)))
    if "embedding_dim" in fields:
        params.append(Param("model.embedding_dim", "categorical", choices=(16, 32, 64) if model in ("din", "base") else (8, 16, 32)))
    params.append(_log_range("train.embedding_l2", 1e-7, 1e-2))
    if "dropout" in fields:
        params.append(Param("model.dropout", "float", 0.0, 0.5))
    widths = {
        "hidden_units": ((400, 400, 400), (256, 128), (128, 64)) if model not in ("din", "base") else ((200, 80), (128, 64)),
        "dense_arch": ((512, 256), (256, 128), (128, 64)),
        "over_arch": ((512, 256), (256, 128), (128, 64)),
        "expert_units": ((64,), (128, 64)),
        "tower_units": ((32,), (64,)),
    }
    for name, choices in widths.items():
        if name in fields:
            params.append(Param(f"model.{name}", "categorical", choices=tuple(list(c) for c in choices)))
    if implicit:
        params.append(Param("train.num_negatives", "int", 1, 8))
    params.append(Param("train.batch_size", "categorical", choices=(256, 512, 1024, 2048) if implicit else (256, 1024, 4096)))
    return SearchSpace(model, tuple(params), fixed)


def load_space(path: str | Path, model: str) -> SearchSpace:
    """Read a search-space YAML file (see the module doc) for ``model``.

    Raises:
        ConfigError: naming the file and parameter, for an unknown top-level key or parameter,
            a parameter ``model`` does not have, an empty range or choice list, a log range
            with ``low`` <= 0, or a malformed entry.
    """
    raw = read_yaml(path)
    where = str(path)
    unknown = sorted(set(map(str, raw)) - {"base", "params"})
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r}; a space file has 'params' and optionally 'base: default'")
    base = raw.get("base", "none")
    if base not in ("default", "none"):
        raise ConfigError(f"{where}: base must be 'default' (narrow the model's default space) or 'none', got {base!r}")
    entries = raw.get("params")
    if not isinstance(entries, dict) or not entries:
        raise ConfigError(f"{where}: 'params' must map at least one config key (for example train.lr) to a range, choices or a value")
    space = default_space(model) if base == "default" else SearchSpace(model, (), {}, where)
    params = {p.key: p for p in space.params}  # insertion order is sampling order
    fixed = dict(space.fixed)
    for key, spec in entries.items():
        key = str(key)
        kind = _field_kind(model, key, where)
        if spec is None:
            if key not in params and key not in fixed:
                raise ConfigError(f"{where}: {key}: null drops a default parameter, but the default space of {model} has no {key}")
            params.pop(key, None)
            fixed.pop(key, None)
            continue
        param = _parse_entry(key, spec, kind, params.get(key), where)
        if param is None:
            params.pop(key, None)
            fixed[key] = spec
        else:
            fixed.pop(key, None)
            params[key] = param
    if not params:
        raise ConfigError(f"{where}: nothing left to search (every parameter is fixed or dropped)")
    return SearchSpace(model, tuple(params.values()), fixed, where)


def _parse_entry(key: str, spec: Any, kind: str, default: Param | None, where: str) -> Param | None:
    """A Param from a YAML entry, or None for a single fixed value."""
    if isinstance(spec, list):
        spec = {"choices": spec}
    if not isinstance(spec, dict):
        return None
    allowed = {"low", "high", "log", "step", "choices"}
    bad = sorted(set(map(str, spec)) - allowed)
    if bad:
        raise ConfigError(f"{where}: {key}: unknown key {bad[0]!r}; a parameter has low/high (with log, step) or choices")
    if "choices" in spec:
        choices = spec["choices"]
        if set(spec) != {"choices"}:
            raise ConfigError(f"{where}: {key}: give either choices or low/high, not both")
        if not isinstance(choices, list) or not choices:
            raise ConfigError(f"{where}: {key}: empty choice list; give at least one value")
        return Param(key, "categorical", choices=tuple(choices))
    if kind not in ("int", "float"):
        raise ConfigError(f"{where}: {key} is not a number; give its values as choices (a list)")
    low = spec.get("low", default.low if default is not None and default.kind != "categorical" else None)
    high = spec.get("high", default.high if default is not None and default.kind != "categorical" else None)
    log = spec.get("log", default.log if default is not None else False)
    step = spec.get("step")
    if low is None or high is None:
        raise ConfigError(f"{where}: {key}: a range needs both low and high")
    low, high = _number(key, "low", low, kind, where), _number(key, "high", high, kind, where)
    if not isinstance(log, bool):
        raise ConfigError(f"{where}: {key}: log must be true or false, got {log!r}")
    if low > high:
        raise ConfigError(f"{where}: {key}: empty range: low {low:g} > high {high:g}")
    if log and low <= 0:
        raise ConfigError(f"{where}: {key}: a log range needs low > 0, got {low:g}")
    if step is not None:
        step = _number(key, "step", step, kind, where)
        if step <= 0 or log:
            raise ConfigError(f"{where}: {key}: step must be > 0 and cannot be combined with log")
    return Param(key, kind, low, high, log=log, step=step)


def _number(key: str, name: str, value: Any, kind: str, where: str) -> float:
    if isinstance(value, str):
        try:  # YAML 1.1 reads 1e-3 (no dot) as a string
            value = float(value)
        except ValueError:
            pass
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{where}: {key}: {name} must be a finite number, got {value!r}")
    if kind == "int" and value != int(value):
        raise ConfigError(f"{where}: {key} is an integer setting; {name} must be an integer, got {value!r}")
    return int(value) if kind == "int" else float(value)


def _model_fields(model: str) -> set[str]:
    """The ``model.*`` settings ``model`` uses (those its config drops for it are left out)."""
    from recforge.models.registry import get_model_entry

    entry = get_model_entry(model)
    names = {f.name for f in dataclasses.fields(entry.config_cls) if f.init}
    if model in ("mf", "gmf"):
        names.discard("mlp_layers")  # NCFConfig.used_by: MF and GMF have no tower
    return names


def _paper_groups(model: str) -> dict[str, dict[str, Any]] | None:
    """The per-group optimisers a model's paper states (Wide & Deep), or None."""
    from recforge.models.registry import get_model_entry

    paper = getattr(get_model_entry(model).cls, "paper_optimizers", None)
    return paper() if paper is not None else None


def _field_kind(model: str, key: str, where: str) -> str:
    """``int`` / ``float`` / ``other`` for a dotted config key that ``model`` uses.

    Raises:
        ConfigError: for an unknown key, or one ``model`` does not have or does not use.
    """
    from recforge.models.registry import MODELS, get_model_entry

    parts = key.split(".")
    section = parts[0]
    if section == "model" and len(parts) == 2:
        name = parts[1]
        entry = get_model_entry(model)
        hints = typing.get_type_hints(entry.config_cls)
        if name not in _model_fields(model):
            others = sorted(m for m, e in MODELS.items() if name in {f.name for f in dataclasses.fields(e.config_cls)})
            if not others or name == "name":
                raise ConfigError(f"{where}: unknown parameter {key!r}: no model has a setting {name!r}")
            mine = ", ".join(sorted(_model_fields(model))) or "(none)"
            raise ConfigError(f"{where}: {key}: model {model} does not have this parameter (its model parameters: {mine})")
        return _kind(hints[name])
    if section == "train" and len(parts) == 4 and parts[1] == "groups":
        if not _paper_groups(model) and not hasattr(get_model_entry(model).cls, "parameter_groups"):
            raise ConfigError(f"{where}: {key}: model {model} does not have parameter groups (train.groups)")
        if parts[3] not in ("lr", "weight_decay", "l1", "l2"):
            raise ConfigError(f"{where}: unknown parameter {key!r}: a group has lr, weight_decay, l1, l2")
        return "float"
    if section in ("train", "pretrain") and len(parts) == 2:
        cls = TrainConfig if section == "train" else PretrainConfig
        hints = typing.get_type_hints(cls)
        name = parts[1]
        if name not in {f.name for f in dataclasses.fields(cls)}:
            raise ConfigError(f"{where}: unknown parameter {key!r}: {section} has no setting {name!r}")
        if name in ("epochs", "score_test", "device", "monitor", "ks", "report_best_test_epoch", "full_ranking"):
            raise ConfigError(f"{where}: {key} is not a hyper-parameter to search (set it with the command's options or --set)")
        if name == "num_negatives" and model not in IMPLICIT_MODELS:
            raise ConfigError(f"{where}: {key}: model {model} does not have this parameter (negatives are sampled for the NCF family only)")
        if section == "pretrain" and model != "neumf":
            raise ConfigError(f"{where}: {key}: model {model} does not have this parameter (pre-training is NeuMF's)")
        if key == "train.lr" and _paper_groups(model):
            raise ConfigError(f"{where}: train.lr: model {model} trains with its paper's per-group optimisers; search train.groups.wide.lr / train.groups.deep.lr instead")
        return _kind(hints[name])
    raise ConfigError(f"{where}: unknown parameter {key!r}: expected model.<setting>, train.<setting> or train.groups.<group>.<setting>")


def _kind(hint: Any) -> str:
    args = typing.get_args(hint) or (hint,)
    if int in args and hint is not bool:
        return "int"
    if float in args:
        return "float"
    return "other"
