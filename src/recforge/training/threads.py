"""How many CPU threads torch's kernels use, chosen so a busy machine never makes training crawl.

Why this module exists. torch's CPU kernels run every parallel op on a team of OpenMP threads and
wait at its end for the slowest one. With one thread per core (torch's default) any other busy
process takes a core from one of them, and each op then waits for the OS to reschedule that
thread: on this project's 2-core machine, with one CPU-bound process beside the run, GMF epochs
took 140-973 s instead of 13-15 s and MMoE 400 s instead of 10 s (issue 13; re-measured with
``benchmarks/busy_machine.py``). A thread count no larger than the CPUs *nobody else is using*
avoids that cliff; one thread too few costs at most the parallel speed-up of the ops.

The default (``threads=None``):

* CPUs = the process's affinity mask, capped by a cgroup CPU quota (containers, CI runners);
* implicit-feedback models (NCF, MF, ItemPop) use 1 thread: their ops are too small to gain
  from a second one, and the second core then draws the next epoch's negatives
  (:func:`recforge.training.trainer.prefetch_in_background`);
* other models use the CPUs left idle by other processes, measured from ``/proc/stat`` at start
  and re-checked every few seconds while training (:class:`ThreadGovernor`), so a job that
  starts later on the same machine lowers the count, and one that ends raises it again.

An explicit ``--threads N`` (or ``RECFORGE_THREADS``) is always obeyed. The thread count does
not change results here: the kernels these models use split work by output rows, and runs with
1 and 2 threads gave bit-identical losses and metrics (tested in ``tests/training/test_threads.py``).
"""

from __future__ import annotations

import math
import os
import resource
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from recforge.errors import ConfigError

THREADS_ENV = "RECFORGE_THREADS"
SINGLE_THREAD_MODELS = ("itempop", "mf", "gmf", "mlp", "neumf")
CHECK_EVERY_S = 2.0  # wall seconds between load checks while training
_PROC_STAT = Path("/proc/stat")


def available_cpus() -> int:
    """CPUs this process may use: its affinity mask, capped by a cgroup v2 / v1 CPU quota.

    Returns:
        At least 1.
    """
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    quota = _cgroup_quota()
    if quota is not None:
        cpus = min(cpus, max(1, math.floor(quota)))
    return max(1, cpus)


