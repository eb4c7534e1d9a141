"""Download, checksum and atomic-write code, exercised through file:// URLs (no internet needed)."""

import gzip
import hashlib
import zipfile

import pytest

from recforge.data import files
from recforge.data.datasets import get_dataset, movielens
from recforge.data.files import Checksum, atomic_write_text, download, git_blob, sha256
from recforge.errors import DataError


def test_checksums(tmp_path):
    path = tmp_path / "x.txt"
    path.write_bytes(b"hello\n")
    assert sha256(hashlib.sha256(b"hello\n").hexdigest()).compute(path) == hashlib.sha256(b"hello\n").hexdigest()
    # `git hash-object` of "hello\n"
    assert git_blob("").compute(path) == "ce013625030ba8dba906f756967f9e9ca394464a"


def test_download_verifies_and_is_atomic(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(b"payload")
    good = Checksum("sha256", hashlib.sha256(b"payload").hexdigest())
    dest = download(src.as_uri(), tmp_path / "out" / "file.bin", good, progress=False)
    assert dest.read_bytes() == b"payload"
    with pytest.raises(DataError, match="does not match"):
        download(src.as_uri(), tmp_path / "out" / "bad.bin", Checksum("sha256", "0" * 64), progress=False)
    assert not (tmp_path / "out" / "bad.bin").exists()
    with pytest.raises(DataError, match="could not download"):
        download((tmp_path / "missing").as_uri(), tmp_path / "out" / "m.bin", progress=False)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["file.bin"]  # no temp files left


def test_atomic_write_keeps_old_file_on_failure(tmp_path):
    path = tmp_path / "summary.json"
    atomic_write_text(path, "old")

    def boom(f):
        f.write(b"half")
        raise RuntimeError("crash")

    with pytest.raises(RuntimeError):
        files.atomic_write(path, boom)
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["summary.json"]


def test_movielens_100k_download_from_an_official_style_zip(tmp_path, shared_data, monkeypatch):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    raw = gzip.decompress((shared_data / "ml-100k" / "u.data.gz").read_bytes())
    with zipfile.ZipFile(mirror / "ml-100k.zip", "w") as zf:
        zf.writestr("ml-100k/u.data", raw)
    monkeypatch.setattr(movielens, "GROUPLENS", mirror.as_uri())
    data_dir = tmp_path / "data"
    get_dataset("movielens-100k").download(data_dir)
    assert (data_dir / "ml-100k" / "u.data").is_file()
    assert get_dataset("movielens-100k").load(data_dir).num_users == 943
