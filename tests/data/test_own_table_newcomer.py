"""Leftovers of the newcomer trial on own tables and logs (issue 14): errors name the file and a
1-based line, label-like and row-id columns are not silently features, recommend's tie rule."""

from __future__ import annotations

import warnings

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recforge.data.datasets.own import TableSource
from recforge.data.inference import infer_schema
from recforge.data.leakage import LabelLeakWarning
from recforge.errors import DataError


def _csv(path, n=200, bad_row=150, seed=0):
    rng = np.random.default_rng(seed)
    lines = ["id,x,city,click"]
    for i in range(n):
        x = "inf" if i == bad_row else f"{rng.random():.6f}"
        lines.append(f"{i},{x},c{rng.integers(0, 6)},{rng.integers(0, 2)}")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_an_infinite_value_names_the_file_and_its_line_not_the_folder(tmp_path):
    path = _csv(tmp_path / "t.csv")
    with pytest.raises(DataError) as caught:
        TableSource([path], ["click"]).load(use_cache=False)
    message = str(caught.value)
    # data row 151 (the 151st row after the header) is line 152 of the file, before any split shuffles it
    assert message.startswith(f"{path}, line 152: column 'x'") and "at data row 151" in message
    valid = _csv(tmp_path / "valid.csv", n=40, bad_row=7, seed=1)
    with pytest.raises(DataError, match=r"valid\.csv, line 9: column 'x' .* at data row 8"):
        TableSource([_csv(tmp_path / "train.csv", bad_row=-1)], ["click"], valid_paths=[valid]).load(use_cache=False)
    table = pa.table({"x": [0.5, 1.0, float("-inf")], "city": ["a", "b", "a"], "click": [0, 1, 1]})
    pq.write_table(table, tmp_path / "t.parquet")  # no lines in Parquet: the data row alone
    with pytest.raises(DataError, match=r"t\.parquet: column 'x' .*-inf at data row 3"):
        TableSource([tmp_path / "t.parquet"], ["click"]).load(use_cache=False)


def test_a_second_label_is_not_silently_a_feature():
    rng = np.random.default_rng(0)
    n = 600
    click = (rng.random(n) < 0.2).astype(int)
    purchase = click * (rng.random(n) < 0.3)  # a purchase needs a click: a later outcome of the same event
    table = pa.table({"city": rng.choice(["a", "b", "c"], n), "purchase": purchase, "seen": rng.integers(0, 2, n), "click": click})
    with pytest.warns(LabelLeakWarning, match="column 'purchase' is label-like"):
        schema, report = infer_schema(table, ["click"])
    assert "purchase" not in schema and "seen" in schema  # an ordinary 0/1 column stays a feature
    detail = {r.name: r.detail for r in report}["purchase"]
    assert detail.startswith(f"label-like: all {int(purchase.sum())} row(s) with purchase = 1 have click = 1")
    assert "--label click,purchase" in detail
    with warnings.catch_warnings():
        warnings.simplefilter("error", LabelLeakWarning)
        infer_schema(table, ["click", "purchase"])  # both declared as labels: nothing to warn about


def test_the_printed_schema_flags_a_feature_that_alone_separates_the_label():
    from rich.console import Console

    from recforge.cli.app import schema_table
    from recforge.data.schema import FeatureSpec, Schema

    schema = Schema((FeatureSpec("city"), FeatureSpec("status")), labels=("click",))
    console = Console(width=200, record=True)
    console.print(schema_table(schema, (), leaks={"status"}))
    lines = {line.split("│")[1].strip(): line for line in console.export_text().splitlines() if line.count("│") > 2}
    assert "LABEL LEAK?" in lines["status"] and "LABEL LEAK?" not in lines["city"]


def test_a_row_id_column_is_skipped_and_said_so():
    n = 300
    rng = np.random.default_rng(0)
    table = pa.table({
        "id": rng.permutation(n) + 10_000,          # id-like name, a different value in every row
        "row": np.arange(n),                        # 0..n-1: a row number
        "order_ref": [f"o{i:05d}" for i in range(n)],  # unique strings
        "amount": rng.exponential(10, n).round(2),  # unique floats stay a number (dense)
        "shop_id": rng.integers(0, 20, n),          # an id with repeats stays sparse
        "click": rng.integers(0, 2, n),
    })
    schema, report = infer_schema(table, ["click"])
    skipped = {r.name: r.detail for r in report if r.kind == "skipped"}
    assert set(skipped) == {"id", "row", "order_ref"}
    assert all(d.startswith("row id: a different value in every row") and "predict passes it through" in d for d in skipped.values())
    assert schema["amount"].kind == "dense" and schema["shop_id"].kind == "sparse"


@pytest.mark.parametrize(("ids", "expected"), [(["item9", "item10"], ["item10", "item9"]), ([9, 10], [9, 10])])
def test_recommend_breaks_ties_by_internal_id_ascending_raw_order(tmp_path, ids, expected):
    import recforge

    a, b = ids
    # last:1 holds out a, b and y; training is "z" alone (masked for u3): a, b and y tie at count 0
    rows = [("u1", "z", 1), ("u1", a, 2), ("u2", "z", 1), ("u2", b, 2), ("u3", "z", 1), ("u3", "y", 2)]
    if isinstance(a, int):
        rows = [(u, {"z": 1, "y": 100}.get(i, i) if isinstance(i, str) else i, t) for u, i, t in rows]
    log = tmp_path / "events.csv"
    log.write_text("u,i,t\n" + "\n".join(f"{u},{i},{t}" for u, i, t in rows) + "\n")
    run = recforge.train("itempop", data=str(log), user_col="u", item_col="i", time_col="t", split="last:1",
                         validation=False, output_dir=tmp_path / "runs")
    top = run.recommend(["u3"], k=2).column("item").to_pylist()
    assert top == expected  # u3's candidates a, b (count 1 each, tied): the lower internal id, i.e. the smaller raw id first
