"""Files of a built run: head weights, JSON, and the atomic run directory they are written into."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path

import torch

from pytest_neuronprobe.build.reuse import BUILD_STAMP
from pytest_neuronprobe.core.atomic import atomic_dir
from pytest_neuronprobe.core.errors import NeuronProbeError

__all__ = ["atomic_run_dir", "write_head", "write_json"]


def write_head(path: Path, state: dict[str, torch.Tensor], head_format: str) -> None:
    """Save the head's state dict, keys sorted, as safetensors or a torch pickle."""
    if head_format == "safetensors":
        from safetensors.torch import save_file

        save_file(dict(sorted(state.items())), str(path))
    else:
        torch.save(dict(sorted(state.items())), path)


def write_json(path: Path, obj: object) -> None:
    """Write `obj` as indented JSON (no NaN) with a trailing newline."""
    path.write_text(json.dumps(obj, indent=2, allow_nan=False) + "\n", encoding="utf-8")


def _looks_like_run(path: Path) -> bool:
    return path.is_dir() and (
        (path / BUILD_STAMP).is_file()
        or (path / "models").is_dir()
        or (path / "datasets").is_dir()
        or not any(path.iterdir())
    )


@contextlib.contextmanager
def atomic_run_dir(target: Path) -> Iterator[Path]:
    """`atomic_dir`, refusing to replace a directory that is not a run."""
    if target.exists() and not _looks_like_run(target):
        raise NeuronProbeError("exists and is not a run directory; refusing to replace it", path=target)
    with atomic_dir(target) as tmp:
        yield tmp
