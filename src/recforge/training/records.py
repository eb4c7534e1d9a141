"""Run directories: resolved config, per-epoch metrics, checkpoint and summary, written atomically.

Layout of ``<output-dir>/<dataset>-<model>-<timestamp>-<confighash>/``::

    config.yaml      the fully resolved configuration
    metrics.jsonl    one JSON object per epoch (epoch, train/loss, valid/..., seconds)
    checkpoint.pt    the selected (best-validation) model, optimiser and RNG state
    summary.json     selected epoch, test metrics, timings, versions, git commit
    test_ranks.npz   leave-one-out runs: per-user rank statistics of the test positive (sampled and,
                     when computed, full-catalogue), for per-user paired comparisons
    interactions.npz implicit-feedback runs (NCF, MF, ItemPop; registered dataset or own log):
                     ``train_users``, ``train_items`` (int64 [P] internal ids of the pairs the model
                     trained on, validation hold-out excluded), ``num_users``, ``num_items``
    user_ids.parquet / item_ids.parquet
                     the same runs: one column ``id`` holding the raw id (the log's or the dataset
                     files' own id, any type); row index = internal id. Written and read by
                     :mod:`recforge.data.id_maps` (``load_train_interactions``, ``load_id_maps``)
"""

from __future__ import annotations

import io
import json
import os
import platform
import subprocess
import time
from pathlib import Path
from typing import Any

import torch
import yaml

from recforge import __version__
from recforge.config import ExperimentConfig, from_dict, read_yaml
from recforge.data.files import atomic_write, atomic_write_text
from recforge.errors import ConfigError


class RunRecorder:
    """Creates a run directory and writes its files atomically (temp file + rename).

    Args:
        output_dir: parent folder of run directories (created if needed).
        config: the resolved experiment config.
        tag: optional suffix distinguishing sub-runs (for example ``pretrain-gmf``).
    """

    def __init__(self, output_dir: str | Path, config: ExperimentConfig, tag: str = ""):
        stamp = time.strftime("%Y%m%d-%H%M%S")
        name = f"{config.data.name}-{config.model_name}{'-' + tag if tag else ''}-{stamp}-{config.fingerprint()}"
        base = Path(output_dir)
        path = base / name
        n = 1
        while path.exists():
            n += 1
            path = base / f"{name}-{n}"
        try:
            path.mkdir(parents=True)
        except OSError as exc:
            raise ConfigError(f"cannot create run directory {path}: {exc.strerror}") from None
        self.path = path
        self.epochs: list[dict[str, Any]] = []
        atomic_write_text(path / "config.yaml", yaml.safe_dump(config.to_dict(), sort_keys=False))

    @classmethod
    def reopen(cls, run_dir: str | Path, config: ExperimentConfig) -> "RunRecorder":
        """The recorder of an existing run directory (to resume it); the config is rewritten
        (only ``train.epochs`` may differ) and the epochs logged so far are kept."""
        self = object.__new__(cls)
        self.path = Path(run_dir)
        metrics = self.path / "metrics.jsonl"
        self.epochs = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()] if metrics.is_file() else []
        atomic_write_text(self.path / "config.yaml", yaml.safe_dump(config.to_dict(), sort_keys=False))
        return self

    def log_epoch(self, record: dict[str, Any]) -> None:
        """Add one epoch's record and rewrite ``metrics.jsonl``."""
        self.epochs.append(record)
        atomic_write_text(self.path / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in self.epochs))

    def save_checkpoint(self, state: dict[str, Any], name: str = "checkpoint.pt") -> None:
        """Write ``name`` (default ``checkpoint.pt``) atomically."""

        def write(f: Any) -> None:
            buffer = io.BytesIO()
            torch.save(state, buffer)
            f.write(buffer.getvalue())

        atomic_write(self.path / name, write)

    def write_arrays(self, name: str, **arrays: Any) -> None:
        """Write NumPy arrays as ``name`` (an ``.npz`` file) atomically."""
        import numpy

        def write(f: Any) -> None:
            buffer = io.BytesIO()
            numpy.savez(buffer, **arrays)
            f.write(buffer.getvalue())

        atomic_write(self.path / name, write)

    def write_summary(self, summary: dict[str, Any]) -> None:
        """Write ``summary.json`` with environment facts added."""
        full = {**summary, "environment": environment()}
        atomic_write_text(self.path / "summary.json", json.dumps(full, indent=2) + "\n")


def environment() -> dict[str, Any]:
    """Library versions, machine and git commit, for the record."""
    import numpy

    commit = None
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, cwd=Path(__file__).parent
        ).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        pass
    return {
        "recforge": __version__,
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "python": platform.python_version(),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "torch_threads": torch.get_num_threads(),
        "git_commit": commit,
    }


