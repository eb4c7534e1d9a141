"""Compiled scoring graphs (TorchScript, ONNX): parity with the eager model on every registered
feature-row model for B = 1, 7 and 1024, the OOV id, inputs by name, dynamic history length."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch
import yaml
from torch import nn

from recforge.config import ExperimentConfig
from recforge.data.preprocessing import OOV_ID, PADDING_ID, EncodedColumns, Preprocessor
from recforge.data.schema import FeatureSpec, Schema
from recforge.models import MODELS, build_model, get_model_entry
from recforge.serving.bundle import export_bundle, load_bundle, read_manifest
from recforge.serving.export import CompiledPredictor, eager_probabilities, load_runtime
from recforge.serving.graph import GraphSignature
from recforge.serving.predictor import PAIR_MODELS, Predictor

MULTI_TASK = ("adatt", "mmoe", "ple", "shared_bottom")
ROW_MODELS = sorted(set(MODELS) - set(PAIR_MODELS))  # every CTR, sequence and multi-task model
USERS, ITEMS, CATEGORIES, MAX_LENGTH = 20, 40, 6, 5
COMPILED = ("torchscript", "onnx")


def declared_schema(labels: tuple[str, ...], dense: bool = True) -> Schema:
    """A schema with every kind of input: plain, crossed and bucketized sparse fields, two dense
    features (unless not ``dense``) and a behaviour history sharing the item table (so DIN runs on it too)."""
    numeric = (FeatureSpec("price", "dense", transform="log1p_standardize"), FeatureSpec("age", "dense", transform="standardize"))
    return Schema(
        features=(
            FeatureSpec("user"),
            FeatureSpec("item"),
            FeatureSpec("category"),
            FeatureSpec("user_x_category", cross=("user", "category")),
            FeatureSpec("age_bucket", source="age", bucketize="quantile", num_buckets=4),
            *(numeric if dense else ()),
            FeatureSpec("history", "sequence", table="item", max_length=MAX_LENGTH),
        ),
        labels=labels,
    )


def raw_rows(n: int, seed: int, labels: tuple[str, ...] = ()) -> pa.Table:
    """``n`` raw rows; users and items drawn from ranges the 400 training rows do not all cover,
    histories of 0-7 items (longer ones are cut to the last 5)."""
    rng = np.random.default_rng(seed)
    users, items = rng.integers(0, USERS, n), rng.integers(0, ITEMS, n)
    history = [[f"i{j}" for j in rng.integers(0, ITEMS, k)] for k in rng.integers(0, 8, n)]
    columns = {
        "user": pa.array([f"u{u}" for u in users]),
        "item": pa.array([f"i{i}" for i in items]),
        "category": pa.array([f"c{i % CATEGORIES}" for i in items]),
        "price": pa.array(rng.gamma(2.0, 10.0, n)),
        "age": pa.array(rng.integers(18, 80, n).astype(np.float64)),
        "history": pa.array(history, pa.list_(pa.string())),
    }
    for label in labels:
        columns[label] = pa.array((rng.random(n) < 0.3).astype(np.float64))
    return pa.table(columns)


def randomize(model: nn.Module, seed: int) -> None:
    """Embeddings (and first-order weights) of unit-ish scale instead of the 1e-4 initialisation,
    so scores spread and every id, the OOV row included, moves them; padding rows stay zero."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Embedding):
                module.weight.copy_(torch.randn(module.weight.shape, generator=g) * 0.5)
                if module.padding_idx is not None:
                    module.weight[module.padding_idx].zero_()


def labels_of(name: str) -> tuple[str, ...]:
    return ("click", "purchase") if name in MULTI_TASK else ("click",)


def write_run(root: Path, name: str, seed: int = 0, dense: bool = True) -> Path:
    """A run directory of model ``name`` (config.yaml, preprocessing.json, checkpoint.pt), as
    ``recforge train`` leaves it, with the preprocessing fitted on 400 synthetic rows."""
    labels = labels_of(name)
    preprocessor = Preprocessor(declared_schema(labels, dense)).fit(raw_rows(400, seed=1, labels=labels))
    config = ExperimentConfig(model_name=name, model=get_model_entry(name).config_cls())
    torch.manual_seed(seed)
    model = build_model(name, preprocessor.schema, config.model)
    randomize(model, seed)
    run = root / f"run-{name}"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
    preprocessor.save(run / "preprocessing.json")
    torch.save({"model": model.state_dict()}, run / "checkpoint.pt")
    return run


