"""recforge tune: a tiny search end to end, the sealed test split, shared and resumed studies,
pruning and bad input. Every search is 1 epoch on movielens-100k (GMF) or uci-adult (DeepFM)
with a few small trials, so the file runs in well under a minute on two cores."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import sys
import time
from pathlib import Path

import optuna
import pytest
from typer.testing import CliRunner

from recforge.cli.app import app
from recforge.errors import ConfigError
from recforge.reporting.runs import find_runs
from recforge.tuning import study as study_module

runner = CliRunner()

# GMF: 4 or 8 factors, one negative per positive, large batches: ~0.3 s a trial.
GMF_SPACE = "params:\n  train.lr: {low: 1.0e-3, high: 1.0e-2, log: true}\n  model.factors: [4, 8]\n"
# DeepFM: small embeddings and one small hidden layer.
DEEPFM_SPACE = (
    "params:\n  train.lr: {low: 1.0e-3, high: 1.0e-2, log: true}\n  model.embedding_dim: [4, 8]\n"
    "  model.hidden_units: [[16], [32]]\n  model.dropout: 0.0\n"
)


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch):
    monkeypatch.setenv("RECFORGE_THREADS", "1")  # bit-identical results, no stalls beside other jobs


def _space(tmp_path: Path, text: str, name: str = "space.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _gmf_args(shared_data: Path, tmp_path: Path, trials: int, db: Path, *extra: str) -> list[str]:
    return [
        "tune", "gmf", "--dataset", "movielens-100k", "--trials", str(trials), "--epochs", "1", "--batch-size", "4096",
        "--set", "train.num_negatives=1", "--space", str(_space(tmp_path, GMF_SPACE)), "--storage", f"sqlite:///{db}",
        "--data-dir", str(shared_data), "--output-dir", str(tmp_path / "runs"), "--quiet", *extra,
    ]


def _trials(db: Path, name: str) -> list:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{db}").get_trials(deepcopy=False)


def _counts(trials: list) -> dict[str, int]:
    out: dict[str, int] = {}
    for t in trials:
        out[t.state.name] = out.get(t.state.name, 0) + 1
    return out


def _summary(run: Path) -> dict:
    return json.loads((run / "summary.json").read_text())


def _sealed(run: Path) -> bool:
    """No test metric in the summary, none per epoch, no per-user test ranks."""
    epochs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return (
        not any(k.startswith("test") for k in _summary(run))
        and not any(k.startswith("test") for e in epochs for k in e)
        and not (run / "test_ranks.npz").exists()
    )


def test_gmf_search_end_to_end_then_the_same_command_reuses_everything(shared_data, tmp_path):
    db = tmp_path / "study.db"
    args = _gmf_args(shared_data, tmp_path, 3, db, "--top-k", "2", "--seeds", "2", "--sampler-seed", "0")
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    trials = _trials(db, "movielens-100k-gmf")
    assert _counts(trials) == {"COMPLETE": 3}
    report = json.loads((tmp_path / "runs" / "tune-movielens-100k-gmf" / "tune.json").read_text())
    assert (tmp_path / "runs" / "tune-movielens-100k-gmf" / "trials.png").stat().st_size > 0
    assert report["trials"] == {"COMPLETE": 3} and len(report["candidates"]) == 2
    winner_runs = {Path(r) for r in report["winner"]["runs"]}
    assert len(winner_runs) == 2 and set(report["test"]) >= {"test/hit_rate@10", "test/ndcg@10"}
    assert all(len(s["values"]) == 2 for s in report["test"].values())
    # Trial and confirmation runs never scored the test split; only the winner's runs were, afterwards.
    runs = sorted(p for p in (tmp_path / "runs").iterdir() if (p / "summary.json").is_file())
    assert len(runs) == 3 + 2  # 3 trials; each candidate's first seed is its trial's run, reused
    for run in runs:
        summary = _summary(run)
        if run in winner_runs:
            assert summary["test_scored_after_selection"] is True and "test/ndcg@10" in summary
            config = (run / "config.yaml").read_text()
            assert "score_test: false" in config and "report_best_test_epoch: false" in config
        else:
            assert _sealed(run), run
    assert {t.user_attrs["run"] for t in trials} <= {str(r) for r in runs}
    # The same command again: the study is finished, every confirmation run is reused and the
    # winner's test metrics are read back, not scored a second time.
    scored = {run: (run / "summary.json").stat().st_mtime_ns for run in winner_runs}
    again = runner.invoke(app, args)
    assert again.exit_code == 0, again.output
    assert _counts(_trials(db, "movielens-100k-gmf")) == {"COMPLETE": 3}
    assert sorted(p for p in (tmp_path / "runs").iterdir() if (p / "summary.json").is_file()) == runs
    assert json.loads((tmp_path / "runs" / "tune-movielens-100k-gmf" / "tune.json").read_text())["winner"] == report["winner"]
    assert {run: (run / "summary.json").stat().st_mtime_ns for run in winner_runs} == scored
    # `recforge report` on the whole folder compares the runs scored on test (the winner's) and
    # says it left the sealed trials out; a sealed trial named alone is an error saying why.
    with pytest.warns(UserWarning, match="left out 3 tune trial run"):
        found = find_runs([tmp_path / "runs"])
    assert {r.path for r in found} == winner_runs
    sealed = next(r for r in runs if r not in winner_runs)
    with pytest.raises(ConfigError, match="tune` trial: its test split was sealed"):
        find_runs([sealed])


def _flip_test_labels(monkeypatch):
    """Poison the test split: every test label inverted, as every reader of the data sees it."""
    from recforge.training import experiment

    real = experiment.load_data

    def poisoned(config, data_dir):
        data = real(config, data_dir)
        return dataclasses.replace(data, test=dataclasses.replace(data.test, labels=1.0 - data.test.labels))

    monkeypatch.setattr(experiment, "load_data", poisoned)


def test_deepfm_choice_is_unchanged_when_the_test_labels_are_poisoned(shared_data, tmp_path, monkeypatch):
    from recforge.tuning.runner import tune

    space = _space(tmp_path, DEEPFM_SPACE)
    values = {"data.name": "uci-adult", "train.epochs": 1, "train.batch_size": 4096}

    def search(folder: str):
        return tune("deepfm", values, 3, space_file=space, top_k=2, seeds=2, output_dir=tmp_path / folder,
                    data_dir=shared_data, sampler_seed=7)

    clean = search("clean")
    _flip_test_labels(monkeypatch)
    poisoned = search("poisoned")
    per_trial = [(t.params, t.value) for t in clean.study.trials]
    assert per_trial == [(t.params, t.value) for t in poisoned.study.trials]  # trials saw the same (validation) values
    assert clean.selection.winner.params == poisoned.selection.winner.params
    assert clean.selection.winner.values == poisoned.selection.winner.values
    # The poison is real: the winner's test AUC, scored once after the choice, is mirrored.
    for a, b in zip(clean.selection.test["test/auc"], poisoned.selection.test["test/auc"]):
        assert a > 0.75 and b == pytest.approx(1.0 - a, abs=1e-6)
    for trial in clean.study.trials:
        run = Path(trial.user_attrs["run"])
        assert run in clean.selection.winner.runs or _sealed(run)


def _fork_cli(args: list[str]):
    """``recforge ARGS`` in a forked process (torch and the data are imported already, so a
    process costs no start-up); its exit code is the command's."""
    import multiprocessing

    import torch

    torch.optim.Adam([torch.zeros(1, requires_grad=True)])  # its first use imports torch._dynamo (seconds): once, here

    def main() -> None:
        result = runner.invoke(app, args)
        if result.exit_code:
            print(result.output, file=sys.stderr, flush=True)  # shown by pytest when the test fails
        os._exit(result.exit_code if isinstance(result.exit_code, int) else 1)

    proc = multiprocessing.get_context("fork").Process(target=main)
    proc.start()
    return proc


