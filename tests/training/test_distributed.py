"""Data-parallel (DDP) training and exact distributed evaluation on CPU / gloo, with processes
spawned by the tests: N processes train the model one process trains, evaluation gathers every
row exactly once, a killed rank fails the run clearly, and a resumed 2-process run ends as an
uninterrupted one.

Each spawned group runs several scenarios at once (starting processes costs more than the
tiny models train); the tests then check what the group wrote.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from recforge.config import TrainConfig, from_dict
from recforge.data.preprocessing import EncodedColumns
from recforge.data.schema import FeatureSpec, Schema, user_item_schema
from recforge.data.tabular import TabularData, TensorColumns
from recforge.errors import ConfigError
from recforge.evaluation.protocols import evaluate_sampled, pointwise_metrics, score_rows
from recforge.models import build_model
from recforge.models.ncf import NCFConfig
from recforge.training.records import load_checkpoint

from tests.conftest import SHARED_DATA

REPO = Path(__file__).resolve().parents[2]

DEEPFM = from_dict(
    {
        "model": {"name": "deepfm", "embedding_dim": 4, "hidden_units": [16], "dropout": 0.0},
        "data": {"name": "uci-adult"},
        "train": {"epochs": 1, "batch_size": 4001, "lr": 0.01},  # odd: parts of 2001 and 2000 rows
        "seed": 3,
    }
)
GMF = from_dict(
    {
        "model": {"name": "gmf", "factors": 4},
        "data": {"name": "movielens-100k"},
        "train": {"epochs": 1, "batch_size": 16001, "lr": 0.01, "full_ranking": False},
        "seed": 3,
    }
)
TOY = Schema(
    features=(FeatureSpec("a", vocab_size=12), FeatureSpec("b", vocab_size=9), FeatureSpec("x", "dense")),
    labels=("click", "buy"),
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _spawn(world: int, scenario: str, out: Path) -> None:
    """Run ``scenario`` on ``world`` gloo processes (rank r gets the env torchrun would give it)."""
    cache = Path(os.environ.get("RECFORGE_CACHE_DIR", out / "cache"))
    # fork: the ranks inherit this process's imports (a fresh interpreter importing torch costs
    # seconds on a busy 2-core machine); each rank uses one thread and its own process group.
    mp.start_processes(_worker, args=(world, _free_port(), scenario, str(out), str(cache)), nprocs=world, join=True, start_method="fork")


def _worker(rank: int, world: int, port: int, scenario: str, out: str, cache: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
        LOCAL_WORLD_SIZE=str(world), RECFORGE_THREADS="1", RECFORGE_CACHE_DIR=cache,
        RECFORGE_DIST_TIMEOUT_S={"hang": "3", "kill": "10"}.get(scenario, "60"),
    )
    torch.set_num_threads(1)
    from recforge.training.distributed import distributed_session

    with distributed_session("cpu") as ctx:
        assert ctx.active and ctx.rank == rank and ctx.world_size == world
        {"real": _real_data_runs, "gather": _gather_runs, "kill": _killed_run, "hang": _killed_run}[scenario](ctx, Path(out))


# ---------------------------------------------------------------------- scenarios (in the ranks)
def _save(ctx, out: Path, name: str, model: torch.nn.Module, summary: dict) -> None:
    torch.save(model.state_dict(), out / f"{name}-model-rank{ctx.rank}.pt")
    if ctx.is_main:
        (out / f"{name}-summary.json").write_text(json.dumps(summary, default=str))


def _real_data_runs(ctx, out: Path) -> None:
    from recforge.training.experiment import run_experiment

    # Training with unequal parts on toy data (601 rows, batch 151 over 2 ranks: parts of 76 and 75).
    for name, model_name, train in _toy_trainings():
        model, summary = _train_toy(name, model_name, train)
        _save(ctx, out, name, model, summary)

    deepfm = run_experiment(DEEPFM, data_dir=SHARED_DATA, output_dir=out / "deepfm")
    _save(ctx, out, "deepfm", deepfm.model, deepfm.summary)
    _save(ctx, out, "deepfm-epoch1-checkpoint", deepfm.model, {"path": str(deepfm.path)})
    gmf = run_experiment(GMF, data_dir=SHARED_DATA, output_dir=out / "gmf")
    _save(ctx, out, "gmf", gmf.model, gmf.summary)
    two = DEEPFM.replace(train=dataclasses.replace(DEEPFM.train, epochs=2))
    full = run_experiment(two, data_dir=SHARED_DATA, output_dir=out / "full")
    _save(ctx, out, "full", full.model, full.summary)
    resumed = run_experiment(two, data_dir=SHARED_DATA, output_dir=out / "deepfm", resume=deepfm.path)
    _save(ctx, out, "resumed", resumed.model, resumed.summary)


def _killed_run(ctx, out: Path) -> None:
    """A long run; the test kills rank 1 with SIGKILL once an epoch is checkpointed."""
    from recforge.training.experiment import run_experiment

    long = DEEPFM.replace(train=dataclasses.replace(DEEPFM.train, epochs=500))
    try:
        run_experiment(long, data_dir=SHARED_DATA, output_dir=out)
    except Exception as exc:
        (out / f"error-rank{ctx.rank}.txt").write_text(f"{type(exc).__name__}: {exc}")
        raise


def _toy_data(seed: int = 0) -> TabularData:
    rng = np.random.default_rng(seed)

    def split(n: int) -> EncodedColumns:
        sparse = np.stack([rng.integers(1, 12, n), rng.integers(1, 9, n)], 1).astype(np.int64)
        dense = rng.normal(size=(n, 1)).astype(np.float32)
        logit = (sparse[:, 0] % 3 - 1) + dense[:, 0]
        labels = (rng.random((n, 2)) < 1 / (1 + np.exp(-2 * logit[:, None]))).astype(np.float32)
        labels[rng.random(n) < 0.3, 1] = np.nan  # "buy" unknown for 30 % of the rows
        return EncodedColumns(sparse, dense, labels)

    return TabularData("toy", TOY, split(601), split(200), split(200), {})


def _toy_trainings() -> list[tuple[str, str, dict]]:
    return [
        # Wide & Deep's paper optimisers (FTRL on the wide part, AdaGrad on the deep part) on
        # sparse row gradients; one task.
        ("toy-wide_deep", "wide_deep", {"sparse_embeddings": True}),
        # Two tasks with missing labels: per-task counts of known labels are all-reduced.
        ("toy-mmoe", "mmoe", {"embedding_l2": 1e-3}),
        # SparseAdam (lazy Adam) on the embedding tables.
        ("toy-deepfm", "deepfm", {"sparse_embeddings": True}),
    ]


def _toy_model(name: str, tasks: tuple[str, ...]) -> torch.nn.Module:
    from recforge.models.deepfm import DeepFMConfig
    from recforge.models.multitask import MultiTaskConfig
    from recforge.models.wide_deep import WideDeepConfig

    schema = Schema(TOY.features, labels=tasks)
    config = {
        "wide_deep": WideDeepConfig(embedding_dim=4, hidden_units=(8,)),
        "mmoe": MultiTaskConfig(embedding_dim=4, expert_units=(8,), num_experts=2, tower_units=(4,)),
        "deepfm": DeepFMConfig(embedding_dim=4, hidden_units=(8,), dropout=0.0),
    }[name]
    torch.manual_seed(0)
    return build_model(name, schema, config)


def _train_toy(name: str, model_name: str, train: dict) -> tuple[torch.nn.Module, dict]:
    from recforge.training.pointwise import PointwiseTrainer

    data = _toy_data()
    tasks = TOY.labels if model_name == "mmoe" else ("click",)
    if tasks != TOY.labels:  # single task: drop "buy"
        data = TabularData(
            "toy", Schema(TOY.features, labels=tasks),
            *[EncodedColumns(s.sparse, s.dense, s.labels[:, :1]) for s in (data.train, data.valid, data.test)], {},
        )
    model = _toy_model(model_name, tasks)
    paper = getattr(model, "paper_optimizers", None)
    cfg = TrainConfig(**{"epochs": 1, "batch_size": 151, "lr": 0.01, **train})
    result = PointwiseTrainer(model, data, cfg, seed=0, default_groups=paper() if paper else None).fit()
    return model, result.summary


def _ten_rows() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels [10, 2] (NaN: missing), logits [10, 2] and users [10] with both classes in most users."""
    labels = np.array([[1, 0], [0, 1], [1, np.nan], [0, 1], [0, 0], [1, 1], [1, 0], [0, np.nan], [1, 1], [0, 0]], np.float64)
    logits = np.random.default_rng(1).normal(size=(10, 2))
    return labels, logits, np.array([0, 0, 1, 1, 1, 2, 2, 3, 3, 3])


