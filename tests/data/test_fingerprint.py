"""Content fingerprints (recforge.data.fingerprint) and the caches keyed on them (issue 13).

The end-to-end tests reproduce the reported bug: an in-place edit that keeps a file's size (every
Avazu click label flipped) used to be served from the old cache, keyed on file name and size.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import time
from pathlib import Path

import numpy as np
import pytest

from recforge.data import fingerprint
from recforge.data.datasets import get_dataset
from recforge.data.datasets.movielens import MovieLens100K
from recforge.data.fingerprint import cache_key, file_fingerprint
from recforge.errors import DataError


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A cache directory of this test's own, so memos of other tests never interfere."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("RECFORGE_CACHE_DIR", str(folder))
    return folder


@pytest.fixture
def memoise_now(monkeypatch: pytest.MonkeyPatch) -> None:
    """Memoise even files changed just now (the tests write their files a moment before hashing)."""
    monkeypatch.setattr(fingerprint, "RACY_SECONDS", 0.0)


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    time.sleep(0.02)  # step past the file system's coarse clock tick, so a later write gets a new ctime
    return path


def _edit_in_place(path: Path, offset: int, data: bytes) -> None:
    """Overwrite bytes at ``offset`` (same inode, same size), then restore the original mtime."""
    before = path.stat()
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = path.stat()
    assert (after.st_size, after.st_mtime_ns, after.st_ino) == (before.st_size, before.st_mtime_ns, before.st_ino)


def _counting_open(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    opened: list[Path] = []

    def spy(file, *args, **kwargs):  # noqa: ANN001, ANN202
        opened.append(Path(file))
        return open(file, *args, **kwargs)

    monkeypatch.setattr(fingerprint, "open", spy, raising=False)
    return opened


# ---------------------------------------------------------------------------------- unit
def test_same_bytes_same_fingerprint_and_it_is_blake2b(tmp_path, cache_dir):
    a = _write(tmp_path / "a.csv", b"id,click\n1,0\n2,1\n")
    b = _write(tmp_path / "b.csv", b"id,click\n1,0\n2,1\n")
    c = _write(tmp_path / "c.csv", b"id,click\n1,1\n2,1\n")
    assert file_fingerprint(a) == file_fingerprint(b) == hashlib.blake2b(a.read_bytes(), digest_size=16).hexdigest()
    assert file_fingerprint(c) != file_fingerprint(a)


@pytest.mark.parametrize("memoised", [False, True], ids=["racy-not-memoised", "memoised"])
def test_same_size_edit_with_restored_mtime_changes_fingerprint(tmp_path, cache_dir, monkeypatch, memoised):
    if memoised:
        monkeypatch.setattr(fingerprint, "RACY_SECONDS", 0.0)
    path = _write(tmp_path / "train.csv", b"id,click\n1,0\n2,0\n3,0\n")
    first = file_fingerprint(path)
    assert any((cache_dir / "fingerprints").glob("*.json")) == memoised
    time.sleep(0.02)
    _edit_in_place(path, len(b"id,click\n1,"), b"1")
    assert file_fingerprint(path) != first
    assert file_fingerprint(path) == hashlib.blake2b(path.read_bytes(), digest_size=16).hexdigest()


def test_memo_reused_while_file_unchanged(tmp_path, cache_dir, memoise_now, monkeypatch):
    path = _write(tmp_path / "train.csv", b"x" * 3_000_000)
    opened = _counting_open(monkeypatch)
    first = file_fingerprint(path)
    assert opened == [path.resolve()]
    assert file_fingerprint(path) == first
    assert file_fingerprint(tmp_path / "." / "train.csv") == first  # keyed by the resolved path
    assert opened == [path.resolve()], "the second call must not read the file again"
    path.write_bytes(b"x" * 3_000_000)  # same content, but rewritten: the stamps change, so hash again
    assert file_fingerprint(path) == first
    assert len(opened) == 2


@pytest.mark.parametrize(
    "memo",
    [b"\x00\xff{not json", b"[1, 2, 3]", b'{"format": 1}', b"", "wrong-hash"],
    ids=["garbage", "list", "no-fields", "empty", "matching-stamp-bad-hash"],
)
def test_corrupt_memo_is_ignored(tmp_path, cache_dir, memoise_now, memo):
    path = _write(tmp_path / "train.csv", b"id,click\n1,0\n")
    expected = file_fingerprint(path)
    (memo_file,) = (cache_dir / "fingerprints").glob("*.json")
    if memo == "wrong-hash":
        record = json.loads(memo_file.read_text())
        record["blake2b"] = 12345
        memo = json.dumps(record).encode()
    memo_file.write_bytes(memo)
    assert file_fingerprint(path) == expected
    assert json.loads(memo_file.read_text())["blake2b"] == expected  # rewritten


def test_unwritable_cache_dir_still_fingerprints(tmp_path, monkeypatch, memoise_now):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache directory's parent should be")
    monkeypatch.setenv("RECFORGE_CACHE_DIR", str(blocker / "cache"))  # mkdir fails, even as root
    path = _write(tmp_path / "train.csv", b"id,click\n1,0\n")
    assert file_fingerprint(path) == file_fingerprint(path) == hashlib.blake2b(path.read_bytes(), digest_size=16).hexdigest()


def test_missing_file_is_a_data_error(tmp_path, cache_dir):
    with pytest.raises(DataError, match="cannot read file"):
        file_fingerprint(tmp_path / "absent.csv")


def test_cache_key_depends_on_parts_and_content(tmp_path, cache_dir):
    path = _write(tmp_path / "train.csv", b"id,click\n1,0\n")
    key = cache_key(2, "avazu", 0, paths={"training rows": path})
    assert key == cache_key(2, "avazu", 0, paths={"training rows": path})
    assert key != cache_key(2, "avazu", 1, paths={"training rows": path})
    assert key != cache_key(2, "avazu", 0, paths={"test rows": path})
    _edit_in_place(path, len(b"id,click\n1,"), b"1")
    assert key != cache_key(2, "avazu", 0, paths={"training rows": path})


# ---------------------------------------------------------------------------------- end to end
def _flip_clicks_in_place(path: Path) -> None:
    """Flip every ``click`` (second column) of an Avazu CSV: same bytes count, same inode."""
    lines = path.read_bytes().split(b"\n")
    offset = len(lines[0]) + 1
    with open(path, "r+b") as f:
        for line in lines[1:]:
            if line:
                at = line.index(b",") + 1
                f.seek(offset + at)
                f.write(b"1" if line[at : at + 1] == b"0" else b"0")
            offset += len(line) + 1
    before = path.stat()
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))


def _positives(data) -> float:
    return sum(float(np.nansum(data.split(s).labels)) for s in ("train", "valid", "test"))


@pytest.mark.parametrize("memoised", [False, True], ids=["hashed-again", "memo-stamps"])
def test_tabular_cache_sees_flipped_avazu_clicks(shared_data, tmp_path, cache_dir, monkeypatch, memoised):
    """The bug as reported: flip every click label of the full-``avazu`` file (no checksum)."""
    if memoised:
        monkeypatch.setattr(fingerprint, "RACY_SECONDS", 0.0)
    folder = tmp_path / "data" / "avazu"
    folder.mkdir(parents=True)
    with gzip.open(shared_data / "avazu-head-10k" / "train.gz", "rt") as f:
        lines = [next(f) for _ in range(1001)]
    train = folder / "train.csv"
    train.write_text("".join(lines))
    source = get_dataset("avazu")
    first = source.load(tmp_path / "data", seed=0)
    assert any((cache_dir / "tabular").iterdir())
    size = train.stat().st_size
    time.sleep(0.02)
    _flip_clicks_in_place(train)
    assert train.stat().st_size == size

    second = source.load(tmp_path / "data", seed=0)
    assert _positives(second) == 1000 - _positives(first)
    fresh = source.load(tmp_path / "data", seed=0, use_cache=False)
    for split in ("train", "valid", "test"):
        np.testing.assert_array_equal(second.split(split).labels, fresh.split(split).labels)
        np.testing.assert_array_equal(second.split(split).sparse, fresh.split(split).sparse)
    assert second.info["positive_rate"] == fresh.info["positive_rate"] != first.info["positive_rate"]


def test_leave_one_out_cache_sees_same_size_edit(shared_data, tmp_path, cache_dir, monkeypatch):
    """registry.DatasetSource.load: MovieLens-100K ratings as a source without a fixed checksum
    (verify patched to check nothing); reversing the time order of the ratings in place (same
    size) changes every user's held-out latest item."""
    folder = tmp_path / "data" / "ml-100k"
    folder.mkdir(parents=True)
    ratings = folder / "u.data"
    with gzip.open(shared_data / "ml-100k" / "u.data.gz", "rb") as f:
        ratings.write_bytes(f.read())
    monkeypatch.setattr(MovieLens100K, "verify", lambda self, data_dir=None: {"ratings": ratings})
    source = get_dataset("movielens-100k")
    first = source.load(tmp_path / "data", seed=0)
    assert any((cache_dir / "splits").glob("movielens-100k-*.npz"))

    rows = [line.split(b"\t") for line in ratings.read_bytes().splitlines()]
    stamps = np.array([int(r[3]) for r in rows])
    mirror = int(stamps.min() + stamps.max())  # t -> min + max - t keeps 9 digits: same size
    text = b"".join(b"\t".join(r[:3] + [str(mirror - t).encode()]) + b"\n" for r, t in zip(rows, stamps))
    assert len(text) == ratings.stat().st_size
    with open(ratings, "r+b") as f:
        f.write(text)

    second = source.load(tmp_path / "data", seed=0)
    fresh = source.load(tmp_path / "data", seed=0, use_cache=False)
    np.testing.assert_array_equal(second.test_candidates, fresh.test_candidates)
    np.testing.assert_array_equal(second.train_items, fresh.train_items)
    assert not np.array_equal(second.test_candidates[:, 0], first.test_candidates[:, 0])


