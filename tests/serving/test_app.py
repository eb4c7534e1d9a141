"""The HTTP scoring service in-process (FastAPI TestClient): scores equal the Predictor's, 422s
name the field, errors never leak a traceback, malformed payloads never give a 5xx, and
concurrent requests are merged by the micro-batcher without changing any request's scores."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import random
import re
import socket
import threading
import warnings

import numpy as np
import pyarrow as pa
import pytest
from typer.testing import CliRunner

from recforge.cli.app import app as cli
from recforge.data.preprocessing import OOV_ID
from recforge.errors import ConfigError, DataError
from recforge.serving.app import create_app
from recforge.serving.batching import MicroBatcher
from recforge.serving.bundle import export_bundle, read_manifest
from recforge.serving.export import eager_probabilities
from recforge.serving.predictor import Predictor
from recforge.serving.recommender import Recommender
from tests.serving.test_bundle import write_pair_run
from tests.serving.test_export import raw_rows, write_run

pytest.importorskip("fastapi")
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", "Using `httpx` with `starlette.testclient` is deprecated")  # starlette 1.10 prefers httpx2; httpx works
    from fastapi.testclient import TestClient

#: malformed payloads of the fuzz test (the acceptance run used RECFORGE_SERVE_FUZZ=10000)
FUZZ_REQUESTS = int(os.environ.get("RECFORGE_SERVE_FUZZ", "300"))
FEATURE_COLUMNS = ("user", "item", "category", "age", "price", "history")


def json_rows(table: pa.Table) -> list[dict]:
    """Rows as a JSON client sends them: the feature columns only, histories as lists."""
    return [{k: row[k] for k in FEATURE_COLUMNS} for row in table.to_pylist()]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def client_of(source, **options) -> TestClient:
    return TestClient(create_app(source, **options), raise_server_exceptions=False)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Synthetic runs (no training: fitted preprocessing + randomised weights) and a DeepFM bundle with its ONNX graph."""
    root = tmp_path_factory.mktemp("serve")
    made = {name: write_run(root, name) for name in ("deepfm", "din", "mmoe")}
    made["deepfm-bundle"] = root / "deepfm-bundle"
    export_bundle(made["deepfm"], made["deepfm-bundle"], ("onnx",), rows=raw_rows(64, seed=9))
    made["gmf"] = write_pair_run(root, "gmf")
    made["gmf-bundle"] = root / "gmf-bundle"
    export_bundle(made["gmf"], made["gmf-bundle"])
    return made


@pytest.fixture(scope="module")
def din(runs):
    with client_of(runs["din"]) as client:
        yield client


def scores_of(response, task: str = "click") -> np.ndarray:
    assert response.status_code == 200, response.text
    return np.array([p[task] for p in response.json()["predictions"]])


@pytest.mark.parametrize("source,backend", [("deepfm", "eager"), ("deepfm-bundle", "onnx"), ("deepfm-bundle", "eager")])
def test_scores_equal_the_predictor_and_the_eager_model(runs, source, backend):
    test_rows = raw_rows(50, seed=11, labels=("click",))  # as a test split: labels are sent to neither
    expected = Predictor.from_run(runs["deepfm"]) if backend == "eager" else Predictor.from_bundle(runs[source], backend)
    with client_of(runs[source], backend=backend) as client:
        assert client.get("/health").json()["backend"] == backend
        got = scores_of(client.post("/predict", json={"rows": json_rows(test_rows)}))
    assert np.array_equal(got, expected.predict(test_rows)["click"])  # the JSON floats round-trip exactly
    eager = Predictor.from_run(runs["deepfm"])
    direct = eager_probabilities(eager.model, eager.tasks, eager.preprocessor.transform(test_rows))[:, 0]
    np.testing.assert_allclose(got, direct, rtol=0, atol=1e-6 if backend == "eager" else 1e-5)
    assert np.std(got) > 1e-3


def as_columns(rows: list[dict]) -> dict[str, list]:
    return {k: [r[k] for r in rows] for k in rows[0]}


