"""The bad-input sweep (issue 13, item 4): every bad file, schema or path is one line, exit 2.

Each bad dataset is a copy of a real small file from ``../shared/data`` (the other files of its
folder are symlinked), damaged the way downloads and hand edits damage files: truncated or
garbage gzip, empty, header only, binary, last line cut off, a value edited in place. Registered
datasets verify checksums, so ``recforge data prepare`` rejects the damaged copy by its checksum;
the parse function is then called on the copy directly, which must raise a DataError naming the
file and, where there is one, the line. The sources without checksums (the full ``avazu`` and
``criteo``) and ``data prepare criteo --input`` reach the parsers through the CLI.
"""

from __future__ import annotations

import gzip
import os
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from recforge.cli.app import app
from recforge.data.criteo import read_criteo
from recforge.data.datasets.adult import read_adult
from recforge.data.datasets.avazu import read_avazu
from recforge.data.datasets.census import read_census
from recforge.data.datasets.frappe import read_libfm, read_raw_log
from recforge.data.datasets.movielens import MovieLens1M
from recforge.data.datasets.movielens_ctr import read_items, read_users
from recforge.data.datasets.sequence_sets import AmazonGrocery, read_electronics_categories, read_electronics_sample
from recforge.data.readers import read_int_columns, read_ncf_negatives
from recforge.errors import DataError

runner = CliRunner()
TOO_LONG = "n" * 300  # one path component over NAME_MAX (255 bytes): ENAMETOOLONG


def invoke(*args: str) -> Any:
    return runner.invoke(app, [str(a) for a in args])


def assert_user_error(result: Any, *names: str) -> str:
    """Exit 2, one error line, no traceback, and the message names every one of ``names``."""
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0] == result.output.strip().splitlines()[-1], result.output
    for name in names:
        assert name in errors[0], errors[0]
    return errors[0]


# ------------------------------------------------------------------------------- damage to files
def _plain(data: bytes, gz: bool) -> bytes:
    return gzip.decompress(data) if gz else data


def _store(data: bytes, gz: bool) -> bytes:
    return gzip.compress(data, mtime=0) if gz else data


def text_edit(edit: Callable[[bytes], bytes]) -> Callable[[bytes, bool], bytes]:
    """A damage to the file's text (re-compressed if the file is a .gz)."""
    return lambda data, gz: _store(edit(_plain(data, gz)), gz)