def _gather_runs(ctx, out: Path) -> None:
    # 1. Exact gather: 10 rows on 3 ranks (parts of 4, 3 and 3), two tasks with missing labels and GAUC.
    labels, logits, groups = _ten_rows()
    gathered = ctx.gather_rows(logits[ctx.part(10)], 10)
    metrics = pointwise_metrics(labels, gathered, ("click", "buy"), groups, (1.0, 0.5))
    # 2. Sampled leave-one-out ranking of 10 users on 3 ranks, and score_rows of 10 rows.
    torch.manual_seed(0)
    gmf = build_model("gmf", user_item_schema(10, 20), NCFConfig(factors=4))
    candidates = np.random.default_rng(2).integers(0, 20, size=(10, 6))
    ranked, greater, ties = evaluate_sampled(gmf, np.arange(10), candidates, (3,), shard=ctx)
    cols = TensorColumns(EncodedColumns(np.stack([np.arange(10), candidates[:, 0]], 1), np.zeros((10, 0), np.float32), labels[:, :1].astype(np.float32)))
    scores = score_rows(gmf, cols, ("click",), batch_size=2, shard=ctx)
    # 3. Training where a part is empty: 601 rows at batch 599 over 3 ranks, the last batch of
    #    2 rows gives ranks 1, 1 and 0 rows (every rank still steps).
    model, summary = _train_toy("toy-deepfm-empty-part", "deepfm", {"batch_size": 599})
    _save(ctx, out, "toy-deepfm-empty-part", model, summary)
    if ctx.is_main:
        (out / "gather.json").write_text(
            json.dumps({"gathered": gathered.tolist(), "metrics": metrics, "ranked": ranked, "greater": greater.tolist(), "ties": ties.tolist(), "scores": scores.tolist()})
        )


