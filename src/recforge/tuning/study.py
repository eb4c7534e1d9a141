"""The Optuna study of a search: RDB storage, TPE sampling, median pruning, an exact trial budget.

Optuna (Akiba et al., KDD 2019, "Optuna: A Next-generation Hyperparameter Optimization
Framework") keeps every trial in a relational database (SQLite by default, any SQLAlchemy URL
for a shared server), so an interrupted search resumes with the same command and several
``recforge tune`` processes can share one study. Sampling is TPE (Bergstra et al., NeurIPS
2011, "Algorithms for Hyper-Parameter Optimization"); pruning is Optuna's ``MedianPruner``
on the per-epoch validation metric (a trial stops when its value at epoch e is worse than the
median of earlier trials at epoch e), reported from the trainers' per-epoch callback.

**The budget is exact.** ``--trials N`` means N finished trials (complete or pruned) in the
study, in total over every process and every resumption. Before a process starts a trial it
counts finished and running trials; when they reach N it waits for the running ones (one may
fail and need replacing) or stops. Two processes can still pass that check at the same moment,
so each new trial then takes a ticket: it may run only while the finished trials plus the running
ones with a smaller trial number (numbers are given in creation order by the storage) stay
below N. The loser of such a race is closed at once as FAIL with the user attribute
``recforge_surplus`` (it never trained) and its process goes back to waiting. A trial
interrupted by Ctrl-C (SIGINT) is recorded as FAIL (user attribute ``recforge_interrupted``)
and does not count; a process killed outright stops sending heartbeats and its trial is failed
by the next process after the grace period. Pruned trials are PRUNED, never FAIL.
"""

from __future__ import annotations

import signal
import threading
import time
import warnings
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator

from recforge.errors import ConfigError, TrainingError

HEARTBEAT_S = 20  # seconds between a running trial's heartbeats
GRACE_S = 120  # a RUNNING trial without a heartbeat for this long belongs to a dead process
SCHEMA_RETRIES = 5  # tries again while another process creates a new database's tables
POLL_S = 2.0  # seconds between looks at the study while other processes finish the last trials


def _optuna() -> Any:
    try:
        import optuna
    except ImportError:
        raise ConfigError("recforge tune needs Optuna: pip install 'recforge[tune]'") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    return optuna


def open_storage(url: str) -> Any:
    """Optuna's RDB storage at SQLAlchemy ``url`` (heartbeats on), created if it is a new file.

    Raises:
        ConfigError: one line naming the URL, for a malformed URL, an unknown database
            dialect or missing driver, or a database that cannot be reached or opened.
    """
    optuna = _optuna()
    kwargs: dict[str, Any] = {}
    if url.rstrip("/") in ("sqlite:", "sqlite:/", "sqlite://") or url.endswith(":memory:"):
        warnings.warn(f"--storage {url} is an in-memory SQLite database: the study is lost when this process ends, "
                      "so it can be neither resumed nor shared; give a file, e.g. sqlite:///study.db", stacklevel=2)
    if url.startswith("sqlite"):
        kwargs["connect_args"] = {"timeout": 60}  # several processes on one file take turns
    for attempt in range(SCHEMA_RETRIES + 1):
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs=kwargs, heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S)
        except Exception as exc:  # noqa: BLE001 - SQLAlchemy, driver and OS errors all mean "cannot use this URL"
            text = str(exc).strip().splitlines()
            reason = text[0] if text else type(exc).__name__
            # Two processes starting on a new database both create Optuna's tables; the slower
            # one fails ("already exists", "UNIQUE constraint failed: alembic_version") and
            # finds the tables in place when it tries again.
            if attempt < SCHEMA_RETRIES and ("already exists" in reason or "alembic_version" in reason):
                time.sleep(0.5 * (attempt + 1))
                continue
            raise ConfigError(f"--storage {url}: cannot open the study database ({type(exc).__name__}: {reason[:200]})") from None
    raise AssertionError("unreachable")  # pragma: no cover


