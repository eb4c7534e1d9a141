"""DeepCTR-Torch 0.3.0 DeepFM training speed on a Criteo-format file (run in a separate environment).

Preprocessing follows DeepCTR-Torch's own Criteo example (pandas, LabelEncoder per sparse column,
MinMaxScaler on the dense ones, missing -> '-1' / 0); its time is reported separately.
Usage: python deepctr_speed.py FILE BATCH [BATCH ...]
"""

import sys
import time

import numpy as np
import pandas as pd
import torch
from deepctr_torch.inputs import DenseFeat, SparseFeat, get_feature_names
from deepctr_torch.models import DeepFM
from sklearn.preprocessing import LabelEncoder, MinMaxScaler

path, batch_sizes = sys.argv[1], [int(b) for b in sys.argv[2:]]
dense = [f"I{i}" for i in range(1, 14)]
sparse = [f"C{i}" for i in range(1, 27)]
t = time.perf_counter()
data = pd.read_csv(path, sep="\t", header=None, names=["label", *dense, *sparse])
data[sparse] = data[sparse].fillna("-1")
data[dense] = data[dense].fillna(0)
for c in sparse:
    data[c] = LabelEncoder().fit_transform(data[c])
data[dense] = MinMaxScaler(feature_range=(0, 1)).fit_transform(data[dense])
columns = [SparseFeat(c, vocabulary_size=data[c].max() + 1, embedding_dim=16) for c in sparse] + [DenseFeat(c, 1) for c in dense]
names = get_feature_names(columns)
x = {n: data[n] for n in names}
y = data["label"].values
prep = time.perf_counter() - t
print(f"deepctr-torch preprocessing {len(data):,} rows: {prep:.2f} s (torch {torch.__version__}, {torch.get_num_threads()} threads)")
for bs in batch_sizes:
    torch.manual_seed(0)
    model = DeepFM(columns, columns, task="binary", dnn_hidden_units=(400, 400, 400), dnn_dropout=0.0, device="cpu")
    model.compile(torch.optim.Adam(model.parameters(), lr=1e-3), "binary_crossentropy")
    t = time.perf_counter()
    model.fit(x, y, batch_size=bs, epochs=1, verbose=0)
    dt = time.perf_counter() - t
    print(f"deepctr-torch deepfm batch {bs}: {len(data) / dt:,.0f} samples/s ({dt:.1f} s per epoch)")
