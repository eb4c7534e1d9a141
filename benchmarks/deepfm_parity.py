"""DeepFM test AUC, recforge vs DeepCTR-Torch 0.3.0 and FuxiCTR 2.3.10, on the same split, ids and settings.

Trains recforge's DeepFM on a dataset (default: frappe) with embedding 10, MLP 400-400-400,
dropout 0.5, Adam lr 1e-3, batch 1024, selection on validation AUC (patience 2, at most 20 epochs),
exports the encoded splits, and runs ``benchmarks/peers/deepctr_auc.py`` and ``fuxictr_auc.py`` in a separate
environment (``--peers PYTHON``) on exactly those rows. Several seeds give the spread.

Run:  .venv/bin/python benchmarks/deepfm_parity.py --data-dir ../shared/data --peers /tmp/peers/bin/python
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from recforge.config import apply_overrides, from_dict
from recforge.training.experiment import load_data, run_experiment

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=os.environ.get("RECFORGE_DATA_DIR"))
    parser.add_argument("--dataset", default="frappe")
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44])
    parser.add_argument("--peers", help="python of an environment with deepctr-torch==0.3.0 and fuxictr==2.3.10")
    parser.add_argument("--output-dir", type=Path, default=Path("runs/deepfm-parity"))
    parser.add_argument("--plateau-decay", action="store_true",
                        help="our side also divides the learning rate by 10 after an epoch without validation gain, "
                             "as FuxiCTR's training loop does by default")
    args = parser.parse_args()

    results = []
    data = None
    for seed in args.seeds:
        raw = {
            "model": {"name": "deepfm", "embedding_dim": 10, "hidden_units": [400, 400, 400], "dropout": 0.5},
            "data": {"name": args.dataset},
            "train": {"epochs": 20, "patience": 2, "batch_size": 1024, "lr": 0.001,
                      **({"lr_patience": 1, "lr_decay": 0.1} if args.plateau_decay else {})},
            "seed": seed,
        }
        config = from_dict(apply_overrides(raw, []))
        if data is None:
            data = load_data(config, args.data_dir)
            if data.schema.dense or data.schema.sequence:
                raise SystemExit(f"{args.dataset} has dense or sequence features; this comparison exports sparse ids only")
        summary = run_experiment(config, output_dir=args.output_dir, data=data).summary
        results.append({"library": "recforge" + (" (plateau decay)" if args.plateau_decay else ""), "seed": seed, "epoch": summary["selected_epoch"],
                        "valid_auc": summary["valid/auc"], "test_auc": summary["test/auc"]})
        print(json.dumps(results[-1]), flush=True)
    if args.peers:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "splits.npz"
            np.savez(
                path, vocab_sizes=np.array([f.vocab_size for f in data.schema.sparse]),
                **{f"{s}_sparse": data.split(s).sparse for s in ("train", "valid", "test")},
                **{f"{s}_labels": data.split(s).labels[:, 0] for s in ("train", "valid", "test")},
            )
            for script in ("deepctr_auc.py", "fuxictr_auc.py"):
                for seed in args.seeds:
                    out = subprocess.run([args.peers, str(HERE / "peers" / script), str(path), str(seed)],
                                         capture_output=True, text=True, check=False)
                    line = out.stdout.strip().splitlines()[-1] if out.stdout.strip() else ""
                    if not line.startswith("{"):
                        raise SystemExit(f"{script} failed:\n{out.stderr[-3000:]}")
                    results.append(json.loads(line))
                    print(line, flush=True)
    for lib in sorted({r["library"] for r in results}):
        aucs = np.array([r["test_auc"] for r in results if r["library"] == lib])
        print(f"{lib:<22} test AUC {aucs.mean():.4f} ± {aucs.std(ddof=1) if len(aucs) > 1 else 0:.4f} over {len(aucs)} seeds")


if __name__ == "__main__":
    main()
