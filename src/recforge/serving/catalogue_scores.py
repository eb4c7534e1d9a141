"""Scores of every catalogue item for a chunk of users, by the fastest exact route per model.

Ranking the whole catalogue for every user needs U x I scores. Scoring them as U x I (user,
item) pairs through ``model.forward`` repeats the item side U times; the routes here compute
the item side once and reduce the rest to a matrix product:

* ``mf``: P_u Q^T + b_u + b_i^T + b (Koren et al. 2009, Eq. 4).
* ``gmf``: h^T (p_u ⊙ q_i) + b = (P_u ⊙ h^T) Q^T + b (He et al. 2017, Eq. 9).
* ``mlp`` / ``neumf``: the first tower layer W [p_u ; q_i] + c splits into W_u p_u + c (per user)
  plus W_i q_i (per item), so only the pairwise sum and the narrower layers after it run per
  pair (He et al. 2017, Eq. 10-12); NeuMF's GMF half is a matrix product as for ``gmf``.
* ``itempop``: the training counts, the same row for every user.
* any other model of (user, item) pairs: ``model.forward`` over the U x I pairs.

The routes equal ``model.forward`` up to float32 summation order (about 1e-6 relative);
``tests/serving/test_catalogue_scores.py`` checks each against the forward pass.

Shape letters: U users in the chunk, I catalogue items, f factors, H first tower width.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from recforge.data.batches import Batch
from recforge.models.ncf import GMF, MF, NCFMLP, NeuMF
from recforge.models.popularity import ItemPop


class CatalogueScorer:
    """Scores of all ``num_items`` items for chunks of users, for one model in evaluation mode.

    Args:
        model: a model of (user, item) pairs: ``batch.sparse_features`` [B, 2] -> logits [B].
        num_items: catalogue size I (internal item ids 0..I-1).

    Attributes:
        pair_cost: floats held per (user, item) score while scoring (1 for matrix-product
            routes, the first tower width for MLP towers); callers size user chunks by it.
        route: which route is used (``matmul``, ``tower``, ``counts`` or ``forward``).
    """

    def __init__(self, model: nn.Module, num_items: int):
        self.model = model.eval()
        self.num_items = int(num_items)
        tensors = [*model.parameters(), *model.buffers()]
        self.device = tensors[0].device if tensors else torch.device("cpu")
        self.pair_cost = 1
        self._score: Callable[[Tensor], Tensor]
        with torch.inference_mode():
            self._score, self.route = self._route(model)

    @torch.inference_mode()
    def __call__(self, users: Tensor) -> Tensor:
        """Scores of every item for ``users``.

        Args:
            users: int64 [U] internal user ids.

        Returns:
            float32 [U, I] scores (the model's logits; ItemPop: training counts).
        """
        return self._score(users.to(self.device))

    def _route(self, model: nn.Module) -> tuple[Callable[[Tensor], Tensor], str]:
        items = torch.arange(self.num_items, device=self.device)
        kind = type(model)  # exact type: a subclass may change forward, so it takes the generic route
        if kind is MF:
            q, b_i = model.item_embedding(items), model.item_bias(items).squeeze(1)
            return (
                lambda u: torch.addmm(b_i + model.global_bias, model.user_embedding(u), q.T) + model.user_bias(u),
                "matmul",
            )
        if kind is GMF:
            q, h, b = model.item_embedding(items), model.predict.weight[0], model.predict.bias
            return lambda u: torch.addmm(b, model.user_embedding(u) * h, q.T), "matmul"
        if kind is ItemPop:
            counts = model.counts.float()
            return lambda u: counts.expand(len(u), -1).clone(), "counts"
        if kind is NCFMLP and isinstance(model.tower.layers[0], nn.Linear):
            tower = self._split_tower(
                model.tower.layers, model.item_embedding(items), model.user_embedding.embedding_dim, model.predict.weight[0]
            )
            return lambda u: tower(model.user_embedding(u)) + model.predict.bias, "tower"
        if kind is NeuMF and isinstance(model.tower.layers[0], nn.Linear):
            f = model.config.factors
            table = model.item_embedding(items)
            q_gmf, q_mlp = table[:, :f], table[:, f:]
            h_gmf, h_mlp = model.predict.weight[0, :f], model.predict.weight[0, f:]
            tower = self._split_tower(model.tower.layers, q_mlp, q_mlp.shape[1], h_mlp)
            b = model.predict.bias

            def neumf(u: Tensor) -> Tensor:
                p = model.user_embedding(u)
                return torch.addmm(b, p[:, :f] * h_gmf, q_gmf.T) + tower(p[:, f:])

            return neumf, "tower"
        return self._forward_route(model), "forward"

    def _split_tower(
        self, layers: nn.Sequential, item_vectors: Tensor, user_dim: int, head: Tensor
    ) -> Callable[[Tensor], Tensor]:
        """The tower over [p_u ; q_i] for all items, with the first layer split by side.

        Args:
            layers: Linear first, then any per-row layers (activations, eval-mode BatchNorm).
            item_vectors: [I, e] item embeddings (the tower's second input half).
            user_dim: e_u, width of the user half of the input.
            head: [H_last] weights of the prediction layer over the tower output.

        Returns:
            users' embeddings [U, e_u] -> [U, I] tower scores (without the prediction bias).
        """
        first, rest = layers[0], layers[1:]
        w_user, w_item = first.weight[:, :user_dim], first.weight[:, user_dim:]
        item_part = item_vectors @ w_item.T  # [I, H], once per scorer
        self.pair_cost = first.out_features

        def tower(p: Tensor) -> Tensor:
            user_part = torch.addmm(first.bias, p, w_user.T)  # [U, H]
            hidden = (user_part[:, None, :] + item_part[None, :, :]).view(-1, first.out_features)
            return (_per_row(rest, hidden) @ head).view(len(p), -1)

        return tower

    def _forward_route(self, model: nn.Module) -> Callable[[Tensor], Tensor]:
        items = torch.arange(self.num_items, device=self.device)
        empty_labels = torch.empty((0, 1), device=self.device)

        def forward(u: Tensor) -> Tensor:
            pairs = torch.stack([u.repeat_interleave(self.num_items), items.repeat(len(u))], dim=1)
            return model(Batch(sparse_features=pairs, labels=empty_labels)).float().view(len(u), self.num_items)

        return forward


def _per_row(layers: nn.Sequential, x: Tensor) -> Tensor:
    """``layers(x)`` with ReLUs applied in place: ``x`` is a scratch tensor of this module, and
    at millions of rows each new activation tensor costs as much as the layer itself."""
    for layer in layers:
        x = x.relu_() if type(layer) is nn.ReLU else layer(x)
    return x