@pytest.fixture(autouse=True)
def _needs_onnxruntime() -> None:
    pytest.importorskip("onnxruntime")  # the test extra installs it; here, not at import, so helpers stay importable


@pytest.fixture(scope="module")
def score_rows_table() -> pa.Table:
    return raw_rows(1024, seed=2)


@pytest.mark.parametrize("name", ROW_MODELS)
def test_compiled_graphs_match_eager_for_b_1_7_1024(name, tmp_path, score_rows_table):
    run = write_run(tmp_path, name)
    manifest = export_bundle(run, tmp_path / "bundle", ("torchscript", "onnx"), rows=score_rows_table)
    assert manifest["formats"] == ["eager", "torchscript", "onnx"]
    for fmt in COMPILED:
        record = manifest["parity"][fmt]
        assert set(record["max_abs_diff"]) == {"1", "7", "1024"} and record["distinct_rows"] == 1024
        assert record["max_abs_diff_all"] <= 1e-5
    eager = Predictor.from_run(run)
    for fmt in COMPILED:
        compiled = load_bundle(tmp_path / "bundle", backend=fmt)
        assert isinstance(compiled, CompiledPredictor)
        for b in (1, 7, 1024):
            rows = score_rows_table.slice(0, b)
            expected, got = eager.predict(rows), compiled.predict(rows)
            assert list(got) == list(labels_of(name))
            for task in got:
                assert got[task].shape == (b,) and got[task].dtype == np.float64
                np.testing.assert_allclose(got[task], expected[task], rtol=0, atol=1e-5)
    spread = eager.predict(score_rows_table)
    assert all(np.std(p) > 1e-3 for p in spread.values()), "scores barely vary: the parity check would prove little"


@pytest.mark.parametrize("name", ["deepfm", "dlrm"])
def test_models_without_dense_features_export(name, tmp_path, score_rows_table):
    """No dense features (frappe, Avazu): the graph's empty [B, 0] block must follow B."""
    run = write_run(tmp_path, name, dense=False)
    manifest = export_bundle(run, tmp_path / "bundle", ("torchscript", "onnx"), rows=score_rows_table)
    assert [i["kind"] for i in manifest["signature"]["inputs"]].count("dense") == 0
    assert all(manifest["parity"][fmt]["max_abs_diff_all"] <= 1e-5 for fmt in COMPILED)


@pytest.fixture(scope="module")
def din_bundle(tmp_path_factory, score_rows_table):
    root = tmp_path_factory.mktemp("din")
    run = write_run(root, "din")
    export_bundle(run, root / "bundle", ("torchscript", "onnx"), rows=score_rows_table)
    return run, root / "bundle"


def test_unseen_category_scores_with_the_oov_embedding(din_bundle):
    run, bundle = din_bundle
    row = raw_rows(1, seed=3)
    row = row.set_column(0, "user", pa.array(["a user never seen in training"]))
    row = row.set_column(5, "history", pa.array([["i1", "an item never seen"]], pa.list_(pa.string())))
    eager = Predictor.from_run(run)
    encoded = eager.encode(row)
    user_column = eager.schema.column("user")
    assert encoded.sparse[0, user_column] == OOV_ID and encoded.sequences["history"][0, 1] == OOV_ID
    expected = eager.predict(row)["click"]
    manifest = read_manifest(bundle)
    signature = GraphSignature.from_dict(manifest["signature"])
    for fmt in COMPILED:
        compiled = load_bundle(bundle, backend=fmt)
        np.testing.assert_allclose(compiled.predict(row)["click"], expected, rtol=0, atol=1e-5)
        # the graph gives the OOV id its own (trained) row: not the padding row's score
        arrays = signature.arrays(encoded)
        oov = compiled.runtime(arrays)[0, 0]
        arrays["user"] = np.array([PADDING_ID], np.int64)
        assert abs(float(compiled.runtime(arrays)[0, 0]) - float(oov)) > 1e-6
        np.testing.assert_allclose(oov, expected[0], rtol=0, atol=1e-5)


def test_input_keys_in_another_order_give_identical_scores(din_bundle, score_rows_table):
    _, bundle = din_bundle
    rows = score_rows_table.slice(0, 7).to_pylist()
    shuffled = [dict(reversed(list(r.items()))) for r in rows]
    for fmt in COMPILED:
        compiled = load_bundle(bundle, backend=fmt)
        assert np.array_equal(compiled.predict(rows)["click"], compiled.predict(shuffled)["click"])


