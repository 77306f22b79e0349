"""Content digests (sha256) of files, directories and texts, and installed package versions."""

from __future__ import annotations

import functools
import hashlib
import os
import threading
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path

_DIGESTS: dict[tuple[str, int, int], str] = {}
_DIGEST_LOCK = threading.Lock()


def file_digest(path: str | os.PathLike[str]) -> str:
    """sha256 of a file's bytes, memoised in-process per (path, size, mtime_ns)."""
    p = os.path.abspath(os.fspath(path))
    st = os.stat(p)
    memo = (p, st.st_size, st.st_mtime_ns)
    with _DIGEST_LOCK:
        if memo in _DIGESTS:
            return _DIGESTS[memo]
    h = hashlib.sha256()
    with open(p, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    digest = h.hexdigest()
    with _DIGEST_LOCK:
        _DIGESTS[memo] = digest
    return digest


def tree_digest(root: str | os.PathLike[str]) -> str:
    """sha256 over (relative path, content digest) of every file under a directory, sorted."""
    base = Path(root)
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(base):
        dirnames.sort()
        for name in sorted(filenames):
            full = Path(dirpath) / name
            if not full.is_file():
                continue
            h.update(full.relative_to(base).as_posix().encode("utf-8") + b"\0")
            h.update(file_digest(full).encode("ascii") + b"\n")
    return h.hexdigest()


def texts_digest(texts: Sequence[str]) -> str:
    """sha256 over texts, each NUL-terminated (so ["ab"] and ["a", "b"] differ)."""
    h = hashlib.sha256()
    for t in texts:
        h.update(t.encode("utf-8"))
        h.update(b"\0")
    return h.hexdigest()


@functools.cache  # reading package metadata costs ms; versions do not change in a process
def package_version(dist: str) -> str | None:
    """The installed version of a distribution (`transformer_lens` or `transformer-lens`), None if absent."""
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None
