"""The one error type the project raises for bad input."""

from __future__ import annotations

from pathlib import Path


class NeuronProbeError(ValueError):
    """Bad input: names the file, the key (or row) and what was expected."""

    def __init__(self, message: str, *, path: str | Path | None = None, key: str | None = None) -> None:
        self.path = None if path is None else str(path)
        self.key = key
        where = ""
        if self.path is not None:
            where = self.path + (f" [{key}]" if key else "") + ": "
        elif key:
            where = f"[{key}]: "
        super().__init__(where + message)


class OptionError(ValueError):
    """A bad option value (command line, ini or marker keyword): the message says what is accepted."""