def test_signature_is_by_name_in_schema_order_and_runs_on_plain_onnxruntime(din_bundle, score_rows_table):
    import onnxruntime

    run, bundle = din_bundle
    manifest = read_manifest(bundle)
    inputs = manifest["signature"]["inputs"]
    assert [i["name"] for i in inputs] == [
        "user", "item", "category", "user_x_category", "age_bucket", "price", "age", "history", "history_length"
    ]
    assert [i["dtype"] for i in inputs] == ["int64"] * 5 + ["float32"] * 2 + ["int64"] * 2
    assert inputs[7]["shape"] == ["batch", MAX_LENGTH] and inputs[8]["shape"] == ["batch"]
    assert manifest["signature"]["outputs"] == ["p_click"]
    # without recforge's runtime classes: feed ONNX Runtime the arrays by the manifest's names
    session = onnxruntime.InferenceSession(str(bundle / manifest["graphs"]["onnx"]["file"]), providers=["CPUExecutionProvider"])
    eager = Predictor.from_run(run)
    arrays = GraphSignature.from_dict(manifest["signature"]).arrays(eager.encode(score_rows_table.slice(0, 7)))
    feeds = {i.name: arrays[i.name] for i in session.get_inputs()}
    (probabilities,) = session.run(["p_click"], feeds)
    np.testing.assert_allclose(probabilities, eager.predict(score_rows_table.slice(0, 7))["click"], rtol=0, atol=1e-5)


def test_din_graphs_take_another_history_length(din_bundle, score_rows_table):
    run, bundle = din_bundle
    eager = Predictor.from_run(run)
    encoded = eager.encode(score_rows_table.slice(0, 7))
    short = EncodedColumns(
        encoded.sparse, encoded.dense, encoded.labels,
        {"history": np.ascontiguousarray(encoded.sequences["history"][:, :3])}, {"history": np.minimum(encoded.lengths["history"], 3)},
    )
    expected = eager_probabilities(eager.model, eager.tasks, short)
    signature = GraphSignature.from_dict(read_manifest(bundle)["signature"])
    for fmt in COMPILED:
        runtime = load_runtime(fmt, bundle / read_manifest(bundle)["graphs"][fmt]["file"], signature)
        np.testing.assert_allclose(runtime(signature.arrays(short)), expected, rtol=0, atol=1e-5)


def test_features_named_like_numbers_export_to_onnx_under_identifier_names(tmp_path):
    """Own tables often have columns named ``206`` or ``user-id`` (the Ali-CCP sample of the README),
    which the ONNX exporter refuses as tensor names: the graph uses ``f_206`` / ``f_user_id`` and
    the manifest lists both names (a newcomer's export failed with "Invalid name: '206'")."""
    rng = np.random.default_rng(0)
    table = pa.table({
        "206": pa.array([f"a{i}" for i in rng.integers(0, 30, 400)]),
        "user-id": pa.array([f"u{i}" for i in rng.integers(0, 50, 400)]),
        "3": pa.array(rng.gamma(2.0, 3.0, 400)),
        "click": pa.array((rng.random(400) < 0.3).astype(np.float64)),
    })
    schema = Schema(features=(FeatureSpec("206"), FeatureSpec("user-id"), FeatureSpec("3", "dense", transform="standardize")), labels=("click",))
    preprocessor = Preprocessor(schema).fit(table)
    config = ExperimentConfig(model_name="deepfm", model=get_model_entry("deepfm").config_cls())
    torch.manual_seed(0)
    model = build_model("deepfm", preprocessor.schema, config.model)
    randomize(model, 0)
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
    preprocessor.save(run / "preprocessing.json")
    torch.save({"model": model.state_dict()}, run / "checkpoint.pt")
    manifest = export_bundle(run, tmp_path / "bundle", ("torchscript", "onnx"), rows=table)
    assert [(i["name"], i["feature"]) for i in manifest["signature"]["inputs"]] == [("f_206", "206"), ("f_user_id", "user-id"), ("f_3", "3")]
    assert manifest["parity"]["onnx"]["max_abs_diff_all"] <= 1e-5
    rows = table.drop(["click"]).slice(0, 9)
    np.testing.assert_allclose(load_bundle(tmp_path / "bundle", backend="onnx").predict(rows)["click"],
                               Predictor.from_run(run).predict(rows)["click"], rtol=0, atol=1e-5)