# ---------------------------------------------------------------------- the tests (parent process)
@pytest.fixture(scope="module")
def gather_group(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ddp-gather")
    _spawn(3, "gather", out)
    return out


@pytest.fixture(scope="module")
def real_group(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not (SHARED_DATA / "uci-adult").is_dir() or not (SHARED_DATA / "ml-100k").is_dir():
        pytest.fail(f"real data not found at {SHARED_DATA}; set RECFORGE_TEST_DATA_DIR")
    out = tmp_path_factory.mktemp("ddp-real")
    _spawn(2, "real", out)
    return out


def _model(out: Path, name: str, rank: int = 0) -> dict[str, torch.Tensor]:
    return torch.load(out / f"{name}-model-rank{rank}.pt")


def _summary(out: Path, name: str) -> dict:
    return json.loads((out / f"{name}-summary.json").read_text())


def _assert_same_model(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], rtol: float = 1e-4, atol: float = 1e-6) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.allclose(a[key].double(), b[key].double(), rtol=rtol, atol=atol), (key, (a[key].double() - b[key].double()).abs().max())


def test_sharded_evaluation_equals_single_process_metrics_exactly_on_unequal_shards(gather_group):
    got = json.loads((gather_group / "gather.json").read_text())
    labels, logits, groups = _ten_rows()
    assert np.array_equal(np.array(got["gathered"]), logits)  # every row once, in row order, padding dropped
    assert got["metrics"] == pointwise_metrics(labels, logits, ("click", "buy"), groups, (1.0, 0.5))
    torch.manual_seed(0)
    gmf = build_model("gmf", user_item_schema(10, 20), NCFConfig(factors=4))
    candidates = np.random.default_rng(2).integers(0, 20, size=(10, 6))
    ranked, greater, ties = evaluate_sampled(gmf, np.arange(10), candidates, (3,))
    assert got["ranked"] == ranked and got["greater"] == greater.tolist() and got["ties"] == ties.tolist()
    cols = TensorColumns(EncodedColumns(np.stack([np.arange(10), candidates[:, 0]], 1), np.zeros((10, 0), np.float32), labels[:, :1].astype(np.float32)))
    assert np.array_equal(np.array(got["scores"]), score_rows(gmf, cols, ("click",), batch_size=2))


@pytest.mark.parametrize("name, model_name, train", _toy_trainings(), ids=[t[0] for t in _toy_trainings()])
def test_two_processes_with_unequal_parts_train_the_single_process_model(real_group, name, model_name, train):
    torch.set_num_threads(1)
    model, summary = _train_toy(name, model_name, train)
    for rank in range(2):  # every replica holds the same weights
        _assert_same_model(_model(real_group, name, rank), model.state_dict())
    got = _summary(real_group, name)
    assert got["valid/auc"] == pytest.approx(summary["valid/auc"], abs=1e-6)
    assert got["train/loss" if "train/loss" in got else "epochs_run"] is not None
    assert got["distributed"] == {"world_size": 2, "backend": "gloo", "global_batch_size": 151, "per_rank_batch_size": 75.5}
    assert got["rows"] == summary["rows"]


def test_an_empty_part_of_a_batch_still_trains_the_single_process_model(gather_group):
    torch.set_num_threads(1)
    model, summary = _train_toy("toy-deepfm-empty-part", "deepfm", {"batch_size": 599})
    for rank in range(3):
        _assert_same_model(_model(gather_group, "toy-deepfm-empty-part", rank), model.state_dict())
    assert _summary(gather_group, "toy-deepfm-empty-part")["valid/auc"] == pytest.approx(summary["valid/auc"], abs=1e-6)


def test_two_processes_train_deepfm_on_uci_adult_as_one_process(real_group, tmp_path):
    from recforge.training.experiment import run_experiment

    torch.set_num_threads(1)
    single = run_experiment(DEEPFM, data_dir=SHARED_DATA, output_dir=tmp_path)
    _assert_same_model(_model(real_group, "deepfm"), single.model.state_dict())
    _assert_same_model(_model(real_group, "deepfm", 1), single.model.state_dict())
    got = _summary(real_group, "deepfm")
    assert got["valid/auc"] == pytest.approx(single.summary["valid/auc"], abs=1e-6)
    assert got["test/auc"] == pytest.approx(single.summary["test/auc"], abs=1e-6)
    assert got["epochs_run"] == 1 and got["distributed"]["world_size"] == 2


def test_two_processes_train_gmf_on_movielens_100k_as_one_process(real_group, tmp_path):
    from recforge.training.experiment import run_experiment

    torch.set_num_threads(1)
    single = run_experiment(GMF, data_dir=SHARED_DATA, output_dir=tmp_path)
    _assert_same_model(_model(real_group, "gmf"), single.model.state_dict())
    got = _summary(real_group, "gmf")
    for key in ("valid/hit_rate@10", "valid/ndcg@10", "test/hit_rate@10", "test/ndcg@10"):
        assert got[key] == pytest.approx(single.summary[key], abs=1e-6), key


def test_rank_zero_alone_writes_the_run_files(real_group):
    runs = sorted(p for p in (real_group / "gmf").iterdir() if p.is_dir())
    assert len(runs) == 1  # one run directory, not one per rank
    assert {"config.yaml", "metrics.jsonl", "checkpoint.pt", "summary.json"} <= {p.name for p in runs[0].iterdir()}
    assert not [p for p in runs[0].rglob("*") if ".tmp" in p.name]


def test_resume_of_a_two_process_run_reproduces_the_uninterrupted_one(real_group):
    full, resumed = _summary(real_group, "full"), _summary(real_group, "resumed")
    for key in ("valid/auc", "valid/log_loss", "test/auc", "test/log_loss", "selected_epoch"):
        assert resumed[key] == full[key], key
    for a, b in zip(_model(real_group, "full").values(), _model(real_group, "resumed").values()):
        assert torch.equal(a, b)
    run = Path(_summary(real_group, "deepfm-epoch1-checkpoint")["path"])
    logged = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    full_run = next(p for p in (real_group / "full").iterdir() if p.is_dir())
    uninterrupted = [json.loads(line) for line in (full_run / "metrics.jsonl").read_text().splitlines()]
    assert [r["train/loss"] for r in logged] == [r["train/loss"] for r in uninterrupted]
    assert load_checkpoint(run, "last.pt")["world_size"] == 2


@pytest.mark.parametrize("how", ["kill", "hang"])
def test_a_killed_or_hung_rank_fails_the_run_clearly_and_keeps_the_last_checkpoint(shared_data, tmp_path, how):
    """kill -9 of rank 1 (its peers see the connection drop), or SIGSTOP (they time out after
    $RECFORGE_DIST_TIMEOUT_S, 3 s here): rank 0 stops with one clear error, the files stay good."""
    cache = Path(os.environ["RECFORGE_CACHE_DIR"])
    group = mp.start_processes(
        _worker, args=(2, _free_port(), how, str(tmp_path), str(cache)), nprocs=2, join=False, start_method="fork"
    )
    try:
        checkpoint = _wait_for(lambda: next(tmp_path.glob("*/last.pt"), None), group.processes, 60)
        os.kill(group.processes[1].pid, signal.SIGKILL if how == "kill" else signal.SIGSTOP)
        # A dropped connection is usually seen at once, but on a loaded machine rank 0 may
        # instead wait out the timeout (10 s for kill): leave room for a few of those.
        group.processes[0].join(120)
        error = tmp_path / "error-rank0.txt"
        assert group.processes[0].exitcode not in (None, 0), (
            f"rank 0 still running 120 s after rank 1 was stopped ({how}); "
            + (f"it had raised: {error.read_text()}" if error.exists() else "it had raised nothing")
        )
    finally:
        for process in group.processes:
            if process.is_alive():
                process.kill()
    message = (tmp_path / "error-rank0.txt").read_text()
    assert message.startswith("TrainingError: rank 0 of 2 lost contact with another rank"), message
    assert f"did not answer within {3 if how == 'hang' else 10} s" in message
    assert "partial run kept in" in message  # and where
    run = checkpoint.parent
    state = load_checkpoint(run, "checkpoint.pt")  # the last good checkpoint loads
    assert state["epoch"] >= 1 and "model" in state
    assert load_checkpoint(run, "last.pt")["epoch"] >= 1
    assert not (run / "summary.json").exists()


def _wait_for(find, processes, seconds: float):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = find()
        if found:
            return found
        if any(p.exitcode is not None for p in processes):
            pytest.fail(f"a rank ended early (exit codes {[p.exitcode for p in processes]})")
        time.sleep(0.05)
    pytest.fail(f"nothing after {seconds} s")


def test_nproc_reruns_the_command_under_torchrun(monkeypatch):
    from recforge.cli import launch

    calls = []
    monkeypatch.setattr(launch.os, "execve", lambda path, args, env: calls.append((path, args, env)))
    monkeypatch.delenv("RECFORGE_THREADS", raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.setattr("recforge.training.threads.available_cpus", lambda: 2)
    argv = ["recforge", "train", "deepfm", "--dataset", "uci-adult", "--nproc", "2", "--epochs=3", "--nproc=2"]
    launch.launch_train(2, None, argv)
    (path, args, env), = calls
    assert path == sys.executable
    assert args[1:6] == ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", "-m"]
    assert args[6:] == ["recforge", "train", "deepfm", "--dataset", "uci-adult", "--epochs=3"]
    assert int(env["RECFORGE_THREADS"]) >= 1
    launch.launch_train(None, None, argv)  # no --nproc: trains here
    assert len(calls) == 1
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ConfigError, match="under torchrun give --nproc-per-node"):
        launch.launch_train(2, None, argv)
    with pytest.raises(ConfigError, match="--nproc must be >= 1"):
        launch.launch_train(0, None, argv)


def test_nproc_beyond_the_cpus_or_gpus_is_refused_before_starting_anything(monkeypatch):
    from recforge.cli import launch

    monkeypatch.setattr(launch.os, "execve", lambda *a: pytest.fail("torchrun must not start"))
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.setattr("recforge.training.threads.available_cpus", lambda: 2)
    with pytest.raises(ConfigError, match=r"--nproc 99 is more than the 2 CPU\(s\)"):  # a newcomer's --nproc 99 started 99 processes
        launch.launch_train(99, None, ["recforge", "train", "deepfm", "--nproc", "99"])
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    with pytest.raises(ConfigError, match="needs 2 GPUs .* this machine has 0"):
        launch.launch_train(2, None, ["recforge", "train", "deepfm", "--nproc", "2"], device="cuda")


def test_python_dash_m_recforge_is_the_cli(monkeypatch, capsys):
    import runpy

    monkeypatch.setattr(sys, "argv", ["recforge", "train", "--help"])
    with pytest.raises(SystemExit) as stop:
        runpy.run_module("recforge", run_name="__main__")
    assert stop.value.code == 0
    assert "--nproc" in capsys.readouterr().out


@pytest.mark.slow
def test_torchrun_kill_of_one_rank_fails_the_cli_run_and_keeps_the_checkpoint(shared_data, tmp_path):
    """The launcher path end to end: `recforge train --nproc 2` (torchrun) and kill -9 of rank 1."""
    env = {**os.environ, "RECFORGE_DIST_TIMEOUT_S": "30", "RECFORGE_THREADS": "1", "PYTHONPATH": str(REPO / "src")}
    command = [
        sys.executable, "-m", "recforge", "train", "deepfm", "--dataset", "uci-adult", "--data-dir", str(shared_data),
        "--output-dir", str(tmp_path), "--epochs", "200", "--batch-size", "512", "--quiet", "--nproc", "2",
        "--set", "model.embedding_dim=4", "--set", "model.hidden_units=[8]",
    ]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not list(tmp_path.glob("*/last.pt")) and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.1)
        victim = _rank_pid(proc.pid, 1)
        assert victim is not None, "no rank-1 worker found"
        os.kill(victim, signal.SIGKILL)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode != 0
    assert "lost contact with another rank" in stderr and "SIGKILL" in stderr, stderr[-2000:]
    run = next(tmp_path.glob("*/last.pt")).parent
    assert load_checkpoint(run, "checkpoint.pt")["epoch"] >= 1
    assert not (run / "summary.json").exists()


