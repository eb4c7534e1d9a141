"""Embedding tables through TorchRec (optional ``recforge[torchrec]``): our Batch as a
KeyedJaggedTensor, the tables as an ``EmbeddingBagCollection`` that TorchRec's planner can shard
across processes (model parallelism for tables that outgrow one device, as DLRM does;
Naumov et al. 2019, Sec. 4; Ivchenko et al. 2022, "TorchRec: a PyTorch Domain Library for
Recommendation Systems", RecSys).

The seam is one module with the contract of :class:`recforge.layers.embedding.EmbeddingCollection`
(``forward(batch) -> [B, F, D]``), so a model switches backend without other changes, and
:func:`copy_native_weights` makes the two compute the same numbers (tested). TorchRec needs an
fbgemm-gpu build that matches the installed torch: recforge's pinned CPU torch 2.13.0 has none
(fbgemm-gpu-cpu 1.9.0 fails to load against it with an undefined torch::autograd symbol), so the
tests of this module run only where torchrec imports (checked with torch 2.14.1 +
fbgemm-gpu-cpu 1.9.0 + torchrec 1.9.2 on CPU).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from recforge.data.batches import Batch
from recforge.data.schema import Schema
from recforge.errors import ConfigError
from recforge.layers.embedding import EmbeddingCollection


def _torchrec() -> Any:
    try:
        import torchrec
    except (ImportError, OSError) as exc:  # OSError: an fbgemm-gpu build that does not match torch
        raise ConfigError(
            f"the torchrec embedding backend needs torchrec with a matching fbgemm-gpu build for torch {torch.__version__} "
            f"(pip install 'recforge[torchrec]'); importing it failed: {str(exc).splitlines()[0][:200]}"
        ) from None
    return torchrec


def keyed_jagged(batch: Batch, sparse: Sequence[tuple[str, int]], sequences: Sequence[str]) -> Any:
    """The batch's ids as a TorchRec ``KeyedJaggedTensor`` (keys: sparse features, then sequences).

    A sparse feature contributes one id per row, or none where the id is 0 (missing/padding), so
    it pools to the zero vector exactly as the padding row of an ``EmbeddingCollection`` table. A
    sequence contributes its first ``length`` ids per row.

    Args:
        batch: sparse_features int64 [B, F_all]; sequence_features name -> int64 [B, L].
        sparse: (feature name, column of ``batch.sparse_features``) per sparse key.
        sequences: sequence feature names.

    Returns:
        KeyedJaggedTensor with ``len(sparse) + len(sequences)`` keys, lengths int32 [K * B].
    """
    torchrec = _torchrec()
    values, lengths = [], []
    for _, column in sparse:
        ids = batch.sparse_features[:, column]
        keep = ids != 0
        values.append(ids[keep])
        lengths.append(keep.to(torch.int32))
    for name in sequences:
        ids, n = batch.sequence_features[name], batch.sequence_lengths[name]
        mask = torch.arange(ids.shape[1], device=ids.device)[None, :] < n[:, None]
        values.append(ids[mask & (ids != 0)])
        lengths.append((mask & (ids != 0)).sum(1).to(torch.int32))
    keys = [name for name, _ in sparse] + list(sequences)
    return torchrec.KeyedJaggedTensor(keys=keys, values=torch.cat(values), lengths=torch.cat(lengths))


class TorchRecEmbeddingCollection(nn.Module):
    """``EmbeddingCollection`` (per-field layout) on a TorchRec ``EmbeddingBagCollection``.

    Args:
        schema: a fitted schema.
        features: sparse and/or sequence feature names, in output order.
        embedding_dim: D (one D for all features: the stack needs it).
        init_std: weights start from N(0, init_std^2); row 0 (padding) is never looked up.
        pooling: ``mean`` or ``sum`` for sequence features (one id: both equal the lookup).
        device: where the tables live (``meta`` lets TorchRec's planner allocate sharded ones).

    Shape: batch -> [B, F, D].

    Raises:
        ConfigError: if torchrec does not import, or the features have different dimensions.
    """

    def __init__(self, schema: Schema, features: Sequence[str], embedding_dim: int, init_std: float = 1e-4,
                 pooling: str = "mean", device: torch.device | str = "cpu"):
        super().__init__()
        torchrec = _torchrec()
        from torchrec.modules.embedding_configs import PoolingType

        native = EmbeddingCollection(schema, features, embedding_dim, "per_field", init_std, pooling)  # validates
        if len(set(native.dims)) > 1:
            raise ConfigError(f"the torchrec backend needs one embedding_dim for all features, got {dict(zip(native.features, native.dims))}")
        self.features, self.dims = native.features, native.dims
        self.sparse = [(n, c) for n, c in zip(native.sparse_names, native.sparse_columns)]
        self.sequences = list(native.sequence_names)
        keyed = [n for n, _ in self.sparse] + self.sequences
        by_table: dict[str, list[str]] = {}
        for name in keyed:
            by_table.setdefault(native.table_of[name], []).append(name)
        mode = PoolingType.MEAN if pooling == "mean" else PoolingType.SUM
        configs = [
            torchrec.EmbeddingBagConfig(name=table, embedding_dim=self.dims[0] if self.dims else embedding_dim,
                                        num_embeddings=native.tables[table].num_embeddings, feature_names=names, pooling=mode)
            for table, names in by_table.items()
        ]
        self.bags = torchrec.EmbeddingBagCollection(tables=configs, device=torch.device(device))
        if torch.device(device).type != "meta":
            copy_native_weights(self, native)
        self.output_dim = sum(self.dims)

    @property
    def num_features(self) -> int:
        return len(self.features)

    def forward(self, batch: Batch) -> Tensor:
        pooled = self.bags(keyed_jagged(batch, self.sparse, self.sequences)).to_dict()
        return torch.stack([pooled[name] for name in self.features], dim=1)


def copy_native_weights(target: TorchRecEmbeddingCollection, source: EmbeddingCollection) -> None:
    """Copy each table of a per-field ``EmbeddingCollection`` into the TorchRec tables.

    Raises:
        ConfigError: if ``source`` is fused or its tables differ in name or shape.
    """
    if source.layout != "per_field":
        raise ConfigError("copy_native_weights needs the per_field layout (a fused table has no per-table weights)")
    with torch.no_grad():
        for name, bag in target.bags.embedding_bags.items():
            if name not in source.tables or source.tables[name].weight.shape != bag.weight.shape:
                raise ConfigError(f"embedding table {name!r}: no native table of shape {tuple(bag.weight.shape)}")
            bag.weight.copy_(source.tables[name].weight)