def _states_in_db(db: Path) -> dict[str, int]:
    """Trials per state in the SQLite file, read without Optuna (the study may still be being made)."""
    import sqlite3

    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as con:
            return dict(con.execute("SELECT state, count(*) FROM trials GROUP BY state").fetchall())
    except sqlite3.Error:
        return {}


def test_two_processes_on_one_sqlite_study_finish_exactly_n_trials(shared_data, tmp_path):
    db = tmp_path / "study.db"
    procs = [_fork_cli(_gmf_args(shared_data, tmp_path, 5, db, "--top-k", "0", "--sampler-seed", str(seed))) for seed in (1, 2)]
    for proc in procs:
        proc.join(timeout=240)
    assert [p.exitcode for p in procs] == [0, 0]
    trials = _trials(db, "movielens-100k-gmf")
    finished = [t for t in trials if t.state.name in ("COMPLETE", "PRUNED")]
    assert len(finished) == 5
    # any other trial is a claim that lost the race for the last slot and never trained
    assert all(t.user_attrs.get("recforge_surplus") for t in trials if t not in finished)
    assert len({t.user_attrs["run"] for t in finished}) == 5


def test_a_late_claim_beyond_the_budget_is_refused():
    """The ticket rule: of two trials started together for the last slot, only the first runs."""
    study = optuna.create_study(direction="maximize")
    first, second = study.ask(), study.ask()  # both RUNNING, as two processes that passed the pre-check
    assert study_module._admitted(study, first.number, n_trials=1)
    assert not study_module._admitted(study, second.number, n_trials=1)
    study.tell(first, 0.5)
    assert not study_module._admitted(study, second.number, n_trials=1)
    assert study_module._admitted(study, second.number, n_trials=2)


