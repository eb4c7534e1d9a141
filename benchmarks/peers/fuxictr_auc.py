"""FuxiCTR 2.3.10 DeepFM on splits exported by benchmarks/deepfm_parity.py (separate environment).

FuxiCTR's pip package does not ship its model zoo, so ``DeepFM`` below is the model-zoo class
(``model_zoo/DeepFM/DeepFM_torch/src/DeepFM.py``) restated on FuxiCTR's own ``BaseModel``,
``FeatureEmbedding``, ``FactorizationMachine`` and ``MLP_Block``; data go through FuxiCTR's
``FeatureMap`` and ``RankDataLoader`` (npz), training through ``BaseModel.fit`` (validation AUC,
early-stop patience 2, FuxiCTR's default learning-rate decay on plateau and gradient clipping).
Settings as recforge's run: embedding 10, MLP 400-400-400, dropout 0.5, Adam lr 1e-3, batch 1024,
no regularisation, at most 20 epochs. Prints one JSON line with validation and test AUC.
Usage: python fuxictr_auc.py SPLITS.npz SEED
"""

import json
import logging
import sys
import tempfile
from pathlib import Path

import numpy as np
from fuxictr.features import FeatureMap
from fuxictr.pytorch.dataloaders import RankDataLoader
from fuxictr.pytorch.layers import FactorizationMachine, FeatureEmbedding, MLP_Block
from fuxictr.pytorch.models import BaseModel
from fuxictr.pytorch.torch_utils import seed_everything
from sklearn.metrics import roc_auc_score


class DeepFM(BaseModel):
    def __init__(self, feature_map, model_id="DeepFM", gpu=-1, learning_rate=1e-3, embedding_dim=10,
                 hidden_units=[64, 64, 64], hidden_activations="ReLU", net_dropout=0, batch_norm=False,
                 embedding_regularizer=None, net_regularizer=None, **kwargs):
        super().__init__(feature_map, model_id=model_id, gpu=gpu, embedding_regularizer=embedding_regularizer,
                         net_regularizer=net_regularizer, **kwargs)
        self.embedding_layer = FeatureEmbedding(feature_map, embedding_dim)
        self.fm = FactorizationMachine(feature_map)
        self.mlp = MLP_Block(input_dim=feature_map.sum_emb_out_dim(), output_dim=1, hidden_units=hidden_units,
                             hidden_activations=hidden_activations, output_activation=None,
                             dropout_rates=net_dropout, batch_norm=batch_norm)
        self.compile(kwargs["optimizer"], kwargs["loss"], learning_rate)
        self.reset_parameters()
        self.model_to_device()

    def forward(self, inputs):
        X = self.get_inputs(inputs)
        feature_emb = self.embedding_layer(X)
        y_pred = self.fm(X, feature_emb)
        y_pred += self.mlp(feature_emb.flatten(start_dim=1))
        return {"y_pred": self.output_activation(y_pred)}


def main():
    logging.basicConfig(level=logging.WARNING)
    z = np.load(sys.argv[1])
    seed = int(sys.argv[2]) if len(sys.argv) > 2 else 42
    vocab = z["vocab_sizes"].tolist()
    names = [f"f{j}" for j in range(len(vocab))]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        spec = {"dataset_id": "parity", "num_fields": len(names), "total_features": int(sum(vocab)), "input_length": len(names),
                "labels": ["label"], "features": [{n: {"source": "", "type": "categorical", "vocab_size": int(v), "padding_idx": 0}} for n, v in zip(names, vocab)]}
        (root / "feature_map.json").write_text(json.dumps(spec))
        for s in ("train", "valid", "test"):
            np.savez(root / f"{s}.npz", label=z[f"{s}_labels"].astype(np.float32), **{n: z[f"{s}_sparse"][:, j] for j, n in enumerate(names)})
        feature_map = FeatureMap("parity", str(root))
        feature_map.load(str(root / "feature_map.json"), {"embedding_dim": 10})
        (root / "checkpoints" / "parity").mkdir(parents=True)
        seed_everything(seed)
        model = DeepFM(feature_map, embedding_dim=10, hidden_units=[400, 400, 400], net_dropout=0.5, learning_rate=1e-3,
                       optimizer="adam", loss="binary_crossentropy", metrics=["AUC", "logloss"], monitor="AUC",
                       early_stop_patience=2, verbose=0, model_root=str(root / "checkpoints"))
        train_gen, valid_gen = RankDataLoader(feature_map, stage="train", train_data=str(root / "train.npz"),
                                              valid_data=str(root / "valid.npz"), batch_size=1024, shuffle=True, data_format="npz")
        model.fit(train_gen, validation_data=valid_gen, epochs=20)
        valid = model.evaluate(valid_gen)
        test_gen = RankDataLoader(feature_map, stage="test", test_data=str(root / "test.npz"), batch_size=1024, shuffle=False, data_format="npz")
        test = model.evaluate(test_gen)
    print(json.dumps({"library": "fuxictr 2.3.10", "seed": seed, "valid_auc": valid["AUC"], "test_auc": test["AUC"]}))


if __name__ == "__main__":
    main()
