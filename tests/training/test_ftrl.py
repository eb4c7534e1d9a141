import copy
import math

import numpy as np
import pytest
import torch
from torch import nn

from recforge.training.ftrl import FTRL


class ReferenceFTRL:
    """McMahan et al. (KDD 2013) Algorithm 1, written out per coordinate in plain Python / NumPy."""

    def __init__(self, size, alpha, beta, l1, l2):
        self.alpha, self.beta, self.l1, self.l2 = alpha, beta, l1, l2
        self.z = np.zeros(size)
        self.n = np.zeros(size)

    def weight(self, i):
        z, n = self.z[i], self.n[i]
        if abs(z) <= self.l1:
            return 0.0
        return -(z - math.copysign(1.0, z) * self.l1) / ((self.beta + math.sqrt(n)) / self.alpha + self.l2)

    def weights(self):
        return np.array([self.weight(i) for i in range(len(self.z))])

    def update(self, g):
        for i in np.flatnonzero(g):  # I = coordinates with a non-zero feature (gradient)
            w_i = self.weight(i)
            sigma = (math.sqrt(self.n[i] + g[i] ** 2) - math.sqrt(self.n[i])) / self.alpha
            self.z[i] += g[i] - sigma * w_i
            self.n[i] += g[i] ** 2


def _run_both(grads, shape, **hp):
    param = nn.Parameter(torch.zeros(shape, dtype=torch.float64))
    opt = FTRL([param], **hp)
    ref = ReferenceFTRL(int(np.prod(shape)), hp["lr"], hp["beta"], hp["l1"], hp["l2"])
    for g in grads:
        param.grad = torch.from_numpy(g.reshape(shape)).clone()
        opt.step()
        ref.update(g.reshape(-1))
        np.testing.assert_allclose(param.detach().numpy().reshape(-1), ref.weights(), rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(opt.state[param]["z"].numpy().reshape(-1), ref.z, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(opt.state[param]["n"].numpy().reshape(-1), ref.n, rtol=1e-12, atol=1e-14)
    return param, opt


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize(
    "hp",
    [
        dict(lr=0.1, beta=1.0, l1=0.0, l2=0.0),
        dict(lr=0.5, beta=1.0, l1=0.3, l2=0.1),
        dict(lr=0.05, beta=0.0, l1=0.0, l2=1.0),
        dict(lr=1.0, beta=2.0, l1=1.0, l2=0.0),
    ],
)
def test_matches_reference_algorithm_1(seed, hp):
    rng = np.random.default_rng(seed)
    shape = (3, 5)
    grads = []
    for _ in range(8):
        g = rng.normal(0, 1, shape)
        g[rng.random(shape) < 0.3] = 0.0  # coordinates absent from this example
        grads.append(g)
    _run_both(grads, shape, **hp)


def test_one_step_by_hand():
    # z = n = 0, w = 0: after g, n = g^2, z = g, w = -g / ((beta + |g|) / alpha)
    param = nn.Parameter(torch.zeros(2, dtype=torch.float64))
    opt = FTRL([param], lr=0.5, beta=1.0)
    param.grad = torch.tensor([2.0, -0.5], dtype=torch.float64)
    opt.step()
    expected = [-2.0 / ((1 + 2.0) / 0.5), 0.5 / ((1 + 0.5) / 0.5)]
    assert param.detach().tolist() == pytest.approx(expected)


def test_float32_close_to_reference():
    rng = np.random.default_rng(0)
    param = nn.Parameter(torch.zeros(50))
    opt = FTRL([param], lr=0.2, beta=1.0, l1=0.1, l2=0.01)
    ref = ReferenceFTRL(50, 0.2, 1.0, 0.1, 0.01)
    for _ in range(20):
        g = rng.normal(0, 1, 50)
        param.grad = torch.from_numpy(g).float()
        opt.step()
        ref.update(g.astype(np.float32).astype(np.float64))
    np.testing.assert_allclose(param.detach().numpy(), ref.weights(), rtol=1e-4, atol=1e-6)


def test_l1_gives_exact_zeros_for_small_gradients():
    torch.manual_seed(0)
    param = nn.Parameter(torch.zeros(100))
    opt = FTRL([param], lr=0.1, beta=1.0, l1=1.0)
    scale = torch.ones(100)
    scale[50:] = 0.01  # small-gradient coordinates: |z| stays below l1
    for _ in range(20):
        param.grad = scale * torch.ones(100)  # consistent sign so the large ones grow past l1
        opt.step()
    assert torch.all(param[50:] == 0.0)
    assert torch.all(param[:50] != 0.0)
    assert torch.all(opt.state[param]["z"][50:].abs() <= 1.0)


def test_first_step_starts_from_zero_dense():
    # Algorithm 1 starts from z = n = 0 (w = 0); a non-zero initial value is not part of the state,
    # so a coordinate with a zero first gradient becomes 0.
    param = nn.Parameter(torch.tensor([5.0, -3.0, 7.0], dtype=torch.float64))
    opt = FTRL([param], lr=1.0, beta=1.0)
    param.grad = torch.tensor([1.0, 0.0, -1.0], dtype=torch.float64)
    opt.step()
    assert param.detach().tolist() == pytest.approx([-0.5, 0.0, 0.5])


def _embedding_pair(init):
    torch.manual_seed(0)
    sparse = nn.Embedding(20, 4, sparse=True, dtype=torch.float64)
    dense = nn.Embedding(20, 4, sparse=False, dtype=torch.float64)
    with torch.no_grad():
        if init == "zeros":
            sparse.weight.zero_()
        dense.weight.copy_(sparse.weight)
    return sparse, dense


@pytest.mark.parametrize("init", ["zeros", "random"])
def test_sparse_gradients_match_dense(init):
    sparse_emb, dense_emb = _embedding_pair(init)
    hp = dict(lr=0.3, beta=1.0, l1=0.05, l2=0.1)
    opt_sparse, opt_dense = FTRL(sparse_emb.parameters(), **hp), FTRL(dense_emb.parameters(), **hp)
    rng = np.random.default_rng(0)
    touched: set[int] = set()
    for step in range(6):
        high = 6 if step == 0 else 12  # rows 6..11 first touched later; 12..19 never; duplicate ids
        ids = torch.from_numpy(rng.integers(0, high, size=(8, 3)))
        target = torch.from_numpy(rng.normal(size=(8, 3, 4)))
        before = sparse_emb.weight.detach().clone()
        for emb, opt in ((sparse_emb, opt_sparse), (dense_emb, opt_dense)):
            opt.zero_grad()
            ((emb(ids) - target) ** 2).sum().backward()
            opt.step()
        assert sparse_emb.weight.grad.is_sparse and not dense_emb.weight.grad.is_sparse
        torch.testing.assert_close(sparse_emb.weight, dense_emb.weight, rtol=1e-12, atol=1e-14)
        for key in ("z", "n"):
            torch.testing.assert_close(
                opt_sparse.state[sparse_emb.weight][key], opt_dense.state[dense_emb.weight][key], rtol=1e-12, atol=1e-14
            )
        now = set(ids.unique().tolist())
        if step > 0:  # rows this step did not touch keep their values exactly
            rest = [r for r in range(20) if r not in now]
            assert torch.equal(sparse_emb.weight[rest], before[rest])
        touched |= now
    never = [r for r in range(20) if r not in touched]
    assert never == list(range(12, 20))
    # a feature never seen keeps w = 0 (and z = n = 0), whatever the initial value was
    assert torch.all(sparse_emb.weight[never] == 0)
    assert torch.all(opt_sparse.state[sparse_emb.weight]["z"][never] == 0)
    assert torch.all(opt_sparse.state[sparse_emb.weight]["n"][never] == 0)


def test_sparse_matches_reference_algorithm_1():
    # per-row sparse updates against the per-coordinate reference, duplicates summed
    emb = nn.Embedding(10, 3, sparse=True, dtype=torch.float64)
    nn.init.zeros_(emb.weight)
    opt = FTRL(emb.parameters(), lr=0.4, beta=1.0, l1=0.2, l2=0.05)
    ref = ReferenceFTRL(30, 0.4, 1.0, 0.2, 0.05)
    rng = np.random.default_rng(3)
    for _ in range(5):
        ids = rng.integers(0, 10, size=6)
        coeff = rng.normal(size=(6, 3))
        opt.zero_grad()
        (emb(torch.from_numpy(ids)) * torch.from_numpy(coeff)).sum().backward()
        opt.step()
        g = np.zeros((10, 3))
        np.add.at(g, ids, coeff)  # d/dW of sum(W[ids] * coeff)
        ref.update(g.reshape(-1))
        np.testing.assert_allclose(emb.weight.detach().numpy().reshape(-1), ref.weights(), rtol=1e-12, atol=1e-14)


def _separable_problem(n=512, d=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    w_true = torch.randn(d, generator=g)
    y = (x @ w_true > 0).float()
    return x, y


def test_trains_logistic_regression_to_low_loss():
    torch.manual_seed(0)
    x, y = _separable_problem()
    model = nn.Linear(10, 1)
    nn.init.zeros_(model.weight)
    nn.init.zeros_(model.bias)
    opt = FTRL(model.parameters(), lr=1.0, beta=1.0, l1=0.0, l2=0.0)
    loss_fn = nn.BCEWithLogitsLoss()
    initial = loss_fn(model(x).squeeze(1), y).item()
    for _epoch in range(30):
        for i in range(0, len(x), 32):
            opt.zero_grad()
            loss_fn(model(x[i : i + 32]).squeeze(1), y[i : i + 32]).backward()
            opt.step()
    final = loss_fn(model(x).squeeze(1), y).item()
    accuracy = ((model(x).squeeze(1) > 0).float() == y).float().mean().item()
    assert initial == pytest.approx(math.log(2))
    assert final < 0.1
    assert accuracy > 0.97


def test_trains_sparse_embedding_logistic_regression():
    # one-hot categorical LR through nn.Embedding(sparse=True): the wide-model use case
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, 50, (1000, 3), generator=g) + torch.tensor([0, 50, 100])
    true = torch.randn(150, generator=g) * 3
    y = (true[ids].sum(1) > 0).float()
    emb = nn.Embedding(150, 1, sparse=True)
    nn.init.zeros_(emb.weight)
    opt = FTRL(emb.parameters(), lr=0.5, beta=1.0, l1=0.01)
    # summed, not averaged, loss: each example's gradient at full size, as in online learning
    # (with beta = 1, gradients shrunk by 1/batch would make the per-coordinate steps tiny)
    loss_fn = nn.BCEWithLogitsLoss(reduction="sum")
    for _epoch in range(20):
        for i in range(0, 1000, 50):
            opt.zero_grad()
            loss_fn(emb(ids[i : i + 50]).sum((1, 2)), y[i : i + 50]).backward()
            opt.step()
    logits = emb(ids).sum((1, 2))
    assert loss_fn(logits, y).item() / len(y) < 0.2
    assert ((logits > 0).float() == y).float().mean().item() > 0.97


def test_state_dict_round_trip_resumes_identically():
    x, y = _separable_problem(n=256)
    loss_fn = nn.BCEWithLogitsLoss()

    def train(model, opt, batches):
        for i in batches:
            opt.zero_grad()
            loss_fn(model(x[i : i + 32]).squeeze(1), y[i : i + 32]).backward()
            opt.step()

    torch.manual_seed(0)
    model = nn.Linear(10, 1)
    opt = FTRL(model.parameters(), lr=0.5, beta=1.0, l1=0.01, l2=0.01)
    train(model, opt, range(0, 128, 32))
    saved_model = copy.deepcopy(model.state_dict())
    saved_opt = copy.deepcopy(opt.state_dict())
    train(model, opt, range(128, 256, 32))

    resumed = nn.Linear(10, 1)
    resumed.load_state_dict(saved_model)
    resumed_opt = FTRL(resumed.parameters(), lr=0.5, beta=1.0, l1=0.01, l2=0.01)
    resumed_opt.load_state_dict(saved_opt)
    train(resumed, resumed_opt, range(128, 256, 32))
    for a, b in zip(model.parameters(), resumed.parameters()):
        assert torch.equal(a, b)
    for a, b in zip(model.parameters(), resumed.parameters()):
        for key in ("z", "n"):
            assert torch.equal(opt.state[a][key], resumed_opt.state[b][key])


def test_parameters_without_gradient_are_untouched():
    used, unused = nn.Parameter(torch.zeros(3)), nn.Parameter(torch.ones(3))
    opt = FTRL([used, unused])
    used.grad = torch.ones(3)
    opt.step()
    assert torch.equal(unused, torch.ones(3)) and unused not in opt.state


def test_closure_and_param_groups():
    a, b = nn.Parameter(torch.zeros(1, dtype=torch.float64)), nn.Parameter(torch.zeros(1, dtype=torch.float64))
    opt = FTRL([{"params": [a], "lr": 1.0}, {"params": [b], "l1": 10.0}], lr=0.1)

    def closure():
        opt.zero_grad()
        loss = (a - 1).pow(2).sum() + (b - 1).pow(2).sum()
        loss.backward()
        return loss

    assert opt.step(closure).item() == pytest.approx(2.0)
    assert a.item() == pytest.approx(2.0 / ((1 + 2.0) / 1.0))  # g = -2, alpha = 1
    assert b.item() == 0.0  # |z| = 2 <= l1 = 10


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(lr=0.0), "lr"),
        (dict(lr=-1.0), "lr"),
        (dict(lr=float("nan")), "lr"),
        (dict(beta=-0.1), "beta"),
        (dict(l1=-1.0), "l1"),
        (dict(l2=float("inf")), "l2"),
    ],
)
def test_bad_hyper_parameters_raise(kwargs, name):
    with pytest.raises(ValueError, match=name):
        FTRL([nn.Parameter(torch.zeros(1))], **kwargs)


def test_bad_group_hyper_parameter_raises():
    with pytest.raises(ValueError, match="l1"):
        FTRL([{"params": [nn.Parameter(torch.zeros(1))], "l1": -1.0}])
