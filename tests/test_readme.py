"""Every command block of README.md runs as written, so the README cannot rot.

The ```bash blocks are read from README.md. Those of the sections in ``RUN_SECTIONS`` ("Using
it", "Your own data", "Comparing models") run line by line, in order, in-process (typer's CliRunner), in a
temporary working directory holding a copy of ``examples/`` (so ``runs/`` and ``report/`` land
there), with ``RECFORGE_DATA_DIR`` set to the shared data as the README's ``export`` line does.
Lines are changed only by the named rules below, so that the whole file runs in about two
minutes on 2 cores:

* ``$NAME`` expands as the shell would, and ``export NAME=VALUE`` lines (but the data directory's)
  set ``NAME`` for the lines after them;
* :func:`rewrite`: one epoch (``--resume``: two, one more than the run it continues), 2 seeds,
  a smaller generated file, ``/tmp/`` into the temporary directory, ``<run-dir>`` into the run
  directory the latest ``train`` printed, ``SMALL_EQUIVALENTS`` of big datasets and the
  ``CHEAPER`` settings of slow models;
* ``SKIPS``: lines that are not run, each with its reason (internet, benchmarks, shell set-up);
* the ``recforge`` lines of the other sections reproduce the results tables (hours of training):
  they are parsed (every option must exist) and their model and dataset names checked, not run.

A line that no rule covers and that is not a ``recforge`` command fails the test: a new kind of
line needs a rule here. The first block (set-up + main job, set-up + tests) is not run either:
its lines must be present as they are and the main job's command line must parse.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import typer
import yaml
from typer.testing import CliRunner

from recforge.cli.app import app
from recforge.data.datasets import DATASETS
from recforge.models import MODELS

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
runner = CliRunner()

MAIN_JOB = ".venv/bin/recforge train neumf --dataset movielens-1m-ncf --factors 8 --pretrain --data-dir ../shared/data"
TEST_JOB = ".venv/bin/python -m pytest -q"
RUN_SECTIONS = ("Using it", "Your own data", "Comparing models: spread and significance")

#: datasets whose commands run on a small equivalent (same kind of data and protocol): 1M ratings
#: take ~20 s an NCF epoch here, 100K ratings ~2 s
SMALL_EQUIVALENTS = {"movielens-1m-ncf": "movielens-100k"}
#: (why, applies to, extra options) keeping a command's model but cutting its cost on 2 shared cores
CHEAPER: list[tuple[str, Callable[[list[str]], bool], list[str]]] = [
    ("DIN and its base model at D=64: 8-25 s an epoch", lambda t: t[1] == "train" and t[2] in ("din", "base"),
     ["--set", "model.embedding_dim=8"]),
    ("pre-trained NeuMF-64 at batch 256 with full-catalogue ranking after each of its three stages: 50 s",
     lambda t: t[1] == "train" and t[2] == "neumf", ["--batch-size", "2048", "--set", "train.full_ranking=false"]),
    ("full-catalogue ranking of every NCF run of a comparison", lambda t: t[1] == "compare" and "gmf" in t,
     ["--set", "train.full_ranking=false"]),
]
#: datasets only available as full Kaggle files (tens of GB), never in the shared data
FULL_KAGGLE = ("criteo", "avazu")
GENERATED_ROWS = "4000"


def _needs_full_kaggle(tokens: list[str]) -> bool:
    """A command on ``criteo`` / ``avazu`` that reads the registered file (not ``--input`` / ``--encoded``)."""
    if tokens[0] != "recforge" or "--input" in tokens or "--encoded" in tokens:
        return False
    names_it = tokens[1:3] in (["data", "info"], ["data", "prepare"]) and len(tokens) > 3
    return (tokens[3] if names_it else _option(tokens, "--dataset")) in FULL_KAGGLE


#: (reason, applies to) for lines that are not run
SKIPS: list[tuple[str, Callable[[list[str]], bool]]] = [
    ("activates the virtualenv: the test runs recforge in-process", lambda t: t[0] in (".", "source")),
    ("sets the data directory: the test sets RECFORGE_DATA_DIR to the shared data itself",
     lambda t: t[0] == "export" and t[1].startswith("RECFORGE_DATA_DIR=")),
    ("needs internet (--download)", lambda t: t[0] == "recforge" and "--download" in t),
    ("needs a full Kaggle file (criteo / avazu) that the shared data does not hold", _needs_full_kaggle),
    ("a benchmark script: minutes on a quiet machine, run by hand, never by the tests",
     lambda t: any(a.startswith("benchmarks/") for a in t)),
    ("installs the benchmarks' peer libraries (internet)", lambda t: t[:3] == ["python3", "-m", "venv"]),
]


def _option(tokens: list[str], name: str) -> str | None:
    return tokens[tokens.index(name) + 1] if name in tokens[:-1] else None


def _set_option(tokens: list[str], name: str, value: str) -> list[str]:
    if name in tokens:
        i = tokens.index(name)
        return [*tokens[: i + 1], value, *tokens[i + 2 :]]
    return [*tokens, name, value]


def rewrite(tokens: list[str], tmp: Path, latest_run: str | None) -> list[str]:
    """The rewrites of the module doc, applied to one ``recforge`` command line."""
    tokens = [a.replace("/tmp/", f"{tmp}/") for a in tokens]
    if any("<run-dir>" in a for a in tokens):
        assert latest_run is not None, f"{shlex.join(tokens)}: <run-dir> before any train command printed its run directory"
        tokens = [a.replace("<run-dir>", latest_run) for a in tokens]
    dataset = _option(tokens, "--dataset")
    if dataset in SMALL_EQUIVALENTS:
        tokens = _set_option(tokens, "--dataset", SMALL_EQUIVALENTS[dataset])
    if tokens[1] in ("train", "compare"):
        tokens = _set_option(tokens, "--epochs", "2" if "--resume" in tokens else "1")
    if tokens[1] == "compare":
        tokens = _set_option(tokens, "--seeds", "2")
    if tokens[1:3] == ["data", "generate"]:
        tokens = _set_option(tokens, "--rows", GENERATED_ROWS)
    if "--resume" not in tokens:  # a resumed run keeps its own config
        for _, applies, extra in CHEAPER:
            if applies(tokens):
                for option, value in zip(extra[::2], extra[1::2]):
                    tokens = [*tokens, option, value] if option == "--set" else _set_option(tokens, option, value)
    return tokens


def readme_blocks() -> list[tuple[str, list[str]]]:
    """(section heading, lines) of every ```bash block of README.md, in order."""
    text = README.read_text()
    blocks = []
    for match in re.finditer(r"^```bash\n(.*?)^```", text, flags=re.S | re.M):
        headings = re.findall(r"^## (.+)$", text[: match.start()], flags=re.M)
        blocks.append((headings[-1] if headings else "", match.group(1).splitlines()))
    return blocks


def parse(args: list[str]) -> dict:
    """The parameters of ``recforge ARGS`` as the CLI would receive them, without running it."""
    group = typer.main.get_command(app)
    with group.make_context("recforge", list(args)) as context:
        command = group
        while hasattr(command, "resolve_command"):  # a group: descend to the subcommand
            name, command, args = command.resolve_command(context, args)
            context = command.make_context(name, args, parent=context)
        return context.params


def test_schema_example_is_the_yaml_the_readme_shows():
    text = README.read_text()
    (shown,) = re.findall(r"^```yaml\n(.*?)^```", text, flags=re.S | re.M)
    assert "--schema examples/adult_features.yaml" in text
    assert (REPO / "examples" / "adult_features.yaml").read_text() == shown
    assert yaml.safe_load(shown)["labels"] == ["income"]


def test_every_readme_command_runs(shared_data, tmp_path, monkeypatch, capsys):
    blocks = readme_blocks()
    setup = [line.split("#")[0].strip() for line in blocks[0][1]]
    assert setup == [f"./scripts/setup && {MAIN_JOB}", f"./scripts/setup --test && {TEST_JOB}"]
    main = parse(shlex.split(MAIN_JOB)[1:])
    assert (main["model"], main["dataset"], main["factors"], main["pretrain"]) == ("neumf", "movielens-1m-ncf", 8, True)
    assert {section for section, _ in blocks} >= set(RUN_SECTIONS)

    shutil.copytree(REPO / "examples", tmp_path / "examples")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RECFORGE_DATA_DIR", str(shared_data))
    latest_run: str | None = None
    ran: list[tuple[str, float]] = []
    not_run: list[tuple[str, str]] = []
    started = time.perf_counter()
    for section, lines in blocks[1:]:
        for line in lines:
            tokens = shlex.split(line, comments=True)
            if not tokens:
                continue
            shown = line.split("#")[0].strip()
            if tokens[0] == "export" and "=" in tokens[1] and not tokens[1].startswith("RECFORGE_DATA_DIR="):
                name, value = tokens[1].split("=", 1)
                monkeypatch.setenv(name, os.path.expandvars(value))
                continue
            tokens = [os.path.expandvars(a) for a in tokens]
            reason = next((why for why, applies in SKIPS if applies(tokens)), None)
            if reason is not None:
                not_run.append((shown, reason))
                continue
            if tokens[0] == ".venv/bin/recforge":
                tokens[0] = "recforge"
            assert tokens[0] == "recforge", f"README line {line!r}: not a recforge command and no rule in SKIPS covers it"
            if section not in RUN_SECTIONS:
                params = parse(tokens[1:])
                named = params.get("models") or ([params["model"]] if "model" in params else [])
                assert {m.removesuffix("+pretrain") for m in named} <= set(MODELS), line
                assert params.get("dataset") in (None, *DATASETS), line
                not_run.append((shown, f"reproduces a results table ({section}): parsed, names checked"))
                continue
            command = rewrite(tokens, tmp_path, latest_run)
            began = time.perf_counter()
            result = runner.invoke(app, command[1:])
            ran.append((shlex.join(command), time.perf_counter() - began))
            print(f"{ran[-1][1]:6.1f} s  {ran[-1][0]}")
            assert result.exit_code == 0, (
                f"README line {line!r}\nran as {shlex.join(command)}\nexit {result.exit_code}:\n"
                f"{result.output[-3000:]}\n{result.exception!r}"
            )
            printed = re.findall(r"^run directory: (\S+)$", result.output, flags=re.M)
            if printed and command[1] == "train":
                latest_run = Path(printed[-1]).name
    with capsys.disabled():
        print(f"\nREADME: {len(ran)} commands run in {time.perf_counter() - started:.0f} s; not run:")
        for line, reason in not_run:
            print(f"  {line}  ({reason})")
    assert any(command.startswith("recforge train deepfm --resume") for command, _ in ran)
    assert {p.name for p in (tmp_path / "report").iterdir()} >= {"uci-adult", "movielens-100k", "criteo"}


def test_the_python_example_of_your_own_data_runs(shared_data, tmp_path, monkeypatch, capsys):
    """The ```python block of "Your own data" runs as written (the README's Python API example)."""
    text = README.read_text()
    section = text[text.index("\n## Your own data") : text.index("\n## ", text.index("\n## Your own data") + 5)]
    (code,) = re.findall(r"^```python\n(.*?)^```", section, flags=re.S | re.M)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RECFORGE_DATA_DIR", str(shared_data))
    exec(compile(code, "README.md (Your own data)", "exec"), {"__name__": "readme_example"})
    printed = capsys.readouterr().out
    assert any(p.is_dir() for p in (tmp_path / "runs").iterdir())
    assert len(printed.strip().splitlines()) == 2  # the run and its test AUC, then five probabilities