@pytest.mark.parametrize("source", ["din", "deepfm-bundle", "mmoe"])
def test_columnar_requests_score_as_row_requests(runs, source):
    """``{"columns": {...}}`` (TF Serving's "inputs" form) gives the same scores as ``{"rows": [...]}``,
    answered as ``{"outputs": {task: [...]}}``; histories as lists and as strings."""
    rows = json_rows(raw_rows(30, seed=21))
    rows = [{**r, "history": "|".join(r["history"])} if i % 3 == 0 else r for i, r in enumerate(rows)]
    with client_of(runs[source]) as client:
        by_rows = client.post("/predict", json={"rows": rows})
        by_columns = client.post("/predict", json={"columns": as_columns(rows)})
    assert by_rows.status_code == by_columns.status_code == 200, by_columns.text
    outputs = by_columns.json()["outputs"]
    tasks = list(by_rows.json()["predictions"][0])
    assert list(outputs) == tasks
    for task in tasks:
        assert outputs[task] == [p[task] for p in by_rows.json()["predictions"]]


def test_columnar_request_errors_name_the_column_and_row(din):
    columns = as_columns(json_rows(raw_rows(4, seed=22)))
    (error,) = errors_of(din.post("/predict", json={"columns": {**columns, "age": [30.0, "thirty", 40.0, None]}}))
    assert error["loc"] == ["columns", "age", 1] and "feature 'age' must be a number" in error["msg"]
    errors = errors_of(din.post("/predict", json={"columns": {**columns, "user": columns["user"][:3]}}))
    assert errors[0]["loc"] == ["columns", "user"] and "has 3 values" in errors[0]["msg"] and "one value per row" in errors[0]["msg"]
    missing = {k: v for k, v in columns.items() if k != "price"}
    assert errors_of(din.post("/predict", json={"columns": missing}))[0]["loc"] == ["columns", "price"]
    assert "unknown feature 'colour'" in errors_of(din.post("/predict", json={"columns": {**columns, "colour": [1] * 4}}))[0]["msg"]
    assert "must be a list of values" in errors_of(din.post("/predict", json={"columns": {**columns, "item": "i1"}}))[0]["msg"]
    assert "not both" in errors_of(din.post("/predict", json={"columns": columns, "rows": json_rows(raw_rows(4, seed=22))}))[0]["msg"]
    assert "no rows" in errors_of(din.post("/predict", json={"columns": {k: [] for k in columns}}))[0]["msg"]


def test_row_and_columnar_requests_merge_in_one_call():
    """The micro-batcher joins a row request and a columnar one (RequestBatch.concat), in order."""
    from recforge.serving.request_encoding import RequestBatch

    rows = [{"a": 1, "b": "x"}, {"a": 2, "b": "y"}]
    merged = RequestBatch.concat([RequestBatch(rows=rows), RequestBatch(columns={"a": [3, 4, 5], "b": ["z", None, "w"]}), RequestBatch(rows=rows[:1])])
    assert len(merged) == 6 and merged.columns(["a", "b"]) == {"a": [1, 2, 3, 4, 5, 1], "b": ["x", "y", "z", None, "w", "x"]}
    np.testing.assert_array_equal(merged.numbers(["a"]).ravel(), [1, 2, 3, 4, 5, 1])
    assert RequestBatch.concat([RequestBatch(rows=rows), RequestBatch(rows=rows)]).by_columns is False
    with pytest.raises(ValueError, match="unequal length"):
        RequestBatch(columns={"a": [1], "b": [1, 2]})


def test_unseen_category_scores_with_the_oov_id_as_eager(runs, din):
    row = json_rows(raw_rows(1, seed=3))[0]
    row.update(user="a user never seen", history=["i1", "an item never seen"])
    predictor = Predictor.from_run(runs["din"])
    encoded = predictor.encode([row])
    assert encoded.sparse[0, predictor.schema.column("user")] == OOV_ID and OOV_ID in encoded.sequences["history"][0]
    got = scores_of(din.post("/predict", json={"rows": [row]}))
    assert np.array_equal(got, predictor.predict([row])["click"])
    known = scores_of(din.post("/predict", json={"rows": [{**row, "user": "u1"}]}))
    assert got[0] != known[0]  # the OOV id is a real row of the table, not ignored


