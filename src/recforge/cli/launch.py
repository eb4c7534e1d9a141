"""``recforge train --nproc N``: the same command re-run by torchrun on N local processes (DDP).

The shortcut replaces this process with ``python -m torch.distributed.run --standalone
--nproc-per-node N -m recforge train <the same arguments without --nproc>``; torchrun sets RANK,
WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT for each process, which then joins the group
(:func:`recforge.training.distributed.distributed_session`). Multi-node runs call torchrun
directly (README, "Scale").
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from recforge.errors import ConfigError


def launch_train(nproc: int | None, threads: int | None, argv: list[str] | None = None, device: str = "cpu") -> None:
    """Start torchrun for ``--nproc N > 1`` (does not return), else prepare this process.

    Without ``--threads`` or ``$RECFORGE_THREADS`` each of the N processes gets
    ``available CPUs // N`` torch threads (N processes with a thread per core each would run
    N times more threads than cores). Inside a torchrun worker of rank > 0, standard output is
    silenced: rank 0 prints the run's summary, once.

    Args:
        nproc: ``--nproc``; None or 1 trains in this process.
        threads: ``--threads`` (None: not given).
        argv: the command line (default ``sys.argv``).
        device: the run's ``train.device``: on the CPU, N may not exceed the CPUs this process
            may use; on CUDA, the GPUs (one process per GPU).

    Raises:
        ConfigError: ``--nproc`` below 1, more processes than CPUs (CPU) or GPUs (CUDA), or
            given inside a process torchrun already started.
    """
    from recforge.training.threads import THREADS_ENV, available_cpus

    if nproc is not None and nproc < 1:
        raise ConfigError(f"--nproc must be >= 1, got {nproc}")
    in_worker = os.environ.get("WORLD_SIZE", "1").strip() not in ("", "0", "1")
    if nproc is not None and nproc > 1 and in_worker:
        raise ConfigError("--nproc starts torchrun itself; under torchrun give --nproc-per-node to torchrun instead")
    if nproc is not None and nproc > 1:
        _check_capacity(nproc, device)
    if nproc is None or nproc == 1:
        if in_worker and os.environ.get("RANK", "0") != "0":
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - for the life of the worker
        return
    args = _without_nproc(list(sys.argv if argv is None else argv)[1:])
    env = dict(os.environ)
    if threads is None and not env.get(THREADS_ENV):
        env[THREADS_ENV] = str(max(1, available_cpus() // nproc))
    env.setdefault("OMP_NUM_THREADS", env.get(THREADS_ENV, "1") if threads is None else str(threads))
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}", "-m", "recforge", *args]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, command, env)


def check_resume(run_dir: Path, nproc: int | None) -> None:
    """Refuse, before torchrun starts N processes that would each fail, a ``--resume`` that the
    run cannot take on ``nproc`` processes: an implicit-feedback (NCF / MF / ItemPop) run, or a run
    trained on another number of processes (its ``last.pt`` holds each process's generator).

    Raises:
        ConfigError: naming the run and what it was trained with.
    """
    if nproc is None or nproc <= 1:
        return
    from recforge.training.records import load_checkpoint, load_run_config

    config = load_run_config(run_dir)
    if config.model_name in ("itempop", "mf", "gmf", "mlp", "neumf"):
        raise ConfigError("--resume is available for tabular (CTR) runs; implicit-feedback runs are short enough to re-run")
    saved = int(load_checkpoint(run_dir, "last.pt").get("world_size", 1))
    if saved != nproc:
        raise ConfigError(f"{run_dir} was trained on {saved} process(es) and cannot be resumed on {nproc}: give --nproc {saved}")


def _check_capacity(nproc: int, device: str) -> None:
    """Refuse more local processes than devices: each holds a full copy of the model, the
    optimiser state and its data, so oversubscribing only adds memory and contention."""
    import torch

    from recforge.training.threads import available_cpus

    if device.startswith("cuda"):
        gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if nproc > gpus:
            raise ConfigError(f"--nproc {nproc} with --device {device} needs {nproc} GPUs (one per process); this machine has {gpus}")
        return
    cpus = available_cpus()
    if nproc > cpus:
        raise ConfigError(
            f"--nproc {nproc} is more than the {cpus} CPU(s) this process may use; each process holds a copy of the model, "
            f"its optimiser and its data, so use --nproc <= {cpus} (torchrun directly if you really mean to oversubscribe)"
        )


def _without_nproc(args: list[str]) -> list[str]:
    """``args`` without ``--nproc N`` / ``--nproc=N``."""
    out, skip = [], False
    for arg in args:
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            out.append(arg)
    return out
