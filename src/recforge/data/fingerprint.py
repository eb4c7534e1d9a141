"""Content fingerprints of data files, and the cache keys built from them.

Every cache of prepared data (leave-one-out splits, encoded columns, streamed Criteo) is keyed on
what the data files *contain*, not on their names and sizes: flipping every label of a file keeps
its size, and several sources (the full ``avazu`` and ``criteo``, ``amazon-electronics``) have no
published checksum, so verification does not pin their content either.

:func:`file_fingerprint` is a BLAKE2b digest of a file's bytes. Hashing the 11 GB Criteo file
takes tens of seconds, so the digest is remembered in a small JSON memo per file under
``<cache dir>/fingerprints/`` together with the file's (size, mtime_ns, inode, ctime_ns, device),
and reused only while all of these are unchanged. That shortcut is safe: any write through the
file system updates the ctime (the status-change time), which no user call can set back
(``os.utime`` sets atime and mtime only, and itself bumps the ctime); replacing the file (a new
download, ``mv``, an editor's save-as-rename) changes the inode. So an edit that keeps size,
mtime_ns, inode *and* ctime_ns is impossible through normal writes. One gap remains: file times
come from a coarse clock (a few ms on Linux, 2 s on FAT), so a file written again within one tick
of being hashed could keep every stamp. As git does for its index ("racy git"), a file changed
less than :data:`RACY_SECONDS` before it was hashed is not memoised, and is hashed again next time.

The memo is only a shortcut: a missing, corrupt or unwritable memo (read-only cache directory)
means the file is hashed again, never an error.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from recforge import __version__
from recforge.data.files import atomic_write_text, resolve_cache_dir
from recforge.errors import DataError

MEMO_FORMAT = 1
#: bytes read per block while hashing
BLOCK_BYTES = 4 << 20
#: a file changed this recently (seconds, before hashing began) is hashed but not memoised
RACY_SECONDS = 2.0
_DIGEST_BYTES = 16


def file_fingerprint(path: str | Path) -> str:
    """BLAKE2b (16-byte digest, hex) of the bytes of ``path``, memoised under the cache directory.

    The memo is keyed by the resolved path and reused only while the file's size, mtime_ns,
    inode, ctime_ns and device are all unchanged (see the module docstring for why that is safe).

    Args:
        path: a data file (its raw bytes are hashed; a ``.gz`` file is not decompressed).

    Returns:
        32 hexadecimal characters.

    Raises:
        DataError: if the file cannot be read.
    """
    resolved = Path(path).resolve()
    try:
        stamp = _stamp(resolved)
    except OSError as exc:
        raise DataError(f"cannot read file: {exc.strerror}", resolved) from None
    memo = _memo_path(resolved)
    found = _read_memo(memo, resolved, stamp)
    if found is not None:
        return found
    started_ns = time.time_ns()
    digest = hashlib.blake2b(digest_size=_DIGEST_BYTES)
    try:
        with open(resolved, "rb") as f:
            for block in iter(lambda: f.read(BLOCK_BYTES), b""):
                digest.update(block)
        after = _stamp(resolved)
    except OSError as exc:
        raise DataError(f"cannot read file: {exc.strerror}", resolved) from None
    fingerprint = digest.hexdigest()
    changed_ns = max(stamp["mtime_ns"], stamp["ctime_ns"])
    # Memoise only a file that did not change while it was read and whose last change lies
    # clearly before the hash began (a later write within the same clock tick would keep the stamps).
    if after == stamp and changed_ns < started_ns - RACY_SECONDS * 1e9:
        record = {"format": MEMO_FORMAT, "path": str(resolved), "stamp": stamp, "blake2b": fingerprint}
        try:
            atomic_write_text(memo, json.dumps(record, sort_keys=True))
        except OSError:
            pass  # read-only or full cache directory: the memo is only a shortcut
    return fingerprint


def cache_key(*parts: Any, paths: Mapping[str, str | Path]) -> str:
    """A key for a cache of data prepared from ``paths``: changes whenever anything it depends on does.

    Args:
        *parts: JSON-serialisable values the prepared data depends on (dataset name, seed, split
            fractions, ``schema.to_dict()``, the cache's ``CACHE_FORMAT`` ...).
        paths: role -> data file; each file counts by its name and content fingerprint.

    Returns:
        16 hexadecimal characters: SHA-256 over the parts, the recforge version and the files.

    Raises:
        DataError: if a file cannot be read.
    """
    files = {role: [Path(p).name, file_fingerprint(p)] for role, p in paths.items()}
    payload = json.dumps({"parts": list(parts), "recforge": __version__, "files": files}, sort_keys=True)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]


def _stamp(path: Path) -> dict[str, int]:
    st = os.stat(path)
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "inode": st.st_ino, "ctime_ns": st.st_ctime_ns, "device": st.st_dev}


def _memo_path(resolved: Path) -> Path:
    name = hashlib.sha256(str(resolved).encode("utf-8", "surrogateescape")).hexdigest()[:32]
    return resolve_cache_dir() / "fingerprints" / f"{name}.json"


def _read_memo(memo: Path, resolved: Path, stamp: dict[str, int]) -> str | None:
    """The memoised fingerprint if the memo is readable, well-formed and matches ``stamp``."""
    try:
        record = json.loads(memo.read_text(encoding="utf-8"))
        fingerprint = record["blake2b"]
        valid = (
            record["format"] == MEMO_FORMAT
            and record["path"] == str(resolved)
            and record["stamp"] == stamp
            and isinstance(fingerprint, str)
            and len(fingerprint) == 2 * _DIGEST_BYTES
            and all(c in "0123456789abcdef" for c in fingerprint)
        )
    except (OSError, ValueError, TypeError, KeyError):  # absent, unreadable or corrupt: hash again
        return None
    return fingerprint if valid else None


__all__ = ["cache_key", "file_fingerprint"]