def test_sigint_then_the_same_command_resumes_with_the_finished_trials(shared_data, tmp_path):
    db = tmp_path / "study.db"
    args = _gmf_args(shared_data, tmp_path, 4, db, "--top-k", "0", "--sampler-seed", "3")
    proc = _fork_cli(args)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.is_alive():
        states = _states_in_db(db)
        if states.get("COMPLETE", 0) >= 1 and states.get("RUNNING", 0) == 1:
            break
        time.sleep(0.01)
    assert proc.is_alive(), "the search ended before it could be interrupted"
    os.kill(proc.pid, signal.SIGINT)  # Ctrl-C while a trial runs
    proc.join(timeout=60)
    assert proc.exitcode == 130
    stopped = _trials(db, "movielens-100k-gmf")
    assert not any(t.state.name == "RUNNING" for t in stopped)
    (interrupted,) = [t for t in stopped if t.state.name == "FAIL"]
    assert interrupted.user_attrs.get("recforge_interrupted") is True
    done = {t.number: (t.params, t.value) for t in stopped if t.state.name == "COMPLETE"}
    assert 1 <= len(done) < 4
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    after = _trials(db, "movielens-100k-gmf")
    complete = {t.number: (t.params, t.value) for t in after if t.state.name == "COMPLETE"}
    assert len(complete) == 4
    assert all(complete[n] == v for n, v in done.items())  # the finished trials were reused, not re-run
    assert len(after) == len(stopped) + 4 - len(done)  # only the remainder was run


def test_a_pruned_trial_is_recorded_as_pruned_never_failed(shared_data, tmp_path):
    from recforge.tuning.runner import tune

    values = {"data.name": "movielens-100k", "train.epochs": 2, "train.batch_size": 4096, "train.num_negatives": 1}
    # NDCG is never above 1.1: the pruner stops every trial after its first epoch's report.
    result = tune("gmf", values, 2, space_file=_space(tmp_path, GMF_SPACE), top_k=1, output_dir=tmp_path / "runs",
                  data_dir=shared_data, pruner=optuna.pruners.ThresholdPruner(lower=1.1))
    trials = result.study.trials
    assert [t.state.name for t in trials] == ["PRUNED", "PRUNED"]
    assert all(sorted(t.intermediate_values) == [1] for t in trials)  # stopped after epoch 1 of 2
    assert result.outcome.finished == 2 and result.selection is None  # nothing completed to confirm


@pytest.mark.parametrize(
    ("space", "extra", "message"),
    [
        ("params:\n  train.lrr: {low: 0.001, high: 0.01}\n", [], "unknown parameter 'train.lrr'"),
        ("params:\n  train.lr: {low: 0.01, high: 0.001}\n", [], "train.lr: empty range: low 0.01 > high 0.001"),
        ("params:\n  model.factors: []\n", [], "model.factors: empty choice list"),
        ("params:\n  model.dropout: {low: 0.0, high: 0.5}\n", [], "model.dropout: model gmf does not have this parameter"),
        ("params:\n  train.num_negatives: {low: 1, high: 4}\n", ["--set", "train.num_negatives=2"], "also fixed by the command"),
        ("params:\n  model.factors: {low: 0, high: 8}\n", [], "model.factors must be >= 1, got 0"),
        (None, ["--storage", "sqlite:////nonexistent-folder/deeper/study.db"], "--storage sqlite:////nonexistent-folder/deeper/study.db: cannot open"),
        (None, ["--storage", "nosuchdb://user@localhost/study"], "--storage nosuchdb://user@localhost/study: cannot open"),
        (None, ["--timeout", "soon"], "--timeout expects a duration"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(shared_data, tmp_path, space, extra, message):
    args = ["tune", "gmf", "--dataset", "movielens-100k", "--trials", "2", "--epochs", "1", "--data-dir", str(shared_data),
            "--output-dir", str(tmp_path / "runs"), "--quiet", *extra]
    if space is not None:
        args += ["--space", str(_space(tmp_path, space))]
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and message in " ".join(result.output.split()), result.output
    assert "Traceback" not in result.output


def test_timeout_stops_before_the_next_trial_and_says_so(shared_data, tmp_path):
    db = tmp_path / "study.db"
    result = runner.invoke(app, [*_gmf_args(shared_data, tmp_path, 3, db), "--timeout", "0.001s"])
    assert result.exit_code == 0, result.output
    assert "stopped by --timeout with 0 of 3 trials finished" in result.output
    assert _trials(db, "movielens-100k-gmf") == []


def test_a_killed_process_loses_no_trial(shared_data, tmp_path, monkeypatch):
    """SIGKILL leaves its trial RUNNING; once its heartbeat is older than the grace period the
    next process records it as FAIL and runs a replacement, so the budget is still met."""
    db = tmp_path / "study.db"
    args = _gmf_args(shared_data, tmp_path, 2, db, "--top-k", "0", "--sampler-seed", "5")
    proc = _fork_cli(args)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.is_alive() and _states_in_db(db).get("RUNNING", 0) == 0:
        time.sleep(0.01)
    assert proc.is_alive(), "the search ended before it could be killed"
    time.sleep(0.2)  # past the trial's first heartbeat
    os.kill(proc.pid, signal.SIGKILL)
    proc.join(timeout=30)
    assert _states_in_db(db).get("RUNNING") == 1
    monkeypatch.setattr(study_module, "GRACE_S", 1)
    monkeypatch.setattr(study_module, "POLL_S", 0.2)
    time.sleep(1.1)
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    states = _counts(_trials(db, "movielens-100k-gmf"))
    assert states.get("COMPLETE", 0) + states.get("PRUNED", 0) == 2 and states.get("FAIL") == 1 and "RUNNING" not in states
