"""Input files are checked before reading: a regular file (not a directory, device or FIFO) under a size limit."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from pytest_neuronprobe.core.errors import NeuronProbeError

__all__ = ["LIMITS", "check_input_file", "limit_of"]

#: The size limit of each kind of input file, in bytes (config.json and introspection summaries, the dataset
#: CSV, the head file); ``NEURONPROBE_MAX_<KIND>_BYTES`` in the environment overrides one.
LIMITS = {"config": 16 * 2**20, "dataset": 2**30, "head": 2 * 2**30}


def limit_of(kind: str) -> tuple[int, str]:
    """The size limit of ``kind`` (a key of :data:`LIMITS`) and the environment variable that sets it."""
    var = f"NEURONPROBE_MAX_{kind.upper()}_BYTES"
    raw = os.environ.get(var, "").strip()
    if not raw:
        return LIMITS[kind], var
    if not raw.isdigit() or int(raw) < 1:
        raise NeuronProbeError(f"expected a whole number of bytes >= 1, got {raw!r}", key=var)
    return int(raw), var


def _size(n: int) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:g} {unit}"
    return f"{n} bytes"


def check_input_file(path: Path, kind: str, what: str = "file", expected: str = "a regular file") -> int:
    """Raise unless `path` (symlinks followed) is a regular file within the size limit of `kind`
    (:func:`limit_of`); return its size."""
    limit, var = limit_of(kind)
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise NeuronProbeError(f"{what} is missing", path=path) from None
    except OSError as exc:
        raise NeuronProbeError(
            f"not a readable {what} ({exc.strerror or exc}); expected {expected}", path=path
        ) from None
    if not stat.S_ISREG(info.st_mode):
        kind_of = "a directory" if stat.S_ISDIR(info.st_mode) else "not a regular file: a device, FIFO or socket"
        raise NeuronProbeError(f"not a readable {what} ({kind_of}); expected {expected}", path=path)
    if info.st_size > limit:
        raise NeuronProbeError(
            f"{what} is {_size(info.st_size)}, over the limit of {_size(limit)} ({limit} bytes; {var} sets it)",
            path=path,
        )
    return info.st_size
