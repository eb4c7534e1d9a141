"""``recforge predict``'s streamed path (issue 14 item 4; newcomer trial item d): the read types of
:func:`recforge.serving.row_files.input_types` encode exactly as reading every feature column as
text / float64 did, pass-through columns keep the input's type, and a column whose inferred type
fails in a later block makes the file be read again with that column as text."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

import recforge
from recforge.serving.predictor import Predictor
from recforge.serving.row_files import input_types, iter_row_chunks, predict_file

N_TRAIN = 400


def _rows(n: int, seed: int, shops=(3, 5, 7, 11), codes=("007", "12", "x9")) -> dict[str, list]:
    rng = np.random.default_rng(seed)
    return {
        "row_key": [f"r{seed}-{i}" for i in range(n)],                       # passed through
        "shop_id": [int(v) for v in rng.choice(shops, n)],                    # integer category: canonical vocabulary
        "code": [str(v) for v in rng.choice(codes, n)],                       # text category with a leading zero
        "visits": [int(v) for v in rng.poisson(3, n)],                        # integer counts: dense
        "price": [None if i % 9 == 0 else float(v) for i, v in enumerate(rng.normal(10, 2, n))],  # missing values
        "clicked": [int(v) for v in rng.integers(0, 2, n)],
    }


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fast-path")
    train = folder / "train.csv"
    pacsv.write_csv(pa.table(_rows(N_TRAIN, 0)), train)
    # code stays text in training (it holds "x9"); shop_id is inferred integer and sparse (few values)
    return recforge.train("deepfm", data=str(train), label="clicked", epochs=1, output_dir=folder / "runs").path


def _write_text(path, columns: dict[str, list]) -> None:
    names = list(columns)
    lines = [",".join(names)] + [",".join("" if v is None else str(v) for v in row) for row in zip(*columns.values())]
    path.write_text("\n".join(lines) + "\n")


def test_new_read_types_encode_exactly_as_text_and_float64_did(run_dir, tmp_path):
    predictor = Predictor.from_run(run_dir)
    assert input_types(predictor) == {"code": pa.string()}  # shop_id's vocabulary is canonical integers: inferred
    rows = _rows(300, 1, shops=(3, 5, 13, 17), codes=("007", "7", "12", "new", ""))  # unseen shops and codes, "7" vs "007"
    rows["shop_id"][:5] = [None] * 5
    rows["visits"][5:10] = [None] * 5
    source = tmp_path / "rows.csv"
    _write_text(source, rows)
    old = next(iter_row_chunks(source, 1000, predictor.column_types()))  # the former reading: categories as text, numbers as float64
    new = next(iter_row_chunks(source, 1000, input_types(predictor)))
    assert old.schema.field("shop_id").type == pa.string() and new.schema.field("shop_id").type == pa.int64()
    assert new.schema.field("visits").type == pa.int64() and new.schema.field("code").type == pa.string()
    before, after = predictor.encode(old), predictor.encode(new)
    np.testing.assert_array_equal(after.sparse, before.sparse)
    np.testing.assert_array_equal(after.dense, before.dense)
    names = [spec.name for spec in predictor.schema.sparse]
    shop, code = names.index("shop_id"), names.index("code")
    assert (after.sparse[:5, shop] == 0).all()  # missing -> padding id 0
    unseen = np.isin(np.array(rows["shop_id"][5:], dtype=float), [13, 17])
    assert (after.sparse[5:, shop][unseen] == 1).all()  # unseen -> OOV id 1
    assert len({after.sparse[i, code] for i, c in enumerate(rows["code"]) if c == "007"}) == 1
    assert all(after.sparse[i, code] == 1 for i, c in enumerate(rows["code"]) if c in ("7", "new"))  # "7" is not "007"


def test_predict_file_keeps_input_types_and_equals_the_predictor(run_dir, tmp_path):
    predictor = Predictor.from_run(run_dir)
    rows = _rows(250, 2)
    source = tmp_path / "rows.csv"
    _write_text(source, rows)
    for suffix in (".csv", ".parquet"):
        output = tmp_path / f"scores{suffix}"
        assert predict_file(predictor, source, output, rows=64) == 250
        scored = pq.read_table(output) if suffix == ".parquet" else pacsv.read_csv(output)
        assert scored.column_names == [*rows, "p_clicked"]
        assert scored.schema.field("shop_id").type == pa.int64() and scored.schema.field("visits").type == pa.int64()
        assert scored.column("shop_id").to_pylist() == rows["shop_id"] and scored.column("row_key").to_pylist() == rows["row_key"]
        expected = predictor.predict(pacsv.read_csv(source, convert_options=pacsv.ConvertOptions(column_types=predictor.column_types())))
        np.testing.assert_allclose(scored.column("p_clicked").to_numpy(), expected["clicked"], rtol=0, atol=1e-6)  # BLAS kernels differ by batch shape: last float32 bits
    text = (tmp_path / "scores.csv").read_text().splitlines()
    assert text[1].split(",")[1] == str(rows["shop_id"][0])  # an integer, not the quoted string "3"


def test_a_type_contradicted_by_a_later_block_reads_the_file_again(run_dir, tmp_path, monkeypatch):
    import recforge.data.table_files as table_files

    monkeypatch.setattr(table_files, "BLOCK_BYTES", 2048)  # several blocks in a small file
    predictor = Predictor.from_run(run_dir)
    rows = _rows(400, 3)
    rows["shop_id"][-1] = "shop-x"  # integers for 399 rows, then text: fails after the first block
    rows["visits"][-2] = 2.5  # integer counts, then a fraction
    source = tmp_path / "rows.csv"
    _write_text(source, rows)
    output = tmp_path / "scores.csv"
    written = []
    assert predict_file(predictor, source, output, rows=50, on_chunk=written.append) == 400
    scored = pacsv.read_csv(output, convert_options=pacsv.ConvertOptions(column_types={"shop_id": pa.string()}))
    assert scored.column("shop_id").to_pylist() == [str(v) for v in rows["shop_id"]]
    assert scored.column("visits").to_pylist()[-2] == 2.5
    expected = predictor.predict(pacsv.read_csv(source, convert_options=pacsv.ConvertOptions(column_types=predictor.column_types())))
    np.testing.assert_allclose(scored.column("p_clicked").to_numpy(), expected["clicked"], rtol=0, atol=1e-6)  # BLAS kernels differ by batch shape: last float32 bits
    assert written[-1] == 400
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rows.csv", "scores.csv"]  # no temporary file left by the retries