def open_study(
    storage: Any, name: str, direction: str, signature: dict[str, Any], sampler: Any = None, pruner: Any = None, seed: int | None = None
) -> Any:
    """Create the study ``name`` in ``storage``, or load it to resume.

    Args:
        storage: from :func:`open_storage`.
        name: the study name.
        direction: ``maximize`` or ``minimize`` (the monitor's).
        signature: what the search is (model, fixed config, space); a study of the same name
            created for another search is refused rather than mixed with this one.
        sampler: an Optuna sampler (default TPE, seeded with ``seed``).
        pruner: an Optuna pruner (default ``MedianPruner()``: 5 startup trials, no warm-up).
        seed: the default sampler's seed (None: random; give each parallel process its own).

    Raises:
        ConfigError: if the stored study was made for another search or direction.
    """
    optuna = _optuna()
    sampler = sampler if sampler is not None else optuna.samplers.TPESampler(seed=seed)
    pruner = pruner if pruner is not None else optuna.pruners.MedianPruner()
    study = optuna.create_study(study_name=name, storage=storage, direction=direction, sampler=sampler, pruner=pruner, load_if_exists=True)
    stored = study.user_attrs.get("recforge")
    if stored is None:
        study.set_user_attr("recforge", signature)
    elif stored != signature:
        differs = sorted(k for k in set(stored) | set(signature) if stored.get(k) != signature.get(k))
        raise ConfigError(
            f"study {name!r} in the storage belongs to another search (its {', '.join(differs)} differ); "
            "give the same command to resume it, or another --study-name"
        )
    if study.direction.name.lower() != direction:
        raise ConfigError(f"study {name!r} is stored to {study.direction.name.lower()}, but the monitor needs {direction}")
    return study


def finished_states() -> tuple[Any, ...]:
    """The trial states that count towards ``--trials``: COMPLETE and PRUNED."""
    optuna = _optuna()
    return (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)


@dataclass
class SearchOutcome:
    """What one process did in :func:`run_search`.

    Attributes:
        ran: trials this process finished (complete or pruned).
        failed: trials of this process that failed (for example a diverged loss).
        finished: finished trials in the study when the process stopped.
        timed_out: the process stopped at ``timeout_s`` before the study had its budget.
    """

    ran: int
    failed: int
    finished: int
    timed_out: bool


def run_search(
    storage: Any,
    study: Any,
    objective: Callable[[Any], float],
    n_trials: int,
    timeout_s: float | None = None,
    say: Callable[[str], None] = lambda message: None,
) -> SearchOutcome:
    """Run trials of ``study`` until it holds ``n_trials`` finished ones (see the module doc).

    Args:
        storage: the study's storage (:func:`open_storage`), for the running trial's heartbeat.
        study: from :func:`open_study`.
        objective: trains one trial and returns its validation value; raises
            ``optuna.TrialPruned`` to prune, :class:`TrainingError` for a trial that diverged
            (recorded as FAIL, replaced by another trial).
        n_trials: finished trials wanted in the whole study.
        timeout_s: start no new trial after this many seconds (a running one finishes).
        say: progress messages.

    Raises:
        KeyboardInterrupt: after recording the running trial as FAIL (interrupted).
        ConfigError: when as many trials of this process failed as the budget (nothing works).
        Any error of ``objective`` other than TrainingError, after recording the trial as FAIL.
    """
    optuna = _optuna()
    state = optuna.trial.TrialState
    finished = finished_states()
    started = time.monotonic()
    ran = failed = 0
    last_wait = None
    while True:
        optuna.storages.fail_stale_trials(study)  # trials of killed processes (no heartbeat for GRACE_S) become FAIL
        trials = study.get_trials(deepcopy=False)
        done = sum(t.state in finished for t in trials)
        if done >= n_trials:
            return SearchOutcome(ran, failed, done, False)
        if timeout_s is not None and time.monotonic() - started >= timeout_s:
            return SearchOutcome(ran, failed, done, True)
        running = sum(t.state == state.RUNNING for t in trials)
        if done + running >= n_trials:
            if last_wait != (done, running):
                say(f"{done}/{n_trials} trials finished, {running} running in other processes: waiting for them")
                last_wait = (done, running)
            time.sleep(POLL_S)
            continue
        trial = None
        try:  # a Ctrl-C from here on closes the trial as FAIL (interrupted), wherever it lands
            with sigint_deferred(), warnings.catch_warnings():  # heartbeats: see _heartbeat
                warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used with Study.optimize")
                trial = study.ask()
            outcome = _attempt(storage, study, trial, objective, n_trials, done, say)
        except KeyboardInterrupt:
            if trial is not None:
                _close_failed(study, trial, "recforge_interrupted", True)
            raise
        if outcome == "failed":
            failed += 1
            if failed >= n_trials:
                raise ConfigError(f"{failed} trials failed in this process (last: {trial.user_attrs.get('recforge_error')}); check the search space")
        elif outcome != "surplus":
            ran += 1


