"""Readers for delimited text files, fast (PyArrow) with exact error locations.

The fast path parses the whole file with ``pyarrow.csv``. If that fails, the error is located:
:func:`read_table` parses the file again on one thread, where Arrow numbers the physical lines,
and :func:`read_int_columns` scans the text line by line; either way the error names the file,
the line and what was expected. A compressed file that is truncated or corrupt, and a file with
no data rows (empty, or only a header), are :class:`~recforge.errors.DataError` too.
"""

from __future__ import annotations

import copy
import io
import re
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from recforge.data.files import open_text, read_bytes
from recforge.errors import DataError


_HOOK_LOCK = threading.Lock()


def quiet_row_handler(handler: Callable[[Any], str]) -> Callable[[Any], str]:
    """Mark a ``pyarrow.csv`` ``invalid_row_handler`` whose rows may hold bytes that are not UTF-8.

    Arrow decodes a bad row's text before it calls the handler. For bytes that are not UTF-8 the
    decoding fails inside Arrow's callback: Python prints it as "Exception ignored ... Traceback"
    on stderr (through ``sys.unraisablehook``) and Arrow raises ``ArrowInvalid`` naming the row,
    which the caller turns into a DataError. This installs a hook (again whenever another one
    replaced it) that drops exactly those reports for marked handlers, so the user sees one error
    line and no traceback.

    Returns:
        ``handler`` itself, marked.
    """
    handler._recforge_quiet = True  # type: ignore[attr-defined]
    with _HOOK_LOCK:
        # (re)installed whenever another hook replaced it (pytest swaps hooks per test)
        if not getattr(sys.unraisablehook, "_recforge_filter", False):
            previous = sys.unraisablehook

            def hook(report: Any) -> None:
                if isinstance(report.exc_value, UnicodeDecodeError) and getattr(report.object, "_recforge_quiet", False):
                    return
                previous(report)

            hook._recforge_filter = True  # type: ignore[attr-defined]
            sys.unraisablehook = hook
    return handler


def read_table(
    path: Path,
    what: str,
    read_options: pacsv.ReadOptions | None = None,
    parse_options: pacsv.ParseOptions | None = None,
    convert_options: pacsv.ConvertOptions | None = None,
    header: bool = False,
) -> pa.Table:
    """``pyarrow.csv.read_csv`` of ``path`` with every failure a DataError naming the file and line.

    Args:
        path: plain file, or compressed as its suffix says (``.gz``, ``.bz2``, ...).
        what: what each line should hold, for messages (for example ``"24 comma-separated
            Avazu columns (id, click, ...)"``).
        read_options, parse_options, convert_options: as for ``pyarrow.csv.read_csv``.
        header: the file's first line is a header (only changes the message for no rows).

    Returns:
        The table, with at least one row.

    Raises:
        DataError: for an unreadable, truncated or corrupt (compressed) file; a line with the
            wrong number of fields or a value its column type rejects (with the 1-based line and
            the column); a file that is empty or holds only a header.
    """
    try:
        table = pacsv.read_csv(path, read_options=read_options, parse_options=parse_options, convert_options=convert_options)
    except pa.ArrowInvalid as exc:
        raise _locate_csv_error(path, what, exc, read_options, parse_options, convert_options, header) from None
    except OSError as exc:  # Arrow's IO errors (truncated gzip, zlib failure, missing file) are OSErrors
        raise DataError(f"cannot read file (truncated or corrupt?): {exc}", path) from None
    if table.num_rows == 0:
        raise DataError(f"no data rows{' after the header' if header else ''}; expected lines of {what}", path)
    return table


def _locate_csv_error(
    path: Path, what: str, exc: pa.ArrowInvalid, read_options: Any, parse_options: Any, convert_options: Any, header: bool
) -> DataError:
    """Parse again on one thread (Arrow then numbers physical lines) to find the line of ``exc``."""
    message = str(exc)
    if "Empty CSV file" in message:
        return DataError(f"{'no data rows after the header' if header else 'the file is empty'}; expected lines of {what}", path)
    read_options = copy.copy(read_options) if read_options is not None else pacsv.ReadOptions()
    read_options.use_threads = False
    parse_options = copy.copy(parse_options) if parse_options is not None else pacsv.ParseOptions()
    invalid: list[tuple[int, str]] = []

    def first_invalid(row: Any) -> str:
        invalid.append((row.number, row.text))
        return "error"

    parse_options.invalid_row_handler = quiet_row_handler(first_invalid)
    try:
        pacsv.read_csv(path, read_options=read_options, parse_options=parse_options, convert_options=convert_options)
    except (pa.ArrowInvalid, OSError) as again:
        message = str(again)
    if invalid and invalid[0][0] > 0:
        number, text = invalid[0]
        sep = parse_options.delimiter
        found = text.count(sep) + 1
        return DataError(f"expected {what}, found {found} field(s): {text[:80]!r}", path, number)
    row = re.search(r"Row #(\d+)", message)
    column = re.search(r"In CSV column #(\d+)", message)
    detail = re.sub(r"^(In CSV column #\d+: )?(Row #\d+: )?", "", message)
    names = list(read_options.column_names or [])
    if column is not None:
        index = int(column.group(1))
        detail = f"column {names[index]!r}: {detail}" if index < len(names) else f"column {index + 1}: {detail}"
    return DataError(f"expected {what}: {detail}", path, int(row.group(1)) if row else None)


def cast_column(column: pa.Array | pa.ChunkedArray, to: pa.DataType, path: Path, name: str, first_line: int = 1) -> pa.Array | pa.ChunkedArray:
    """``pyarrow.compute.cast`` of a parsed text column, with the line of the first bad value.

    Args:
        column: the strings of one column (nulls allowed).
        to: the target type, for example ``pa.int64()``.
        path: the file, for the message.
        name: the column, for the message.
        first_line: 1-based file line of row 0 (2 after a header).

    Raises:
        DataError: naming the file, the line and the column of the first value that does not convert.
    """
    try:
        return pc.cast(column, to)
    except pa.ArrowInvalid:
        pass
    values = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    start = 0
    while len(values) > 1:  # halve towards the first failing value: O(N) work in all
        half = len(values) // 2
        try:
            pc.cast(values.slice(0, half), to)
        except pa.ArrowInvalid:
            values = values.slice(0, half)
            continue
        values, start = values.slice(half), start + half
    found = values[0].as_py() if len(values) else None
    kind = "integers" if pa.types.is_integer(to) else "numbers" if pa.types.is_floating(to) else f"{to} values"
    raise DataError(f"column {name!r} must hold {kind}, found {str(found)[:40]!r}", path, start + first_line) from None


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
