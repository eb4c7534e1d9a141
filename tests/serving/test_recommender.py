"""Top-K recommendations from trained runs: brute-force agreement, masking, cold users, raw ids."""

import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from recforge.config import from_dict
from recforge.data.schema import user_item_schema
from recforge.errors import ConfigError, DataError
from recforge.evaluation.protocols import score_pairs
from recforge.models.ncf import GMF, NCFConfig
from recforge.serving.recommender import Recommender, TrainingInteractions, top_k
from recforge.training.experiment import load_data, load_trained_model, run_experiment
from recforge.training.records import RunRecorder

K = 10


@pytest.fixture(scope="module")
def runs(shared_data, tmp_path_factory):
    """GMF (1 epoch, 8 factors) and ItemPop trained on movielens-100k, with their split."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RECFORGE_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
        out = tmp_path_factory.mktemp("runs")
        found = {}
        for name in ("gmf", "itempop"):
            config = from_dict(
                {"model": {"name": name, **({"factors": 8} if name == "gmf" else {})}, "data": {"name": "movielens-100k"},
                 "train": {"epochs": 1, "batch_size": 1024, "full_ranking": False}, "seed": 1}
            )
            found[name] = run_experiment(config, data_dir=shared_data, output_dir=out).path
        found["data"] = load_data(config, shared_data)
        yield found


def _brute_force(run, data, users, include_seen=False):
    """Scores of every item by the model's forward pass, training items -inf unless include_seen."""
    model = load_trained_model(run)
    n = data.num_items
    scores = score_pairs(model, np.repeat(users, n), np.tile(np.arange(n), len(users))).reshape(len(users), n)
    if not include_seen:
        for row, user in enumerate(users):
            scores[row, data.train_items[data.train_users == user]] = -np.inf
    return scores


def _rows_of(table, user):
    rows = table.filter(pa.compute.equal(table["user"], user))
    return rows["item"].to_numpy(), rows["score"].to_numpy(), rows["rank"].to_numpy()


