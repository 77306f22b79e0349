"""Test helpers: cheap copies of a session run, and its files."""

from __future__ import annotations

import shutil
from pathlib import Path


def copy_run(src: Path, dest_parent: Path) -> Path:
    """Copy a run without its base model; link the original base model in (one boot for all copies)."""
    dest = dest_parent / src.name
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns("base_model"))
    for base in src.glob("models/*/best_model/base_model"):
        (dest / base.relative_to(src)).symlink_to(base.resolve(), target_is_directory=True)
    return dest


def model_dir(root: Path) -> Path:
    return next(root.glob("models/*/best_model"))


def config_path(root: Path) -> Path:
    return model_dir(root) / "config.json"


def dataset_path(root: Path) -> Path:
    return next(root.glob("datasets/*.csv"))
