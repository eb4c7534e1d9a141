"""`recforge data info NAME`: what was verified and which raw columns a schema can name."""

import shutil

import pytest
from typer.testing import CliRunner

import recforge.cli.app as cli
from recforge.cli.app import app

runner = CliRunner()


@pytest.fixture(autouse=True)
def _wide_tables(monkeypatch):
    monkeypatch.setattr(cli.out, "width", 1000)  # one table row per line, however long


def _row(output, name):
    (line,) = [line for line in output.splitlines() if line.startswith(f"│ {name} ")]
    return line.split("│")[2].strip()


def test_info_lists_checksums_and_raw_columns(shared_data):
    result = runner.invoke(app, ["data", "info", "uci-adult", "--data-dir", str(shared_data)])
    assert result.exit_code == 0, result.output
    assert _row(result.output, "checksums") == "verified: sha256 of adult.data.gz, adult.test.gz"
    columns = _row(result.output, "raw columns")
    assert columns.startswith("17: age, workclass, fnlwgt, education,") and "capital_gain" in columns and "occupation" in columns

    implicit = runner.invoke(app, ["data", "info", "movielens-100k", "--data-dir", str(shared_data)])
    assert implicit.exit_code == 0, implicit.output
    assert _row(implicit.output, "checksums").startswith("verified: sha256 of u.data.gz")
    assert _row(implicit.output, "raw columns").startswith("none: --schema applies to tabular datasets")


def test_info_says_what_stands_in_for_a_missing_checksum(shared_data, tmp_path):
    (tmp_path / "avazu").mkdir()  # the full-Avazu source (no published checksum) on a small file
    shutil.copy(shared_data / "avazu-head-10k" / "train.gz", tmp_path / "avazu" / "train.gz")
    result = runner.invoke(app, ["data", "info", "avazu", "--data-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert _row(result.output, "checksums") == "none published; checked instead: train.gz present and its first line parsed"
    assert _row(result.output, "raw columns").startswith("27: id, click, hour, C1,")
