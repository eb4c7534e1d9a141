"""Model bundles: eager round trip without the run or the data, checksums and format version
enforced, failed exports leave nothing behind, pair models recommend from their bundle."""

from __future__ import annotations

import functools
import json
import os
import shutil

import numpy as np
import pyarrow as pa
import pytest
import torch
import yaml

from recforge.config import ExperimentConfig, from_dict
from recforge.data.id_maps import write_run_artefacts
from recforge.data.schema import user_item_schema
from recforge.errors import ConfigError, DataError
from recforge.models import build_model, get_model_entry
from recforge.serving import bundle as bundle_module
from recforge.serving.bundle import export_bundle, export_summary, load_bundle, read_manifest
from recforge.serving.predictor import Predictor
from recforge.serving.recommender import Recommender
from recforge.training.experiment import run_experiment
from tests.serving.test_export import randomize, raw_rows, write_run


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".partial"))


@pytest.mark.parametrize("name", ["deepfm", "din", "mmoe"])
def test_eager_round_trip_scores_identical_without_run_or_data(name, tmp_path, monkeypatch):
    run = write_run(tmp_path, name)
    rows = raw_rows(300, seed=5)
    expected = Predictor.from_run(run).predict(rows)
    manifest = export_bundle(run, tmp_path / "out" / "bundle")
    assert manifest["formats"] == ["eager"] and manifest["format_version"] == 1
    assert set(manifest["files"]) == {"config.yaml", "weights.pt", "schema.json", "preprocessing.json"}
    assert manifest["versions"]["torch"] == torch.__version__ and manifest["versions"]["recforge"]
    shutil.rmtree(run)  # the bundle must stand alone
    monkeypatch.setenv("RECFORGE_DATA_DIR", str(tmp_path / "no-data-here"))
    predictor = Predictor.from_bundle(tmp_path / "out" / "bundle")
    got = predictor.predict(rows)
    assert list(got) == list(expected)
    for task in expected:
        assert np.array_equal(got[task], expected[task])


@pytest.fixture()
def bundle(tmp_path):
    run = write_run(tmp_path, "deepfm")
    export_bundle(run, tmp_path / "bundle")
    return tmp_path / "bundle"


@pytest.mark.parametrize("name", ["weights.pt", "preprocessing.json", "config.yaml", "schema.json"])
def test_tampered_file_is_refused_naming_it(bundle, name):
    path = bundle / name
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(DataError, match=f"{name}: sha256 .* does not match the manifest"):
        load_bundle(bundle)


def test_missing_file_is_refused_naming_it(bundle):
    (bundle / "weights.pt").unlink()
    with pytest.raises(DataError, match="weights.pt: missing"):
        load_bundle(bundle)


@pytest.mark.parametrize("version", [2, 0, "1", None, True])
def test_unknown_format_version_is_refused(bundle, version):
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["format_version"] = version
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ConfigError, match=r"manifest.json: bundle format version .* is not supported"):
        load_bundle(bundle)


def test_not_a_bundle(tmp_path):
    with pytest.raises(ConfigError, match="not a model bundle: it has no manifest.json"):
        load_bundle(tmp_path)
    with pytest.raises(ConfigError, match="not a model bundle: it does not exist"):
        load_bundle(tmp_path / "nothing")


def test_backend_the_bundle_lacks_is_refused(bundle):
    with pytest.raises(ConfigError, match="holds no onnx graph .*--format onnx"):
        load_bundle(bundle, backend="onnx")
    with pytest.raises(ConfigError, match="unknown backend 'tensorrt'"):
        load_bundle(bundle, backend="tensorrt")


def test_unwritable_output_folder_fails_cleanly(tmp_path):
    run = write_run(tmp_path, "lr")
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(ConfigError, match="cannot write the bundle .*a-file/bundle"):
        export_bundle(run, blocker / "bundle")
    assert blocker.read_text() == "not a folder" and _leftovers(tmp_path) == []
    if os.geteuid() != 0:  # root writes anywhere: the permission case needs an ordinary user
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        with pytest.raises(ConfigError, match="cannot write the bundle"):
            export_bundle(run, locked / "bundle")
        assert list(locked.iterdir()) == []


def test_existing_output_folder_is_not_overwritten(tmp_path, bundle):
    run = write_run(tmp_path, "lr")
    before = read_manifest(bundle)
    with pytest.raises(ConfigError, match="already exists and is not empty"):
        export_bundle(run, bundle)
    assert read_manifest(bundle) == before
    (tmp_path / "empty").mkdir()
    export_bundle(run, tmp_path / "empty")  # an empty folder is fine
    assert read_manifest(tmp_path / "empty")["model"] == "lr"


def test_run_without_checkpoint_fails_and_writes_nothing(tmp_path):
    run = write_run(tmp_path, "deepfm")
    (run / "checkpoint.pt").unlink()
    with pytest.raises(ConfigError, match="has no checkpoint.pt"):
        export_bundle(run, tmp_path / "out" / "bundle", ("onnx",), rows=raw_rows(8, seed=1))
    assert not (tmp_path / "out").exists()
    with pytest.raises(ConfigError, match="not a run directory"):
        export_bundle(tmp_path / "no-run", tmp_path / "bundle")
    with pytest.raises(ConfigError, match="unknown export format 'pickle'"):
        export_bundle(run, tmp_path / "bundle", ("pickle",))


