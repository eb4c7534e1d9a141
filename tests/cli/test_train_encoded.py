"""`recforge train MODEL --dataset criteo --encoded DIR` on the folder `data prepare criteo --input` wrote."""

import json

import pytest
import yaml
from typer.testing import CliRunner

from recforge.cli.app import app

runner = CliRunner()


@pytest.fixture(scope="module")
def encoded(tmp_path_factory):
    folder = tmp_path_factory.mktemp("criteo")
    made = runner.invoke(app, ["data", "generate", "criteo", "--rows", "4000", "--output", str(folder / "criteo.txt")])
    assert made.exit_code == 0, made.output
    prepared = runner.invoke(app, ["data", "prepare", "criteo", "--input", str(folder / "criteo.txt"),
                                   "--output", str(folder / "encoded"), "--min-count", "2", "--quiet"])
    assert prepared.exit_code == 0, prepared.output
    return folder / "encoded"


def test_train_and_evaluate_on_an_encoded_folder(encoded, tmp_path, monkeypatch):
    monkeypatch.chdir(encoded.parent.parent)  # a relative --encoded is stored absolute: evaluate works from elsewhere
    relative = encoded.relative_to(encoded.parent.parent)
    result = runner.invoke(app, ["train", "deepfm", "--dataset", "criteo", "--encoded", str(relative), "--epochs", "1",
                                 "--set", "model.hidden_units=[16]", "--output-dir", str(tmp_path / "runs"), "--quiet"])
    assert result.exit_code == 0, result.output
    (run,) = (tmp_path / "runs").iterdir()
    assert yaml.safe_load((run / "config.yaml").read_text())["data"]["encoded"] == str(encoded)
    meta = json.loads((encoded / "meta.json").read_text())
    assert json.loads((run / "summary.json").read_text())["rows"] == meta["info"]["rows"]
    monkeypatch.chdir(tmp_path)
    scored = runner.invoke(app, ["evaluate", str(run)])
    assert scored.exit_code == 0, scored.output
    assert "test/auc" in scored.output


@pytest.mark.parametrize(
    "dataset, folder, extra, message",
    [
        ("uci-adult", "encoded", [], "data.encoded applies to Criteo-format datasets (criteo, criteo-head-10k) and to your own tables, not 'uci-adult'"),
        ("criteo-head-10k", "encoded", [], "was encoded as 'criteo', not 'criteo-head-10k'; train it with --dataset criteo"),
        ("criteo", ".", [], "is not an encoded folder (no meta.json)"),
        ("criteo", "missing", [], "no such folder"),
        ("criteo", "encoded", ["--schema", "x.yaml"], "data.schema and data.tasks cannot be given with it"),
    ],
)
def test_encoded_folder_errors_are_one_line(encoded, tmp_path, dataset, folder, extra, message):
    path = encoded if folder == "encoded" else encoded.parent / folder
    result = runner.invoke(app, ["train", "deepfm", "--dataset", dataset, "--encoded", str(path), *extra,
                                 "--output-dir", str(tmp_path), "--quiet"])
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert not any(tmp_path.iterdir())


def test_a_tabular_cache_folder_is_not_an_encoded_criteo_folder(encoded, tmp_path):
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "meta.json").write_text(json.dumps({"name": "criteo", "info": {}}))  # as TabularSource caches
    result = runner.invoke(app, ["train", "deepfm", "--dataset", "criteo", "--encoded", str(tmp_path / "cache"), "--quiet"])
    assert result.exit_code == 2 and 'has no "format": 1' in result.output
