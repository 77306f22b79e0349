"""What a report writes where: ``<out>/<run>/summary.json`` and the run's PNGs, ``<out>/index.html``
and ``<out>/results.json``; and the plain records it is written from (:class:`RunReport`, :class:`TestRecord`)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, SupportsFloat, SupportsInt

import numpy as np
import numpy.typing as npt

from pytest_neuronprobe.core.atomic import atomic_dir, write_json_atomic
from pytest_neuronprobe.core.errors import NeuronProbeError
from pytest_neuronprobe.core.jsonable import jsonable

if TYPE_CHECKING:  # pragma: no cover
    from pytest_neuronprobe.baseline import BaselinePair
    from pytest_neuronprobe.history import HistoryEntry


@dataclass(frozen=True)
class RunReport:
    """Everything the report needs about one run, as plain data (a run with an ``error`` gets no files)."""

    name: str
    summary: Mapping[str, object]
    projection_arrays: Mapping[str, object] | None = None
    patching_arrays: Mapping[str, object] | None = None
    null_values: npt.NDArray[np.float64] | None = None
    null_label: str = "random directions"
    error: str | None = None
    #: The run's resolved path (its folder's digest, when its name is not a safe folder name as it is).
    path: str | None = None


@dataclass
class TestRecord:
    """What the report says about one test (or claim) on one run."""

    __test__ = False  # not a pytest test class, despite the name

    nodeid: str
    run: str | None
    claim: str
    outcome: str
    message: str = ""
    values: dict[str, object] = field(default_factory=dict)
    kind: str = "test"  # "test" or "claim"
    duration: float = 0.0
    order: int = 0
    #: The metric a claims-file claim judges ("" for Python tests).
    metric: str = ""

    def as_dict(self) -> dict[str, object]:
        return {
            "nodeid": self.nodeid,
            "run": self.run,
            "claim": self.claim,
            "outcome": self.outcome,
            "message": self.message,
            "values": jsonable(self.values),
            "kind": self.kind,
            "duration": round(self.duration, 4),
            "order": self.order,
            "metric": self.metric,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, object]) -> TestRecord:
        run, values = d.get("run"), d.get("values") or {}
        return cls(
            nodeid=str(d["nodeid"]),
            run=None if run is None else str(run),
            claim=str(d.get("claim", "")),
            outcome=str(d.get("outcome", "")),
            message=str(d.get("message", "")),
            values=dict(values) if isinstance(values, Mapping) else {},
            kind=str(d.get("kind", "test")),
            duration=_float(d.get("duration") or 0.0),
            order=_int(d.get("order") or 0),
            metric=str(d.get("metric") or ""),
        )


def _float(value: object) -> float:
    if isinstance(value, (SupportsFloat, str)):
        return float(value)
    raise TypeError(f"not a number: {value!r}")


def _int(value: object) -> int:
    if isinstance(value, (SupportsInt, str)):
        return int(value)
    raise TypeError(f"not a whole number: {value!r}")


@dataclass(frozen=True)
class ReportFiles:
    """The files :func:`write_report` wrote: per run (errored runs have none) its files by key."""

    index_html: Path
    results_json: Path
    run_files: dict[str, dict[str, Path]]


def safe_run_name(name: str) -> str:
    """A file-system-safe directory name for a run (sanitised and truncated; see :func:`run_folder_name`)."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", str(name)).strip("._-")
    return safe[:120] or "run"


def _digest(name: str, path: str | os.PathLike[str] | None) -> str:
    key = str(Path(path).expanduser().resolve()) if path is not None else f"name:{name}"
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:8]


def run_folder_name(name: str, path: str | os.PathLike[str] | None = None) -> str:
    """A run's folder name: the name itself when it is safe as it is, else the sanitised name plus
    ``-`` and 8 hex digits of the sha256 of the run's resolved path (of the name, without a path)."""
    safe = safe_run_name(name)
    return safe if safe == str(name) else f"{safe}-{_digest(name, path)}"


def run_folders(runs: Sequence[tuple[str, str | os.PathLike[str] | None]]) -> dict[str, str]:
    """Each run's folder name (label -> folder), unique among ``runs`` (label, path), in order; names
    that would still clash (also by case alone) get the digest, then a counter."""
    out: dict[str, str] = {}
    taken: set[str] = set()
    for label, path in runs:
        if label in out:
            continue
        folder = run_folder_name(label, path)
        if folder.lower() in taken:
            folder = f"{safe_run_name(label)}-{_digest(label, path)}"
        base, n = folder, 2
        while folder.lower() in taken:
            folder, n = f"{base}-{n}", n + 1
        out[label] = folder
        taken.add(folder.lower())
    return out


def _folders_of(runs: Sequence[RunReport], out_dir: Path | None = None) -> dict[str, str]:
    """Each run's folder; a run without a path (e.g. merged from shards) keeps the folder in ``out_dir``
    whose summary names it, if there is one."""
    out = run_folders([(report.name, report.path) for report in runs])
    if out_dir is None:
        return out
    for report in runs:
        if report.path is None and not (out_dir / out[report.name]).is_dir():
            out[report.name] = _existing_folder(out_dir, report.name) or out[report.name]
    return out


def _existing_folder(out_dir: Path, name: str) -> str | None:
    import glob
    import json

    for folder in sorted(out_dir.glob(glob.escape(safe_run_name(name)) + "-*")):
        try:
            run = json.loads((folder / "summary.json").read_text(encoding="utf-8")).get("run")
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(run, Mapping) and run.get("name") == name:
            return folder.name
    return None