def test_failed_parity_check_fails_the_export_and_leaves_nothing(tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime")
    run = write_run(tmp_path, "deepfm")
    strict = functools.partial(bundle_module.check_parity, tolerance=-1.0)  # no graph can pass this
    monkeypatch.setattr(bundle_module, "check_parity", strict)
    with pytest.raises(ConfigError, match="the torchscript export failed its parity check: max .* at batch size 1"):
        export_bundle(run, tmp_path / "bundle", ("torchscript", "onnx"), rows=raw_rows(16, seed=1))
    assert not (tmp_path / "bundle").exists() and _leftovers(tmp_path) == []


def test_summary_line_names_formats_and_parity(tmp_path):
    run = write_run(tmp_path, "fm")
    manifest = export_bundle(run, tmp_path / "bundle", ("torchscript",), rows=raw_rows(32, seed=1))
    line = export_summary(manifest, tmp_path / "bundle")
    assert "fm; eager, torchscript" in line and "torchscript parity: max |exported - eager| =" in line
    assert "B = 1, 7, 1024 (32 given rows)" in line and "\n" not in line


def write_pair_run(root, name):
    """A (user, item) run as ``recforge train`` leaves it: config, checkpoint with the table
    sizes, interactions.npz and raw-id maps (integer user ids, string item ids)."""
    schema = user_item_schema(13, 29)
    config = ExperimentConfig(model_name=name, model=get_model_entry(name).config_cls())
    model = build_model(name, schema, config.model)
    randomize(model, 0)
    rng = np.random.default_rng(0)
    users, items = rng.integers(0, 13, 200), rng.integers(0, 29, 200)
    if name == "itempop":
        model.fit_interactions(users, items)
    run = root / f"run-{name}"
    run.mkdir()
    (run / "config.yaml").write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
    torch.save({"model": model.state_dict(), "schema": {"num_users": 13, "num_items": 29}}, run / "checkpoint.pt")
    write_run_artefacts(run, users, items, 13, 29, pa.array(np.arange(100, 113)), pa.array([f"m{i}" for i in range(29)]))
    return run


@pytest.mark.parametrize("name", ["mf", "gmf", "mlp", "neumf"])
def test_pair_model_bundle_scores_pairs_and_recommends(name, tmp_path):
    pytest.importorskip("onnxruntime")
    run = write_pair_run(tmp_path, name)
    manifest = export_bundle(run, tmp_path / "bundle", ("torchscript", "onnx"))
    assert manifest["kind"] == "pairs" and [i["name"] for i in manifest["signature"]["inputs"]] == ["user", "item"]
    for fmt in ("torchscript", "onnx"):
        assert manifest["parity"][fmt]["max_abs_diff_all"] <= 1e-5 and manifest["parity"][fmt]["rows"] == "200 training pairs"
    expected = Recommender.from_run(run).recommend([100, 105, 999], k=5)
    shutil.rmtree(run)
    recommender = load_bundle(tmp_path / "bundle")
    assert isinstance(recommender, Recommender)
    assert recommender.recommend([100, 105, 999], k=5).equals(expected)
    with pytest.raises(ConfigError, match="pair model"):
        Predictor.from_bundle(tmp_path / "bundle")
    with pytest.raises(ConfigError, match="for use outside recforge"):
        load_bundle(tmp_path / "bundle", backend="onnx")


def test_itempop_exports_eager_only(tmp_path):
    run = write_pair_run(tmp_path, "itempop")
    with pytest.raises(ConfigError, match="itempop run: its scores are training counts.*eager only"):
        export_bundle(run, tmp_path / "bundle", ("onnx",))
    assert not (tmp_path / "bundle").exists()
    export_bundle(run, tmp_path / "bundle")
    top = load_bundle(tmp_path / "bundle").recommend([100], k=3)
    assert top.equals(Recommender.from_run(run).recommend([100], k=3))


def test_export_of_a_trained_run_checks_parity_on_its_test_split(shared_data, tmp_path):
    pytest.importorskip("onnxruntime")
    config = from_dict(
        {"model": {"name": "deepfm", "hidden_units": [16]}, "data": {"name": "uci-adult"},
         "train": {"epochs": 1, "batch_size": 1024}, "seed": 1}
    )
    run = run_experiment(config, data_dir=shared_data, output_dir=tmp_path / "runs").path
    manifest = export_bundle(run, tmp_path / "bundle", ("onnx",), data_dir=shared_data)
    record = manifest["parity"]["onnx"]
    assert record["rows"] == "1024 rows of the uci-adult test split" and record["max_abs_diff_all"] <= 1e-5
    assert set(record["max_abs_diff"]) == {"1", "7", "1024"}


def test_a_bundle_given_where_a_run_directory_is_expected_says_so(tmp_path):
    """`recforge predict BUNDLE` said 'has no checkpoint.pt (the run did not finish an epoch)'."""
    from recforge.errors import ConfigError
    from recforge.training.records import load_checkpoint

    (tmp_path / "manifest.json").write_text("{}")
    with pytest.raises(ConfigError, match="is a model bundle .*recforge serve"):
        load_checkpoint(tmp_path)
