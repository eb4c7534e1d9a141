"""Search spaces: every model's default space makes valid configs; a file replaces or narrows it."""

from __future__ import annotations

import pytest

from recforge.api import train_config
from recforge.errors import ConfigError
from recforge.models import MODELS
from recforge.tuning.space import default_space, load_space


@pytest.mark.parametrize("model", sorted(set(MODELS) - {"itempop"}))
def test_every_default_space_reaches_only_valid_configs(model):
    space = default_space(model)
    assert space.params and all(p.key.split(".")[0] in ("model", "train") for p in space.params)
    for corner in space.corners():  # both ends of every range, every choice
        config = train_config(model, {}, corner)
        for key, value in corner.items():
            if key.startswith("model.") and not isinstance(value, dict):
                assert getattr(config.model, key.split(".")[1]) == (tuple(value) if isinstance(value, list) else value), (model, key)


def test_the_default_spaces_search_what_each_family_has():
    keys = {m: {p.key for p in default_space(m).params} for m in ("mf", "neumf", "deepfm", "wide_deep", "dlrm")}
    assert {"train.lr", "model.factors", "train.num_negatives", "train.embedding_l2", "train.batch_size"} <= keys["mf"]
    assert "model.dropout" not in keys["mf"] and "train.num_negatives" not in keys["deepfm"]
    assert {"model.embedding_dim", "model.dropout", "model.hidden_units"} <= keys["deepfm"]
    assert {"train.groups.wide.lr", "train.groups.deep.lr"} <= keys["wide_deep"] and "train.lr" not in keys["wide_deep"]
    assert {"model.dense_arch", "model.over_arch"} <= keys["dlrm"]
    with pytest.raises(ConfigError, match="itempop has nothing to tune"):
        default_space("itempop")


def test_a_file_with_base_default_narrows_the_default_space(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text("base: default\nparams:\n  train.lr: {low: 0.001}\n  model.factors: [8, 16]\n  train.num_negatives: null\n  train.batch_size: 1024\n")
    space = load_space(path, "gmf")
    by_key = {p.key: p for p in space.params}
    assert by_key["train.lr"].low == 0.001 and by_key["train.lr"].high == 0.01 and by_key["train.lr"].log  # high and log kept
    assert by_key["model.factors"].choices == (8, 16)
    assert "train.num_negatives" not in by_key and "train.batch_size" not in by_key
    assert space.fixed == {"train.batch_size": 1024}
    assert list(by_key)[:2] == ["train.lr", "model.factors"]  # the default order is kept


def test_list_choices_round_trip_through_optuna():
    import optuna

    space = default_space("deepfm")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    trial = study.ask()
    values = space.suggest(trial)
    assert isinstance(values["model.hidden_units"], list)
    assert space.decode(trial.params)["model.hidden_units"] == values["model.hidden_units"]


@pytest.mark.parametrize(
    ("model", "text", "message"),
    [
        ("wide_deep", "params:\n  train.lr: {low: 0.001, high: 0.01}\n", "search train.groups.wide.lr"),
        ("deepfm", "params:\n  train.num_negatives: {low: 1, high: 4}\n", "model deepfm does not have this parameter"),
        ("gmf", "params:\n  model.mlp_layers: [[16, 8]]\n", "model gmf does not have this parameter"),
        ("gmf", "params:\n  model.nonsense: [1]\n", "unknown parameter 'model.nonsense'"),
        ("gmf", "params:\n  train.lr: {low: 0.0, high: 0.01, log: true}\n", "a log range needs low > 0"),
        ("gmf", "params:\n  train.epochs: [1, 2]\n", "not a hyper-parameter to search"),
        ("gmf", "params:\n  model.factors: {low: 4.5, high: 8}\n", "must be an integer"),
        ("gmf", "lr: 1\n", "unknown key 'lr'"),
    ],
)
def test_bad_space_files_name_the_parameter(tmp_path, model, text, message):
    path = tmp_path / "space.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message) as caught:
        load_space(path, model)
    assert str(path) in str(caught.value)


def test_an_in_memory_storage_warns_that_the_study_cannot_be_resumed():
    from recforge.tuning.study import open_storage

    with pytest.warns(UserWarning, match="in-memory SQLite database"):
        open_storage("sqlite:///")