def _attempt(storage: Any, study: Any, trial: Any, objective: Callable[[Any], float], n_trials: int, done: int, say: Callable[[str], None]) -> str:
    """Run one asked trial and close it: ``surplus`` (its ticket lost), ``pruned``, ``failed``
    (diverged) or ``complete``; any other error closes it as FAIL and is raised."""
    optuna = _optuna()
    state = optuna.trial.TrialState
    with sigint_deferred():
        if not _admitted(study, trial.number, n_trials):
            trial.set_user_attr("recforge_surplus", True)
            study.tell(trial, state=state.FAIL)
            return "surplus"
    say(f"trial {trial.number} ({done + 1}/{n_trials})")
    with _heartbeat(storage, study.study_name, trial.number):
        try:
            value = objective(trial)
        except optuna.TrialPruned:
            with sigint_deferred():
                study.tell(trial, state=state.PRUNED)
            return "pruned"
        except TrainingError as exc:
            with sigint_deferred():
                trial.set_user_attr("recforge_error", str(exc))
                study.tell(trial, state=state.FAIL)
            say(f"trial {trial.number} failed: {exc}")
            return "failed"
        except KeyboardInterrupt:
            raise
        except BaseException as exc:
            _close_failed(study, trial, "recforge_error", f"{type(exc).__name__}: {exc}"[:500])
            raise
    with sigint_deferred():
        study.tell(trial, value)
    return "complete"


def _close_failed(study: Any, trial: Any, attr: str, value: Any) -> None:
    """Record ``trial`` as FAIL, best effort: the process is already stopping with an error."""
    optuna = _optuna()
    try:
        with sigint_deferred():  # a second Ctrl-C waits for this write
            trial.set_user_attr(attr, value)
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
    except Exception:  # noqa: BLE001 - the original error is the one to report; the heartbeat expires anyway
        pass


@contextmanager
def sigint_deferred() -> Iterator[None]:
    """Hold a Ctrl-C (SIGINT) until the block ends, then raise it as KeyboardInterrupt.

    Storage writes run inside: an interrupt in the middle of one would leave the new trial
    RUNNING in the database (or a transaction open) instead of recording it as interrupted.
    Outside the main thread (where signals are not delivered) it does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if caught:
            raise KeyboardInterrupt


def _admitted(study: Any, number: int, n_trials: int) -> bool:
    """Whether the new trial ``number`` may run: the finished trials plus the running trials
    created before it stay below the budget (its ticket, see the module doc)."""
    optuna = _optuna()
    finished = finished_states()
    ahead = sum(
        1 for t in study.get_trials(deepcopy=False)
        if t.state in finished or (t.state == optuna.trial.TrialState.RUNNING and t.number < number)
    )
    return ahead < n_trials


@contextmanager
def _heartbeat(storage: Any, study_name: str, number: int) -> Iterator[None]:
    """Record the running trial's heartbeat every HEARTBEAT_S seconds on a daemon thread."""
    if not hasattr(storage, "record_heartbeat"):
        yield
        return
    trial_id = storage.get_trial_id_from_study_id_trial_number(storage.get_study_id_from_name(study_name), number)
    stop = threading.Event()

    def beat() -> None:
        while True:
            try:
                storage.record_heartbeat(trial_id)
            except Exception:  # noqa: BLE001 - a missed beat is retried; the grace period covers several
                pass
            if stop.wait(HEARTBEAT_S):
                return

    thread = threading.Thread(target=beat, name=f"optuna-heartbeat-{number}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)
