"""EmbeddingCollection: the embedding tables of a schema's categorical features.

Each table is owned by one feature; another feature can share it (``FeatureSpec.table``, for
example a behaviour sequence and its target item). Row 0 is padding / missing and is always the
zero vector, so a missing value contributes nothing to sums, FM terms or dot products.

Two layouts, the same numbers for the same weights:
* ``per_field``: one ``nn.Embedding`` per table (``padding_idx=0``), one lookup per feature.
* ``fused``: every table stacked into one ``nn.Embedding`` with per-feature row offsets, so all
  sparse fields are looked up with one call (all features then need the same dimension).
Which is faster depends on the field count and the optimiser; ``benchmarks/ctr_speed.py``
measures both.

Shape letters: B batch, F looked-up features, D embedding dim, L sequence length.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from recforge.data.batches import Batch
from recforge.data.schema import Schema
from recforge.errors import ConfigError

LAYOUTS = ("per_field", "fused")


class EmbeddingTable(nn.Embedding):
    """An ``nn.Embedding`` that looks rows up with ``index_select``.

    Same values and gradients as ``nn.Embedding`` (up to the order of summation of repeated
    rows), but the backward is an ``index_add`` instead of ``embedding_dense_backward``: 1,024
    lookups into a 6,040 x 24 table, forward and backward, take 67-72 us instead of 105 us on
    the 2-core machine of the README, and a NeuMF-8 step at batch 1024 1.25 ms instead of
    1.31 ms. Tables with a padding row, ``max_norm`` or sparse gradients use
    ``nn.Embedding.forward`` unchanged (the padding row must get no gradient).

    Shape: int64 ids [*] -> [*, embedding_dim].
    """

    def forward(self, ids: Tensor) -> Tensor:
        if self.padding_idx is not None or self.max_norm is not None or self.sparse:
            return super().forward(ids)
        return self.weight.index_select(0, ids.reshape(-1)).view(*ids.shape, self.embedding_dim)


def masked_pool(values: Tensor, lengths: Tensor, mode: str = "mean") -> Tensor:
    """Sum or mean of the first ``lengths[b]`` positions of each row; zeros for an empty row.

    Args:
        values: [B, L, D].
        lengths: int64 [B], 0 <= lengths <= L.
        mode: ``sum`` or ``mean``.

    Returns:
        [B, D], never NaN (an empty sequence pools to zeros).
    """
    mask = (torch.arange(values.shape[1], device=values.device)[None, :] < lengths[:, None]).to(values.dtype)
    total = torch.bmm(mask.unsqueeze(1), values).squeeze(1)
    if mode == "sum":
        return total
    return total / lengths.clamp(min=1).to(values.dtype).unsqueeze(1)


class EmbeddingCollection(nn.Module):
    """Embedding tables for the given sparse and sequence features of a fitted schema.

    Args:
        schema: a fitted schema (every ``vocab_size`` known).
        features: names of sparse and/or sequence features to embed, in output order.
        embedding_dim: D for features without their own ``embedding_dim``.
        layout: ``per_field`` or ``fused`` (see the module docstring).
        init_std: weights start from N(0, init_std^2) (DeepCTR and FuxiCTR use 1e-4).
        pooling: how sequence features become one vector: ``mean`` or ``sum``.

    Raises:
        ConfigError: for an unfitted schema, a dense or unknown feature, mixed dimensions with
            ``fused``, or an unknown layout.
    """

    def __init__(
        self,
        schema: Schema,
        features: Sequence[str],
        embedding_dim: int,
        layout: str = "per_field",
        init_std: float = 1e-4,
        pooling: str = "mean",
    ):
        super().__init__()
        if layout not in LAYOUTS:
            raise ConfigError(f"embedding layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
        if pooling not in ("mean", "sum"):
            raise ConfigError(f"sequence pooling must be mean or sum, got {pooling!r}")
        self.layout, self.pooling = layout, pooling
        specs = [schema[name] for name in features]
        for spec in specs:
            if spec.kind == "dense":
                raise ConfigError(f"feature {spec.name!r} is dense and has no embedding table")
            if not schema[spec.table_name].fitted:
                raise ConfigError(f"feature {spec.name!r} has no vocab_size yet: fit the preprocessing first")
        # A shared table takes the owner's dimension.
        dims = {s.name: (schema[s.table_name].embedding_dim or embedding_dim) for s in specs}
        self.features = tuple(s.name for s in specs)
        self.dims = tuple(dims[n] for n in self.features)
        self.sparse_names = tuple(s.name for s in specs if s.kind == "sparse")
        self.sequence_names = tuple(s.name for s in specs if s.kind == "sequence")
        self.sparse_columns = [schema.column(n) for n in self.sparse_names]
        self._column_of = dict(zip(self.sparse_names, self.sparse_columns))
        tables: dict[str, int] = {}
        for spec in specs:
            tables.setdefault(spec.table_name, schema.vocab_size(spec.name))
        self.table_of = {s.name: s.table_name for s in specs}
        if layout == "fused":
            if len(set(self.dims)) > 1:
                raise ConfigError(f"layout 'fused' needs one embedding_dim for all features, got {dict(zip(self.features, self.dims))}")
            offsets, total = {}, 0
            for name, rows in tables.items():
                offsets[name], total = total, total + rows
            self.table_offsets = offsets
            self.fused = nn.Embedding(total, self.dims[0] if self.dims else embedding_dim)
            nn.init.normal_(self.fused.weight, 0.0, init_std)
            self.register_buffer(
                "sparse_offsets",
                torch.tensor([offsets[self.table_of[n]] for n in self.sparse_names], dtype=torch.int64),
                persistent=False,
            )
            self.register_buffer("sparse_column_index", torch.tensor(self.sparse_columns, dtype=torch.int64), persistent=False)
        else:
            self.tables = nn.ModuleDict()
            for name, rows in tables.items():
                dim = next(dims[s.name] for s in specs if s.table_name == name)
                table = nn.Embedding(rows, dim, padding_idx=0)
                nn.init.normal_(table.weight, 0.0, init_std)
                with torch.no_grad():
                    table.weight[0].zero_()
                self.tables[name] = table
        self.output_dim = sum(self.dims)

    @property
    def num_features(self) -> int:
        return len(self.features)

    def _lookup(self, name: str, ids: Tensor) -> Tensor:
        if self.layout == "fused":
            offset = self.table_offsets[self.table_of[name]]
            return self.fused(ids + offset) * (ids != 0).unsqueeze(-1).to(self.fused.weight.dtype)
        return self.tables[self.table_of[name]](ids)

    def lookup(self, batch: Batch, name: str) -> Tensor:
        """Embeddings of one feature: [B, D] for a sparse feature, [B, L, D] (unpooled, zero
        padding) for a sequence feature."""
        if name in self._column_of:
            return self._lookup(name, batch.sparse_features[:, self._column_of[name]])
        return self._lookup(name, batch.sequence_features[name])

    def lookup_sequence(self, batch: Batch, name: str) -> tuple[Tensor, Tensor]:
        """Unpooled embeddings of sequence feature ``name``: ([B, L, D] with zero padding, lengths [B])."""
        return self._lookup(name, batch.sequence_features[name]), batch.sequence_lengths[name]

    def forward(self, batch: Batch) -> Tensor:
        """Stacked embeddings [B, F, D] in ``features`` order (sequences pooled); needs one D.

        Raises:
            ConfigError: if the features have different dimensions (use :meth:`flat`).
        """
        vectors = self._vectors(batch)
        if len(set(self.dims)) > 1:
            raise ConfigError(f"features have different embedding dims {self.dims}; stack needs one D")
        if isinstance(vectors, Tensor):
            return vectors
        return torch.stack(vectors, dim=1)

    def flat(self, batch: Batch) -> Tensor:
        """Concatenated embeddings [B, sum of D] in ``features`` order (sequences pooled)."""
        vectors = self._vectors(batch)
        if isinstance(vectors, Tensor):
            return vectors.flatten(1)
        return torch.cat(vectors, dim=1)

    def _vectors(self, batch: Batch) -> Tensor | list[Tensor]:
        pooled = {
            name: masked_pool(*self.lookup_sequence(batch, name), mode=self.pooling) for name in self.sequence_names
        }
        if self.layout == "fused" and not pooled:
            ids = batch.sparse_features.index_select(1, self.sparse_column_index)
            return self.fused(ids + self.sparse_offsets) * (ids != 0).unsqueeze(-1).to(self.fused.weight.dtype)
        out = []
        for name in self.features:
            if name in pooled:
                out.append(pooled[name])
            else:
                out.append(self._lookup(name, batch.sparse_features[:, self._column_of[name]]))
        return out