def test_keys_in_another_order_and_integer_ids_give_identical_scores(din):
    rows = json_rows(raw_rows(7, seed=4))
    shuffled = [dict(reversed(list(r.items()))) for r in rows]
    first, second = din.post("/predict", json={"rows": rows}), din.post("/predict", json={"rows": shuffled})
    assert np.array_equal(scores_of(first), scores_of(second))
    numeric = {"user": 5, "item": "i3", "category": "c3", "age": 30, "price": 12.5, "history": [3, "i4"]}
    as_strings = {**numeric, "user": "5", "age": 30.0, "history": ["3", "i4"]}
    assert np.array_equal(scores_of(din.post("/predict", json={"rows": [numeric]})), scores_of(din.post("/predict", json={"rows": [as_strings]})))


def test_din_variable_history_lengths_lists_and_strings(runs, din):
    table = raw_rows(40, seed=6)
    rows = json_rows(table)
    assert len({len(r["history"]) for r in rows}) >= 5  # 0..7 items, cut to the last 5 by the schema
    expected = Predictor.from_run(runs["din"]).predict(table)["click"]
    assert np.array_equal(scores_of(din.post("/predict", json={"rows": rows})), expected)
    joined = [{**r, "history": "|".join(r["history"])} if i % 2 else r for i, r in enumerate(rows)]  # lists and strings mixed
    assert np.array_equal(scores_of(din.post("/predict", json={"rows": joined})), expected)
    empty = [{**rows[0], "history": []}, {**rows[0], "history": None}, {**rows[0], "history": ""}]
    scores = scores_of(din.post("/predict", json={"rows": empty}))
    assert scores[0] == scores[1] == scores[2]


def test_multi_task_gives_one_probability_per_task(runs):
    table = raw_rows(9, seed=8)
    expected = Predictor.from_run(runs["mmoe"]).predict(table)
    with client_of(runs["mmoe"]) as client:
        response = client.post("/predict", json={"rows": json_rows(table)})
        assert client.get("/metadata").json()["tasks"] == ["click", "purchase"]
    assert all(set(p) == {"click", "purchase"} for p in response.json()["predictions"])
    for task in ("click", "purchase"):
        assert np.array_equal(scores_of(response, task), expected[task])


def errors_of(response, status: int = 422) -> list[dict]:
    assert response.status_code == status, response.text
    body = response.json()
    assert re.fullmatch(r"[0-9a-f]{16}", body["request_id"]) and response.headers["x-request-id"] == body["request_id"]
    return body["detail"]


def test_a_missing_feature_is_a_422_naming_it_and_its_row(din):
    rows = json_rows(raw_rows(3, seed=1))
    del rows[2]["category"]
    (error,) = errors_of(din.post("/predict", json={"rows": rows}))
    assert error["loc"] == ["rows", 2, "category"] and error["type"] == "missing"
    assert error["msg"] == "missing feature 'category' (send null for a missing value)"


@pytest.mark.parametrize(
    "change,loc,message",
    [
        ({"colour": "red"}, ["rows", 0, "colour"], "unknown feature 'colour': the model reads user, item, category, age, price, history"),
        ({"age": "thirty"}, ["rows", 0, "age"], "feature 'age' must be a number"),
        ({"age": True}, ["rows", 0, "age"], "feature 'age' must be a number"),
        ({"user": 1.5}, ["rows", 0, "user"], "feature 'user' must be a category: a string or an integer"),
        ({"user": {"id": 1}}, ["rows", 0, "user"], "feature 'user' must be a category"),
        ({"item": ["i1"]}, ["rows", 0, "item"], "feature 'item' must be a category"),
        ({"history": [["i1"]]}, ["rows", 0, "history"], "feature 'history' must be a list of categories"),
        ({"history": 7}, ["rows", 0, "history"], "feature 'history' must be a list of categories"),
    ],
)
def test_unknown_feature_and_wrong_types_are_422_naming_the_field(din, change, loc, message):
    row = {**json_rows(raw_rows(1, seed=1))[0], **change}
    (error,) = errors_of(din.post("/predict", json={"rows": [row]}))
    assert error["loc"] == loc and error["msg"].startswith(message)
    assert "thirty" not in json.dumps(error)  # values are not echoed back


