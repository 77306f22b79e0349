"""Input files are checked before reading: a regular file (not a directory, device or FIFO) under a size limit."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from pytest_neuronprobe.core.errors import NeuronProbeError

__all__ = ["MAX_CONFIG_BYTES", "MAX_DATASET_BYTES", "MAX_HEAD_BYTES", "check_input_file"]

MAX_CONFIG_BYTES = 16 * 2**20  # config.json and introspection summaries
MAX_DATASET_BYTES = 2**30  # a dataset CSV
MAX_HEAD_BYTES = 2 * 2**30  # head.safetensors / head.pt


def _size(n: int) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:g} {unit}"
    return f"{n} bytes"


def check_input_file(path: Path, limit: int, what: str = "file", expected: str = "a regular file") -> int:
    """Raise unless `path` (symlinks followed) is a regular file of at most `limit` bytes; return its size."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise NeuronProbeError(f"{what} is missing", path=path) from None
    except OSError as exc:
        raise NeuronProbeError(
            f"not a readable {what} ({exc.strerror or exc}); expected {expected}", path=path
        ) from None
    if not stat.S_ISREG(info.st_mode):
        kind = "a directory" if stat.S_ISDIR(info.st_mode) else "not a regular file: a device, FIFO or socket"
        raise NeuronProbeError(f"not a readable {what} ({kind}); expected {expected}", path=path)
    if info.st_size > limit:
        raise NeuronProbeError(
            f"{what} is {_size(info.st_size)}, over the limit of {_size(limit)} ({limit} bytes)", path=path
        )
    return info.st_size
