"""Feature-interaction layers: factorization machine, DLRM dot interaction, first-order linear term.

Shapes: B batch, F sparse fields (one embedding each), D embedding dim, N dense features.
"""

from __future__ import annotations


import torch
from torch import Tensor, nn


class FactorizationMachine(nn.Module):
    """Second-order factorization-machine term over field embeddings.

    Rendle, "Factorization Machines", ICDM 2010, Eq. 1 and Lemma 3.1: the pairwise term
    sum_{f<g} <v_f, v_g> (with v_f = x_f times the latent vector of feature f; for a one-hot
    field x_f = 1 and v_f is the field's embedding) equals, in O(F D) instead of O(F^2 D),

        1/2 sum_d [ (sum_f v_{f,d})^2 - sum_f v_{f,d}^2 ].

    With ``reduce_sum=False`` the sum over d is left out, giving the vector
    sum_{f<g} v_f * v_g (element-wise product): the Bi-Interaction pooling of NFM
    (He & Chua, SIGIR 2017, Eq. 4).

    Args:
        reduce_sum: sum over the embedding dimension (the FM scalar) or keep it (the vector form).

    Shape:
        embeddings [B, F, D] -> [B] if ``reduce_sum`` else [B, D].
    """

    def __init__(self, reduce_sum: bool = True):
        super().__init__()
        self.reduce_sum = reduce_sum

    def forward(self, embeddings: Tensor) -> Tensor:
        square_of_sum = embeddings.sum(dim=1).pow(2)
        sum_of_square = embeddings.pow(2).sum(dim=1)
        pairs = 0.5 * (square_of_sum - sum_of_square)  # [B, D]
        return pairs.sum(dim=1) if self.reduce_sum else pairs

    def extra_repr(self) -> str:
        return f"reduce_sum={self.reduce_sum}"


class DotInteraction(nn.Module):
    """DLRM's dot interaction: the dense vector and all pairwise dot products of the features.

    Naumov et al., "Deep Learning Recommendation Model for Personalization and Recommendation
    Systems", 2019 (arXiv:1906.00091), Sec. 2-3: the dense features go through the bottom MLP to
    a vector of the embedding width D; that vector and the F sparse embeddings, F + 1 vectors
    x_0 (dense), x_1, ..., x_F, interact through their dot products <x_i, x_j> for i > j only
    (no self-pairs, each pair once), and the result is concatenated with the dense vector for the
    top MLP:

        output = [x_0, <x_1, x_0>, <x_2, x_0>, <x_2, x_1>, <x_3, x_0>, ...],

    the strictly lower triangle of the Gram matrix in row-major order, as in the reference
    implementation's ``interact_features``. One batched matrix product computes the Gram matrix;
    the triangle's indices are precomputed buffers (not saved in the state dict).

    Without dense features (``with_dense=False``, no bottom MLP) the F embeddings interact among
    themselves and the output is just their F (F - 1) / 2 dot products.

    Args:
        num_sparse_features: F, the number of sparse embeddings per example.
        with_dense: whether a dense vector (the bottom MLP's output) takes part.

    Shape:
        dense [B, D], sparse [B, F, D] -> [B, D + (F + 1) F / 2];
        with ``with_dense=False``: dense None, sparse [B, F, D] -> [B, F (F - 1) / 2].
    """

    def __init__(self, num_sparse_features: int, with_dense: bool = True):
        super().__init__()
        num_vectors = num_sparse_features + int(with_dense)
        if num_sparse_features < 1 or num_vectors < 2:
            raise ValueError(
                f"need at least two vectors to interact; got num_sparse_features={num_sparse_features}, "
                f"with_dense={with_dense}"
            )
        self.num_sparse_features = num_sparse_features
        self.with_dense = with_dense
        rows, cols = torch.tril_indices(num_vectors, num_vectors, offset=-1)
        self.register_buffer("pair_rows", rows, persistent=False)
        self.register_buffer("pair_cols", cols, persistent=False)
        self.num_pairs = num_vectors * (num_vectors - 1) // 2

    def output_dim(self, embedding_dim: int) -> int:
        """Output width for embedding width D: D + (F + 1) F / 2, or F (F - 1) / 2 without dense."""
        return (embedding_dim if self.with_dense else 0) + self.num_pairs

    def forward(self, dense: Tensor | None, sparse: Tensor) -> Tensor:
        if sparse.dim() != 3 or sparse.shape[1] != self.num_sparse_features:
            raise ValueError(f"expected sparse [B, {self.num_sparse_features}, D], got {tuple(sparse.shape)}")
        if not self.with_dense:
            if dense is not None:
                raise ValueError("this DotInteraction was built with with_dense=False but got a dense vector")
            combined = sparse
        else:
            if dense is None or dense.shape != (sparse.shape[0], sparse.shape[2]):
                got = None if dense is None else tuple(dense.shape)
                raise ValueError(f"expected dense [B, D] = {(sparse.shape[0], sparse.shape[2])}, got {got}")
            combined = torch.cat([dense.unsqueeze(1), sparse], dim=1)  # [B, F + 1, D]
        gram = torch.bmm(combined, combined.transpose(1, 2))  # [B, F + 1, F + 1]
        pairs = gram[:, self.pair_rows, self.pair_cols]  # [B, (F + 1) F / 2]
        return torch.cat([dense, pairs], dim=1) if self.with_dense else pairs

    def extra_repr(self) -> str:
        return f"num_sparse_features={self.num_sparse_features}, with_dense={self.with_dense}"
