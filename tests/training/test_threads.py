"""The thread-count policy that keeps a busy machine from stalling torch's OpenMP workers (issue 13, item 5)."""

import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from recforge.errors import ConfigError
from recforge.training import threads as T


@pytest.fixture(autouse=True)
def _restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_an_explicit_count_is_obeyed_and_checked(monkeypatch):
    monkeypatch.delenv(T.THREADS_ENV, raising=False)
    assert T.choose_threads(3, ("deepfm",)) == (3, "as requested")
    with pytest.raises(ConfigError, match="--threads must be >= 1"):
        T.choose_threads(0)
    monkeypatch.setenv(T.THREADS_ENV, "2")
    assert T.choose_threads(None, ("gmf",))[0] == 2
    monkeypatch.setenv(T.THREADS_ENV, "many")
    with pytest.raises(ConfigError, match="RECFORGE_THREADS"):
        T.choose_threads(None)


def test_implicit_feedback_models_default_to_one_thread(monkeypatch):
    monkeypatch.delenv(T.THREADS_ENV, raising=False)
    assert T.choose_threads(None, ("gmf", "neumf"))[0] == 1
    assert T.apply_threads(None, ("neumf",)).startswith("torch threads: 1")
    assert torch.get_num_threads() == 1 and not T.automatic_threads()


def test_other_models_use_the_cpus_other_processes_leave_idle(monkeypatch):
    monkeypatch.delenv(T.THREADS_ENV, raising=False)
    monkeypatch.setattr(T, "available_cpus", lambda: 2)
    for idle, expected in ((2.0, 2), (1.2, 1), (1.5, 2), (0.1, 1), (None, 2)):
        monkeypatch.setattr(T, "idle_cpus", lambda idle=idle: idle)
        assert T.choose_threads(None, ("deepfm",))[0] == expected, idle
    T.apply_threads(None, ("mmoe",))
    assert T.automatic_threads()


def test_cgroup_quota_caps_the_cpus(tmp_path):
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert T._cgroup_quota(tmp_path) == 1.5
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert T._cgroup_quota(tmp_path) is None
    (tmp_path / "cpu.max").unlink()
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("-1")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000")
    assert T._cgroup_quota(tmp_path) is None
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("100000")
    assert T._cgroup_quota(tmp_path) == 1.0
    assert T.available_cpus() >= 1


def test_the_governor_follows_the_load_of_other_processes(monkeypatch):
    samples = iter([
        T._CpuSample(0.0, 0.0, 0.0),   # at start
        T._CpuSample(3.0, 6.0, 3.0),   # others used 3 CPU-s in 3 s: one CPU busy -> 1 thread
        T._CpuSample(6.0, 9.0, 6.0),   # others idle again -> 2 threads
    ])
    monkeypatch.setattr(T, "_sample", lambda: next(samples))
    monkeypatch.setattr(T, "available_cpus", lambda: 2)
    clock = iter([1.0, 3.5, 6.5])
    monkeypatch.setattr(T.time, "monotonic", lambda: next(clock))
    messages = []
    torch.set_num_threads(2)
    governor = T.ThreadGovernor(True, messages.append)
    governor.tick()  # 1 s after start: no check due
    assert torch.get_num_threads() == 2
    governor.tick()
    assert torch.get_num_threads() == 1 and "torch threads 2 -> 1" in messages[0]
    governor.tick()
    assert torch.get_num_threads() == 2 and len(messages) == 2


def test_a_real_cpu_bound_process_is_seen():
    burner = subprocess.Popen([sys.executable, "-c", "import time\nt = time.time()\nwhile time.time() - t < 20: pass"])
    try:
        time.sleep(0.5)
        before = T._sample()
        time.sleep(1.0)
        after = T._sample()
    finally:
        burner.kill()
        burner.wait()
    if before is None:
        pytest.skip("no /proc/stat on this system")
    assert T.others_busy(before, after) >= 0.6


def test_one_and_two_threads_train_to_identical_numbers():
    """The module's claim that the thread count does not change results (DeepFM forward/backward)."""
    from recforge.data.batches import Batch
    from recforge.data.schema import FeatureSpec, Schema
    from recforge.models import build_model

    schema = Schema((FeatureSpec("a", vocab_size=50), FeatureSpec("b", vocab_size=30), FeatureSpec("x", "dense")), labels=("y",))
    rng = np.random.default_rng(0)
    batch = Batch(
        sparse_features=torch.as_tensor(np.stack([rng.integers(0, 50, 4096), rng.integers(0, 30, 4096)], 1)),
        dense_features=torch.as_tensor(rng.normal(size=(4096, 1)).astype(np.float32)),
        labels=torch.as_tensor((rng.random((4096, 1)) < 0.3).astype(np.float32)),
        sequence_features={}, sequence_lengths={},
    )
    results = []
    for n in (1, 2):
        torch.set_num_threads(n)
        torch.manual_seed(0)
        model = build_model("deepfm", schema)
        opt = torch.optim.Adam(model.parameters(), lr=0.01)
        for _ in range(3):
            loss = torch.nn.functional.binary_cross_entropy_with_logits(model(batch), batch.labels[:, 0])
            opt.zero_grad()
            loss.backward()
            opt.step()
        results.append([p.detach().clone() for p in model.parameters()])
    assert all(torch.equal(a, b) for a, b in zip(*results))