def test_batch_limits_body_limit_and_malformed_bodies(runs):
    rows = json_rows(raw_rows(5, seed=1))
    with client_of(runs["din"], max_batch_rows=4, max_body_bytes=4000) as client:
        (error,) = errors_of(client.post("/predict", json={"rows": rows}))
        assert error["loc"] == ["rows"] and "at most 4 per request" in error["msg"] and "got 5" in error["msg"]
        assert client.post("/predict", json={"rows": rows[:4]}).status_code == 200
        assert "no rows" in errors_of(client.post("/predict", json={"rows": []}))[0]["msg"]
        assert errors_of(client.post("/predict", json={"rows": [{}]}))[0]["type"] == "missing"
        assert errors_of(client.post("/predict", json={"rows": ["a row"]}))[0]["loc"] == ["rows", 0]
        assert {e["msg"] for e in errors_of(client.post("/predict", json={"row": rows}))} == {"unknown key 'row'"}
        assert "got neither" in errors_of(client.post("/predict", json={}))[0]["msg"]
        assert "not valid JSON" in errors_of(client.post("/predict", content=b'{"rows": [{"user": "u1",'))[0]["msg"]
        assert "not valid JSON" in errors_of(client.post("/predict", content=b"\xff\xfe\x00"))[0]["msg"]
        assert errors_of(client.post("/predict", json=[rows]))[0]["msg"] == "the body must be a JSON object"
        assert "at most 4,000" in errors_of(client.post("/predict", json={"rows": [{**rows[0], "user": "x" * 5000}]}), 413)


@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")
def test_non_finite_numbers_follow_the_feature_policy(runs, din):
    row = json_rows(raw_rows(1, seed=2))[0]
    body = json.dumps({"rows": [row, {**row, "price": math.nan}]})  # Python's json writes NaN: a missing value
    nan = scores_of(din.post("/predict", content=body.encode()))
    assert np.array_equal(nan, Predictor.from_run(runs["din"]).predict([row, {**row, "price": None}])["click"])
    (error,) = errors_of(din.post("/predict", content=json.dumps({"rows": [row, {**row, "age": -math.inf}]}).encode()))
    assert error["loc"] == ["rows", 1, "age"] and error["msg"].startswith("feature 'age' must be a finite number or null, got -inf")
    columns = {k: [row[k], row[k], -math.inf if k == "age" else row[k]] for k in row}
    (error,) = errors_of(din.post("/predict", content=json.dumps({"columns": columns}).encode()))
    assert error["loc"] == ["columns", "age", 2] and "data row" not in error["msg"]
    (error,) = errors_of(din.post("/predict", json={"rows": [row, row, {**row, "age": 1e300}]}))  # standardized: beyond float32
    assert error["loc"] == ["rows", 2] and "too large for the model" in error["msg"]


