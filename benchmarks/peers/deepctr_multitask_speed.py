"""DeepCTR-Torch 0.3.0 SharedBottom, MMOE and PLE training speed on arrays from benchmarks/multitask_speed.py.

Same settings as recforge's run: embedding 8, experts 256-128, towers 64, linear gates
(gate_dnn_hidden_units=()), MMOE 3 experts, PLE 1 specific + 1 shared expert over 2 levels, Adam
lr 1e-3, no L2, one epoch. Usage: python deepctr_multitask_speed.py ARRAYS.npz BATCH
"""

import sys
import time

import numpy as np
import torch
from deepctr_torch.inputs import SparseFeat
from deepctr_torch.models import MMOE, PLE, SharedBottom

z = np.load(sys.argv[1])
bs = int(sys.argv[2])
sparse, labels, vocab = z["sparse"], z["labels"], int(z["vocab"])
names = [f"c{j}" for j in range(sparse.shape[1])]
columns = [SparseFeat(n, vocab, embedding_dim=8) for n in names]
x = {n: sparse[:, j] for j, n in enumerate(names)}
common = dict(tower_dnn_hidden_units=(64,), l2_reg_linear=0.0, l2_reg_embedding=0.0, task_names=("task1", "task2"), device="cpu")
models = {
    "SharedBottom": lambda: SharedBottom(columns, bottom_dnn_hidden_units=(256, 128), **common),
    "MMOE": lambda: MMOE(columns, num_experts=3, expert_dnn_hidden_units=(256, 128), gate_dnn_hidden_units=(), **common),
    "PLE": lambda: PLE(columns, shared_expert_num=1, specific_expert_num=1, num_levels=2, expert_dnn_hidden_units=(256, 128), gate_dnn_hidden_units=(), **common),
}
for name, make in models.items():
    torch.manual_seed(0)
    model = make()
    model.compile(torch.optim.Adam(model.parameters(), lr=1e-3), ["binary_crossentropy", "binary_crossentropy"])
    t = time.perf_counter()
    model.fit(x, labels, batch_size=bs, epochs=1, verbose=0)
    dt = time.perf_counter() - t
    print(f"deepctr-torch {name} batch {bs}: {len(labels) / dt:,.0f} samples/s ({dt:.1f} s per epoch, torch {torch.__version__})")
