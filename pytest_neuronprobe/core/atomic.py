"""Atomic file writes: a reader sees the old file or the new one, never a partial one."""

from __future__ import annotations

import contextlib
import glob
import json
import math
import os
import re
import shutil
import signal
import tempfile
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "atomic_dir",
    "remove_leftovers",
    "terminate_as_interrupt",
    "write_bytes_atomic",
    "write_json_atomic",
    "write_text_atomic",
]

#: What :func:`atomic_dir` names its temp dirs beside a target (after ``.<target name>.``).
_LEFTOVER = re.compile(r"(?P<kind>tmp|old)-(?P<pid>[0-9]+)-[A-Za-z0-9_]+")


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems (and all of Windows) cannot fsync a directory
    finally:
        os.close(fd)


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` via a temp file in the same directory, fsync and os.replace."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    while True:
        tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:12]}.tmp")
        try:
            # 0o666 lets the process umask decide the final mode, as a plain open() would.
            fd = os.open(tmp, flags, 0o666)
            break
        except FileExistsError:
            continue
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(target.parent)
    return target


def write_text_atomic(path: str | os.PathLike[str], text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` atomically (UTF-8 by default, no newline translation)."""
    return write_bytes_atomic(path, text.encode(encoding))


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


def _find_non_finite(obj: Any, where: str = "$") -> str | None:
    if isinstance(obj, (float, np.floating)):
        return where if not math.isfinite(float(obj)) else None
    if isinstance(obj, np.ndarray):
        obj = obj.tolist()
    if isinstance(obj, dict):
        for key, value in obj.items():
            found = _find_non_finite(value, f"{where}.{key}")
            if found:
                return found
    elif isinstance(obj, (list, tuple)):
        for i, value in enumerate(obj):
            found = _find_non_finite(value, f"{where}[{i}]")
            if found:
                return found
    return None


def write_json_atomic(path: str | os.PathLike[str], obj: Any) -> Path:
    """Write ``obj`` as indented JSON atomically; NaN/Infinity raise ValueError and nothing is written."""
    try:
        text = json.dumps(obj, indent=2, allow_nan=False, sort_keys=False, default=_json_default)
    except ValueError as exc:
        where = _find_non_finite(obj)
        detail = f" at {where}" if where else ""
        raise ValueError(f"refusing to write {os.fspath(path)}: non-finite number{detail} ({exc})") from exc
    return write_text_atomic(path, text + "\n")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # someone else's process (or a platform that cannot tell): leave its files alone
    return True


def remove_leftovers(target: str | os.PathLike[str]) -> list[Path]:
    """Remove what an :func:`atomic_dir` of ``target`` killed mid-way left beside it (temp dirs of processes
    no longer alive); a ``target`` lost between the two renames is put back from its old copy first.
    Returns the removed paths."""
    target = Path(target)
    removed: list[Path] = []
    try:
        siblings = sorted(target.parent.glob(f".{glob.escape(target.name)}.*-*"))
    except OSError:
        return removed
    for leftover in siblings:
        match = _LEFTOVER.fullmatch(leftover.name[len(target.name) + 2 :])
        if match is None or not leftover.is_dir() or _alive(int(match["pid"])):
            continue
        if match["kind"] == "old" and (leftover / "d").is_dir() and not target.exists():
            with contextlib.suppress(OSError):
                os.replace(leftover / "d", target)
        shutil.rmtree(leftover, ignore_errors=True)
        removed.append(leftover)
    return removed


@contextlib.contextmanager
def atomic_dir(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temp dir beside `target`; on success it replaces `target` (put back if that fails), else vanishes.

    The temp dirs are named after this process, so a later call removes what a killed one left
    (:func:`remove_leftovers`)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_leftovers(target)
    pid = os.getpid()
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-{pid}-", dir=target.parent))
    try:
        yield tmp
        tmp.chmod(0o755)  # mkdtemp makes it 0700; models and runs should stay readable to others
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-{pid}-", dir=target.parent))
            os.replace(target, old / "d")
            try:
                os.replace(tmp, target)
            except BaseException:
                os.replace(old / "d", target)
                raise
            finally:
                shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises KeyboardInterrupt (as SIGINT does), so that :func:`atomic_dir` and the
    other writers clean up instead of dying mid-way; outside the main thread, nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)
