import pytest

from recforge.config import apply_overrides, from_dict, read_yaml
from recforge.errors import ConfigError, UnknownNameError
from recforge.models.ncf import NCFConfig


def test_defaults_are_the_papers():
    cfg = from_dict({"model": {"name": "neumf"}})
    assert cfg.model == NCFConfig(factors=8)
    assert (cfg.train.batch_size, cfg.train.lr, cfg.train.num_negatives, cfg.train.optimizer) == (256, 0.001, 4, "adam")
    assert cfg.pretrain.alpha == 0.5 and cfg.pretrain.optimizer == "sgd"


def test_round_trip_and_fingerprint():
    cfg = from_dict({"model": {"name": "mlp", "factors": 16, "mlp_layers": [64, 32, 16]}, "seed": 3})
    again = from_dict(cfg.to_dict())
    assert again == cfg and again.fingerprint() == cfg.fingerprint()
    assert again.model.mlp_layers == (64, 32, 16)


def test_unknown_keys_and_bad_types_name_the_field():
    with pytest.raises(ConfigError, match="unknown key train.learning_rate"):
        from_dict({"model": {"name": "gmf"}, "train": {"learning_rate": 0.1}})
    with pytest.raises(ConfigError, match="model.factors: expected an integer"):
        from_dict({"model": {"name": "gmf", "factors": "eight"}})
    with pytest.raises(ConfigError, match="train.optimizer must be one of"):
        from_dict({"model": {"name": "gmf"}, "train": {"optimizer": "lbfgs"}})
    with pytest.raises(ConfigError, match="train.monitor must be one of auto, valid/hit_rate@10"):
        from_dict({"model": {"name": "gmf"}, "train": {"monitor": "test/ndcg@10"}})
    with pytest.raises(UnknownNameError):
        from_dict({"model": {"name": "nope"}})
    with pytest.raises(ConfigError, match="model.name is required"):
        from_dict({})


def test_overrides():
    raw = apply_overrides({"model": {"name": "gmf"}}, ["model.factors=32", "train.ks=[5,10]", "pretrain.enabled=true"])
    cfg = from_dict(raw)
    assert cfg.model.factors == 32 and cfg.train.ks == (5, 10) and cfg.pretrain.enabled
    with pytest.raises(ConfigError, match="key=value"):
        apply_overrides({}, ["model.factors"])


def test_yaml_errors_name_the_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("model:\n  name: gmf\n  factors: [8\n")
    with pytest.raises(ConfigError, match=r"bad.yaml, line \d+: invalid YAML"):
        read_yaml(path)
    with pytest.raises(ConfigError, match="cannot read config file"):
        read_yaml(tmp_path / "missing.yaml")


def test_shipped_configs_parse():
    from pathlib import Path

    files = sorted((Path(__file__).resolve().parents[1] / "configs").rglob("*.yaml"))
    assert files
    for path in files:
        from_dict(read_yaml(path))


@pytest.mark.parametrize(
    "raw, message",
    [
        ({"train": {"ks": []}}, "train.ks must list at least one"),
        ({"train": {"ks": [5], "monitor": "valid/ndcg@10"}}, "train.monitor must be one of auto, valid/hit_rate@5"),
        ({"train": {"monitor": "valid/gauc"}}, "train.monitor must be one of"),
        ({"seed": -1}, r"seed must be an integer in \[0, 2\*\*32\)"),
        ({"data": {"split_seed": 2**40}}, "data.split_seed must be"),
        ({"train": {"weight_decay": -1}}, "train.weight_decay must be >= 0"),
        ({"train": {"lr": float("nan")}}, "expected a finite number"),
        ({"train": {"num_negatives": 0}}, "train.num_negatives must be >= 1"),
        ({"train": {"device": "banana"}}, "train.device must be cpu, cuda or cuda:N"),
        ({"train": {"device": "mps"}}, "train.device must be cpu, cuda or cuda:N"),
        ({"model": {"name": "gmf", "init_std": -1}}, "model.init_std must be > 0"),
        ({"pretrain": {"gmf_run": "x"}}, "pretrain.enabled is false"),
        ({"train": 3}, "train: expected a mapping"),
    ],
)
def test_invalid_values_are_config_errors(raw, message):
    raw = {"model": {"name": "gmf"}, **raw} if "model" not in raw else raw
    with pytest.raises(ConfigError, match=message):
        from_dict(raw)


def test_scientific_notation_learning_rates():
    cfg = from_dict(apply_overrides({"model": {"name": "gmf"}}, ["train.lr=1e-5"]))
    assert cfg.train.lr == 1e-5
    with pytest.raises(ConfigError, match="model: expected a mapping"):
        from_dict({"model": "gmf"})


def test_non_utf8_config(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("model: {name: gmf}  # caf\xe9\n".encode("latin-1"))
    with pytest.raises(ConfigError, match="not UTF-8"):
        read_yaml(path)


def test_settings_a_model_ignores_are_dropped_from_its_config():
    gmf = from_dict({"model": {"name": "gmf", "factors": 8, "mlp_layers": [64, 32, 16, 8]}})
    assert gmf.model.mlp_layers is None
    assert gmf == from_dict({"model": {"name": "gmf", "factors": 8}})
    neumf = from_dict({"model": {"name": "neumf", "factors": 8, "mlp_layers": [64, 32, 16, 8]}})
    assert neumf.model.mlp_layers == (64, 32, 16, 8)
    assert neumf.replace(model_name="gmf").model.mlp_layers is None
