"""Feature schema: which columns a model sees, how they are encoded, and how big their tables are.

A schema is declared (from YAML or Python) before any data is seen, then *fitted* by
:mod:`recforge.data.preprocessing` on the training split, which fills in every table's
``vocab_size``. Models are built from a fitted schema.

YAML form (every key but ``name`` optional)::

    features:
      - {name: user_id, kind: sparse, min_count: 2}
      - {name: age, kind: dense, transform: log1p}
      - {name: income, kind: dense, transform: standardize, non_finite: clip}
      - {name: age_bucket, kind: sparse, source: age, bucketize: quantile, num_buckets: 10}
      - {name: education_x_occupation, kind: sparse, cross: [education, occupation]}
      - {name: genres, kind: sequence, separator: "|", max_length: 6}
    labels: [click]

Shape letters used across the package: B batch, F sparse fields, N dense features,
L sequence length, T tasks, D embedding dim, K ranking cut-off.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from recforge.errors import ConfigError

FeatureKind = Literal["sparse", "dense", "sequence"]
DENSE_TRANSFORMS = ("none", "log1p", "standardize", "log1p_standardize")
BUCKETIZERS = ("quantile", "log_squared")
NON_FINITE_POLICIES = ("error", "missing", "clip")


@dataclass(frozen=True)
class FeatureSpec:
    """One input feature: where it comes from, how it is encoded, and its embedding table.

    Args:
        name: the field's name; models find its column and table by it.
        kind: ``sparse`` (one categorical id), ``dense`` (one float) or ``sequence``
            (a padded list of ids: a multi-valued field or a behaviour sequence).
        vocab_size: rows of the feature's id space including the reserved ids (0 = padding or
            missing, 1 = out-of-vocabulary, known values from 2); 0 until the schema is fitted.
        source: raw column it is read from (default: ``name``).
        cross: for a Wide & Deep cross-product feature (Cheng et al. 2016, Sec. 3.1), the raw
            columns whose values are combined into one categorical value; missing if any part is.
        min_count: values seen fewer times in the training split map to the out-of-vocabulary id.
        max_size: keep at most this many known values (the most frequent).
        transform: dense only: ``none``, ``log1p`` (after clamping negatives to 0, the
            DLRM/Criteo convention), ``standardize`` (train mean / std) or ``log1p_standardize``.
        bucketize: sparse from a numeric column: ``quantile`` (``num_buckets`` equal-frequency
            buckets from the training split) or ``log_squared`` (floor(ln(x)^2) for x > 2, the
            Criteo-winning convention, else x itself).
        num_buckets: buckets for ``quantile``.
        embedding_dim: this feature's embedding size (default: the model's ``embedding_dim``).
        table: share the embedding table (and vocabulary) of this other feature, for example a
            behaviour sequence sharing the target item's table.
        separator: sequence from a string column: split on this (for example ``|`` for genres).
        max_length: sequence: keep the last ``max_length`` values (0: the longest in training).
        non_finite: what a dense or bucketized (``quantile`` / ``log_squared``) feature does with
            ``inf`` / ``-inf``, in training and at transform alike: ``error`` (a DataError naming
            the column, file, row and value), ``missing`` (treated as a missing value) or ``clip``
            (replaced by the training split's smallest / largest finite value). NaN and null
            are always missing.

    Raises:
        ConfigError: for an inconsistent declaration, naming the feature and the field.
    """

    name: str
    kind: FeatureKind = "sparse"
    vocab_size: int = 0
    source: str | None = None
    cross: tuple[str, ...] = ()
    min_count: int = 1
    max_size: int | None = None
    transform: str = "none"
    bucketize: str | None = None
    num_buckets: int = 10
    embedding_dim: int | None = None
    table: str | None = None
    separator: str | None = None
    max_length: int = 0
    non_finite: str = "error"

    def __post_init__(self) -> None:
        where = f"feature {self.name!r}"
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError(f"every feature needs a non-empty name, got {self.name!r}")
        for key in ("vocab_size", "min_count", "num_buckets", "max_length"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"{where}: {key} must be an integer, got {value!r}")
        for key in ("max_size", "embedding_dim"):
            value = getattr(self, key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise ConfigError(f"{where}: {key} must be an integer, got {value!r}")
        for key in ("source", "table", "separator", "bucketize"):
            value = getattr(self, key)
            if value is not None and not isinstance(value, str):
                raise ConfigError(f"{where}: {key} must be a string, got {value!r}")
        if self.kind not in ("sparse", "dense", "sequence"):
            raise ConfigError(f"{where}: kind must be sparse, dense or sequence, got {self.kind!r}")
        if self.vocab_size < 0:
            raise ConfigError(f"{where}: vocab_size must be >= 0, got {self.vocab_size}")
        if self.min_count < 1:
            raise ConfigError(f"{where}: min_count must be >= 1, got {self.min_count}")
        if self.max_size is not None and self.max_size < 1:
            raise ConfigError(f"{where}: max_size must be >= 1, got {self.max_size}")
        if self.transform not in DENSE_TRANSFORMS:
            raise ConfigError(f"{where}: transform must be one of {', '.join(DENSE_TRANSFORMS)}, got {self.transform!r}")
        if self.transform != "none" and self.kind != "dense":
            raise ConfigError(f"{where}: transform applies to dense features; use bucketize for sparse ones")
        if self.bucketize is not None and (self.bucketize not in BUCKETIZERS or self.kind != "sparse"):
            raise ConfigError(f"{where}: bucketize must be one of {', '.join(BUCKETIZERS)} on a sparse feature, got {self.bucketize!r}")
        if self.num_buckets < 2:
            raise ConfigError(f"{where}: num_buckets must be >= 2, got {self.num_buckets}")
        if self.cross and (self.kind != "sparse" or len(self.cross) < 2 or self.source is not None):
            raise ConfigError(f"{where}: cross needs a sparse feature, >= 2 columns and no source, got {list(self.cross)}")
        if self.embedding_dim is not None and self.embedding_dim < 1:
            raise ConfigError(f"{where}: embedding_dim must be >= 1, got {self.embedding_dim}")
        if self.kind == "dense" and (self.table or self.embedding_dim):
            raise ConfigError(f"{where}: dense features have no embedding table")
        if self.max_length < 0:
            raise ConfigError(f"{where}: max_length must be >= 0, got {self.max_length}")
        if self.separator is not None and self.kind != "sequence":
            raise ConfigError(f"{where}: separator applies to sequence features")
        if self.non_finite not in NON_FINITE_POLICIES:
            raise ConfigError(f"{where}: non_finite must be one of {', '.join(NON_FINITE_POLICIES)}, got {self.non_finite!r}")
        if self.non_finite != "error" and self.kind != "dense" and self.bucketize is None:
            raise ConfigError(f"{where}: non_finite applies to dense and bucketized (numeric) features")

    @property
    def column_source(self) -> str:
        """The raw column this feature reads (its own name unless ``source`` says otherwise)."""
        return self.source or self.name

    @property
    def table_name(self) -> str:
        """The embedding table (and vocabulary) this feature uses."""
        return self.table or self.name

    @property
    def fitted(self) -> bool:
        return self.kind == "dense" or self.vocab_size >= 1


_FEATURE_KEYS = {f.name for f in dataclasses.fields(FeatureSpec)}


@dataclass(frozen=True)
class Schema:
    """The features and labels of a dataset, in column order.

    The i-th sparse feature is column i of ``Batch.sparse_features``; likewise for dense;
    sequence features are keyed by name in ``Batch.sequence_features``.

    Args:
        features: all features, in column order within each kind.
        labels: task names; column t of ``Batch.labels`` is task ``labels[t]``.

    Raises:
        ConfigError: for duplicate names, a ``table`` naming a missing or non-categorical
            feature, or a chain of shared tables.
    """

    features: tuple[FeatureSpec, ...]
    labels: tuple[str, ...] = ("label",)
    _index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "features", tuple(self.features))
        object.__setattr__(self, "labels", tuple(self.labels))
        index: dict[str, int] = {}
        counters = {"sparse": 0, "dense": 0, "sequence": 0}
        for spec in self.features:
            if spec.name in index:
                raise ConfigError(f"feature {spec.name!r} is declared twice in the schema")
            index[spec.name] = counters[spec.kind]
            counters[spec.kind] += 1
        object.__setattr__(self, "_index", index)
        by_name = {f.name: f for f in self.features}
        for spec in self.features:
            if spec.table is None:
                continue
            owner = by_name.get(spec.table)
            if owner is None or owner.kind == "dense":
                raise ConfigError(f"feature {spec.name!r}: table {spec.table!r} must name a sparse or sequence feature of the schema")
            if owner.table is not None:
                raise ConfigError(f"feature {spec.name!r}: table {spec.table!r} itself shares a table; point at the owner")
        if not self.labels or len(set(self.labels)) != len(self.labels):
            raise ConfigError(f"schema labels must be distinct names, got {list(self.labels)}")
        for spec in self.features:
            read = set(spec.cross) if spec.cross else {spec.column_source}
            leaked = sorted(read & set(self.labels))
            if leaked:
                raise ConfigError(f"feature {spec.name!r} reads the label column {leaked[0]!r}; a label cannot be a feature")

    @property
    def sparse(self) -> tuple[FeatureSpec, ...]:
        """Sparse features in column order."""
        return tuple(f for f in self.features if f.kind == "sparse")

    @property
    def dense(self) -> tuple[FeatureSpec, ...]:
        """Dense features in column order."""
        return tuple(f for f in self.features if f.kind == "dense")

    @property
    def sequence(self) -> tuple[FeatureSpec, ...]:
        """Sequence features in declaration order."""
        return tuple(f for f in self.features if f.kind == "sequence")

    def embedded(self, crosses: bool = False) -> tuple[str, ...]:
        """Names of the categorical features a model embeds: sparse then sequence features.

        Cross-product features (``cross``) are left out unless ``crosses``: they are Wide &
        Deep's hand-made memorisation features, which the deep and FM-style models do without
        (Guo et al. 2017, Sec. 1).
        """
        sparse = [f.name for f in self.sparse if crosses or not f.cross]
        return tuple(sparse + [f.name for f in self.sequence])

    @property
    def fitted(self) -> bool:
        """Whether every table size is known (the schema came out of preprocessing)."""
        return all(f.fitted for f in self.features)

    def __getitem__(self, name: str) -> FeatureSpec:
        for spec in self.features:
            if spec.name == name:
                return spec
        raise ConfigError(f"schema has no feature {name!r}; features: {[f.name for f in self.features]}")

    def __contains__(self, name: object) -> bool:
        return name in self._index

    def column(self, name: str) -> int:
        """Column of feature ``name`` within the block of its kind (for example sparse column)."""
        self[name]
        return self._index[name]

    def vocab_size(self, name: str) -> int:
        """Rows of the table feature ``name`` uses (shared tables report the owner's size)."""
        return self[self[name].table_name].vocab_size

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (YAML/JSON-safe) listing only non-default fields; ``from_dict`` round-trips it."""
        defaults = FeatureSpec(name="x")
        features = []
        for spec in self.features:
            entry: dict[str, Any] = {"name": spec.name}
            for f in dataclasses.fields(FeatureSpec):
                value = getattr(spec, f.name)
                if f.name != "name" and value != getattr(defaults, f.name):
                    entry[f.name] = list(value) if isinstance(value, tuple) else value
            features.append(entry)
        return {"features": features, "labels": list(self.labels)}

    @classmethod
    def from_dict(cls, raw: Any, where: str = "schema") -> "Schema":
        """Build from ``{features: [...], labels: [...]}``.

        Raises:
            ConfigError: naming ``where`` and the offending entry or key.
        """
        if not isinstance(raw, dict):
            raise ConfigError(f"{where}: expected a mapping with a 'features' list (and 'labels'), got {type(raw).__name__}")
        unknown = set(raw) - {"features", "labels"}
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)}; valid: features, labels")
        if "features" not in raw:
            raise ConfigError(f"{where}: missing the 'features' list")
        if not isinstance(raw["features"], list) or not raw["features"]:
            raise ConfigError(f"{where}: 'features' must be a non-empty list")
        features = []
        for i, entry in enumerate(raw["features"]):
            if not isinstance(entry, dict) or "name" not in entry:
                raise ConfigError(f"{where}: features[{i}] must be a mapping with a 'name', got {entry!r}")
            bad = set(entry) - _FEATURE_KEYS
            if bad:
                raise ConfigError(f"{where}: features[{i}] ({entry['name']!r}) has unknown key(s) {sorted(bad)}; valid: {sorted(_FEATURE_KEYS)}")
            values = dict(entry)
            if "cross" in values and not (isinstance(values["cross"], (list, tuple)) and all(isinstance(c, str) for c in values["cross"])):
                raise ConfigError(f"{where}: features[{i}] ({entry['name']!r}): cross must be a list of column names, got {values['cross']!r}")
            if "cross" in values:
                values["cross"] = tuple(values["cross"])
            try:
                features.append(FeatureSpec(**values))
            except (TypeError, ConfigError) as exc:
                raise ConfigError(f"{where}: features[{i}]: {exc}") from None
        labels = raw.get("labels", ["label"])
        if isinstance(labels, str):
            labels = [labels]
        if not isinstance(labels, (list, tuple)) or not all(isinstance(label, str) for label in labels):
            raise ConfigError(f"{where}: 'labels' must be a column name or a list of column names, got {labels!r}")
        try:
            return cls(features=tuple(features), labels=tuple(labels))
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None

    @classmethod
    def from_yaml(cls, path: str | Path) -> "Schema":
        """Read a schema file (see the module docstring).

        Raises:
            ConfigError: for unreadable YAML or an invalid schema, naming the file.
        """
        path = Path(path)
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"cannot read schema {path}: {exc.strerror or exc}") from None
        except UnicodeDecodeError as exc:
            raise ConfigError(f"schema {path}: not UTF-8 text (byte {exc.start}); expected a YAML file") from None
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f", line {mark.line + 1}" if mark is not None else ""
            raise ConfigError(f"schema {path}{where}: invalid YAML: {getattr(exc, 'problem', None) or exc}") from None
        return cls.from_dict(raw, where=str(path))

    def with_sizes(self, sizes: dict[str, int]) -> "Schema":
        """A copy with ``vocab_size`` set from ``sizes`` (table owner name -> rows)."""
        features = tuple(
            dataclasses.replace(f, vocab_size=sizes[f.name]) if f.kind != "dense" and f.table is None else f
            for f in self.features
        )
        shared = tuple(
            dataclasses.replace(f, vocab_size=sizes[f.table]) if f.table is not None else f for f in features
        )
        return Schema(features=shared, labels=self.labels)


def user_item_schema(num_users: int, num_items: int) -> Schema:
    """Schema of implicit-feedback data: two sparse fields ``user`` (column 0) and ``item`` (column 1).

    Ids are dense 0..n-1 with no reserved padding/OOV row: leave-one-out protocols only score
    users and items seen in training, as in NCF (He et al., 2017).
    """
    return Schema(
        features=(FeatureSpec("user", "sparse", num_users), FeatureSpec("item", "sparse", num_items)),
        labels=("label",),
    )