def truncated_gzip(data: bytes, gz: bool) -> bytes:
    return data[: len(data) // 2]  # also a truncated Parquet file


def garbage_gzip(data: bytes, gz: bool) -> bytes:
    return data[:10] + b"garbage!" * 64  # a valid gzip header, then no deflate stream


def header_only(text: bytes) -> bytes:
    return text.split(b"\n", 1)[0] + b"\n"


def binary(text: bytes) -> bytes:
    return bytes(range(256)) * 4


def cut_last_line(text: bytes) -> bytes:
    body, last = text.rstrip(b"\n").rsplit(b"\n", 1)
    return body + b"\n" + last[: len(last) // 2]


def edit_line(number: int, edit: Callable[[bytes], bytes]) -> Callable[[bytes], bytes]:
    def apply(text: bytes) -> bytes:
        lines = text.split(b"\n")
        lines[number - 1] = edit(lines[number - 1])
        return b"\n".join(lines)

    return apply


def last_line_number(text: bytes) -> int:
    return len(text.rstrip(b"\n").split(b"\n"))


@dataclass(frozen=True)
class BadFile:
    """One damaged copy: which real file, the damage, the registered dataset, the parser."""

    id: str
    folder: str
    filename: str
    damage: Callable[[bytes, bool], bytes]
    dataset: str | None  # registered name (checksums): `data prepare` must reject the copy
    parse: Callable[[Path, Path], Any]  # (damaged file, dataset folder) -> parse it
    line: Callable[[bytes], int | None] = lambda text: None  # expected line, from the original text
    says: str = ""


def _first_char_to_x(line: bytes) -> bytes:
    return b"x" + line[1:]  # same size: an edit in place


def _tab_to_comma(line: bytes) -> bytes:
    return line.replace(b"\t", b",", 1)


def _grocery(path: Path, folder: Path) -> Any:
    """Both Grocery files of ``folder`` (one of them damaged) parsed into events."""
    return AmazonGrocery().read_events({"interactions": folder / "train.csv.gz", "item metadata": folder / "item_meta.csv.gz"})


BAD_FILES = [
    BadFile("adult-truncated-gzip", "uci-adult", "adult.data.gz", truncated_gzip, "uci-adult", lambda p, d: read_adult(p), says="truncated"),
    BadFile(
        "adult-age-edited-in-place", "uci-adult", "adult.data.gz", text_edit(edit_line(4, _first_char_to_x)), "uci-adult",
        lambda p, d: read_adult(p), lambda t: 4, "'age'",
    ),
    BadFile(
        "avazu-header-only", "avazu-head-10k", "train.gz", text_edit(header_only), "avazu-head-10k",
        lambda p, d: read_avazu(p, header=True), says="no data rows",
    ),
    BadFile("avazu-garbage-gzip", "avazu-head-10k", "train.gz", garbage_gzip, "avazu-head-10k", lambda p, d: read_avazu(p, header=True)),
    BadFile(
        "avazu-test-last-line-cut", "avazu-head-10k", "test.gz", text_edit(cut_last_line), "avazu-head-10k",
        lambda p, d: read_avazu(p, header=False), last_line_number, "field(s)",
    ),
    BadFile("census-truncated-gzip", "census-income-kdd", "census-income.test.gz", truncated_gzip, "census-income", lambda p, d: read_census(p)),
    BadFile(
        "census-last-line-cut", "census-income-kdd", "census-income.test.gz", text_edit(cut_last_line), "census-income",
        lambda p, d: read_census(p), last_line_number,
    ),
    BadFile("frappe-log-header-only", "frappe", "frappe.csv.gz", text_edit(header_only), "frappe", lambda p, d: read_raw_log(p), says="no data rows"),
    BadFile(
        "frappe-log-user-edited", "frappe", "frappe.csv.gz", text_edit(edit_line(5, _first_char_to_x)), "frappe",
        lambda p, d: read_raw_log(p), lambda t: 5, "'user'",
    ),
    BadFile("frappe-libfm-truncated-gzip", "frappe", "frappe.test.libfm.gz", truncated_gzip, "frappe", lambda p, d: read_libfm(p)),
    BadFile("ml100k-ratings-garbage-gzip", "ml-100k", "u.data.gz", garbage_gzip, "movielens-100k", lambda p, d: read_int_columns(p, 4)),
    BadFile(
        "ml100k-users-last-line-cut", "ml-100k", "u.user", text_edit(cut_last_line), "movielens-100k-ctr",
        lambda p, d: read_users(p), last_line_number,
    ),
    BadFile(
        "ml100k-users-mixed-type", "ml-100k", "u.user", text_edit(edit_line(4, _first_char_to_x)), "movielens-100k-ctr",
        lambda p, d: read_users(p), lambda t: 4, "'user_id'",
    ),
    BadFile(
        "ml100k-items-duplicate-id", "ml-100k", "u.item.gz", text_edit(edit_line(11, lambda line: b"4" + line[2:])), "movielens-100k-ctr",
        lambda p, d: read_items(p), lambda t: 11, "more than once",
    ),
    BadFile(
        "ml1m-ratings-truncated-parquet", "ml-1m", "ratings.parquet", truncated_gzip, "movielens-1m",
        lambda p, d: MovieLens1M().read_ratings(p), says="Parquet",
    ),
    BadFile("ncf-negatives-binary", "ml-1m-ncf", "ml-1m.test.negative.gz", text_edit(binary), "movielens-1m-ncf", lambda p, d: read_ncf_negatives(p), says="UTF-8"),
    BadFile("ncf-negatives-truncated-gzip", "ml-1m-ncf", "ml-1m.test.negative.gz", truncated_gzip, "movielens-1m-ncf", lambda p, d: read_ncf_negatives(p)),
    BadFile("grocery-header-only", "amazon-grocery-rechorus", "train.csv.gz", text_edit(header_only), "amazon-grocery", _grocery, says="no data rows"),
    BadFile(
        "grocery-meta-mixed-separators", "amazon-grocery-rechorus", "item_meta.csv.gz", text_edit(edit_line(4, _tab_to_comma)),
        "amazon-grocery", _grocery, lambda t: 4,
    ),
    BadFile("grocery-truncated-gzip", "amazon-grocery-rechorus", "item_meta.csv.gz", truncated_gzip, "amazon-grocery", _grocery),
    BadFile("electronics-sample-header-only", "rechub-samples", "amazon_electronics_sample.csv", text_edit(header_only), None, lambda p, d: read_electronics_sample(p), says="no data rows"),
    BadFile(
        "electronics-sample-last-line-cut", "rechub-samples", "amazon_electronics_sample.csv", text_edit(cut_last_line), None,
        lambda p, d: read_electronics_sample(p), last_line_number,
    ),
    BadFile(
        "criteo-last-line-cut", "criteo-head-10k", "sample.train.gz", text_edit(cut_last_line), "criteo-head-10k",
        lambda p, d: read_criteo(p), last_line_number, "cut off",
    ),
]


def damaged_copy(shared_data: Path, tmp_path: Path, case: BadFile) -> tuple[Path, Path, bytes]:
    """A data directory under tmp_path whose dataset folder holds the damaged file (others symlinked).

    Returns:
        (data directory, damaged file, the original file's text).
    """
    source = shared_data / case.folder
    folder = tmp_path / "data" / case.folder
    folder.mkdir(parents=True)
    for item in source.iterdir():
        if item.name != case.filename:
            (folder / item.name).symlink_to(item)
    original = (source / case.filename).read_bytes()
    gz = case.filename.endswith(".gz")
    damaged = folder / case.filename
    damaged.write_bytes(case.damage(original, gz))
    return tmp_path / "data", damaged, _plain(original, gz)


@pytest.mark.parametrize("case", BAD_FILES, ids=lambda c: c.id)
def test_damaged_copy_is_one_line_naming_the_file(shared_data, tmp_path, case):
    data_dir, damaged, original = damaged_copy(shared_data, tmp_path, case)
    if case.dataset is not None:
        # the CLI rejects the edited copy of a verified dataset by its checksum, naming the file
        assert_user_error(invoke("data", "prepare", case.dataset, "--data-dir", data_dir), str(damaged), "checksum mismatch")
    with pytest.raises(DataError) as caught:
        case.parse(damaged, damaged.parent)
    error = caught.value
    assert error.path == damaged, str(error)
    assert error.line == case.line(original), str(error)
    assert case.says in str(error)
    assert "\n" not in str(error)


# ------------------------------------------------------------------ sources without checksums
def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(data, mtime=0) if path.suffix == ".gz" else data)
    return path


def _avazu_text(shared_data: Path) -> bytes:
    return gzip.decompress((shared_data / "avazu-head-10k" / "train.gz").read_bytes())


@pytest.mark.parametrize(
    "damage, line, says",
    [
        (header_only, None, "no data rows after the header"),
        (edit_line(7, lambda line: line.rsplit(b",", 3)[0]), 7, "found 21 field(s)"),
        (cut_last_line, "last", "field(s)"),
    ],
    ids=["header-only", "columns-missing-on-line-7", "last-line-cut"],
)
def test_full_avazu_parse_errors_name_the_line(shared_data, tmp_path, damage, line, says):
    text = _avazu_text(shared_data)
    path = _write(tmp_path / "avazu" / "train.gz", damage(text))
    message = assert_user_error(invoke("data", "prepare", "avazu", "--data-dir", tmp_path), str(path), says)
    if line is not None:
        assert f", line {last_line_number(text) if line == 'last' else line}:" in message


def test_full_avazu_truncated_gzip(shared_data, tmp_path):
    path = tmp_path / "avazu" / "train.gz"
    path.parent.mkdir()
    path.write_bytes(truncated_gzip((shared_data / "avazu-head-10k" / "train.gz").read_bytes(), True))
    assert_user_error(invoke("data", "prepare", "avazu", "--data-dir", tmp_path), str(path), "truncated")


def _criteo_text(shared_data: Path) -> bytes:
    return gzip.decompress((shared_data / "criteo-head-10k" / "sample.train.gz").read_bytes())


def test_full_criteo_cut_off_is_reported_with_its_line(shared_data, tmp_path):
    text = _criteo_text(shared_data)
    path = _write(tmp_path / "criteo" / "train.txt", cut_last_line(text))
    message = assert_user_error(invoke("data", "prepare", "criteo", "--data-dir", tmp_path, "--quiet"), str(path), "cut off")
    assert f", line {last_line_number(text)}:" in message


def _cut_after(fields: int, keep: int | None = None) -> Callable[[bytes], bytes]:
    """The last line cut after ``fields`` fields (and then to ``keep`` bytes of the last one), no newline."""

    def cut(text: bytes) -> bytes:
        body, last = text.rstrip(b"\n").rsplit(b"\n", 1)
        kept = last.split(b"\t")[:fields]
        if keep is not None:
            kept[-1] = kept[-1][:keep]
        return body + b"\n" + b"\t".join(kept)

    return cut


@pytest.mark.parametrize(
    "cut",
    [_cut_after(40, 5), _cut_after(34, 6), _cut_after(6), _cut_after(1), lambda t: _cut_after(30)(t) + b"\t"],
    ids=["inside-C26", "inside-C20", "after-I5", "label-only", "right-after-a-tab"],
)
def test_criteo_input_cut_off_last_line_names_it(shared_data, tmp_path, cut):
    text = _criteo_text(shared_data)
    path = _write(tmp_path / "cut.txt", cut(text))
    message = assert_user_error(invoke("data", "prepare", "criteo", "--input", path, "--output", tmp_path / "enc", "--quiet"), str(path), "cut off")
    assert f", line {last_line_number(text)}:" in message
    # the same file with the newline added is a complete file
    complete = _write(tmp_path / "complete.txt", cut(text) + b"\n")
    assert read_criteo(complete).num_rows == last_line_number(text)


def test_criteo_unterminated_last_line_without_trailing_empty_fields_is_read(shared_data, tmp_path):
    """pytorch-fm's copy of the head of train.txt drops trailing empty fields and ends without a
    newline (38 fields): it is complete and must be read; a cut inside a category must not."""
    text = gzip.decompress((shared_data / "criteo-sample" / "train.txt.gz").read_bytes())
    assert not text.endswith(b"\n") and text.rsplit(b"\n", 1)[1].count(b"\t") + 1 < 40
    assert read_criteo(_write(tmp_path / "train.txt", text)).num_rows == 1000
    with pytest.raises(DataError) as caught:
        read_criteo(_write(tmp_path / "cut.txt", text[:-3]))
    assert caught.value.line == 1000


def test_criteo_binary_line_reports_no_traceback(shared_data, tmp_path, monkeypatch):
    """Arrow cannot decode a binary row for the invalid-row handler; Python used to print that as
    "Exception ignored ... Traceback" on stderr next to the error line."""
    reports: list[Any] = []
    monkeypatch.setattr(sys, "unraisablehook", reports.append)
    lines = _criteo_text(shared_data).split(b"\n")
    path = _write(tmp_path / "binary.txt", b"\n".join([lines[0], b"\x80\x81\tx" * 3, *lines[1:]]))
    with pytest.raises(DataError) as caught:
        read_criteo(path)
    assert caught.value.line == 2 and "UTF-8" in str(caught.value)
    assert reports == []


def test_electronics_metadata_corrupt_gzip(tmp_path):
    """No real copy of meta_Electronics is in the shared data: a two-line file in its format."""
    text = b"{'asin': 'A1', 'categories': [['Electronics', 'Cables']]}\n{'asin': 'A2', 'categories': [['Electronics']]}\n"
    path = tmp_path / "meta_Electronics.json.gz"
    path.write_bytes(garbage_gzip(gzip.compress(text), True))
    with pytest.raises(DataError) as caught:
        read_electronics_categories(path, {"A1"})
    assert caught.value.path == path and "gzip" in str(caught.value)


# --------------------------------------------------------------------------------- bad schemas
SCHEMAS = {
    "binary": b"\xff\xfe\x00features",
    "not-yaml": b"features: [\n  - name: C1\n",
    "cross-not-a-list": b"features:\n  - name: C1\n    cross: 5\nlabels: [label]\n",
    "cross-nested-list": b"features:\n  - name: C1\n    cross: [C2, [C3]]\nlabels: [label]\n",
    "labels-a-number": b"features:\n  - name: C1\nlabels: 5\n",
}


@pytest.mark.parametrize("name", SCHEMAS)
def test_bad_schema_file_is_one_line_naming_it(shared_data, tmp_path, name):
    schema = tmp_path / f"{name}.yaml"
    schema.write_bytes(SCHEMAS[name])
    result = invoke(
        "train", "deepfm", "--dataset", "criteo-head-10k", "--schema", schema, "--epochs", "1",
        "--data-dir", shared_data, "--output-dir", tmp_path / "runs", "--quiet",
    )
    assert_user_error(result, str(schema))
    assert not (tmp_path / "runs").exists()


# ----------------------------------------------------------------------------------- bad paths
def _output_path_cases(tmp_path: Path, shared_data: Path) -> dict[str, tuple[list[Any], Path]]:
    blocker = tmp_path / "a-file"
    blocker.write_text("a regular file where a folder is expected (chmod would not stop root)")
    long_dir = tmp_path / TOO_LONG
    criteo_input = shared_data / "criteo-head-10k" / "sample.train.gz"
    return {
        "generate-name-too-long": (["data", "generate", "criteo", "--rows", "10", "--output", tmp_path / f"{TOO_LONG}.txt"], tmp_path / f"{TOO_LONG}.txt"),
        "generate-under-a-file": (["data", "generate", "criteo", "--rows", "10", "--output", blocker / "out.txt"], blocker / "out.txt"),
        "generate-into-a-folder": (["data", "generate", "criteo", "--rows", "10", "--output", tmp_path], tmp_path),
        "train-output-dir-too-long": (
            ["train", "itempop", "--dataset", "movielens-100k", "--data-dir", shared_data, "--output-dir", long_dir, "--quiet"], long_dir,
        ),
        "prepare-output-too-long": (["data", "prepare", "criteo", "--input", criteo_input, "--output", long_dir / "enc", "--quiet"], long_dir / "enc"),
        "prepare-output-under-a-file": (["data", "prepare", "criteo", "--input", criteo_input, "--output", blocker / "enc", "--quiet"], blocker / "enc"),
        "report-output-too-long": (["report", tmp_path, "--output", long_dir], long_dir),
    }


@pytest.mark.parametrize(
    "case",
    ["generate-name-too-long", "generate-under-a-file", "generate-into-a-folder", "train-output-dir-too-long",
     "prepare-output-too-long", "prepare-output-under-a-file", "report-output-too-long"],
)
def test_unusable_output_path_is_one_line_naming_it(shared_data, tmp_path, case):
    args, path = _output_path_cases(tmp_path, shared_data)[case]
    assert_user_error(invoke(*args), str(path))


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux /proc (a folder not even root can write)")
def test_generate_into_proc_is_one_line(tmp_path):
    assert_user_error(invoke("data", "generate", "criteo", "--rows", "10", "--output", "/proc/recforge-test.txt"), "/proc/recforge-test.txt")
    assert not os.path.exists("/proc/recforge-test.txt")


def test_evaluate_missing_or_file_run_directory(tmp_path):
    assert_user_error(invoke("evaluate", tmp_path / "no-such-run"), str(tmp_path / "no-such-run"), "does not exist")
    (tmp_path / "a-file").write_text("not a run")
    assert_user_error(invoke("evaluate", tmp_path / "a-file"), str(tmp_path / "a-file"), "is a file")


def test_evaluate_interrupted_ncf_run_warns(shared_data, tmp_path):
    trained = invoke(
        "train", "gmf", "--dataset", "movielens-100k", "--factors", "4", "--epochs", "1", "--batch-size", "4096",
        "--data-dir", shared_data, "--output-dir", tmp_path, "--quiet",
    )
    assert trained.exit_code == 0, trained.output
    (run,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    (run / "summary.json").unlink()  # as if interrupted after its last checkpoint
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = invoke("evaluate", run, "--data-dir", shared_data, "--no-full-ranking")
    assert result.exit_code == 0, result.output
    notes = [str(w.message) for w in caught if "summary.json" in str(w.message)]
    assert len(notes) == 1 and str(run) in notes[0] and "did not finish" in notes[0] and "1 of 1 epochs" in notes[0]
