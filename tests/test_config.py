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
    with pytest.raises(ConfigError, match="train.monitor must be a validation metric"):
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
