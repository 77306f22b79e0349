"""The session's runs: each run directory under a unique label (its test id)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from pytest_neuronprobe.core.runs import Run


@dataclass
class RunEntry:
    """One run of the session: its unique label (the test id) and its loaded directory."""

    label: str
    path: Path
    run: Run


def unique_label(name: str, path: Path, taken: Iterable[str]) -> str:
    """`name`, or `<parent dir>/name` (then `-2`, `-3`, …) when another run already has it."""
    used = set(taken)
    if name not in used:
        return name
    candidate = f"{path.parent.name}/{name}"
    i = 2
    while candidate in used:
        candidate = f"{path.parent.name}/{name}-{i}"
        i += 1
    return candidate
