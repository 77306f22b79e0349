"""On-disk cache of finished analysis results (issue #5).

An entry is one ``.npz`` file (written with :func:`numpy.savez`, read with ``allow_pickle=False``;
never pickle): the result objects encoded as JSON (``__meta__``, a uint8 array) plus every numpy
array they hold. The frozen result dataclasses are rebuilt field by field from a whitelist of
classes, so a cached result has exactly the numbers of the computed one.

The key is a sha256 over everything the numbers depend on (:func:`analysis_key`): this package's,
torch's and transformer_lens's versions, the content of every file of a local base model
(memoised per (path, size, mtime_ns)), the run's head file, config.json and dataset CSV, the
target layer/neuron, the analysis kind and its options, and the device. Writes are atomic
(temp file + os.replace).

Entries carry no run identity: results are stored with an empty ``run_name`` and the session names
them after the run it is analysing (:func:`with_run_name`), so a byte-identical copy of a run elsewhere
is served under its own name. Each entry holds a sha256 (``__sha256__``) over its JSON meta and every
array (name, dtype, shape, bytes), verified on read: an edited, truncated, foreign or wrong-typed entry
is a miss, warned about once per cache object (one session), and overwritten by the recomputed result.
A cache directory that cannot be written warns once. The cache is a trust boundary like the code: a
hostile entry with a correct checksum is read as the truth (see README "Caching and scale").
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import math
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

import numpy as np
import numpy.typing as npt

from pytest_neuronprobe.core.atomic import write_bytes_atomic
from pytest_neuronprobe.core.digests import file_digest, package_version, tree_digest

if TYPE_CHECKING:  # pragma: no cover
    from pytest_neuronprobe.analyses.joint import JointOptions
    from pytest_neuronprobe.analyses.options import (
        AttributionOptions,
        ControlOptions,
        PatchingOptions,
        ProjectionOptions,
    )
    from pytest_neuronprobe.core.runs import Run

    AnalysisOptions: TypeAlias = (
        ProjectionOptions | PatchingOptions | JointOptions | ControlOptions | AttributionOptions
    )

#: What `encode` makes of a value (JSON types; `Any` because the tree is recursive and open-ended).
Tree: TypeAlias = Any
Arrays: TypeAlias = dict[str, npt.NDArray[Any]]

#: Bump when the encoding or the result classes change incompatibly.
FORMAT = 3
SUFFIX = ".npz"


def _canonical(obj: object) -> object:
    if isinstance(obj, Mapping):
        return {str(k): _canonical(v) for k, v in sorted(obj.items(), key=lambda kv: str(kv[0]))}
    if isinstance(obj, (list, tuple)):
        return [_canonical(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    return obj


def analysis_key(run: Run, options: AnalysisOptions, device: str) -> str:
    """The cache key of one analysis (its options' class says which) of one run on a device: a sha256 hex digest."""
    if run.base_model_is_local and Path(run.base_model).is_dir():
        model = {"local": tree_digest(run.base_model)}
    else:
        model = {"name": run.base_model}
    parts = {
        "format": FORMAT,
        "versions": {
            d: package_version(d) or "none"
            for d in ("pytest-neuronprobe", "torch", "transformer_lens", "transformers", "numpy", "scipy")
        },
        "model": model,
        "head": file_digest(run.head_path),
        "config": file_digest(run.config_path),
        "dataset": file_digest(run.dataset_path),
        "layer": int(run.layer),
        "neuron": int(run.neuron),
        "split": run.split,
        "kind": options.kind,
        "options": _canonical(dataclasses.asdict(options)),
        "device": str(device),
    }
    text = json.dumps(parts, sort_keys=True, separators=(",", ":"), allow_nan=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# ---------------------------------------------------------------------------------------------
# Encoding: JSON + arrays, whitelisted dataclasses only
# ---------------------------------------------------------------------------------------------


def _classes() -> dict[str, type]:
    from pytest_neuronprobe.analyses.attribution_fit import AttributionResult, LayerSummary, VerifiedUnit
    from pytest_neuronprobe.analyses.control import ControlBaseline, ControlResult
    from pytest_neuronprobe.analyses.fits import LinearFit
    from pytest_neuronprobe.analyses.nulls import NullComparison
    from pytest_neuronprobe.analyses.patching_fit import PatchingResult, PerInput
    from pytest_neuronprobe.analyses.projection import NullBaseline, ProjectionResult, SelfCheck, WeightSimilarities
    from pytest_neuronprobe.analyses.stats import Correlation, Undefined

    return {
        c.__name__: c
        for c in (
            ProjectionResult,
            PatchingResult,
            PerInput,
            NullBaseline,
            SelfCheck,
            WeightSimilarities,
            Correlation,
            LinearFit,
            NullComparison,
            Undefined,
            ControlResult,
            ControlBaseline,
            AttributionResult,
            VerifiedUnit,
            LayerSummary,
        )
    }


class CacheFormatError(ValueError):
    """A value the cache cannot store, or an entry it cannot read."""


def encode(obj: object) -> tuple[Tree, Arrays]:
    """(JSON-able tree, arrays) for `obj`; raises CacheFormatError for anything not storable exactly."""
    arrays: Arrays = {}
    classes = _classes()

    def enc(x: object) -> Tree:
        if x is None or isinstance(x, (bool, str)):
            return x
        if isinstance(x, np.ndarray):
            if x.dtype.hasobject:
                raise CacheFormatError("object arrays are not stored")
            name = f"a{len(arrays)}"
            arrays[name] = x
            return {"t": "array", "v": name}
        if isinstance(x, np.generic):
            return {"t": "np", "d": x.dtype.str, "v": enc(x.item())}
        if isinstance(x, int):
            return x if type(x) is int else {"t": "int", "v": int(x)}
        if isinstance(x, float):
            v = float(x)
            return v if math.isfinite(v) else {"t": "float", "v": repr(v)}
        if isinstance(x, tuple):
            return {"t": "tuple", "v": [enc(v) for v in x]}
        if isinstance(x, list):
            return {"t": "list", "v": [enc(v) for v in x]}
        if isinstance(x, dict):
            if not all(isinstance(k, str) for k in x):
                raise CacheFormatError("dict keys must be strings")
            return {"t": "dict", "v": [[k, enc(v)] for k, v in x.items()]}
        if dataclasses.is_dataclass(x) and type(x).__name__ in classes and classes[type(x).__name__] is type(x):
            return {
                "t": "dc",
                "c": type(x).__name__,
                "v": [[f.name, enc(getattr(x, f.name))] for f in dataclasses.fields(x)],
            }
        raise CacheFormatError(f"cannot store a {type(x).__name__}")

    return enc(obj), arrays


def decode(tree: Tree, arrays: Mapping[str, npt.NDArray[Any]]) -> object:
    """Inverse of :func:`encode`."""
    classes = _classes()

    def dec(x: Tree) -> Tree:
        if x is None or isinstance(x, (bool, str, int, float)):
            return x
        if not isinstance(x, dict) or "t" not in x:
            raise CacheFormatError("bad entry")
        t: Tree = x["t"]
        v: Tree = x.get("v")
        if t == "array":
            return arrays[v]
        if t == "np":
            return np.dtype(x["d"]).type(dec(v))
        if t == "int":
            return int(v)
        if t == "float":
            return float(v)
        if t == "tuple":
            return tuple(dec(i) for i in v)
        if t == "list":
            return [dec(i) for i in v]
        if t == "dict":
            return {k: dec(i) for k, i in v}
        if t == "dc":
            cls = classes[x["c"]]
            return cls(**{k: dec(i) for k, i in v})
        raise CacheFormatError(f"bad entry type {t!r}")

    return dec(tree)


CHECKSUM = "__sha256__"


def checksum(meta: bytes, arrays: Mapping[str, npt.NDArray[Any]]) -> str:
    """sha256 over the encoded meta and every array's name, dtype, shape and bytes (sorted by name)."""
    h = hashlib.sha256()
    h.update(len(meta).to_bytes(8, "little") + meta)
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        head = json.dumps([name, a.dtype.str, list(a.shape)], separators=(",", ":")).encode("utf-8")
        h.update(len(head).to_bytes(8, "little") + head)
        h.update(a.nbytes.to_bytes(8, "little") + a.tobytes())
    return h.hexdigest()


def without_run_name(value: object) -> object:
    """`value` (a result or a tuple of results) with every ``run_name`` emptied: entries carry no run identity."""
    return with_run_name(value, "")


def with_run_name(value: object, name: str) -> object:
    """`value` (a result or a tuple of results) named after the run `name` (dataclasses.replace)."""
    if isinstance(value, tuple):
        return tuple(with_run_name(v, name) for v in value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type) and hasattr(value, "run_name"):
        return dataclasses.replace(value, run_name=name)
    return value


def dumps(obj: object, key: str) -> bytes:
    tree, arrays = encode(without_run_name(obj))
    meta = json.dumps({"format": FORMAT, "key": key, "value": tree}, separators=(",", ":"), allow_nan=False)
    raw = meta.encode("utf-8")
    digest = np.frombuffer(checksum(raw, arrays).encode("ascii"), dtype=np.uint8)
    buf = io.BytesIO()
    np.savez(buf, __meta__=np.frombuffer(raw, dtype=np.uint8), **{CHECKSUM: digest}, **arrays)  # type: ignore[arg-type]  # numpy's stub reads ** as allow_pickle
    return buf.getvalue()


def loads(data: str | os.PathLike[str] | io.BytesIO, key: str) -> object:
    with np.load(data, allow_pickle=False) as npz:
        if "__meta__" not in npz.files or CHECKSUM not in npz.files:
            raise CacheFormatError("entry without meta or checksum")
        raw = bytes(npz["__meta__"])
        arrays = {name: npz[name] for name in npz.files if name not in ("__meta__", CHECKSUM)}
        if bytes(npz[CHECKSUM]).decode("ascii", "replace") != checksum(raw, arrays):
            raise CacheFormatError("checksum mismatch (the entry was changed)")
    meta = json.loads(raw.decode("utf-8"))
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or meta.get("key") != key:
        raise CacheFormatError("entry written for another key or format")
    return decode(meta["value"], arrays)


def expected_shape(options: object) -> tuple[type, ...] | type:
    """The class (or tuple of classes, for the joint analysis) an entry for `options` must decode to."""
    from pytest_neuronprobe.analyses.patching_fit import PatchingResult
    from pytest_neuronprobe.analyses.projection import ProjectionResult

    kind = getattr(options, "kind", None)
    if kind == "attribution":
        from pytest_neuronprobe.analyses.attribution_fit import AttributionResult

        return AttributionResult
    if kind == "projection":
        return ProjectionResult
    if kind == "patching":
        return PatchingResult
    if kind == "control":
        from pytest_neuronprobe.analyses.control import ControlResult

        return ControlResult
    return (ProjectionResult, PatchingResult)


def has_shape(value: object, shape: tuple[type, ...] | type) -> bool:
    if isinstance(shape, tuple):
        return (
            isinstance(value, tuple)
            and len(value) == len(shape)
            and all(type(v) is c for v, c in zip(value, shape, strict=True))
        )
    return type(value) is shape


# ---------------------------------------------------------------------------------------------
# The cache directory
# ---------------------------------------------------------------------------------------------


class ResultCache:
    """Finished analysis results by key, in a directory (two-level fan-out: <dir>/ab/<key>.npz)."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        #: Entry files already warned about, and whether the unwritable-directory warning was given.
        self._warned: set[Path] = set()
        self._unwritable = False

    def path(self, key: str) -> Path:
        return self.directory / key[:2] / f"{key}{SUFFIX}"

    def _bad(self, path: Path, why: str) -> None:
        if path not in self._warned:
            self._warned.add(path)
            warnings.warn(f"neuronprobe cache: ignoring entry {path} ({why}); recomputing", stacklevel=3)

    def get(self, key: str, shape: tuple[type, ...] | type | None = None) -> object | None:
        """The stored value, or None (missing, unreadable, changed or not of `shape`: the caller recomputes
        and overwrites). A bad entry is warned about once."""
        path = self.path(key)
        if not path.is_file():
            return None
        try:
            value = loads(path, key)
        except Exception as exc:  # noqa: BLE001 - a corrupt/truncated/foreign entry is a miss
            self._bad(path, f"{type(exc).__name__}: {exc}"[:200])
            return None
        if shape is not None and not has_shape(value, shape):
            self._bad(path, f"holds a {type(value).__name__}, not the expected result")
            return None
        return value

    def put(self, key: str, value: object) -> bool:
        """Store atomically; False (nothing written) when the value cannot be stored or the write fails
        (an unwritable directory is warned about once)."""
        try:
            data = dumps(value, key)
        except Exception:  # noqa: BLE001 - a cache must never fail the analysis
            return False
        try:
            write_bytes_atomic(self.path(key), data)
        except OSError as exc:
            if not self._unwritable:
                self._unwritable = True
                warnings.warn(
                    f"neuronprobe cache: cannot write to {self.directory} ({exc.strerror or exc}); "
                    "results are not cached (--neuron-no-cache turns the cache off)",
                    stacklevel=2,
                )
            return False
        return True


def clear_cache(directory: str | os.PathLike[str]) -> int:
    """Remove the cache entries under `directory` (only ``<2 hex>/<64 hex>.npz`` files and their temp
    files; anything else is left alone); returns how many entries were removed."""
    root = Path(directory)
    if not root.is_dir():
        return 0
    n = 0
    hexdigits = set("0123456789abcdef")
    for child in root.iterdir():
        if not (child.is_dir() and not child.is_symlink() and len(child.name) == 2 and set(child.name) <= hexdigits):
            continue
        for entry in child.iterdir():
            name = entry.name
            stem = name[1:].split(".", 1)[0] if name.startswith(".") else name[: -len(SUFFIX)]
            if not (entry.is_file() and len(stem) == 64 and set(stem) <= hexdigits and stem.startswith(child.name)):
                continue
            if name.endswith(SUFFIX) and not name.startswith("."):
                n += 1
            elif not name.endswith(".tmp"):
                continue
            entry.unlink(missing_ok=True)
        with contextlib.suppress(OSError):  # not empty: something else lives there
            child.rmdir()
    return n
