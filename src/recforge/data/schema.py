"""Feature schema: which columns a model sees and how big their embedding tables are.

Shape letters used across the package: B batch, F sparse fields, N dense features,
L sequence length, T tasks, D embedding dim, K ranking cut-off.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from recforge.errors import ConfigError

FeatureKind = Literal["sparse", "dense", "sequence"]


@dataclass(frozen=True)
class FeatureSpec:
    """One input feature.

    Args:
        name: the field's name, used by models to find its column and table.
        kind: ``sparse`` (one categorical id), ``dense`` (one float) or ``sequence`` (padded ids).
        vocab_size: number of distinct ids including reserved ones (sparse / sequence only);
            ids run from 0 to ``vocab_size - 1``.
    """

    name: str
    kind: FeatureKind = "sparse"
    vocab_size: int = 0

    def __post_init__(self) -> None:
        if self.kind not in ("sparse", "dense", "sequence"):
            raise ConfigError(f"feature {self.name!r}: kind must be sparse, dense or sequence, got {self.kind!r}")
        if self.kind != "dense" and self.vocab_size < 1:
            raise ConfigError(f"feature {self.name!r}: vocab_size must be >= 1, got {self.vocab_size}")


@dataclass(frozen=True)
class Schema:
    """The features and labels of a dataset, in column order.

    The i-th sparse feature is column i of ``Batch.sparse_features``; likewise for dense.

    Args:
        features: all features, in column order within each kind.
        labels: task names; column t of ``Batch.labels`` is task ``labels[t]``.
    """

    features: tuple[FeatureSpec, ...]
    labels: tuple[str, ...] = ("label",)
    _index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        index: dict[str, int] = {}
        counters = {"sparse": 0, "dense": 0, "sequence": 0}
        for spec in self.features:
            if spec.name in index:
                raise ConfigError(f"feature {spec.name!r} is declared twice in the schema")
            index[spec.name] = counters[spec.kind]
            counters[spec.kind] += 1
        object.__setattr__(self, "_index", index)

    @property
    def sparse(self) -> tuple[FeatureSpec, ...]:
        """Sparse features in column order."""
        return tuple(f for f in self.features if f.kind == "sparse")

    @property
    def dense(self) -> tuple[FeatureSpec, ...]:
        """Dense features in column order."""
        return tuple(f for f in self.features if f.kind == "dense")

    def __getitem__(self, name: str) -> FeatureSpec:
        for spec in self.features:
            if spec.name == name:
                return spec
        raise ConfigError(f"schema has no feature {name!r}; features: {[f.name for f in self.features]}")

    def column(self, name: str) -> int:
        """Column of feature ``name`` within the block of its kind (for example sparse column)."""
        self[name]
        return self._index[name]


def user_item_schema(num_users: int, num_items: int) -> Schema:
    """Schema of implicit-feedback data: two sparse fields ``user`` (column 0) and ``item`` (column 1).

    Ids are dense 0..n-1 with no reserved padding/OOV row: leave-one-out protocols only score
    users and items seen in training, as in NCF (He et al., 2017).
    """
    return Schema(
        features=(FeatureSpec("user", "sparse", num_users), FeatureSpec("item", "sparse", num_items)),
        labels=("label",),
    )