def _cgroup_quota(root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """CPUs allowed by the cgroup quota (v2 ``cpu.max``, v1 ``cpu.cfs_quota_us``), or None if unlimited."""
    try:
        fields = (root / "cpu.max").read_text().split()
        if fields and fields[0] != "max":
            return int(fields[0]) / int(fields[1])
        return None
    except (OSError, ValueError, IndexError):
        pass
    try:
        quota = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        return quota / period if quota > 0 and period > 0 else None
    except (OSError, ValueError):
        return None


@dataclass(frozen=True)
class _CpuSample:
    wall: float  # seconds (monotonic)
    busy: float  # CPU-seconds used by the whole machine since boot (None where /proc/stat is absent)
    own: float  # CPU-seconds used by this process


def _sample() -> _CpuSample | None:
    try:
        fields = _PROC_STAT.read_text().split("\n", 1)[0].split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu":
        return None
    ticks = [int(x) for x in fields[1:]]
    # user nice system idle iowait irq softirq steal (guest is already counted in user)
    busy_ticks = sum(ticks[:8]) - ticks[3] - (ticks[4] if len(ticks) > 4 else 0)
    hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return _CpuSample(time.monotonic(), busy_ticks / hz, usage.ru_utime + usage.ru_stime)


def others_busy(before: _CpuSample, after: _CpuSample) -> float:
    """Average CPUs used by *other* processes between two samples (machine use minus our own)."""
    wall = after.wall - before.wall
    if wall <= 0:
        return 0.0
    return max(0.0, ((after.busy - before.busy) - (after.own - before.own)) / wall)


def idle_cpus(window_s: float = 0.25) -> float | None:
    """CPUs not used by other processes, averaged over ``window_s`` seconds (None if unknown)."""
    before = _sample()
    if before is None:
        return None
    time.sleep(window_s)
    after = _sample()
    assert after is not None
    return max(0.0, available_cpus() - others_busy(before, after))


def _threads_for(idle: float | None, cpus: int) -> int:
    # A CPU counts as taken once another process uses more than a third of it on average.
    if idle is None:
        return cpus
    return max(1, min(cpus, math.floor(idle + 2 / 3)))


def requested_threads(threads: int | None) -> int | None:
    """An explicit thread count: the argument, else ``$RECFORGE_THREADS``, else None.

    Raises:
        ConfigError: for a count below 1 or a non-integer environment value.
    """
    if threads is None and os.environ.get(THREADS_ENV):
        raw = os.environ[THREADS_ENV]
        try:
            threads = int(raw)
        except ValueError:
            raise ConfigError(f"{THREADS_ENV}={raw!r}: expected a whole number of threads >= 1") from None
    if threads is not None and threads < 1:
        raise ConfigError(f"--threads must be >= 1, got {threads}")
    return threads


def choose_threads(threads: int | None, model_names: tuple[str, ...] = ()) -> tuple[int, str]:
    """The torch CPU thread count for a run, and why (for the log).

    Args:
        threads: an explicit count (``--threads``), or None for the default described in the
            module docstring.
        model_names: the registry names of the models the run will train.

    Returns:
        (threads, reason).

    Raises:
        ConfigError: for an explicit count below 1.
    """
    explicit = requested_threads(threads)
    if explicit is not None:
        return explicit, "as requested"
    if model_names and all(m in SINGLE_THREAD_MODELS for m in model_names):
        return 1, "implicit-feedback models train fastest with 1 thread (the other CPU draws negatives)"
    cpus = available_cpus()
    idle = idle_cpus()
    chosen = _threads_for(idle, cpus)
    if idle is None:
        return chosen, f"{cpus} CPU(s) available"
    return chosen, f"{cpus} CPU(s) available, {cpus - idle:.1f} in use by other processes"


class ThreadGovernor:
    """Re-checks, every ``CHECK_EVERY_S`` seconds while training, how many CPUs other processes
    use, and moves torch's thread count to the idle ones (never above the available CPUs).

    Only active for an automatic thread count (``choose_threads`` without an explicit one); call
    :meth:`tick` once per training batch (it costs a clock read unless a check is due).

    Args:
        active: whether to adjust at all.
        notify: called with a one-line message whenever the count changes.
    """

    def __init__(self, active: bool, notify=None):  # noqa: ANN001 - a plain callable
        self._last = _sample() if active else None
        self.active = self._last is not None
        self.notify = notify
        self.cpus = available_cpus()
        self.changes: list[tuple[float, int]] = []

    def tick(self) -> None:
        """Adjust the thread count if a check is due."""
        if not self.active or self._last is None or time.monotonic() - self._last.wall < CHECK_EVERY_S:
            return
        now = _sample()
        assert now is not None
        others = others_busy(self._last, now)
        self._last = now
        wanted = _threads_for(self.cpus - others, self.cpus)
        current = torch.get_num_threads()
        if wanted != current:
            torch.set_num_threads(wanted)
            self.changes.append((others, wanted))
            if self.notify:
                self.notify(f"other processes use {others:.1f} of {self.cpus} CPUs: torch threads {current} -> {wanted}")


_AUTOMATIC = {"value": False}


def apply_threads(threads: int | None, model_names: tuple[str, ...] = ()) -> str:
    """Choose (see :func:`choose_threads`) and set torch's thread count; returns the reason.

    Remembers whether the count was automatic, so trainers know whether to run a
    :class:`ThreadGovernor` (:func:`automatic_threads`).
    """
    chosen, reason = choose_threads(threads, model_names)
    torch.set_num_threads(chosen)
    _AUTOMATIC["value"] = requested_threads(threads) is None and not (
        model_names and all(m in SINGLE_THREAD_MODELS for m in model_names)
    )
    return f"torch threads: {chosen} ({reason})"


def automatic_threads() -> bool:
    """Whether the thread count was chosen automatically for models that may use several threads."""
    return _AUTOMATIC["value"]


__all__ = [
    "ThreadGovernor",
    "apply_threads",
    "automatic_threads",
    "available_cpus",
    "choose_threads",
    "idle_cpus",
    "requested_threads",
]
