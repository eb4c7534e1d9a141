"""Data files: locating the data directory, verifying checksums, downloading, atomic writes.

The data directory comes from ``--data-dir``, else the ``RECFORGE_DATA_DIR`` environment variable,
else ``$XDG_DATA_HOME/recforge`` (``~/.local/share/recforge``). Each dataset lives in a folder of
its own under it. Caches of prepared splits go to ``RECFORGE_CACHE_DIR`` or
``$XDG_CACHE_HOME/recforge`` (``~/.cache/recforge``), never into the data directory, which
may be read-only.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import tempfile
import urllib.request
import zipfile
import zlib
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Iterator

from recforge.errors import DataError, DataMissingError

DATA_DIR_ENV = "RECFORGE_DATA_DIR"
CACHE_DIR_ENV = "RECFORGE_CACHE_DIR"


def resolve_data_dir(data_dir: str | Path | None = None) -> Path:
    """The data directory: the argument, else ``$RECFORGE_DATA_DIR``, else the user data folder."""
    if data_dir:
        return Path(data_dir).expanduser()
    if os.environ.get(DATA_DIR_ENV):
        return Path(os.environ[DATA_DIR_ENV]).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "recforge"


def resolve_cache_dir() -> Path:
    """Where prepared splits are cached: ``$RECFORGE_CACHE_DIR`` or ``$XDG_CACHE_HOME/recforge``."""
    if os.environ.get(CACHE_DIR_ENV):
        return Path(os.environ[CACHE_DIR_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "recforge"


@dataclass(frozen=True)
class Checksum:
    """Expected digest of a file: ``sha256`` of its bytes, or its git blob id (sha1 of
    ``b"blob <size>\\0" + bytes``), used where only the upstream git blob is known."""

    kind: str  # "sha256" | "git_blob"
    digest: str

    def compute(self, path: Path) -> str:
        """Digest of ``path`` in this checksum's kind (hex)."""
        if self.kind == "sha256":
            h = hashlib.sha256()
        elif self.kind == "git_blob":
            h = hashlib.sha1(f"blob {path.stat().st_size}\0".encode())
        else:  # pragma: no cover - programming error
            raise ValueError(f"unknown checksum kind {self.kind}")
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        return h.hexdigest()


def sha256(digest: str) -> Checksum:
    return Checksum("sha256", digest)


def git_blob(digest: str) -> Checksum:
    return Checksum("git_blob", digest)


@dataclass(frozen=True)
class FileVariant:
    """One accepted form of a dataset file (for example the original or a gzip of it)."""

    filename: str
    checksum: Checksum


@dataclass(frozen=True)
class DataFile:
    """A file a dataset needs, in one or more accepted forms; the first present one is used.

    Args:
        role: what the file is, for messages (for example ``"test negatives"``).
        variants: accepted forms, in order of preference.
    """

    role: str
    variants: tuple[FileVariant, ...]

    def locate(self, folder: Path) -> tuple[Path, FileVariant] | None:
        """The first variant present in ``folder``, or None."""
        for variant in self.variants:
            path = folder / variant.filename
            if path.is_file():
                return path, variant
        return None


def verify(folder: Path, files: tuple[DataFile, ...], how_to_get: str) -> dict[str, Path]:
    """Check that every file is present in ``folder`` with the expected checksum.

    Args:
        folder: the dataset's folder.
        files: what is needed.
        how_to_get: one sentence telling the user how to obtain missing files.

    Returns:
        role -> path of the verified file.

    Raises:
        DataMissingError: if a file is absent (the message lists the accepted names and how to get them).
        DataError: if a checksum differs (the message gives expected and found digests).
    """
    if not folder.is_dir():
        parent = folder.parent
        what = "does not exist" if not parent.exists() else ("is not a directory" if not parent.is_dir() else None)
        if what:
            raise DataMissingError(f"data directory {parent} {what}. {how_to_get}")
        raise DataMissingError(f"dataset folder {folder} does not exist. {how_to_get}")
    found: dict[str, Path] = {}
    for data_file in files:
        for variant in data_file.variants:
            if (folder / variant.filename).exists() and not (folder / variant.filename).is_file():
                raise DataError("expected a file, found a directory or special file", folder / variant.filename)
        hit = data_file.locate(folder)
        if hit is None:
            names = " or ".join(v.filename for v in data_file.variants)
            raise DataMissingError(
                f"missing {data_file.role} file: expected {names} in {folder}. {how_to_get}"
            )
        path, variant = hit
        try:
            actual = variant.checksum.compute(path)
        except OSError as exc:
            raise DataError(f"cannot read file: {exc.strerror}", path) from None
        if actual != variant.checksum.digest:
            raise DataError(
                f"checksum mismatch ({variant.checksum.kind}): expected {variant.checksum.digest}, "
                f"found {actual}; the file is corrupt or a different version",
                path,
            )
        found[data_file.role] = path
    return found


