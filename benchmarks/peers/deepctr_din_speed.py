"""DeepCTR-Torch 0.3.0 DIN training speed on the arrays written by benchmarks/din_speed.py.

Same settings: embedding 64 for item and category, attention MLP 80-40 with Dice, no softmax
normalisation, MLP 200-80 with PReLU (DeepCTR-Torch 0.3.0's DIN cannot use Dice in its final MLP:
its DNN builds Dice for 3-D input and asserts on the 2-D one), Adam lr 1e-3, one epoch. Usage: python deepctr_din_speed.py ARRAYS.npz BATCH
"""

import sys
import time

import numpy as np
import torch
from deepctr_torch.inputs import SparseFeat, VarLenSparseFeat
from deepctr_torch.models import DIN

z = np.load(sys.argv[1])
bs = int(sys.argv[2])
items, cats, max_len = int(z["items"]), int(z["categories"]), z["hist"].shape[1]
columns = [
    SparseFeat("item_id", items, embedding_dim=64), SparseFeat("cate_id", cats, embedding_dim=64),
    VarLenSparseFeat(SparseFeat("hist_item_id", items, embedding_dim=64, embedding_name="item_id"), maxlen=max_len, length_name="seq_length"),
    VarLenSparseFeat(SparseFeat("hist_cate_id", cats, embedding_dim=64, embedding_name="cate_id"), maxlen=max_len, length_name="seq_length"),
]
x = {"item_id": z["sparse"][:, 0], "cate_id": z["sparse"][:, 1], "hist_item_id": z["hist"], "hist_cate_id": z["hist_cat"], "seq_length": z["lengths"]}
torch.manual_seed(0)
model = DIN(columns, ["item_id", "cate_id"], dnn_hidden_units=(200, 80), dnn_activation="prelu", att_hidden_size=(80, 40),
            att_activation="Dice", att_weight_normalization=False, device="cpu")
model.compile(torch.optim.Adam(model.parameters(), lr=1e-3), "binary_crossentropy")
t = time.perf_counter()
model.fit(x, z["labels"], batch_size=bs, epochs=1, verbose=0)
dt = time.perf_counter() - t
print(f"deepctr-torch din (att dice, mlp prelu) batch {bs}: {len(z['labels']) / dt:,.0f} samples/s ({dt:.1f} s per epoch, torch {torch.__version__})")