def test_criteo_cache_folder_follows_content(shared_data, tmp_path, cache_dir):
    """``criteo`` (full Kaggle file, no checksum): the streamed cache folder follows the content."""
    source = get_dataset("criteo")
    path = tmp_path / "train.txt"
    with gzip.open(shared_data / "criteo-head-10k" / "sample.train.gz", "rb") as f:
        path.write_bytes(b"".join(next(f) for _ in range(50)))
    schema = source.default_schema()
    before = source.cache_folder(path, 0, schema)
    assert source.cache_folder(path, 0, schema) == before
    flipped = b"1" if path.read_bytes()[:1] == b"0" else b"0"
    time.sleep(0.02)
    _edit_in_place(path, 0, flipped)  # the first row's label
    assert source.cache_folder(path, 0, schema) != before


def test_cli_prepare_input_default_output_follows_content(shared_data, tmp_path, cache_dir):
    """``data prepare criteo --input FILE``: the default output folder is keyed on the content,
    so an in-place edit that restores the mtime still gets a folder (and an encoding) of its own."""
    from typer.testing import CliRunner

    from recforge.cli.app import app
    from recforge.data.criteo import open_encoded

    path = tmp_path / "rows.txt"
    with gzip.open(shared_data / "criteo-head-10k" / "sample.train.gz", "rb") as f:
        path.write_bytes(b"".join(next(f) for _ in range(200)))
    runner = CliRunner()
    first = runner.invoke(app, ["data", "prepare", "criteo", "--input", str(path), "--quiet"])
    assert first.exit_code == 0, first.output
    (before,) = (cache_dir / "criteo-input").iterdir()
    positives = float(sum(np.sum(open_encoded(before).split(s).labels) for s in ("train", "valid", "test")))
    flipped = b"1" if path.read_bytes()[:1] == b"0" else b"0"
    time.sleep(0.02)
    _edit_in_place(path, 0, flipped)  # the first row's label
    second = runner.invoke(app, ["data", "prepare", "criteo", "--input", str(path), "--quiet"])
    assert second.exit_code == 0, second.output
    (after,) = set((cache_dir / "criteo-input").iterdir()) - {before}
    now = float(sum(np.sum(open_encoded(after).split(s).labels) for s in ("train", "valid", "test")))
    assert now == positives + (1 if flipped == b"1" else -1)