DATA_DIR_FILE = "data_dir.txt"  # the data directory a run's dataset was read from


def record_data_dir(run_dir: str | Path, data_dir: str | Path | None) -> None:
    """Write the (absolute) data directory a run read its registered dataset from, so that
    ``evaluate`` and ``recommend`` of the run find it again without ``--data-dir``."""
    from recforge.data.files import resolve_data_dir

    atomic_write_text(Path(run_dir) / DATA_DIR_FILE, str(resolve_data_dir(data_dir).resolve()) + "\n")


def run_data_dir(run_dir: str | Path, data_dir: str | Path | None = None) -> str | Path | None:
    """The data directory to re-read a run's dataset from: ``data_dir`` if given, else
    ``$RECFORGE_DATA_DIR`` if set (None: the caller resolves it), else the directory the run
    was trained from (:func:`record_data_dir`) while it still exists, else None (the default)."""
    from recforge.data.files import DATA_DIR_ENV

    if data_dir or os.environ.get(DATA_DIR_ENV):
        return data_dir
    try:
        recorded = (Path(run_dir) / DATA_DIR_FILE).read_text().strip()
    except OSError:
        return None
    return recorded if recorded and Path(recorded).is_dir() else None


def load_run_config(run_dir: str | Path) -> ExperimentConfig:
    """The resolved config of a finished run.

    Raises:
        ConfigError: if the directory is not a run directory.
    """
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise ConfigError(f"{run_dir} is not a run directory: no config.yaml in it")
    return from_dict(read_yaml(path))


def load_checkpoint(run_dir: str | Path, name: str = "checkpoint.pt") -> dict[str, Any]:
    """A checkpoint of a run (CPU tensors): ``checkpoint.pt`` (selected epoch) or ``last.pt``
    (the latest epoch, for resuming).

    Raises:
        ConfigError: if the file is missing or unreadable.
    """
    path = Path(run_dir) / name
    if not path.is_file():
        if (Path(run_dir) / "manifest.json").is_file():  # a newcomer gave a bundle to predict / recommend
            raise ConfigError(
                f"{run_dir} is a model bundle (recforge export), not a run directory: serve it with `recforge serve {run_dir}`, "
                "load it with recforge.serving.bundle.load_bundle, or give this command the run directory it was exported from"
            )
        raise ConfigError(f"{run_dir} has no {name} (the run did not finish an epoch)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is a user-facing error
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"{path}: not a readable recforge checkpoint ({reason})") from None
    if not isinstance(state, dict):
        raise ConfigError(f"{path}: not a recforge checkpoint (expected a dict of states)")
    return state


def load_model_weights(model: torch.nn.Module, state: dict[str, Any], run_dir: str | Path) -> None:
    """Load a checkpoint's ``model`` state into ``model`` (rebuilt from the run's config and schema).

    Raises:
        ConfigError: if the checkpoint has no model state or its tensors do not fit ``model``.
    """
    try:
        model.load_state_dict(state["model"])
    except (RuntimeError, KeyError) as exc:
        first = str(exc).strip().splitlines()
        raise ConfigError(
            f"{run_dir}/checkpoint.pt does not fit the model in its config.yaml ({first[1].strip() if len(first) > 1 else first[0]})"
        ) from None


def find_finished_run(output_dir: str | Path, config: ExperimentConfig) -> Path | None:
    """A finished run directory (``summary.json`` present) in ``output_dir`` whose resolved config
    equals ``config`` (seed included), or None. Unreadable or foreign folders are skipped."""
    return _find_run(Path(output_dir), config, "summary.json")


def find_resumable_run(output_dir: str | Path, config: ExperimentConfig) -> Path | None:
    """An interrupted run directory of ``config`` (``last.pt`` but no ``summary.json``), or None."""
    for run in _matching_runs(Path(output_dir), config):
        if (run / "last.pt").is_file() and not (run / "summary.json").is_file():
            return run
    return None


def _find_run(output_dir: Path, config: ExperimentConfig, marker: str) -> Path | None:
    return next((run for run in _matching_runs(output_dir, config) if (run / marker).is_file()), None)


def _matching_runs(output_dir: Path, config: ExperimentConfig) -> list[Path]:
    if not output_dir.is_dir():
        return []
    found = []
    for run in sorted(output_dir.iterdir()):
        cfg_file = run / "config.yaml"
        if not cfg_file.is_file():
            continue
        try:
            if from_dict(read_yaml(cfg_file)) == config:
                found.append(run)
        except Exception:  # noqa: BLE001 - folders of other versions or tools are not ours to judge
            continue
    return found
