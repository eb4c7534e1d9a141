"""FTRL-Proximal, the per-coordinate online optimiser for sparse linear (wide) models.

McMahan et al., "Ad Click Prediction: a View from the Trenches", KDD 2013, Algorithm 1.
Each coordinate i keeps two numbers: z_i (the sum of gradients, each corrected by how far the
learning rate moved) and n_i (the sum of squared gradients). The weight is never stored as
optimiser state; it is a closed form of (z_i, n_i):

    w_i = 0                                                        if |z_i| <= l1
    w_i = -(z_i - sign(z_i) l1) / ((beta + sqrt(n_i)) / alpha + l2)  otherwise

and, after a gradient g_i was computed at w_i,

    sigma_i = (sqrt(n_i + g_i^2) - sqrt(n_i)) / alpha
    z_i    <- z_i + g_i - sigma_i w_i
    n_i    <- n_i + g_i^2

The per-coordinate learning rate is alpha / (beta + sqrt(n_i)) (Sec. 3.1), and L1 gives exact
zeros (sparse models) rather than small weights, because of the threshold above.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor


class FTRL(torch.optim.Optimizer):
    """FTRL-Proximal with L1 and L2 regularisation (McMahan et al., KDD 2013, Algorithm 1).

    Works with dense gradients and with sparse COO gradients (``nn.Embedding(sparse=True)``).
    For a sparse gradient the duplicates are summed (``coalesce``) and only the rows it touches
    are updated, as Algorithm 1 updates only the coordinates i in I = {i : x_i != 0}; untouched
    rows keep their state and their values. For a dense gradient every coordinate goes through
    the update, which leaves (z, n) unchanged where the gradient is exactly zero.

    Initial weights. As in the paper, every coordinate starts from z = n = 0, whose closed form
    is w = 0. A parameter's state is created at the first ``step`` that sees a gradient for it,
    and at that moment the whole parameter is set to 0 (the closed form of z = n = 0), before
    the update. Consequences:

    * FTRL starts from w = 0 as in Algorithm 1, and a coordinate that never receives a gradient
      (an embedding row never looked up: a feature never seen) stays exactly 0.
    * The parameter's initial values matter only for the forward pass that produced the first
      gradient. To run Algorithm 1 exactly, first gradient at w = 0 included, zero-initialise
      the parameters, as :class:`recforge.layers.linear.FirstOrder` does.
    * Dense and sparse gradients give identical results, whatever the initial values.
    * A fresh FTRL discards weights loaded into the model (it does not warm-start from them);
      to resume, load the optimiser's ``state_dict`` too. FTRL is meant for linear / wide
      parameters: give a deep tower another optimiser (a zeroed MLP would not learn).

    The ``w`` in the z update is the closed form of the current (z, n), not a value read back
    from the parameter; after each step the updated coordinates are overwritten with the new
    closed form.

    Args:
        params: parameters or parameter groups, as for any ``torch.optim.Optimizer``.
        lr: alpha, the learning-rate scale (> 0). Named ``lr`` so that schedulers and per-group
            settings work; a scheduler's change applies to the closed form from the next step.
        beta: the learning-rate smoothing term (>= 0); the paper finds beta = 1 usually good enough.
        l1: L1 strength lambda_1 (>= 0); larger values give more exact zeros.
        l2: L2 strength lambda_2 (>= 0).

    Raises:
        ValueError: if a hyper-parameter is out of range or not finite (the message names it).

    Shape:
        State per parameter: ``z`` and ``n``, each the parameter's shape and dtype.
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float = 0.1,
        beta: float = 1.0,
        l1: float = 0.0,
        l2: float = 0.0,
    ):
        _check_hyper_parameters(lr=lr, beta=beta, l1=l1, l2=l2)
        super().__init__(params, dict(lr=lr, beta=beta, l1=l1, l2=l2))
        for group in self.param_groups:  # per-group overrides are checked too
            _check_hyper_parameters(**{k: group[k] for k in ("lr", "beta", "l1", "l2")})

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        """Apply one FTRL-Proximal update to every parameter that has a gradient.

        Args:
            closure: re-evaluates the model and returns the loss (optional).

        Returns:
            The closure's loss, or None.
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            alpha, beta, l1, l2 = group["lr"], group["beta"], group["l1"], group["l2"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["z"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["n"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    p.zero_()  # w = closed form of z = n = 0: start from 0 as Algorithm 1 does
                z, n = state["z"], state["n"]
                grad = p.grad
                if grad.is_sparse:
                    grad = grad.coalesce()  # sums duplicate ids: one update per touched row
                    index = tuple(grad.indices())
                    z_new, n_new = _ftrl_update(z[index], n[index], grad.values(), alpha, beta, l1, l2)
                    z[index] = z_new
                    n[index] = n_new
                    p[index] = _closed_form(z_new, n_new, alpha, beta, l1, l2).to(p.dtype)
                else:
                    z_new, n_new = _ftrl_update(z, n, grad, alpha, beta, l1, l2)
                    z.copy_(z_new)
                    n.copy_(n_new)
                    p.copy_(_closed_form(z, n, alpha, beta, l1, l2))
        return loss


def _ftrl_update(
    z: Tensor, n: Tensor, g: Tensor, alpha: float, beta: float, l1: float, l2: float
) -> tuple[Tensor, Tensor]:
    """Algorithm 1's state update for a gradient g computed at w = closed_form(z, n)."""
    w = _closed_form(z, n, alpha, beta, l1, l2)
    n_new = n + g * g
    sigma = (n_new.sqrt() - n.sqrt()) / alpha
    return z + g - sigma * w, n_new


def _closed_form(z: Tensor, n: Tensor, alpha: float, beta: float, l1: float, l2: float) -> Tensor:
    """w = -(z - sign(z) l1) / ((beta + sqrt(n)) / alpha + l2) where |z| > l1, else exactly 0."""
    shrunk = z.sign() * (z.abs() - l1).clamp_min(0.0)
    denominator = (beta + n.sqrt()) / alpha + l2
    # Only beta = l2 = 0 with n = 0 makes the denominator 0, and then z = 0 too (z and n change
    # together): clamping keeps that 0 / 0 at 0 instead of NaN.
    return -shrunk / denominator.clamp_min(torch.finfo(denominator.dtype).tiny)


def _check_hyper_parameters(lr: float, beta: float, l1: float, l2: float) -> None:
    if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise ValueError(f"FTRL: lr (alpha) must be a finite number > 0, got {lr!r}")
    for name, value in (("beta", beta), ("l1", l1), ("l2", l2)):
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
            raise ValueError(f"FTRL: {name} must be a finite number >= 0, got {value!r}")
