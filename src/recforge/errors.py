"""Exception types that the CLI turns into one clear line and exit code 2.

Everything a user can cause (bad files, bad configs, unknown names) raises a subclass of
:class:`RecforgeError`; anything else is a bug and exits with code 1 and a traceback.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path


class RecforgeError(Exception):
    """Base class for errors caused by user input (files, configs, arguments)."""


class DataError(RecforgeError):
    """A data file is missing, corrupt or malformed.

    Args:
        message: what was found and what was expected.
        path: the file concerned, if any.
        line: 1-based line number inside ``path``, if known.
    """

    def __init__(self, message: str, path: str | Path | None = None, line: int | None = None):
        self.path = None if path is None else Path(path)
        self.line = line
        where = ""
        if path is not None:
            where = f"{path}" + (f", line {line}" if line is not None else "") + ": "
        super().__init__(where + message)


class DataMissingError(DataError):
    """A dataset's files are not in the data directory."""


class ConfigError(RecforgeError):
    """A configuration key or value is invalid; the message names the field."""


class UnknownNameError(RecforgeError):
    """An unknown model, dataset or metric name; the message lists the valid names.

    Args:
        kind: what was looked up, for example ``"model"``.
        name: the name the user gave.
        valid: the names that exist.
    """

    def __init__(self, kind: str, name: str, valid: Iterable[str]):
        self.kind, self.name, self.valid = kind, name, sorted(valid)
        super().__init__(f"unknown {kind} {name!r}; valid {kind}s: {', '.join(self.valid)}")


class TrainingError(RecforgeError):
    """Training cannot go on (for example the loss became NaN or infinite)."""