def test_top_k_equals_a_brute_force_ranking_without_seen_items(runs, shared_data):
    recommender = Recommender.from_run(runs["gmf"], shared_data)
    data = runs["data"]
    # movielens-100k ids are 1..943 / 1..1682 and internal ids their ascending order: raw = internal + 1
    assert recommender.known_users().to_pylist() == list(range(1, 944))
    internal = np.arange(0, 943, 19)
    table = recommender.recommend(internal + 1, k=K)
    assert table.column_names == ["user", "rank", "item", "score", "cold"]
    brute = _brute_force(runs["gmf"], data, internal)
    for row, user in enumerate(internal):
        items, scores, ranks = _rows_of(table, user + 1)
        assert list(ranks) == list(range(1, K + 1))
        expected = np.lexsort((np.arange(data.num_items), -brute[row]))[:K]  # score desc, lower id first
        # the returned items carry their brute-force scores, and those are the K best (float32 noise aside)
        np.testing.assert_allclose(scores, brute[row, items - 1], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(scores, brute[row, expected], rtol=1e-5, atol=1e-5)
        assert np.isin(items - 1, expected).mean() >= 0.9
    assert not table["cold"].to_numpy(zero_copy_only=False).any()


def test_seen_items_never_appear_unless_include_seen(runs, shared_data):
    recommender = Recommender.from_run(runs["gmf"], shared_data)
    data = runs["data"]
    seen = set(zip(data.train_users.tolist(), data.train_items.tolist()))
    everyone = recommender.recommend(recommender.known_users(), k=K)
    assert everyone.num_rows == 943 * K
    pairs = zip((everyone["user"].to_numpy() - 1).tolist(), (everyone["item"].to_numpy() - 1).tolist())
    assert not any(pair in seen for pair in pairs)
    with_seen = recommender.recommend(recommender.known_users(), k=K, include_seen=True)
    pairs = zip((with_seen["user"].to_numpy() - 1).tolist(), (with_seen["item"].to_numpy() - 1).tolist())
    assert sum(pair in seen for pair in pairs) > 100  # popular items a user has rated come back
    user = 4
    items, scores, _ = _rows_of(with_seen, user + 1)
    brute = _brute_force(runs["gmf"], data, np.array([user]), include_seen=True)[0]
    np.testing.assert_allclose(scores, np.sort(brute)[::-1][:K], rtol=1e-5, atol=1e-5)


def test_a_cold_user_gets_the_popularity_ranking_and_is_marked(runs, shared_data):
    recommender = Recommender.from_run(runs["gmf"], shared_data)
    data = runs["data"]
    counts = np.bincount(data.train_items, minlength=data.num_items)
    popular = np.lexsort((np.arange(data.num_items), -counts))[:K]
    table = recommender.recommend(["5", "no-such-user", "99999"], k=K)
    assert table["user"].to_pylist()[:: K] == ["5", "no-such-user", "99999"]  # mixed: kept as strings
    cold = table["cold"].to_pylist()
    assert cold == [False] * K + [True] * 2 * K
    for user in ("no-such-user", "99999"):
        items, scores, _ = _rows_of(table, user)
        assert list(items - 1) == list(popular)
        assert list(scores) == list(counts[popular].astype(np.float32))


def test_itempop_ranks_by_training_count_without_seen_items(runs, shared_data):
    recommender = Recommender.from_run(runs["itempop"], shared_data)
    data = runs["data"]
    counts = np.bincount(data.train_items, minlength=data.num_items).astype(float)
    for user in (0, 100, 942):
        masked = counts.copy()
        masked[data.train_items[data.train_users == user]] = -np.inf
        expected = np.lexsort((np.arange(data.num_items), -masked))[:K]
        items, scores, _ = _rows_of(recommender.recommend([user + 1], k=K), user + 1)
        assert list(items - 1) == list(expected)
        assert list(scores) == list(masked[expected])


def test_user_chunks_do_not_change_the_answer(runs, shared_data):
    default = Recommender.from_run(runs["gmf"], shared_data)
    tiny = Recommender.from_run(runs["gmf"], shared_data, max_scores=1)  # one user per chunk
    users = np.arange(1, 944, 7)
    a, b = tiny.recommend(users, k=K), default.recommend(users, k=K)
    for column in ("user", "rank", "cold"):
        assert a[column].equals(b[column])
    # BLAS picks kernels by matrix shape, so scores may differ in the last float32 bits; items
    # may then swap only where their scores tie within that noise
    np.testing.assert_allclose(a["score"].to_numpy(), b["score"].to_numpy(), rtol=1e-6, atol=1e-6)
    swapped = a["item"].to_numpy() != b["item"].to_numpy()
    assert swapped.mean() < 0.01


def test_a_run_without_artefacts_is_served_from_its_dataset(runs, shared_data, tmp_path):
    old = shutil.copytree(runs["gmf"], tmp_path / "old-run")
    for name in ("interactions.npz", "user_ids.parquet", "item_ids.parquet"):
        (old / name).unlink()
    users = np.arange(1, 944, 3)
    expected = Recommender.from_run(runs["gmf"]).recommend(users, k=K)  # from the artefacts alone
    assert Recommender.from_run(old, shared_data).recommend(users, k=K).equals(expected)
    with pytest.raises(DataError, match="holds no interactions.npz and re-loading its dataset movielens-100k failed: .*does not exist"):
        Recommender.from_run(old, tmp_path / "no-data")


def test_ties_rank_the_lower_item_first():
    inf = float("-inf")
    scores = torch.tensor([[1.0, 3.0, 3.0, 3.0, 0.0], [2.0, 2.0, 5.0, inf, 2.0], [inf, inf, 1.0, inf, inf]])
    values, columns = top_k(scores, 2)
    assert columns.tolist() == [[1, 2], [2, 0], [2, 0]]
    assert values.tolist() == [[3.0, 3.0], [5.0, 2.0], [1.0, inf]]
    rng = np.random.default_rng(0)
    many = rng.integers(0, 4, size=(200, 30)).astype(np.float32)  # ties everywhere
    many[rng.random(many.shape) < 0.2] = -np.inf
    for k in (1, 5, 29, 30):
        values, columns = top_k(torch.from_numpy(many), k)
        expected = np.stack([np.lexsort((np.arange(30), -row))[:k] for row in many])
        assert np.array_equal(columns.numpy(), expected)
        assert np.array_equal(values.numpy(), np.take_along_axis(many, expected, 1))


def _artefact_run(tmp_path, user_ids, item_ids, train_users, train_items):
    """A GMF run written by hand: config, checkpoint, interactions.npz and raw-id maps."""
    config = from_dict({"model": {"name": "gmf", "factors": 4}, "data": {"name": "movielens-1m-ncf"}})
    recorder = RunRecorder(tmp_path, config)
    torch.manual_seed(0)
    model = GMF(user_item_schema(len(user_ids), len(item_ids)), NCFConfig(factors=4))
    with torch.no_grad():
        model.item_embedding.weight.normal_()
        model.user_embedding.weight.normal_()
    recorder.save_checkpoint({"model": model.state_dict(), "schema": {"num_users": len(user_ids), "num_items": len(item_ids)}})
    np.savez(
        recorder.path / "interactions.npz", train_users=np.asarray(train_users, np.int64), train_items=np.asarray(train_items, np.int64),
        num_users=len(user_ids), num_items=len(item_ids),
    )
    pq.write_table(pa.table({"id": user_ids}), recorder.path / "user_ids.parquet")
    pq.write_table(pa.table({"id": item_ids}), recorder.path / "item_ids.parquet")
    return recorder.path, model


def test_original_string_ids_round_trip_from_run_artefacts(tmp_path):
    items = [f"sku-{c}" for c in "abcdef"]
    run, model = _artefact_run(tmp_path, ["alice", "bob", "carol"], items, [0, 0, 1], [2, 5, 0])
    recommender = Recommender.from_run(run)  # no data directory: the artefacts are enough
    table = recommender.recommend(["bob", "alice", "dave"], k=3)
    assert table["user"].to_pylist() == ["bob"] * 3 + ["alice"] * 3 + ["dave"] * 3
    assert set(table["item"].to_pylist()) <= set(items)
    assert table["cold"].to_pylist() == [False] * 6 + [True] * 3
    scores = score_pairs(model, np.zeros(6, np.int64), np.arange(6))
    scores[[2, 5]] = -np.inf  # alice's training items
    expected = [items[i] for i in np.lexsort((np.arange(6), -scores))[:3]]
    assert table["item"].to_pylist()[3:6] == expected
    # dave is cold: training counts 1 for sku-a, sku-c, sku-f; ties by lower id
    assert table["item"].to_pylist()[6:] == ["sku-a", "sku-c", "sku-f"]


def test_ids_are_matched_as_strings_whatever_their_type(tmp_path):
    big = [2**40 + 5, 7, 2**33]  # int64 beyond 2^31
    run, _ = _artefact_run(tmp_path, big, list(range(100, 106)), [0, 1, 2], [0, 1, 2])
    recommender = Recommender.from_run(run)
    as_strings = recommender.recommend([str(2**40 + 5), "7"], k=2)
    assert as_strings["user"].type == pa.int64()  # converted to the map's type
    assert as_strings["user"].to_pylist() == [2**40 + 5] * 2 + [7] * 2
    assert not any(as_strings["cold"].to_pylist())
    assert as_strings.equals(recommender.recommend(np.array([2**40 + 5, 7]), k=2))
    assert recommender.recommend(["07"], k=2)["cold"].to_pylist() == [True, True]  # "07" is not "7"


def test_fewer_unseen_items_than_k_gives_fewer_rows(tmp_path):
    run, _ = _artefact_run(tmp_path, ["u0", "u1"], ["a", "b", "c"], [0, 0, 1], [0, 2, 1])
    table = Recommender.from_run(run).recommend(["u0", "u1"], k=10)
    assert table["user"].to_pylist() == ["u0", "u1", "u1"]
    assert table["item"].to_pylist()[:1] == ["b"]
    assert table["rank"].to_pylist() == [1, 1, 2]


def test_bad_requests_and_runs_are_user_errors(tmp_path):
    run, _ = _artefact_run(tmp_path / "a", ["u0"], ["a", "b"], [0], [0])
    recommender = Recommender.from_run(run)
    with pytest.raises(ConfigError, match="k must be an integer >= 1"):
        recommender.recommend(["u0"], k=0)
    with pytest.raises(ConfigError, match="no users given"):
        recommender.recommend([], k=1)
    with pytest.raises(ConfigError, match="is not a run directory: it does not exist"):
        Recommender.from_run(tmp_path / "missing")
    ctr = RunRecorder(tmp_path / "b", from_dict({"model": {"name": "deepfm"}, "data": {"name": "uci-adult"}})).path
    with pytest.raises(ConfigError, match="deepfm run on tabular data.*recforge predict"):
        Recommender.from_run(ctr)
    (run / "item_ids.parquet").unlink()
    with pytest.raises(DataError, match="item_ids.parquet: missing raw-id map"):
        Recommender.from_run(run)


def test_interactions_must_match_their_id_maps():
    with pytest.raises(DataError, match="id maps hold 1 users / 2 items, expected 2 / 2"):
        TrainingInteractions(2, 2, np.array([0]), np.array([1]), pa.array(["a"]), pa.array(["x", "y"]), "interactions.npz")


def test_a_requested_id_beyond_int64_is_kept_as_text_not_an_overflow():
    """/recommend {"user": 10**20} was a 500 (OverflowError converting to int64)."""
    from recforge.serving.recommender import _as_array

    assert _as_array(10**20).to_pylist() == ["100000000000000000000"]
    assert _as_array([1, 2]).to_pylist() == [1, 2]
