"""Neural Collaborative Filtering (He et al., WWW 2017, arXiv:1708.05031) and plain MF.

All four score a (user, item) pair from ``batch.sparse_features[:, 0]`` (user) and
``[:, 1]`` (item) and return logits [B]; BCE with sampled negatives is applied outside.

* ``mf``: dot product plus user, item and global biases (the classic MF scorer).
* ``gmf``: Eq. 9, y = a_out(h^T (p_u ⊙ q_i)), the element-wise product through a learned linear layer.
* ``mlp``: Eq. 10, a tower over [p_u ; q_i]; for predictive factors f: two 2f-dim embeddings
  (input 4f) and three hidden layers 4f -> 2f -> f (Sec. 4.1: "we employed three hidden layers for
  MLP; for example, if the size of predictive factors is 8, then the architecture of the neural CF
  layers is 32 -> 16 -> 8, and the embedding size is 16"). The authors' code runs
  ``--layers [64,32,16,8]`` at f = 8 instead (32-dim embeddings, hidden 32 -> 16 -> 8); set
  ``mlp_layers`` to (8f, 4f, 2f, f) for that variant. The paper's text is the default.
* ``neumf``: Eq. 11-12, GMF and MLP with separate embeddings, their last layers concatenated
  into one prediction layer; ``load_pretrained`` implements the Sec. 3.4.1 initialisation.

Embeddings are initialised from N(0, 0.01^2) as in Sec. 4.1.
Shape letters: B batch, f predictive factors.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from recforge.data.batches import Batch
from recforge.data.schema import Schema
from recforge.errors import ConfigError
from recforge.layers.embedding import EmbeddingTable
from recforge.layers.mlp import MLP, lecun_uniform_
from recforge.models.registry import register_model


@dataclass(frozen=True)
class NCFConfig:
    """Settings shared by MF, GMF, MLP and NeuMF (defaults from He et al. 2017, Sec. 4.1).

    Attributes:
        factors: predictive factors f (GMF/MF embedding size; the MLP's last hidden layer).
        mlp_layers: MLP widths as in the reference code's ``--layers``: the first entry is the
            concatenated input [p_u ; q_i] (so each MLP embedding has ``mlp_layers[0] // 2``
            dims), the rest are the hidden layers. None means the paper's (4f, 4f, 2f, f): input
            4f, then three hidden layers 4f, 2f, f.
        init_std: standard deviation of the Gaussian embedding initialisation.
    """

    factors: int = 8
    mlp_layers: tuple[int, ...] | None = None
    init_std: float = 0.01

    def __post_init__(self) -> None:
        if self.factors < 1:
            raise ConfigError(f"model.factors must be >= 1, got {self.factors}")
        if not self.init_std > 0:
            raise ConfigError(f"model.init_std must be > 0, got {self.init_std}")
        layers = self.tower
        if len(layers) < 2 or layers[0] % 2 or any(w < 1 for w in layers):
            raise ConfigError(
                f"model.mlp_layers must hold >= 2 positive widths with an even first entry, got {list(layers)}"
            )

    def used_by(self, model_name: str) -> "NCFConfig":
        """This config with what ``model_name`` ignores reset (MF and GMF have no MLP tower), so
        two GMF runs that differ only in ``mlp_layers`` count as the same model."""
        return dataclasses.replace(self, mlp_layers=None) if model_name in ("mf", "gmf") else self

    @property
    def tower(self) -> tuple[int, ...]:
        """MLP widths, first = input width."""
        f = self.factors
        return tuple(self.mlp_layers) if self.mlp_layers is not None else (4 * f, 4 * f, 2 * f, f)


def _embedding(num: int, dim: int, std: float) -> nn.Embedding:
    table = EmbeddingTable(num, dim)
    nn.init.normal_(table.weight, mean=0.0, std=std)
    return table


def _ids(batch: Batch) -> tuple[Tensor, Tensor]:
    return batch.sparse_features[:, 0], batch.sparse_features[:, 1]


@register_model("mf", NCFConfig)
class MF(nn.Module):
    """Matrix factorisation: logit = <p_u, q_i> + b_u + b_i + b (Koren, Bell & Volinsky, IEEE Computer 2009, Eq. 4).

    Shape: batch.sparse_features [B, 2] (user, item) -> logits [B].
    """

    def __init__(self, schema: Schema, config: NCFConfig):
        super().__init__()
        self.config = config
        nu, ni = schema["user"].vocab_size, schema["item"].vocab_size
        self.user_embedding = _embedding(nu, config.factors, config.init_std)
        self.item_embedding = _embedding(ni, config.factors, config.init_std)
        self.user_bias = EmbeddingTable(nu, 1)
        self.item_bias = EmbeddingTable(ni, 1)
        nn.init.zeros_(self.user_bias.weight)
        nn.init.zeros_(self.item_bias.weight)
        self.global_bias = nn.Parameter(torch.zeros(1))

    def forward(self, batch: Batch) -> Tensor:
        users, items = _ids(batch)
        dot = (self.user_embedding(users) * self.item_embedding(items)).sum(dim=1)
        return dot + self.user_bias(users).squeeze(1) + self.item_bias(items).squeeze(1) + self.global_bias


@register_model("gmf", NCFConfig)
class GMF(nn.Module):
    """Generalized Matrix Factorization (He et al. 2017, Eq. 9): h^T (p_u ⊙ q_i) + b.

    Shape: batch.sparse_features [B, 2] (user, item) -> logits [B].
    """

    def __init__(self, schema: Schema, config: NCFConfig):
        super().__init__()
        self.config = config
        self.user_embedding = _embedding(schema["user"].vocab_size, config.factors, config.init_std)
        self.item_embedding = _embedding(schema["item"].vocab_size, config.factors, config.init_std)
        self.predict = lecun_uniform_(nn.Linear(config.factors, 1))

    def features(self, batch: Batch) -> Tensor:
        """The predictive vector p_u ⊙ q_i, [B, f]."""
        users, items = _ids(batch)
        return self.user_embedding(users) * self.item_embedding(items)

    def forward(self, batch: Batch) -> Tensor:
        return self.predict(self.features(batch)).squeeze(1)


@register_model("mlp", NCFConfig)
class NCFMLP(nn.Module):
    """NCF's Multi-Layer Perceptron (He et al. 2017, Eq. 10): ReLU tower over [p_u ; q_i].

    Shape: batch.sparse_features [B, 2] (user, item) -> logits [B].
    """

    def __init__(self, schema: Schema, config: NCFConfig):
        super().__init__()
        self.config = config
        tower = config.tower
        self.user_embedding = _embedding(schema["user"].vocab_size, tower[0] // 2, config.init_std)
        self.item_embedding = _embedding(schema["item"].vocab_size, tower[0] // 2, config.init_std)
        self.tower = MLP(tower[0], tower[1:], activation="relu")
        self.predict = lecun_uniform_(nn.Linear(tower[-1], 1))

    def features(self, batch: Batch) -> Tensor:
        """The last hidden layer's output, [B, mlp_layers[-1]]."""
        users, items = _ids(batch)
        return self.tower(torch.cat([self.user_embedding(users), self.item_embedding(items)], dim=1))

    def forward(self, batch: Batch) -> Tensor:
        return self.predict(self.features(batch)).squeeze(1)


@register_model("neumf", NCFConfig)
class NeuMF(nn.Module):
    """Neural Matrix Factorization (He et al. 2017, Eq. 12): GMF ⊕ MLP -> one linear layer.

    GMF and MLP keep separate embeddings, as in the paper, but each side stores them in one table
    ([GMF | MLP] columns), so a step does two lookups instead of four: the same function and
    gradients, and a faster epoch on CPU where NeuMF-8's cost is per-operation overhead.

    Shape: batch.sparse_features [B, 2] (user, item) -> logits [B].
    """

    def __init__(self, schema: Schema, config: NCFConfig):
        super().__init__()
        self.config = config
        tower = config.tower
        f, e = config.factors, tower[0] // 2
        self.user_embedding = _embedding(schema["user"].vocab_size, f + e, config.init_std)
        self.item_embedding = _embedding(schema["item"].vocab_size, f + e, config.init_std)
        self.tower = MLP(tower[0], tower[1:], activation="relu")
        self.predict = lecun_uniform_(nn.Linear(f + tower[-1], 1))

    def forward(self, batch: Batch) -> Tensor:
        users, items = _ids(batch)
        widths = [self.config.factors, self.user_embedding.embedding_dim - self.config.factors]
        # split, not two slices: its backward is one cat instead of zero-filled slice gradients
        u_gmf, u_mlp = self.user_embedding(users).split(widths, dim=1)
        i_gmf, i_mlp = self.item_embedding(items).split(widths, dim=1)
        mlp = self.tower(torch.cat([u_mlp, i_mlp], dim=1))
        return self.predict(torch.cat([u_gmf * i_gmf, mlp], dim=1)).squeeze(1)

    @torch.no_grad()
    def load_pretrained(self, gmf: GMF, mlp: NCFMLP, alpha: float = 0.5) -> "NeuMF":
        """Initialise from trained GMF and MLP models (He et al. 2017, Sec. 3.4.1).

        Embeddings and the MLP tower are copied; the prediction layer becomes
        h = [alpha * h_GMF ; (1 - alpha) * h_MLP] with bias alpha * b_GMF + (1 - alpha) * b_MLP.

        Args:
            gmf: a trained GMF with the same number of factors.
            mlp: a trained MLP with the same layer widths.
            alpha: trade-off between the two pre-trained models (the paper uses 0.5).

        Raises:
            ConfigError: if the shapes of the pre-trained models do not match.
        """
        if not 0.0 <= alpha <= 1.0:
            raise ConfigError(f"pretrain.alpha must be in [0, 1], got {alpha}")
        f = self.config.factors
        if gmf.user_embedding.weight.shape[1] != f or gmf.user_embedding.weight.shape[0] != self.user_embedding.weight.shape[0] \
                or gmf.item_embedding.weight.shape[0] != self.item_embedding.weight.shape[0]:
            raise ConfigError("pre-trained GMF does not match NeuMF's GMF part (factors or table sizes differ)")
        theirs = {k: v for k, v in mlp.state_dict().items() if k.startswith("tower.")}
        ours = {k: v for k, v in self.state_dict().items() if k.startswith("tower.")}
        if {k: tuple(v.shape) for k, v in theirs.items()} != {k: tuple(v.shape) for k, v in ours.items()} or \
                mlp.user_embedding.weight.shape[1] != self.user_embedding.weight.shape[1] - f or \
                mlp.user_embedding.weight.shape[0] != self.user_embedding.weight.shape[0]:
            raise ConfigError("pre-trained MLP does not match NeuMF's MLP part (factors or mlp_layers differ)")
        for table, g, m in ((self.user_embedding, gmf.user_embedding, mlp.user_embedding), (self.item_embedding, gmf.item_embedding, mlp.item_embedding)):
            table.weight[:, :f].copy_(g.weight)
            table.weight[:, f:].copy_(m.weight)
        self.tower.load_state_dict({k[len("tower."):]: v for k, v in theirs.items()})
        self.predict.weight.copy_(torch.cat([alpha * gmf.predict.weight, (1 - alpha) * mlp.predict.weight], dim=1))
        self.predict.bias.copy_(alpha * gmf.predict.bias + (1 - alpha) * mlp.predict.bias)
        return self
