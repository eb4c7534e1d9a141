"""Multi-task layers: gates are distributions, AdaTT's special case, CGC and AdaTT-w shapes."""

import torch

from recforge.layers.multitask import AdaTTLevel, CGCLevel, Gate, MMoELayer


def test_gates_sum_to_one():
    gate = Gate(5, 4)
    g = gate(torch.randn(7, 5))
    assert g.shape == (7, 4) and torch.allclose(g.sum(1), torch.ones(7)) and (g >= 0).all()


def test_mmoe_output_is_the_gated_mixture_of_experts():
    torch.manual_seed(0)
    layer = MMoELayer(5, num_tasks=2, num_experts=3, units=(4,))
    x = torch.randn(6, 5)
    out = layer(x)
    experts = torch.stack([e(x) for e in layer.experts], 1)
    for t in range(2):
        assert torch.allclose(out[:, t], (layer.gates[t](x).unsqueeze(-1) * experts).sum(1), atol=1e-6)


def test_adatt_with_one_task_and_one_expert_is_twice_the_expert():
    torch.manual_seed(0)
    level = AdaTTLevel(5, num_tasks=1, task_experts=1, units=(4,))
    x = torch.randn(6, 1, 5)
    assert torch.allclose(level(x)[:, 0], 2 * level.experts[0](x[:, 0]), atol=1e-6)


def test_adatt_fusion_adds_each_tasks_own_experts():
    torch.manual_seed(0)
    level = AdaTTLevel(5, num_tasks=2, task_experts=2, units=(4,))
    x = torch.randn(3, 2, 5)
    out = level(x)
    experts = torch.stack([e(x[:, i // 2]) for i, e in enumerate(level.experts)], 1)  # [B, 4, D]
    for t in range(2):
        gate = level.gates[t](x[:, t])
        own = (level.self_weights[t][None, :, None] * experts[:, 2 * t : 2 * t + 2]).sum(1)
        assert torch.allclose(out[:, t], (gate.unsqueeze(-1) * experts).sum(1) + own, atol=1e-6)


def test_shared_modules_shapes():
    x = torch.randn(4, 3, 5)  # 2 tasks + shared
    assert CGCLevel(5, 2, 2, 1, (6,), last=False)(x).shape == (4, 3, 6)
    assert CGCLevel(5, 2, 2, 1, (6,), last=True)(x).shape == (4, 2, 6)
    assert AdaTTLevel(5, 2, 1, (6,), shared_experts=2, last=False)(x).shape == (4, 3, 6)
    assert AdaTTLevel(5, 2, 1, (6,), shared_experts=2, last=True)(x).shape == (4, 2, 6)


def test_a_shared_first_level_input_equals_the_expanded_one():
    torch.manual_seed(0)
    x = torch.randn(4, 5)
    for level, modules in ((CGCLevel(5, 2, 2, 1, (6,), last=False), 3), (AdaTTLevel(5, 2, 2, (6,), shared_experts=1, last=False), 3)):
        expanded = x.unsqueeze(1).expand(-1, modules, -1)
        assert torch.allclose(level(x), level(expanded), atol=1e-6)
