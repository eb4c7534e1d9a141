"""CTR training speed on a generated Criteo-format file, with a reference loop in the same process.

Measures, on this machine (issue: "a generated Criteo-format file of 500 k rows, embedding 16,
MLP 400-400-400, Adam lr 1e-3, one epoch"):

* preprocessing: reading the file and encoding it into model input (vocabularies fitted);
* DeepFM training samples/s at each batch size, for recforge's trainer with per-field or fused
  embedding tables and with dense Adam or row-wise (lazy) sparse Adam;
* the same epoch with a hand-written DeepFM loop a user would write without recforge (one
  ``nn.Embedding`` per field, FM + MLP, dense Adam), as the in-process reference;
* DLRM (bottom 512-256-64, embedding 64, top 512-256-1) at batch 4096.

``--peers PYTHON`` also runs ``benchmarks/peers/deepctr_speed.py`` (on the same file, with
DeepCTR-Torch's own preprocessing) and ``fuxictr_speed.py`` (on recforge's encoded rows) with that
interpreter: a separate environment holding DeepCTR-Torch 0.3.0 and FuxiCTR 2.3.10, never a
recforge dependency.

Run:  .venv/bin/python benchmarks/ctr_speed.py [--rows 500000] [--peers /path/to/peer-venv/bin/python]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from recforge.config import TrainConfig
from recforge.data.criteo import criteo_schema, generate_criteo, read_criteo
from recforge.data.preprocessing import Preprocessor
from recforge.data.tabular import TabularData, TensorColumns
from recforge.models import build_model
from recforge.models.deepfm import DeepFMConfig
from recforge.models.dlrm import DLRMConfig
from recforge.training.pointwise import PointwiseTrainer

HERE = Path(__file__).resolve().parent


class ReferenceDeepFM(nn.Module):
    """A textbook DeepFM as a user would write it: a table per field, FM, MLP 400-400-400."""

    def __init__(self, vocab_sizes: list[int], num_dense: int, dim: int = 16, hidden: tuple[int, ...] = (400, 400, 400)):
        super().__init__()
        self.embeddings = nn.ModuleList(nn.Embedding(v, dim) for v in vocab_sizes)
        self.linear = nn.ModuleList(nn.Embedding(v, 1) for v in vocab_sizes)
        self.dense_linear = nn.Linear(num_dense, 1)
        layers, width = [], len(vocab_sizes) * dim + num_dense
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        self.mlp = nn.Sequential(*layers, nn.Linear(width, 1))

    def forward(self, sparse: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
        v = torch.stack([e(sparse[:, j]) for j, e in enumerate(self.embeddings)], 1)
        first = sum(w(sparse[:, j]) for j, w in enumerate(self.linear)).squeeze(1) + self.dense_linear(dense).squeeze(1)
        fm = 0.5 * (v.sum(1).pow(2) - v.pow(2).sum(1)).sum(1)
        return first + fm + self.mlp(torch.cat([v.flatten(1), dense], 1)).squeeze(1)


def reference_epoch(columns: TensorColumns, vocab_sizes: list[int], batch_size: int) -> float:
    torch.manual_seed(0)
    model = ReferenceDeepFM(vocab_sizes, columns.dense.shape[1])
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    perm = torch.randperm(len(columns))
    t = time.perf_counter()
    for s in range(0, len(columns), batch_size):
        idx = perm[s : s + batch_size]
        logits = model(columns.sparse[idx], columns.dense[idx])
        loss = nn.functional.binary_cross_entropy_with_logits(logits, columns.labels[idx, 0])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return len(columns) / (time.perf_counter() - t)


def ours(data: TabularData, model_name: str, config, batch_size: int, sparse: bool) -> tuple[float, float]:
    torch.manual_seed(0)
    model = build_model(model_name, data.schema, config)
    train = TrainConfig(epochs=1, batch_size=batch_size, sparse_embeddings=sparse, eval_batch_size=65536)
    summary = PointwiseTrainer(model, data, train, seed=0).fit().summary
    return summary["timings"]["train_samples_per_s"], summary["valid/auc"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=500_000)
    parser.add_argument("--input", type=Path, help="use this Criteo-format file instead of generating one")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[4096, 1024])
    parser.add_argument("--peers", help="python of a separate environment with deepctr-torch==0.3.0")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--preprocessing-repeats", type=int, default=3, help="timed preprocessing runs (median reported)")
    parser.add_argument("--preprocessing-only", action="store_true", help="time the preprocessing and stop")
    args = parser.parse_args()

    print(f"machine: {platform.machine()} {platform.processor()} | {os.cpu_count()} CPUs | torch {torch.__version__} "
          f"({torch.get_num_threads()} threads) | python {platform.python_version()}")
    results: dict[str, object] = {"machine": platform.machine(), "cpus": os.cpu_count(), "torch": torch.__version__}
    with tempfile.TemporaryDirectory() as tmp:
        path = args.input or generate_criteo(Path(tmp) / "criteo.txt", args.rows, seed=0)
        times = []
        for _ in range(args.preprocessing_repeats):
            t = time.perf_counter()
            table = read_criteo(path)
            pre = Preprocessor(criteo_schema(min_count=1))
            encoded = pre.fit_transform(table)
            times.append(time.perf_counter() - t)
        prep_s = float(np.median(times))
        rows = len(encoded)
        print(f"\npreprocessing {rows:,} rows (read + fit + encode, min_count 1): median {prep_s:.2f} s of "
              f"{len(times)} ({', '.join(f'{x:.2f}' for x in times)}; {rows / prep_s:,.0f} rows/s)")
        results["preprocessing_s"] = prep_s
        if args.preprocessing_only:
            if args.json:
                args.json.write_text(json.dumps(results, indent=2))
            return
        # One epoch over all rows; a small held-out slice only keeps the trainer's validation step cheap.
        holdout = encoded.take(np.arange(min(20_000, rows)))
        data = TabularData("generated-criteo", pre.schema, encoded, holdout, holdout, pre.to_dict())
        vocab = [f.vocab_size for f in pre.schema.sparse]
        print(f"embedding rows: {sum(vocab):,} over {len(vocab)} fields; dense features: {len(pre.schema.dense)}\n")

        print(f"{'model':<8} {'batch':>6} {'layout':<10} {'optimizer':<16} {'samples/s':>10} {'vs reference':>13}")
        columns = TensorColumns(encoded)
        for bs in args.batch_sizes:
            ref = reference_epoch(columns, vocab, bs)
            results[f"reference_deepfm_{bs}"] = ref
            print(f"{'deepfm':<8} {bs:>6} {'reference':<10} {'adam (dense)':<16} {ref:>10,.0f} {1.0:>12.2f}x")
            for layout in ("per_field", "fused"):
                for sparse in (False, True):
                    cfg = DeepFMConfig(embedding_dim=16, hidden_units=(400, 400, 400), dropout=0.0, layout=layout)
                    speed, _ = ours(data, "deepfm", cfg, bs, sparse)
                    opt = "sparse adam" if sparse else "adam (dense)"
                    results[f"deepfm_{bs}_{layout}_{'sparse' if sparse else 'dense'}"] = speed
                    print(f"{'deepfm':<8} {bs:>6} {layout:<10} {opt:<16} {speed:>10,.0f} {speed / ref:>12.2f}x")
        for layout in ("per_field", "fused"):
            for sparse in (False, True):
                cfg = DLRMConfig(embedding_dim=64, dense_arch=(512, 256), over_arch=(512, 256), layout=layout)
                speed, _ = ours(data, "dlrm", cfg, 4096, sparse)
                results[f"dlrm_4096_{layout}_{'sparse' if sparse else 'dense'}"] = speed
                print(f"{'dlrm':<8} {4096:>6} {layout:<10} {'sparse adam' if sparse else 'adam (dense)':<16} {speed:>10,.0f} {'':>13}")

        if args.peers:
            encoded_npz = Path(tmp) / "encoded.npz"
            np.savez(encoded_npz, vocab_sizes=np.array(vocab), sparse=encoded.sparse, dense=encoded.dense, labels=encoded.labels[:, 0])
            peer_out = []
            for script, source in (("deepctr_speed.py", path), ("fuxictr_speed.py", encoded_npz)):
                out = subprocess.run(
                    [args.peers, str(HERE / "peers" / script), str(source), *map(str, args.batch_sizes)],
                    capture_output=True, text=True, check=False,
                )
                lines = [line for line in out.stdout.splitlines() if "samples/s" in line or "preprocessing" in line]
                print("\n".join(lines) if lines else f"{script} failed:\n{out.stderr[-2000:]}")
                peer_out += lines
            results["peers"] = peer_out
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
