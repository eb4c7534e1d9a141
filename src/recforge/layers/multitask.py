"""Multi-task layers: experts, softmax gates, MMoE, PLE's CGC level and AdaTT fusion.

Shape letters: B batch, T tasks, E experts, D width. Every layer maps task inputs [B, T', D_in]
to task outputs [B, T', D_out] (T' = T, or T + 1 with a shared module), so levels stack. A first
level may be given the one shared input [B, D_in] instead: every module then reads it directly.

Speed notes (measured on CPU, PLE body forward + backward at batch 1024): each module's input is
taken with one ``unbind`` (a per-module ``x[:, m]`` costs a zero-filled [B, T', D_in] gradient
buffer per select in backward), and gated sums are ``addcmul`` chains over the experts' outputs
(a batched matmul of B tiny [1, E] x [E, D] products cost more than the experts' own layers).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from recforge.layers.mlp import MLP


class Gate(nn.Module):
    """Softmax gate: g(x) = softmax(W x + b) over ``num_experts`` (MMoE, Ma et al. KDD 2018, Eq. 6).

    Shape: [B, D_in] -> [B, E], rows summing to 1.
    """

    def __init__(self, input_dim: int, num_experts: int):
        super().__init__()
        self.linear = nn.Linear(input_dim, num_experts)

    def forward(self, x: Tensor) -> Tensor:
        return torch.softmax(self.linear(x), dim=-1)


def _experts(input_dim: int, units: Sequence[int], count: int) -> nn.ModuleList:
    return nn.ModuleList(MLP(input_dim, units, "relu", init="default") for _ in range(count))


def _module_inputs(x: Tensor, modules: int) -> Sequence[Tensor]:
    """Per-module inputs [B, D_in] from [B, M, D_in], or ``modules`` times a shared [B, D_in]."""
    if x.dim() == 2:
        return [x] * modules
    if x.shape[1] != modules:
        raise ValueError(f"expected inputs for {modules} modules, got shape {tuple(x.shape)}")
    return x.unbind(1)


def _mix(gate: Tensor, outputs: Sequence[Tensor]) -> Tensor:
    """Gated sum of expert outputs: gate [B, E], E outputs [B, D] -> [B, D] (sum_e g_e * o_e)."""
    mixed = gate[:, :1] * outputs[0]
    for e in range(1, len(outputs)):
        mixed = torch.addcmul(mixed, gate[:, e : e + 1], outputs[e])
    return mixed


class MMoELayer(nn.Module):
    """Multi-gate Mixture-of-Experts (Ma et al., KDD 2018, Eq. 5-6): shared experts, one gate per task.

    Shape: x [B, D_in] -> [B, T, units[-1]].
    """

    def __init__(self, input_dim: int, num_tasks: int, num_experts: int, units: Sequence[int]):
        super().__init__()
        self.experts = _experts(input_dim, units, num_experts)
        self.gates = nn.ModuleList(Gate(input_dim, num_experts) for _ in range(num_tasks))

    def forward(self, x: Tensor) -> Tensor:
        outs = [e(x) for e in self.experts]  # E x [B, D]
        return torch.stack([_mix(g(x), outs) for g in self.gates], dim=1)


class CGCLevel(nn.Module):
    """PLE's Customized Gate Control level (Tang et al., RecSys 2020, Eq. 2-4 and Fig. 5).

    Each task has its own experts; a task's gate mixes its own and the shared experts. Below the
    last level a shared gate mixes all experts into the next level's shared input.

    Args:
        input_dim: D_in.
        num_tasks: T.
        task_experts: experts per task.
        shared_experts: shared experts.
        units: expert MLP widths.
        last: the top level (no shared output).

    Shape: [B, T + 1, D_in] (task inputs, then the shared input) -> [B, T (+ 1 unless last), D_out].
    """

    def __init__(self, input_dim: int, num_tasks: int, task_experts: int, shared_experts: int, units: Sequence[int], last: bool):
        super().__init__()
        self.num_tasks, self.task_experts, self.shared_experts, self.last = num_tasks, task_experts, shared_experts, last
        self.experts = _experts(input_dim, units, num_tasks * task_experts + shared_experts)
        self.task_gates = nn.ModuleList(Gate(input_dim, task_experts + shared_experts) for _ in range(num_tasks))
        self.shared_gate = None if last else Gate(input_dim, num_tasks * task_experts + shared_experts)

    def forward(self, x: Tensor) -> Tensor:
        t, k = self.num_tasks, self.task_experts
        inputs = _module_inputs(x, t + 1)
        source = [i // k for i in range(t * k)] + [t] * self.shared_experts  # whose input each expert reads
        outs = [e(inputs[source[i]]) for i, e in enumerate(self.experts)]  # E x [B, D]
        shared = outs[t * k :]
        fused = [_mix(gate(inputs[task]), outs[task * k : (task + 1) * k] + shared) for task, gate in enumerate(self.task_gates)]
        if self.shared_gate is not None:
            fused.append(_mix(self.shared_gate(inputs[t]), outs))
        return torch.stack(fused, dim=1)


class AdaTTLevel(nn.Module):
    """One AdaTT fusion level (Li et al., KDD 2023, arXiv:2304.04959, Sec. 3.2-3.3; the reference
    ``AdaTTSp`` / ``AdaTTWSharedExps`` of facebookresearch/AdaTT).

    Every task has its own expert group reading that task's input. Task t's output is the gated
    fusion of ALL experts (task-to-task fusion, one softmax gate per task over every expert) plus
    a residual of its own experts: their plain sum when a task has one expert, else a learned
    linear combination (weights initialised U(±sqrt(1/k))). With ``shared_experts`` (AdaTT-w) a
    shared module's experts join every gate, and below the top level the shared module gets a gate
    and a native-expert residual too. With one task, one expert and no shared experts the level
    reduces to 2 x the expert's output (the gate's single weight is 1, plus the unit residual).

    Shape: [B, T (+ 1 with shared experts), D_in] -> [B, T (+ 1 unless last), D_out].
    """

    def __init__(self, input_dim: int, num_tasks: int, task_experts: int, units: Sequence[int], shared_experts: int = 0, last: bool = True):
        super().__init__()
        self.num_tasks, self.task_experts, self.shared_experts = num_tasks, task_experts, shared_experts
        self.modules_out = num_tasks + (1 if shared_experts and not last else 0)
        counts = [task_experts] * num_tasks + ([shared_experts] if shared_experts else [])
        self.counts = counts
        self.experts = _experts(input_dim, units, sum(counts))
        self.source = [m for m, c in enumerate(counts) for _ in range(c)]
        self.gates = nn.ModuleList(Gate(input_dim, sum(counts)) for _ in range(self.modules_out))
        self.unit_residual = all(c == 1 for c in counts)
        if not self.unit_residual:
            self.self_weights = nn.ParameterList(
                nn.Parameter(torch.empty(counts[m]).uniform_(-math.sqrt(1 / counts[m]), math.sqrt(1 / counts[m])))
                for m in range(self.modules_out)
            )

    def forward(self, x: Tensor) -> Tensor:
        inputs = _module_inputs(x, len(self.counts))
        outs = [e(inputs[self.source[i]]) for i, e in enumerate(self.experts)]  # E x [B, D]
        fused, start = [], 0
        for m, gate in enumerate(self.gates):
            weights = gate(inputs[m])  # [B, E]
            end = start + self.counts[m]
            # Residual of the module's own experts: weight 1 each (one expert per module) or learned.
            own = 1.0 if self.unit_residual else self.self_weights[m]
            weights = torch.cat([weights[:, :start], weights[:, start:end] + own, weights[:, end:]], dim=1)
            fused.append(_mix(weights, outs))
            start = end
        return torch.stack(fused, dim=1)