def run_dir_of(out_dir: str | os.PathLike[str], name: str, path: str | os.PathLike[str] | None = None) -> Path:
    """A run's folder in a report directory: ``<out>/<folder name>`` (see :func:`run_folder_name`)."""
    return Path(out_dir) / run_folder_name(name, path)


def write_run_report(report: RunReport, out_dir: str | os.PathLike[str]) -> dict[str, Path]:
    """Write ``out_dir/<folder>/summary.json`` and every plot that has data (those unchanged since
    the last write are kept); return their paths."""
    from pytest_neuronprobe.report.figure_cache import plan_figures, render_plans  # matplotlib: only when writing

    run_dir = run_dir_of(out_dir, report.name, report.path)
    paths: dict[str, Path] = {"summary": write_json_atomic(run_dir / "summary.json", report.summary)}
    plan = plan_figures(report, run_dir)
    render_plans([plan])
    return {**paths, **plan.paths}


def write_index(
    out_dir: str | os.PathLike[str],
    runs: Sequence[RunReport],
    records: Sequence[TestRecord],
    header: Mapping[str, object] | None,
    *,
    baselines: Mapping[str, BaselinePair | None] | None = None,
    history: Sequence[HistoryEntry] = (),
    folders: Mapping[str, str] | None = None,
) -> Path:
    """Write ``out_dir/index.html`` alone, from the runs' report data and their folders already in
    ``out_dir`` (``<out>/<folder>/*.png``, linked; e.g. after merging report directories); ``folders``:
    label -> folder (default: :func:`run_folders`)."""
    from pytest_neuronprobe.report.html import write_index_html

    folders = _folders_of(runs, Path(out_dir)) if folders is None else folders
    listed = [(report, Path(out_dir) / folders[report.name]) for report in runs]
    tests = [r.as_dict() for r in records]
    return write_index_html(out_dir, listed, tests, header, baselines=baselines, history=history)


def check_report_dir(path: str | os.PathLike[str], key: str = "--neuron-report") -> None:
    """Raise NeuronProbeError unless ``path`` is absent, an empty directory or an earlier report (a report
    replaces the whole directory, so anything else would be lost)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise NeuronProbeError("expected a report directory, got a file", path=path, key=key)
    if path.is_dir() and not (path / "results.json").is_file() and any(path.iterdir()):
        raise NeuronProbeError(
            "exists and is not a neuronprobe report (no results.json): a report replaces its whole directory; "
            "remove it or choose another",
            path=path,
            key=key,
        )


def _seed_figures(old: Path, new: Path) -> None:
    """Link the figures an earlier report's run folder drew (those its figures.json names) and that file into
    the new folder, so unchanged figures are not drawn again; PNGs are replaced, never written through, so
    the old report stays as it was until the swap."""
    from pytest_neuronprobe.report.figure_cache import CACHE_FILE, read_cache

    names = [name for name in read_cache(old) if Path(name).name == name and name.endswith(".png")]
    new.mkdir(parents=True, exist_ok=True)
    for name in [*names, CACHE_FILE]:
        try:
            os.link(old / name, new / name)
        except FileNotFoundError:
            continue
        except OSError:  # a file system without hard links
            with contextlib.suppress(OSError):
                shutil.copy2(old / name, new / name)


def write_report(
    out_dir: str | os.PathLike[str],
    runs: Sequence[RunReport],
    records: Sequence[TestRecord] = (),
    header: Mapping[str, object] | None = None,
    *,
    baselines: Mapping[str, BaselinePair | None] | None = None,
    history: Sequence[HistoryEntry] = (),
) -> ReportFiles:
    """Write every run's report (runs with an error get none, but are listed), ``index.html`` and
    ``results.json`` (``{"header": header, "tests": [record, ...], "runs": {label: {"folder", "path"}}}``)
    as the directory ``out_dir``; each run's folder is unique (:func:`run_folders`).

    Whole or absent: the report is written into a temp directory beside ``out_dir`` and swapped in
    (:func:`~pytest_neuronprobe.core.atomic.atomic_dir`), so a reader, or a session killed at any
    moment, sees the old report or the new one. ``out_dir`` must be absent, empty or an earlier report.

    ``baselines``: each run's baseline pair (None: none for that run; no mapping: no baseline given),
    for the Δ columns; ``history``: earlier sessions' entries, for the trends."""
    from pytest_neuronprobe.report.figure_cache import plan_figures, render_plans

    final = Path(out_dir)
    check_report_dir(final, key="report directory")
    folders = _folders_of(runs)
    written: dict[str, dict[str, Path]] = {}
    with atomic_dir(final) as tmp:
        plans = []
        for report in runs:
            if not report.error:
                _seed_figures(final / folders[report.name], tmp / folders[report.name])
                summary = write_json_atomic(tmp / folders[report.name] / "summary.json", report.summary)
                written[report.name] = {"summary": summary}
                plans.append(plan_figures(report, tmp / folders[report.name]))
        render_plans(plans)
        for plan in plans:
            written[plan.report.name].update(plan.paths)
        write_index(tmp, runs, records, header, baselines=baselines, history=history, folders=folders)
        tests = [r.as_dict() for r in records]
        mapping = {report.name: {"folder": folders[report.name], "path": report.path} for report in runs}
        write_json_atomic(tmp / "results.json", {"header": header, "tests": tests, "runs": mapping})
    # once swapped in, each file has the same name under out_dir
    run_files = {name: {k: final / p.relative_to(tmp) for k, p in files.items()} for name, files in written.items()}
    return ReportFiles(index_html=final / "index.html", results_json=final / "results.json", run_files=run_files)
