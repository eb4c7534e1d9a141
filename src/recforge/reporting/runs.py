"""Finished run directories as records: resolved config, summary, per-epoch curves, test ranks."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from recforge.config import ExperimentConfig
from recforge.errors import ConfigError
from recforge.training.records import load_run_config


@dataclass
class RunRecord:
    """One finished run.

    Attributes:
        path: the run directory.
        config: its resolved config.
        summary: ``summary.json``.
        history: ``metrics.jsonl``, one dict per epoch.
        label: the name the run's group gets in reports (the model name, ``+pretrain`` for
            pre-trained NeuMF; set by :func:`label_runs` when configs of one model differ).
    """

    path: Path
    config: ExperimentConfig
    summary: dict[str, Any]
    history: list[dict[str, Any]]
    label: str = ""
    _ranks: dict[str, np.ndarray] | None = field(default=None, repr=False)

    @property
    def seed(self) -> int:
        return self.config.seed

    @property
    def group_key(self) -> str:
        """Fingerprint of the config with the seed left out: runs that differ only by seed share it."""
        return self.config.replace(seed=0).fingerprint()

    def test_metrics(self) -> dict[str, float]:
        """Numeric test metrics of the summary (``test/...`` and ``test_full/...``)."""
        return {
            k: float(v) for k, v in self.summary.items()
            if k.startswith(("test/", "test_full/")) and isinstance(v, (int, float)) and not isinstance(v, bool)
        }

    def ranks(self) -> dict[str, np.ndarray] | None:
        """Per-user test rank statistics (``users``, ``greater``, ``ties``, optionally
        ``full_greater`` / ``full_ties``), or None for runs without them (CTR runs, older runs)."""
        if self._ranks is None:
            path = self.path / "test_ranks.npz"
            if not path.is_file():
                return None
            with np.load(path) as f:
                self._ranks = {k: f[k] for k in f.files}
        return self._ranks


def load_run(path: str | Path) -> RunRecord:
    """Read a finished run directory.

    Raises:
        ConfigError: if ``path`` is not a finished run (no ``config.yaml`` or ``summary.json``) or a
            file in it is not valid JSON.
    """
    path = Path(path)
    if not path.is_dir():
        raise ConfigError(f"{path} is not a run directory (give the folder that holds config.yaml and summary.json)")
    try:
        config = load_run_config(path)
    except ConfigError as exc:
        raise ConfigError(f"{path / 'config.yaml'}: {exc}") from None
    summary_file = path / "summary.json"
    if not summary_file.is_file():
        raise ConfigError(f"{path} is not a finished run: no summary.json (interrupted? resume it or train it again)")
    summary = _read_json(summary_file)
    if not isinstance(summary, dict):
        raise ConfigError(f"{summary_file}: expected a JSON object, found {type(summary).__name__}")
    metrics = path / "metrics.jsonl"
    history = []
    if metrics.is_file():
        for n, line in enumerate(metrics.read_text().splitlines(), start=1):
            if line.strip():
                record = _read_json(metrics, line, n)
                if isinstance(record, dict):
                    history.append(record)
    label = config.model_name + ("+pretrain" if config.pretrain.enabled else "")
    return RunRecord(path, config, summary, history, label)


def _read_json(path: Path, text: str | None = None, line: int | None = None) -> Any:
    try:
        return json.loads(path.read_text() if text is None else text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        where = f"{path}, line {line}" if line else str(path)
        raise ConfigError(f"{where}: not valid JSON ({exc})") from None


def find_runs(paths: list[str | Path], dataset: str | None = None) -> list[RunRecord]:
    """Finished runs named by ``paths``: run directories, or folders holding run directories.

    Unfinished run directories inside a folder are skipped; a named run directory that is
    unfinished is an error. Labels are given over all the runs found; report several datasets
    with :func:`by_dataset`, which labels each dataset's runs on their own.

    Args:
        paths: run directories or folders holding them.
        dataset: keep only the runs of this dataset (``data.name``).

    Raises:
        ConfigError: if a path does not exist, nothing finished is found, or no run is of
            ``dataset`` (the datasets found are listed).
    """
    runs: list[RunRecord] = []
    sealed: list[str] = []
    for given in paths:
        path = Path(given)
        if not path.exists():
            raise ConfigError(f"{path} does not exist")
        if not path.is_dir():
            raise ConfigError(f"{path} is a file; give run directories or folders holding them")
        if (path / "config.yaml").is_file():
            run = load_run(path)
            if not run.test_metrics() and not run.config.train.score_test:
                raise ConfigError(f"{path} is a `recforge tune` trial: its test split was sealed (no test metrics); "
                                  "report the tune's confirmation runs (its tune.json lists the winner's), or the folder")
            runs.append(run)
            continue
        for child in sorted(path.iterdir()):
            if (child / "config.yaml").is_file() and (child / "summary.json").is_file():
                run = load_run(child)
                sealed_trial = not run.config.train.score_test and not run.test_metrics()  # winners are scored after the choice
                (sealed if sealed_trial else runs).append(run)
    if sealed:
        import warnings

        warnings.warn(f"left out {len(sealed)} tune trial run(s), whose test split was sealed (no test metrics): "
                      "the report compares the runs that were scored on test", stacklevel=2)
    if not runs:
        found = f" ({len(sealed)} tune trials, none scored on test)" if sealed else ""
        raise ConfigError(f"no finished runs (directories with config.yaml and summary.json) in {', '.join(map(str, paths))}{found}")
    if dataset is not None:
        found = sorted({r.config.data.name for r in runs})
        runs = [r for r in runs if r.config.data.name == dataset]
        if not runs:
            raise ConfigError(f"--dataset {dataset}: no finished runs of it in {', '.join(map(str, paths))} (found: {', '.join(found)})")
    return label_runs(runs)


def by_dataset(runs: list[RunRecord]) -> dict[str, list[RunRecord]]:
    """The runs grouped by dataset (``data.name``, sorted), each group labelled on its own
    (:func:`label_runs`), so the settings that tell a dataset's groups apart never include the
    dataset itself."""
    groups: dict[str, list[RunRecord]] = {}
    for run in runs:
        groups.setdefault(run.config.data.name, []).append(run)
    return {name: label_runs(groups[name]) for name in sorted(groups)}


def label_runs(runs: list[RunRecord]) -> list[RunRecord]:
    """Give every group of runs (same config but the seed) a distinct label, in place.

    Groups of one model with different configs are told apart by the settings that differ, for
    example ``gmf (factors=16)``; when more than three settings differ, by a short config
    fingerprint in brackets.
    """
    def base(run: RunRecord) -> str:
        return run.config.model_name + ("+pretrain" if run.config.pretrain.enabled else "")

    groups: dict[str, dict[str, dict[str, Any]]] = {}
    for run in runs:
        groups.setdefault(base(run), {})[run.group_key] = _flat(run.config.replace(seed=0).to_dict())
    names: dict[tuple[str, str], str] = {}
    for name, configs in groups.items():
        if len(configs) == 1:
            names.update({(name, key): name for key in configs})
            continue
        keys = sorted({k for c in configs.values() for k in c})
        differing = [k for k in keys if len({repr(c.get(k)) for c in configs.values()}) > 1]
        # Paths of pre-trained runs differ whenever anything else does: name the settings instead.
        differing = [k for k in differing if not k.endswith("_run")] or differing
        for key, flat in configs.items():
            if len(differing) <= 3:
                shown = ", ".join(f"{k.split('.')[-1]}={_short(flat.get(k))}" for k in differing)
                names[(name, key)] = f"{name} ({shown})"
            else:
                names[(name, key)] = f"{name} [{key[:6]}]"
    for run in runs:
        run.label = names[(base(run), run.group_key)]
    return runs


def _flat(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_flat(v, f"{prefix}{k}."))
        return out
    return {prefix.rstrip("."): value}


def _short(value: Any) -> str:
    text = json.dumps(value) if isinstance(value, (list, dict)) else str(value)
    return text if len(text) <= 24 else text[:21] + "..."