def test_recommend_from_a_pair_bundle_and_run(runs):
    expected = Recommender.from_run(runs["gmf"]).recommend([105, 999], k=5)
    for source in ("gmf-bundle", "gmf"):
        with client_of(runs[source]) as client:
            warm = client.post("/recommend", json={"user": 105, "k": 5}).json()
            assert [i["item"] for i in warm["items"]] == expected["item"].to_pylist()[:5] and warm["cold"] is False
            assert [i["rank"] for i in warm["items"]] == [1, 2, 3, 4, 5]
            np.testing.assert_allclose([i["score"] for i in warm["items"]], expected["score"].to_pylist()[:5], rtol=1e-6)
            cold = client.post("/recommend", json={"user": "999"}).json()
            assert cold["cold"] is True and len(cold["items"]) == 10
            assert errors_of(client.post("/recommend", json={"user": 105, "k": 0}))[0]["loc"] == ["k"]
            assert errors_of(client.post("/recommend", json={"k": 3}))[0]["msg"] == "missing key 'user'"
            assert "recommends items" in errors_of(client.post("/predict", json={"rows": []}), 404)
            assert client.get("/metadata").json()["catalogue"] == {"users": 13, "items": 29}
    with client_of(runs["din"]) as client:
        assert "POST /predict" in errors_of(client.post("/recommend", json={"user": 1}), 404)


def test_metadata_lists_columns_versions_and_the_bundles_parity(runs):
    with client_of(runs["deepfm-bundle"]) as client:
        meta = client.get("/metadata").json()
        assert client.get("/health").json() == {"status": "ok", "model": "deepfm", "backend": "onnx", "requests_in_flight": 0}
    manifest = read_manifest(runs["deepfm-bundle"])
    assert meta["model"] == "deepfm" and meta["source"] == "bundle" and meta["backend"] == "onnx"
    assert meta["parity"]["onnx"]["max_abs_diff_all"] == manifest["parity"]["onnx"]["max_abs_diff_all"] <= 1e-5
    assert [c["name"] for c in meta["request_columns"]] == list(FEATURE_COLUMNS)
    assert {c["name"]: c["type"] for c in meta["request_columns"]}["age"] == "number"
    assert meta["versions"]["onnxruntime"] and meta["versions_at_export"]["torch"] == meta["versions"]["torch"]
    assert meta["limits"]["max_batch_rows"] == 1024


def test_a_server_error_is_a_generic_500_with_the_traceback_only_in_the_log(runs, caplog, monkeypatch):
    app = create_app(runs["deepfm"])
    monkeypatch.setattr(app.state.served.scorer, "predict_encoded", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("secret internals")))
    with caplog.at_level(logging.INFO, logger="recforge.serving"), TestClient(app, raise_server_exceptions=False) as client:
        response = client.post("/predict", json={"rows": json_rows(raw_rows(2, seed=1))})
        assert client.get("/health").status_code == 200
    assert response.status_code == 500 and "secret" not in response.text and "Traceback" not in response.text
    request_id = response.json()["request_id"]
    assert response.json()["detail"] == "internal error (logged on the server)"
    failed = [r.getMessage() for r in caplog.records if request_id in r.getMessage()]
    assert any("RuntimeError: secret internals" in m and "Traceback" in m for m in failed)
    assert any(re.fullmatch(rf"POST /predict 500 rows=2 [\d.]+ ms id={request_id}", m) for m in failed)


def test_one_log_line_per_request_with_latency(din, caplog):
    with caplog.at_level(logging.INFO, logger="recforge.serving"):
        din.post("/predict", json={"rows": json_rows(raw_rows(3, seed=1))})
        din.post("/predict", json={"rows": []})
        din.get("/health")
    lines = [r.getMessage() for r in caplog.records if r.name == "recforge.serving"]
    assert len(lines) == 3
    assert re.fullmatch(r"POST /predict 200 rows=3 [\d.]+ ms id=[0-9a-f]{16}", lines[0])
    assert re.fullmatch(r"POST /predict 422 [\d.]+ ms id=[0-9a-f]{16}", lines[1])
    assert re.fullmatch(r"GET /health 200 [\d.]+ ms id=[0-9a-f]{16}", lines[2])