#: What reading a damaged file raises: OSError (unreadable; gzip.BadGzipFile: not a gzip),
#: EOFError (truncated gzip), zlib.error (corrupt gzip data), UnicodeDecodeError (not text).
_READ_ERRORS = (OSError, EOFError, zlib.error, UnicodeDecodeError)


def _read_error(path: Path, exc: BaseException) -> DataError:
    if isinstance(exc, UnicodeDecodeError):
        encoding = "UTF-8" if exc.encoding.replace("-", "").lower() == "utf8" else exc.encoding
        return DataError(f"not valid {encoding} text (a binary or differently encoded file?)", path)
    if isinstance(exc, (EOFError, zlib.error, gzip.BadGzipFile)):
        return DataError(f"cannot decompress file (truncated or corrupt gzip?): {exc}", path)
    return DataError(f"cannot read file: {getattr(exc, 'strerror', None) or exc}", path)


@contextmanager
def open_text(path: Path, encoding: str = "utf-8") -> Iterator[IO[str]]:
    """Open a plain or ``.gz`` text file.

    Reading errors inside the ``with`` block (a truncated or corrupt gzip, text that is not
    ``encoding``, an unreadable file) are raised as :class:`DataError` naming ``path``.

    Raises:
        DataError: the file cannot be opened or read.
    """
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rt", encoding=encoding, newline="") as f:
                yield f
        else:
            with open(path, encoding=encoding, newline="") as f:
                yield f
    except _READ_ERRORS as exc:
        raise _read_error(path, exc) from None


def read_bytes(path: Path) -> bytes:
    """Whole content of a plain or ``.gz`` file.

    Raises:
        DataError: the file is unreadable, or a truncated or corrupt gzip.
    """
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except _READ_ERRORS as exc:
        raise _read_error(path, exc) from None


def atomic_write(path: Path, write: Callable[[IO[bytes]], None]) -> None:
    """Write ``path`` through a temporary file in the same folder and rename it into place,
    so a crash never leaves a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the usual permissions
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: Path, text: str) -> None:
    """Atomically write ``text`` (UTF-8) to ``path``."""
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def download(url: str, destination: Path, checksum: Checksum | None = None, progress: bool = True) -> Path:
    """Download ``url`` to ``destination`` atomically and verify its checksum.

    Raises:
        DataError: on network failure or checksum mismatch (the partial file is removed).
    """
    destination.parent.mkdir(parents=True, exist_ok=True)
    try:
        with urllib.request.urlopen(url, timeout=60) as response:  # noqa: S310 - fixed https URLs
            total = int(response.headers.get("Content-Length") or 0)

            def write(f: IO[bytes]) -> None:
                from rich.progress import Progress

                with Progress(disable=not progress, transient=True) as bar:
                    task = bar.add_task(f"downloading {destination.name}", total=total or None)
                    for block in iter(lambda: response.read(1 << 20), b""):
                        f.write(block)
                        bar.advance(task, len(block))

            atomic_write(destination, write)
    except OSError as exc:
        raise DataError(f"could not download {url}: {exc}", destination) from exc
    if checksum is not None and checksum.compute(destination) != checksum.digest:
        destination.unlink(missing_ok=True)
        raise DataError(f"downloaded file from {url} does not match its {checksum.kind} {checksum.digest}", destination)
    return destination


def extract_member(archive: Path, member: str, destination: Path) -> Path:
    """Extract one member of a zip archive atomically to ``destination``."""
    with zipfile.ZipFile(archive) as zf:
        try:
            with zf.open(member) as src:
                atomic_write(destination, lambda f: shutil.copyfileobj(src, f))
        except KeyError as exc:
            raise DataError(f"archive has no member {member}", archive) from exc
    return destination


__all__ = [
    "Checksum",
    "DataFile",
    "FileVariant",
    "atomic_write",
    "atomic_write_text",
    "download",
    "extract_member",
    "git_blob",
    "open_text",
    "read_bytes",
    "resolve_cache_dir",
    "resolve_data_dir",
    "sha256",
    "verify",
]