def _rank_pid(root: int, rank: int) -> int | None:
    """The pid of the process below ``root`` whose environment says RANK=rank."""
    stack = [root]
    while stack:
        pid = stack.pop()
        try:
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if pid != root and f"RANK={rank}".encode() in environ and f"LOCAL_RANK={rank}".encode() in environ:
            return pid
        stack.extend(int(c) for c in children)
    return None


def test_resume_on_another_process_count_or_of_an_ncf_run_is_refused_before_torchrun(tmp_path):
    """A newcomer's `--resume RUN --nproc 2` of a 1-process run started torchrun, whose two ranks
    each failed with a traceback; it is now one line before anything starts."""
    import yaml

    from recforge.cli.launch import check_resume
    from recforge.config import ExperimentConfig
    from recforge.models import get_model_entry

    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(yaml.safe_dump(ExperimentConfig(model_name="deepfm", model=get_model_entry("deepfm").config_cls()).to_dict()))
    torch.save({"epoch": 1}, run / "last.pt")  # a 1-process run: no world_size recorded
    check_resume(run, None)
    check_resume(run, 1)
    with pytest.raises(ConfigError, match="trained on 1 process.* cannot be resumed on 2: give --nproc 1"):
        check_resume(run, 2)
    torch.save({"epoch": 1, "world_size": 2}, run / "last.pt")
    check_resume(run, 2)
    (run / "config.yaml").write_text(yaml.safe_dump(ExperimentConfig(model_name="gmf", model=get_model_entry("gmf").config_cls()).to_dict()))
    with pytest.raises(ConfigError, match="--resume is available for tabular"):
        check_resume(run, 2)
