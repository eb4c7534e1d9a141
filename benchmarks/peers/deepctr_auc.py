"""DeepCTR-Torch 0.3.0 DeepFM on splits exported by benchmarks/deepfm_parity.py (separate environment).

Same rows, same integer ids, same settings as recforge's run: embedding 10, MLP 400-400-400,
dropout 0.5, Adam lr 1e-3, no L2, the epoch selected on validation AUC (patience 2, at most 20).
Prints one JSON line with the validation and test AUC of the selected epoch.
Usage: python deepctr_auc.py SPLITS.npz SEED
"""

import json
import sys

import numpy as np
import torch
from deepctr_torch.inputs import SparseFeat, get_feature_names
from deepctr_torch.models import DeepFM
from sklearn.metrics import roc_auc_score

z = np.load(sys.argv[1])
seed = int(sys.argv[2]) if len(sys.argv) > 2 else 42
vocab = z["vocab_sizes"].tolist()
names = [f"f{j}" for j in range(len(vocab))]
columns = [SparseFeat(n, vocabulary_size=v, embedding_dim=10) for n, v in zip(names, vocab)]
split = lambda s: {n: z[f"{s}_sparse"][:, j] for j, n in enumerate(names)}  # noqa: E731
x_train, x_valid, x_test = split("train"), split("valid"), split("test")
y_train, y_valid, y_test = z["train_labels"], z["valid_labels"], z["test_labels"]
torch.manual_seed(seed)
model = DeepFM(columns, columns, task="binary", dnn_hidden_units=(400, 400, 400), dnn_dropout=0.5,
               l2_reg_linear=0.0, l2_reg_embedding=0.0, l2_reg_dnn=0.0, seed=seed, device="cpu")
model.compile(torch.optim.Adam(model.parameters(), lr=1e-3), "binary_crossentropy")
best, best_state, stale = -1.0, None, 0
for epoch in range(20):
    model.fit(x_train, y_train, batch_size=1024, epochs=1, verbose=0, shuffle=True)
    valid = roc_auc_score(y_valid, model.predict(x_valid, 65536))
    if valid > best:
        best, stale = valid, 0
        best_state = {k: v.clone() for k, v in model.state_dict().items()}
        best_epoch = epoch + 1
    else:
        stale += 1
        if stale >= 2:
            break
model.load_state_dict(best_state)
test = roc_auc_score(y_test, model.predict(x_test, 65536))
print(json.dumps({"library": "deepctr-torch 0.3.0", "seed": seed, "epoch": best_epoch, "valid_auc": best, "test_auc": test}))
