"""FuxiCTR 2.3.10 DeepFM training speed on encoded Criteo-format rows (separate environment).

Reads the npz written by ``benchmarks/ctr_speed.py`` (recforge's encoding: 26 categorical ids,
13 log1p dense values), so FuxiCTR's own preprocessing is not timed here. The model is the
FuxiCTR model-zoo DeepFM (see fuxictr_auc.py) with embedding 16, MLP 400-400-400, Adam lr 1e-3,
trained for one epoch with ``BaseModel.train_epoch`` over FuxiCTR's npz ``RankDataLoader``.
Usage: python fuxictr_speed.py ENCODED.npz BATCH [BATCH ...]
"""

import json
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from fuxictr.features import FeatureMap
from fuxictr.pytorch.dataloaders import RankDataLoader
from fuxictr.pytorch.torch_utils import seed_everything

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fuxictr_auc import DeepFM  # noqa: E402  (imports only the class; its script part needs argv)

logging.basicConfig(level=logging.WARNING)
z = np.load(sys.argv[1])
batch_sizes = [int(b) for b in sys.argv[2:]]
vocab = z["vocab_sizes"].tolist()
sparse_names = [f"C{j + 1}" for j in range(len(vocab))]
dense_names = [f"I{j + 1}" for j in range(z["dense"].shape[1])]
with tempfile.TemporaryDirectory() as tmp:
    root = Path(tmp)
    features = [{n: {"source": "", "type": "numeric"}} for n in dense_names]
    features += [{n: {"source": "", "type": "categorical", "vocab_size": int(v), "padding_idx": 0}} for n, v in zip(sparse_names, vocab)]
    spec = {"dataset_id": "speed", "num_fields": len(features), "total_features": int(sum(vocab)), "input_length": len(features),
            "labels": ["label"], "features": features}
    (root / "feature_map.json").write_text(json.dumps(spec))
    np.savez(root / "train.npz", label=z["labels"].astype(np.float32), **{n: z["dense"][:, j] for j, n in enumerate(dense_names)},
             **{n: z["sparse"][:, j] for j, n in enumerate(sparse_names)})
    feature_map = FeatureMap("speed", str(root))
    feature_map.load(str(root / "feature_map.json"), {"embedding_dim": 16})
    (root / "checkpoints" / "speed").mkdir(parents=True)
    for bs in batch_sizes:
        seed_everything(0)
        model = DeepFM(feature_map, embedding_dim=16, hidden_units=[400, 400, 400], net_dropout=0.0, learning_rate=1e-3,
                       optimizer="adam", loss="binary_crossentropy", metrics=["AUC"], monitor="AUC", verbose=0,
                       model_root=str(root / "checkpoints"))
        train_gen, _ = RankDataLoader(feature_map, stage="train", train_data=str(root / "train.npz"), batch_size=bs, shuffle=True, data_format="npz")
        model._eval_steps = 10**12  # no validation inside the timed epoch
        model._total_steps, model._stop_training, model._max_gradient_norm = 0, False, 10.0
        t = time.perf_counter()
        model.train_epoch(train_gen)
        dt = time.perf_counter() - t
        print(f"fuxictr deepfm batch {bs}: {train_gen.num_samples / dt:,.0f} samples/s ({dt:.1f} s per epoch, torch {torch.__version__})")