def test_bad_sources_are_one_line_errors(runs, tmp_path):
    with pytest.raises(ConfigError, match="is a run directory.*recforge export"):
        create_app(runs["deepfm"], backend="onnx")
    with pytest.raises(ConfigError, match="neither a model bundle"):
        create_app(tmp_path)
    with pytest.raises(ConfigError, match="max_batch_rows must be an integer >= 1"):
        create_app(runs["deepfm"], max_batch_rows=0)
    for args, message in [
        ([str(tmp_path / "missing")], "is not a model bundle or a run directory: it does not exist"),
        ([str(runs["deepfm"]), "--backend", "tensorrt"], "--backend 'tensorrt': expected one of auto, eager, torchscript, onnx"),
        ([str(runs["gmf-bundle"]), "--backend", "onnx"], "its recommender scores the catalogue eagerly"),
        ([str(runs["deepfm"]), "--max-batch-rows", "0"], "--max-batch-rows must be >= 1"),
    ]:
        result = CliRunner().invoke(cli, ["serve", *args, "--port", str(free_port())])
        assert result.exit_code == 2, result.output
        assert message in " ".join(result.output.split()) and "Traceback" not in result.output
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(cli, ["serve", str(runs["deepfm"]), "--port", str(port)])
    assert result.exit_code == 2 and f"cannot listen on 127.0.0.1:{port}" in " ".join(result.output.split())


def test_micro_batcher_merges_waiting_requests_and_isolates_bad_ones():
    calls: list[int] = []
    release = threading.Event()

    def score(rows):
        calls.append(len(rows))
        if len(calls) == 1:
            release.wait(5)  # the first call holds the thread while the others queue up
        if any(r.get("bad") for r in rows):
            raise DataError("row refused")
        return {"click": np.array([float(r["x"]) for r in rows])}

    async def main():
        batcher = MicroBatcher(score, max_rows=6)
        first = asyncio.ensure_future(batcher.predict([{"x": 0}]))
        while not calls:
            await asyncio.sleep(0.001)
        waiting = [asyncio.ensure_future(batcher.predict([{"x": i}, {"x": -i}])) for i in range(1, 5)]
        bad = asyncio.ensure_future(batcher.predict([{"x": 9, "bad": True}]))
        await asyncio.sleep(0.05)
        release.set()
        results = await asyncio.gather(first, *waiting, bad, return_exceptions=True)
        batcher.close()
        return results

    results = asyncio.run(main())
    assert [r["click"].tolist() for r in results[:5]] == [[0.0], [1.0, -1.0], [2.0, -2.0], [3.0, -3.0], [4.0, -4.0]]
    assert isinstance(results[5], DataError)
    # 1 alone; then 3 requests (6 rows: the limit); then the 4th with the bad one, which fails
    # merged and is re-scored alone, each request on its own
    assert calls == [1, 6, 3, 2, 1]


