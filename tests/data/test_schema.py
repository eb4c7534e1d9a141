"""Schema declaration: YAML/dict form, checks, shared tables, fitted sizes."""

import pytest

from recforge.data.schema import FeatureSpec, Schema
from recforge.errors import ConfigError


def test_from_dict_round_trip_and_yaml(tmp_path):
    raw = {
        "features": [
            {"name": "user"},
            {"name": "age", "kind": "dense", "transform": "log1p"},
            {"name": "age_bucket", "source": "age", "bucketize": "quantile", "num_buckets": 4},
            {"name": "u_x_i", "cross": ["user", "item"]},
            {"name": "item", "min_count": 2, "embedding_dim": 8},
            {"name": "history", "kind": "sequence", "table": "item", "max_length": 5},
        ],
        "labels": ["click"],
    }
    schema = Schema.from_dict(raw)
    assert [f.name for f in schema.sparse] == ["user", "age_bucket", "u_x_i", "item"]
    assert schema.embedded() == ("user", "age_bucket", "item", "history")
    assert schema.embedded(crosses=True) == ("user", "age_bucket", "u_x_i", "item", "history")
    assert Schema.from_dict(schema.to_dict()) == schema
    path = tmp_path / "schema.yaml"
    path.write_text("features:\n  - {name: a}\n  - {name: b, kind: dense}\nlabels: [y]\n")
    loaded = Schema.from_yaml(path)
    assert loaded.labels == ("y",) and loaded.column("b") == 0


def test_fitted_sizes_follow_shared_tables():
    schema = Schema.from_dict({"features": [{"name": "item"}, {"name": "history", "kind": "sequence", "table": "item"}]})
    assert not schema.fitted
    fitted = schema.with_sizes({"item": 12})
    assert fitted.fitted and fitted.vocab_size("history") == 12 and fitted["history"].vocab_size == 12


@pytest.mark.parametrize(
    "entry, message",
    [
        ({"name": "a", "kind": "weird"}, "kind must be"),
        ({"name": "a", "transform": "log1p"}, "transform applies to dense"),
        ({"name": "a", "kind": "dense", "transform": "sqrt"}, "transform must be one of"),
        ({"name": "a", "bucketize": "quantile", "kind": "dense"}, "bucketize"),
        ({"name": "a", "cross": ["b"]}, "cross needs"),
        ({"name": "a", "min_count": 0}, "min_count"),
        ({"name": "a", "colour": "red"}, r"unknown key\(s\) \['colour'\]"),
        ({"name": "a", "separator": "|"}, "separator applies to sequence"),
    ],
)
def test_bad_feature_declarations_name_the_feature(entry, message):
    with pytest.raises(ConfigError, match=message):
        Schema.from_dict({"features": [entry]})


def test_schema_level_errors(tmp_path):
    with pytest.raises(ConfigError, match="declared twice"):
        Schema((FeatureSpec("a"), FeatureSpec("a")))
    with pytest.raises(ConfigError, match="table 'nope' must name"):
        Schema((FeatureSpec("a", table="nope"),))
    with pytest.raises(ConfigError, match="unknown key"):
        Schema.from_dict({"features": [{"name": "a"}], "label": ["y"]})
    bad = tmp_path / "bad.yaml"
    bad.write_text("features: [\n")
    with pytest.raises(ConfigError, match="bad.yaml"):
        Schema.from_yaml(bad)
