import json
from pathlib import Path

import numpy as np
import pytest
import torch

from recforge.config import TrainConfig
from recforge.data.batches import iterate_batches
from recforge.data.interactions import leave_one_out
from recforge.errors import TrainingError
from recforge.models import build_model
from recforge.models.ncf import NCFConfig
from recforge.training.trainer import Trainer


def clustered_data(seed=0, users=60, items=40):
    """Users in 2 groups, each liking one half of the catalogue: learnable structure."""
    rng = np.random.default_rng(seed)
    u, i, t = [], [], []
    for user in range(users):
        half = np.arange(items // 2) + (items // 2) * (user % 2)
        chosen = rng.choice(half, size=12, replace=False)
        u += [user] * 12
        i += chosen.tolist()
        t += rng.permutation(12).tolist()
    data = leave_one_out("toy", np.array(u), np.array(i), np.array(t), users, items, num_negatives=15, seed=seed)
    return data.with_validation(seed=seed)


def test_training_learns_and_selects_on_validation(tmp_path):
    from recforge.config import ExperimentConfig
    from recforge.training.records import RunRecorder

    data = clustered_data()
    cfg = TrainConfig(epochs=6, batch_size=64, lr=0.01, full_ranking=True)
    model = build_model("gmf", data.schema, NCFConfig(factors=8))
    recorder = RunRecorder(tmp_path, ExperimentConfig(model_name="gmf", model=NCFConfig(factors=8), train=cfg))
    trainer = Trainer(model, data, cfg, seed=0, recorder=recorder)
    result = trainer.fit()
    history = result.history
    losses = [r["train/loss"] for r in history if r["epoch"] > 0]
    assert losses[-1] < losses[0]
    best = max(history, key=lambda r: r["valid/ndcg@10"])
    assert result.summary["selected_epoch"] == best["epoch"]
    # the restored weights are the selected epoch's: re-scoring validation gives its value
    assert trainer.evaluate_split("valid")["ndcg@10"] == pytest.approx(best["valid/ndcg@10"])
    assert result.summary["test/hit_rate@10"] > 0.5  # chance level is 10/16
    # records on disk
    lines = (recorder.path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["epoch"] for x in lines] == list(range(0, 7))
    summary = json.loads((recorder.path / "summary.json").read_text())
    assert summary["selected_epoch"] == best["epoch"] and "environment" in summary
    assert "optimistic" in summary["optimistic_best_test_epoch"]["note"]
    state = torch.load(recorder.path / "checkpoint.pt", weights_only=True)
    assert state["epoch"] == best["epoch"]


def test_runs_are_repeatable():
    data = clustered_data()
    cfg = TrainConfig(epochs=2, batch_size=32, full_ranking=False, report_best_test_epoch=False)
    runs = []
    for _ in range(2):
        torch.manual_seed(123)  # model init
        model = build_model("neumf", data.schema, NCFConfig(factors=4))
        runs.append(Trainer(model, data, cfg, seed=5).fit().history)
    strip = lambda h: [{k: v for k, v in r.items() if not k.startswith("seconds/")} for r in h]  # noqa: E731
    assert strip(runs[0]) == strip(runs[1])


def test_without_validation_takes_last_epoch():
    data = clustered_data()
    from dataclasses import replace

    data = replace(data, valid_users=None, valid_candidates=None)
    cfg = TrainConfig(epochs=2, batch_size=64, full_ranking=False)
    result = Trainer(build_model("mf", data.schema), data, cfg, seed=0).fit()
    assert result.summary["selected_epoch"] == 2 and "last epoch" in result.summary["selection"]


def test_itempop_needs_no_epochs():
    data = clustered_data()
    result = Trainer(build_model("itempop", data.schema), data, TrainConfig(epochs=5), seed=0).fit()
    assert result.summary["epochs_run"] == 0 and 0 <= result.summary["test/hit_rate@10"] <= 1


def test_nan_loss_stops_with_clear_message():
    data = clustered_data()

    class NaNInTraining(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = build_model("gmf", data.schema)

        def forward(self, batch):
            out = self.inner(batch)
            return out * float("nan") if self.training else out

    with pytest.raises(TrainingError, match="loss became nan in epoch 1"):
        Trainer(NaNInTraining(), data, TrainConfig(epochs=1, batch_size=64), seed=0).fit()


def test_nan_weights_give_a_clear_error():
    data = clustered_data()
    model = build_model("gmf", data.schema)
    with torch.no_grad():
        model.predict.weight.fill_(float("nan"))
    with pytest.raises(TrainingError, match="scores contain NaN"):
        Trainer(model, data, TrainConfig(epochs=1, batch_size=64), seed=0).fit()


def test_last_partial_batch_is_kept():
    x = torch.arange(10).reshape(5, 2)
    y = torch.ones(5, 1)
    sizes = [len(b) for b in iterate_batches(x, y, 2, torch.Generator().manual_seed(0))]
    assert sizes == [2, 2, 1]
    seen = torch.cat([b.sparse_features for b in iterate_batches(x, y, 2, torch.Generator().manual_seed(0))])
    assert sorted(seen[:, 0].tolist()) == [0, 2, 4, 6, 8]


def test_run_experiment_is_reproducible_from_the_seed(tmp_path):
    """Same config and seed -> identical initial weights, history and test metrics."""
    from recforge.config import from_dict
    from recforge.training.experiment import run_experiment

    data = clustered_data()
    cfg = from_dict({"model": {"name": "neumf", "factors": 4}, "train": {"epochs": 2, "batch_size": 64, "full_ranking": False}, "seed": 7})
    a = run_experiment(cfg, output_dir=tmp_path, data=data)
    b = run_experiment(cfg, output_dir=tmp_path, data=data)
    strip = lambda h: [{k: v for k, v in r.items() if not k.startswith("seconds/")} for r in h]  # noqa: E731
    assert strip(a.history) == strip(b.history)
    assert a.summary["test/ndcg@10"] == b.summary["test/ndcg@10"]
    c = run_experiment(cfg.replace(seed=8), output_dir=tmp_path, data=data)
    assert strip(c.history) != strip(a.history)


def test_warns_when_no_epoch_beats_the_initial_model():
    data = clustered_data()
    torch.manual_seed(0)
    model = build_model("gmf", data.schema)
    with torch.no_grad():  # start from a good model: a perfect half-catalogue split
        model.user_embedding.weight.zero_()
        model.user_embedding.weight[:, 0] = torch.tensor([1.0, -1.0]).repeat(30)
        model.item_embedding.weight.zero_()
        model.item_embedding.weight[:, 0] = torch.tensor([1.0] * 20 + [-1.0] * 20)
        model.predict.weight.fill_(0.0)
        model.predict.weight[0, 0] = 5.0
    with pytest.warns(UserWarning, match="no training epoch beat the initial model"):
        result = Trainer(model, data, TrainConfig(epochs=2, batch_size=64, lr=100.0, full_ranking=False), seed=0).fit()
    assert result.summary["selected_epoch"] == 0


def test_pretrained_gmf_is_reused_whatever_the_mlp_layers(tmp_path):
    """GMF has no MLP tower: a GMF run matches a NeuMF whose mlp_layers differ from the default,
    and pre-training trains GMF without mlp_layers; a GMF with other factors is refused."""
    import yaml

    from recforge.config import from_dict
    from recforge.errors import ConfigError
    from recforge.training.experiment import run_experiment

    data = clustered_data()
    train = {"epochs": 1, "batch_size": 64, "full_ranking": False}
    gmf = run_experiment(from_dict({"model": {"name": "gmf", "factors": 4}, "train": train}), output_dir=tmp_path, data=data)
    layers = {"name": "neumf", "factors": 4, "mlp_layers": [16, 8, 4]}
    neumf = from_dict({"model": layers, "train": train, "pretrain": {"enabled": True, "gmf_run": str(gmf.path)}})
    result = run_experiment(neumf, output_dir=tmp_path, data=data)
    assert result.summary["pretrained_gmf_run"] == str(gmf.path)
    mlp_run = Path(result.summary["pretrained_mlp_run"])
    assert yaml.safe_load((mlp_run / "config.yaml").read_text())["model"]["mlp_layers"] == [16, 8, 4]

    fresh = run_experiment(neumf.replace(pretrain=neumf.pretrain.__class__(enabled=True)), output_dir=tmp_path, data=data)
    trained_gmf = Path(fresh.summary["pretrained_gmf_run"])
    assert yaml.safe_load((trained_gmf / "config.yaml").read_text())["model"]["mlp_layers"] is None

    other = from_dict({"model": {**layers, "factors": 8}, "train": train, "pretrain": {"enabled": True, "gmf_run": str(gmf.path)}})
    with pytest.raises(ConfigError, match="trained gmf"):
        run_experiment(other, output_dir=tmp_path, data=data)


@pytest.mark.parametrize("patience", [None, 2])
def test_prefetching_the_next_epoch_changes_nothing_but_timing(tmp_path, monkeypatch, patience):
    """Epoch k+1's negatives are drawn on a thread during epoch k; the run must be identical to
    drawing them in the loop, including the generator states a checkpoint keeps, and with an
    early stop that leaves one drawn epoch unused."""
    from recforge.config import ExperimentConfig
    from recforge.training import trainer as trainer_module
    from recforge.training.records import RunRecorder

    data = clustered_data()
    cfg = TrainConfig(epochs=6, batch_size=50, lr=0.01, patience=patience, full_ranking=False)
    runs = {}
    for cpus in (1, 2):
        monkeypatch.setattr(trainer_module, "prefetch_in_background", lambda cpus=cpus: cpus > 1)
        torch.manual_seed(0)
        model = build_model("gmf", data.schema, NCFConfig(factors=8))
        recorder = RunRecorder(tmp_path / str(cpus), ExperimentConfig(model_name="gmf", model=NCFConfig(factors=8), train=cfg))
        result = Trainer(model, data, cfg, seed=3, recorder=recorder).fit()
        runs[cpus] = (result, model, torch.load(recorder.path / "checkpoint.pt", weights_only=False))
    (r1, m1, c1), (r2, m2, c2) = runs[1], runs[2]
    assert [h["train/loss"] for h in r1.history[1:]] == [h["train/loss"] for h in r2.history[1:]]
    assert all(torch.equal(a, b) for a, b in zip(m1.state_dict().values(), m2.state_dict().values()))
    assert c1["epoch"] == c2["epoch"] and c1["numpy_rng"] == c2["numpy_rng"]
    assert torch.equal(c1["order_rng"], c2["order_rng"])
    # the checkpoint's sampler state is the one right after the selected epoch's draw
    rng, order = np.random.default_rng([3, 2]), torch.Generator().manual_seed(3)
    from recforge.data.sampling import pointwise_examples

    for _ in range(c1["epoch"]):
        pairs, _ = pointwise_examples(data.train_users, data.train_items, data.train_index(), cfg.num_negatives, rng)
        torch.randperm(len(pairs), generator=order)
    assert c1["numpy_rng"] == rng.bit_generator.state and torch.equal(c1["order_rng"], order.get_state())


def test_prefetching_only_where_torch_leaves_a_cpu_free(monkeypatch):
    from recforge.training import trainer as trainer_module

    monkeypatch.setattr(trainer_module, "usable_cpus", lambda: 2)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)
    assert trainer_module.prefetch_in_background()
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    assert not trainer_module.prefetch_in_background()
