import pytest
import torch

from recforge.layers.interaction import DotInteraction, FactorizationMachine


def _pairwise_sum(v: torch.Tensor) -> torch.Tensor:
    """sum_{f<g} v_f * v_g, element-wise, by the explicit double loop. [B, F, D] -> [B, D]."""
    out = torch.zeros(v.shape[0], v.shape[2], dtype=v.dtype)
    for f in range(v.shape[1]):
        for g in range(f + 1, v.shape[1]):
            out += v[:, f] * v[:, g]
    return out


# --- FactorizationMachine ----------------------------------------------------------------------


@pytest.mark.parametrize("batch, fields, dim", [(5, 2, 3), (7, 6, 4), (1, 10, 8), (3, 1, 5)])
def test_fm_equals_pairwise_double_sum(batch, fields, dim):
    torch.manual_seed(0)
    v = torch.randn(batch, fields, dim, dtype=torch.float64)
    expected = _pairwise_sum(v)
    out = FactorizationMachine()(v)
    assert out.shape == (batch,)
    torch.testing.assert_close(out, expected.sum(1), rtol=1e-12, atol=1e-12)
    vector = FactorizationMachine(reduce_sum=False)(v)
    assert vector.shape == (batch, dim)
    torch.testing.assert_close(vector, expected, rtol=1e-12, atol=1e-12)


def test_fm_hand_worked():
    # <(1, 2), (3, 4)> + <(1, 2), (0, 1)> + <(3, 4), (0, 1)> = 11 + 2 + 4
    v = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [0.0, 1.0]]])
    assert FactorizationMachine()(v).item() == pytest.approx(17.0)


def test_fm_backward_and_batch_one():
    v = torch.randn(1, 4, 3, requires_grad=True)
    FactorizationMachine()(v).sum().backward()
    # d/dv_f of sum_{f<g} <v_f, v_g> = sum_{g != f} v_g
    expected = v.detach().sum(1, keepdim=True) - v.detach()
    torch.testing.assert_close(v.grad, expected)


# --- DotInteraction ----------------------------------------------------------------------------


def _explicit_pairs(dense: torch.Tensor, sparse: torch.Tensor) -> torch.Tensor:
    vectors = [dense] + [sparse[:, f] for f in range(sparse.shape[1])]
    pairs = [(vectors[i] * vectors[j]).sum(1) for i in range(len(vectors)) for j in range(i)]  # i > j
    return torch.cat([dense, torch.stack(pairs, dim=1)], dim=1)


@pytest.mark.parametrize("batch, fields, dim", [(4, 1, 3), (6, 3, 5), (1, 8, 4), (2, 26, 16)])
def test_dot_interaction_equals_explicit_pairs(batch, fields, dim):
    torch.manual_seed(1)
    dense = torch.randn(batch, dim, dtype=torch.float64)
    sparse = torch.randn(batch, fields, dim, dtype=torch.float64)
    layer = DotInteraction(fields)
    out = layer(dense, sparse)
    width = dim + fields * (fields + 1) // 2
    assert out.shape == (batch, width) and layer.output_dim(dim) == width
    torch.testing.assert_close(out, _explicit_pairs(dense, sparse), rtol=1e-12, atol=1e-12)


def test_dot_interaction_has_no_self_pairs():
    # orthogonal unit vectors: every cross pair is 0, so any self-pair (= 1) would show up
    eye = torch.eye(4).unsqueeze(0)  # 4 vectors of width 4
    out = DotInteraction(3)(eye[:, 0], eye[:, 1:])
    assert torch.equal(out[0, :4], eye[0, 0])
    assert torch.all(out[0, 4:] == 0)
    assert out.shape == (1, 4 + 6)


def test_dot_interaction_pair_order_and_buffers():
    layer = DotInteraction(2)
    assert list(zip(layer.pair_rows.tolist(), layer.pair_cols.tolist())) == [(1, 0), (2, 0), (2, 1)]
    assert layer.state_dict() == {}  # index buffers are not persistent
    dense = torch.tensor([[1.0, 0.0]])
    sparse = torch.tensor([[[2.0, 3.0], [5.0, 7.0]]])
    # <x1, x0> = 2, <x2, x0> = 5, <x2, x1> = 10 + 21
    assert DotInteraction(2)(dense, sparse).tolist() == [[1.0, 0.0, 2.0, 5.0, 31.0]]


def test_dot_interaction_backward_and_shape_errors():
    dense = torch.randn(1, 3, requires_grad=True)
    sparse = torch.randn(1, 2, 3, requires_grad=True)
    DotInteraction(2)(dense, sparse).sum().backward()
    assert dense.grad is not None and sparse.grad is not None
    assert torch.isfinite(sparse.grad).all()
    with pytest.raises(ValueError, match="sparse"):
        DotInteraction(3)(torch.randn(2, 3), torch.randn(2, 2, 3))
    with pytest.raises(ValueError, match="dense"):
        DotInteraction(2)(torch.randn(2, 4), torch.randn(2, 2, 3))
    with pytest.raises(ValueError, match="dense"):
        DotInteraction(2)(None, torch.randn(2, 2, 3))
    with pytest.raises(ValueError):
        DotInteraction(0)
    with pytest.raises(ValueError):
        DotInteraction(1, with_dense=False)  # one vector: nothing to interact


@pytest.mark.parametrize("fields", [2, 5])
def test_dot_interaction_without_dense_equals_explicit_pairs(fields):
    torch.manual_seed(3)
    sparse = torch.randn(4, fields, 6, dtype=torch.float64)
    layer = DotInteraction(fields, with_dense=False)
    out = layer(None, sparse)
    expected = torch.stack(
        [(sparse[:, i] * sparse[:, j]).sum(1) for i in range(fields) for j in range(i)], dim=1
    )
    assert out.shape == (4, fields * (fields - 1) // 2) and layer.output_dim(6) == out.shape[1]
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="with_dense=False"):
        layer(torch.randn(4, 6, dtype=torch.float64), sparse)


def test_layers_move_with_module_and_take_float64():
    fm_input = torch.randn(2, 3, 4, dtype=torch.float64)
    assert FactorizationMachine()(fm_input).dtype == torch.float64
    layer = DotInteraction(3).to(torch.float64)
    assert layer.pair_rows.dtype == torch.int64  # index buffers keep their dtype
    assert layer(fm_input[:, 0], fm_input).dtype == torch.float64
