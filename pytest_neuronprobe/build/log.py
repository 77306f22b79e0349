"""Progress lines of the builders, on stderr."""

from __future__ import annotations

import sys

__all__ = ["log"]


def log(msg: str, enabled: bool = True) -> None:
    """Print `[neuronprobe] msg` to stderr when `enabled`."""
    if enabled:
        print(f"[neuronprobe] {msg}", file=sys.stderr, flush=True)
