"""`recforge recommend` end to end on a GMF run trained on movielens-100k (real data)."""

import json
import shutil

import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from recforge.cli.app import app
from recforge.config import from_dict
from recforge.serving.recommender import Recommender
from recforge.training.records import RunRecorder

runner = CliRunner()


@pytest.fixture(scope="module")
def gmf_run(shared_data, tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RECFORGE_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
        out = tmp_path_factory.mktemp("runs")
        result = runner.invoke(
            app,
            ["train", "gmf", "--dataset", "movielens-100k", "--factors", "8", "--epochs", "1", "--set", "train.full_ranking=false",
             "--data-dir", str(shared_data), "--output-dir", str(out), "--quiet"],
        )
        assert result.exit_code == 0, result.output
        (run,) = [p for p in out.iterdir() if p.is_dir()]
        yield run


def _recommend(*args):
    return runner.invoke(app, ["recommend", *map(str, args)])


def test_prints_a_table_with_cold_users_marked(gmf_run, shared_data):
    result = _recommend(gmf_run, "--users", "17,42,no-such-user", "--k", "3", "--data-dir", shared_data)
    assert result.exit_code == 0, result.output
    assert "┃ user" in result.stdout and "┃ cold" in result.stdout
    rows = [[cell.strip() for cell in line.split("│")[1:-1]] for line in result.stdout.splitlines() if "│" in line]
    assert [row[0] for row in rows] == ["17"] * 3 + ["42"] * 3 + ["no-such-user"] * 3
    assert [row[1] for row in rows] == ["1", "2", "3"] * 3
    assert [row[4] for row in rows] == [""] * 6 + ["yes"] * 3


@pytest.mark.parametrize("suffix", [".csv", ".json", ".parquet"])
def test_output_files_hold_the_api_answer(gmf_run, shared_data, tmp_path, suffix):
    ids = tmp_path / "users.txt"
    ids.write_text("user\n5\n943\n5\n")
    target = tmp_path / f"top{suffix}"
    result = _recommend(gmf_run, "--users-file", ids, "--k", "4", "--output", target, "--data-dir", shared_data)
    assert result.exit_code == 0, result.output
    assert "wrote 12 recommendations for 3 users" in result.stderr
    expected = Recommender.from_run(gmf_run, shared_data).recommend([5, 943, 5], k=4)
    if suffix == ".parquet":
        assert pq.read_table(target).equals(expected)
    elif suffix == ".csv":
        assert pacsv.read_csv(target, convert_options=pacsv.ConvertOptions(column_types=expected.schema)).equals(expected)
    else:
        assert json.loads(target.read_text()) == expected.to_pylist()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["users.txt", target.name])  # no temp file left


def test_all_users_and_include_seen(gmf_run, shared_data, tmp_path):
    target = tmp_path / "all.parquet"
    result = _recommend(gmf_run, "--all-users", "--k", "2", "--include-seen", "--output", target, "--data-dir", shared_data, "--quiet")
    assert result.exit_code == 0, result.output
    table = pq.read_table(target)
    assert table.num_rows == 943 * 2 and len(set(table["user"].to_pylist())) == 943
    expected = Recommender.from_run(gmf_run, shared_data).recommend(list(range(1, 944)), k=2, include_seen=True)
    assert table.equals(expected)


def test_bad_input_exits_2_with_one_line_naming_it(gmf_run, shared_data, tmp_path):
    garbage = tmp_path / "users.txt"
    garbage.write_bytes(b"17\n\xff\xfe\n")
    ctr = RunRecorder(tmp_path / "ctr", from_dict({"model": {"name": "deepfm"}, "data": {"name": "uci-adult"}})).path
    target = tmp_path / "never.csv"
    old = shutil.copytree(gmf_run, tmp_path / "old-run")  # a run from before the id-map artefacts
    for name in ("interactions.npz", "user_ids.parquet", "item_ids.parquet"):
        (old / name).unlink()
    cases = [
        ([gmf_run, "--users", "1", "--k", "0"], "--k must be >= 1, got 0"),
        ([tmp_path / "no-run", "--users", "1"], f"{tmp_path / 'no-run'} is not a run directory: it does not exist"),
        ([gmf_run, "--users-file", garbage, "--output", target], f"{garbage}, line 2: not UTF-8 text"),
        ([gmf_run, "--users-file", tmp_path / "absent.txt"], f"{tmp_path / 'absent.txt'}: no such file"),
        ([ctr, "--users", "1"], "is a deepfm run on tabular data (uci-adult)"),
        ([gmf_run], "give exactly one of --users, --users-file, --all-users (got none)"),
        ([gmf_run, "--users", "1", "--all-users"], "give exactly one of --users, --users-file, --all-users (got --users, --all-users)"),
        ([gmf_run, "--users", "1,,2"], "an empty id between commas"),
        ([gmf_run, "--users", "1", "--output", tmp_path / "top.xlsx"], "unknown format '.xlsx'"),
        ([old, "--users", "1", "--data-dir", tmp_path], "holds no interactions.npz and re-loading its dataset movielens-100k failed"),
    ]
    for args, message in cases:
        result = _recommend(*args, *([] if "--data-dir" in args else ["--data-dir", shared_data]))
        assert result.exit_code == 2, (args, result.output)
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert message in result.stderr, result.stderr
        assert "Traceback" not in result.stderr
    assert not target.exists()