def fuzz_body(rng: random.Random, valid: list[dict]) -> bytes:
    """One malformed (sometimes valid) /predict body: wrong types, missing and extra keys, NaN and
    infinities, huge strings and numbers, empty or non-object rows, too many rows, invalid JSON."""
    junk = [None, True, 1.5, -7, 10**30, "", "x" * rng.choice((1, 1000, 200_000)), [], {}, [1, [2]], {"a": {"b": 1}},
            math.nan, math.inf, -math.inf, "\u0000\ud7ff\U0001f600", "1e999"]
    kind = rng.randrange(12)
    if kind == 0:  # invalid JSON bytes
        text = json.dumps({"rows": valid[:2]}).encode()
        cut = rng.randrange(len(text))
        return rng.choice([text[:cut], text[:cut] + bytes(rng.randrange(256) for _ in range(8)), b"", b"\xff" * 5,
                           b"[" * 5000 + b"]" * 5000, b'{"rows": [' * 600])
    if kind == 1:  # not an object, or rows not a list
        return json.dumps(rng.choice([[], 7, "rows", None, {"rows": rng.choice(junk)}, {"rows": [rng.choice(junk)]}])).encode()
    if kind == 2:
        return json.dumps({"rows": []}).encode()
    if kind == 3:  # too many rows
        return json.dumps({"rows": [valid[0]] * rng.choice((1025, 3000))}).encode()
    rows = [dict(r) for r in rng.sample(valid, rng.randint(1, 4))]
    for row in rows:
        for _ in range(rng.randint(1, 3)):
            key = rng.choice(FEATURE_COLUMNS)
            action = rng.randrange(5)
            if action == 0:
                row.pop(key, None)
            elif action == 1:
                row[rng.choice(("colour", "", "user ", "USER", "x" * 300))] = rng.choice(junk)
            elif action == 2:
                row[key] = rng.choice(junk)
            elif action == 3 and key == "history":
                row[key] = rng.choice([[rng.choice(junk) for _ in range(rng.randint(0, 6))], "|".join("ab" * rng.randint(0, 50))])
            else:
                row[key] = rng.choice([math.nan, math.inf, None, 0, -1e300, "u" * rng.randint(0, 50)])
    if rng.random() < 0.3:  # the columnar form, sometimes with a column one value short
        names = list(dict.fromkeys(k for r in rows for k in r))
        columns = {k: [r.get(k) for r in rows] for k in names}
        if rng.random() < 0.3:
            columns[rng.choice(names)].pop()
        return json.dumps({"columns": columns} if rng.random() < 0.9 else {"columns": columns, "rows": rows}, allow_nan=True).encode()
    extra = {"rows": rows} if rng.random() < 0.8 else {"rows": rows, rng.choice(("k", "row")): 1}
    return json.dumps(extra, allow_nan=True).encode()


@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")
def test_malformed_payload_fuzz_never_gives_a_5xx(runs):
    rng = random.Random(15)
    valid = json_rows(raw_rows(32, seed=12))
    statuses: dict[int, int] = {}
    with client_of(runs["din"]) as client:
        for _ in range(FUZZ_REQUESTS):
            body = fuzz_body(rng, valid)
            response = client.post("/predict", content=body, headers={"content-type": "application/json"})
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            assert response.status_code in (200, 413, 422), (response.status_code, body[:300], response.text[:500])
            if response.status_code == 200:
                sent, answer = json.loads(body), response.json()
                if "columns" in sent:
                    assert len(answer["outputs"]["click"]) == len(next(iter(sent["columns"].values())))
                else:
                    assert len(answer["predictions"]) == len(sent["rows"])
        assert client.get("/health").json()["status"] == "ok"
        assert scores_of(client.post("/predict", json={"rows": valid[:3]})).shape == (3,)
    print(f"fuzz: {FUZZ_REQUESTS} requests, statuses {dict(sorted(statuses.items()))}")
    assert statuses.get(422, 0) > FUZZ_REQUESTS // 2 and statuses.get(200, 0) > 0


def test_request_sized_vocabulary_lookups_give_the_arrow_paths_ids(runs):
    """Up to REQUEST_KEYS keys are looked up in a dict (the per-request path), more through
    pc.index_in: the same ids either way, unseen values (OOV) and nulls (0) included."""
    from recforge.serving.predictor import REQUEST_KEYS

    predictor = Predictor.from_run(runs["din"])
    table = raw_rows(REQUEST_KEYS + 200, seed=13)  # unseen users / items: raw_rows draws beyond the training rows
    users = table.column("user").to_pylist()
    users[::7] = [None] * len(users[::7])
    users[1::7] = ["never seen"] * len(users[1::7])
    table = table.set_column(0, "user", pa.array(users, pa.string()))
    whole = predictor.encode(table)  # > REQUEST_KEYS keys per column: the Arrow path
    parts = [predictor.encode(table.slice(start, 50)) for start in range(0, table.num_rows, 50)]
    assert np.array_equal(whole.sparse, np.concatenate([p.sparse for p in parts]))
    assert np.array_equal(whole.sequences["history"], np.concatenate([p.sequences["history"] for p in parts]))
    column = predictor.schema.column("user")
    assert (whole.sparse[::7, column] == 0).all() and (whole.sparse[1::7, column] == OOV_ID).all()
    assert len(np.unique(whole.sparse[:, column])) > 10
