"""Readers for delimited text files of integers, fast (PyArrow) with exact error locations.

The fast path parses the whole file with ``pyarrow.csv``. If that fails, a plain line-by-line
scan finds the first offending line so the error names the file, the line and what was expected.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from recforge.data.files import open_text, read_bytes
from recforge.errors import DataError


def _first_bad_line(path: Path, text: str, sep: str, num_columns: int, what: str) -> DataError:
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            return DataError(f"empty line; expected {what}", path, number)
        fields = line.split(sep)
        if len(fields) < num_columns:
            return DataError(f"expected {what}, found {len(fields)} field(s): {line[:80]!r}", path, number)
        for field in fields[:num_columns]:
            try:
                int(field)
            except ValueError:
                return DataError(f"expected {what}, found {field[:40]!r} in {line[:80]!r}", path, number)
    return DataError(f"could not parse file; expected {what}", path)


def read_int_columns(path: Path, num_columns: int, sep: str = "\t", names: tuple[str, ...] = ()) -> list[np.ndarray]:
    """Read the first ``num_columns`` integer columns of a headerless delimited file.

    Args:
        path: plain or ``.gz`` file.
        num_columns: columns to return; lines may hold more, which are ignored.
        sep: field separator; multi-character separators such as ``::`` are supported.
        names: column names for messages.

    Returns:
        ``num_columns`` int64 arrays of equal length.

    Raises:
        DataError: naming the file and 1-based line of the first malformed line.
    """
    names = names or tuple(f"column{i + 1}" for i in range(num_columns))
    what = f"{num_columns} {sep!r}-separated integers ({', '.join(names)})"
    raw = read_bytes(path)
    if len(sep) > 1:
        raw = raw.replace(sep.encode(), b"\x01")
        sep_char = "\x01"
    else:
        sep_char = sep
    try:
        table = pacsv.read_csv(
            io.BytesIO(raw),
            read_options=pacsv.ReadOptions(autogenerate_column_names=True),
            parse_options=pacsv.ParseOptions(delimiter=sep_char, quote_char=False),
            convert_options=pacsv.ConvertOptions(include_columns=[f"f{i}" for i in range(num_columns)]),
        )
        columns = [table.column(i) for i in range(num_columns)]
        if any(not pa.types.is_integer(c.type) or c.null_count for c in columns):
            raise ValueError("non-integer column")
        return [c.to_numpy().astype(np.int64, copy=False) for c in columns]
    except (pa.ArrowInvalid, ValueError, KeyError):
        text = raw.decode("utf-8", errors="replace").replace("\x01", sep)
        raise _first_bad_line(path, text, sep, num_columns, what) from None


def read_ncf_negatives(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Read the NCF authors' ``*.test.negative`` file: ``(user,item)\\tneg1\\t...\\tnegC`` per line.

    Returns:
        (users [U], positives [U], negatives [U, C]) as int64.

    Raises:
        DataError: naming the line whose layout differs from the first line's.
    """
    users, positives, negatives = [], [], []
    width = None
    with open_text(path) as f:
        for number, line in enumerate(f, start=1):
            fields = line.rstrip("\r\n").split("\t")
            head = fields[0]
            try:
                if not (head.startswith("(") and head.endswith(")")):
                    raise ValueError
                user, item = (int(x) for x in head[1:-1].split(","))
                negs = [int(x) for x in fields[1:]]
            except ValueError:
                raise DataError(
                    f"expected '(user,item)' followed by tab-separated negative item ids, found {line[:80]!r}",
                    path,
                    number,
                ) from None
            if width is None:
                width = len(negs)
            elif len(negs) != width:
                raise DataError(f"expected {width} negative items as on line 1, found {len(negs)}", path, number)
            users.append(user)
            positives.append(item)
            negatives.append(negs)
    if not users:
        raise DataError("file is empty; expected one line per test user", path)
    return np.array(users, np.int64), np.array(positives, np.int64), np.array(negatives, np.int64)
