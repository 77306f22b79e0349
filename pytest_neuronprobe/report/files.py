"""What a report writes where: ``<out>/<run>/summary.json`` and the run's PNGs, ``<out>/index.html``
and ``<out>/results.json``; and the plain records it is written from (:class:`RunReport`, :class:`TestRecord`)."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, SupportsFloat, SupportsInt

import numpy as np
import numpy.typing as npt

from pytest_neuronprobe.core.atomic import write_json_atomic
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
    """A file-system-safe directory name for a run."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", str(name)).strip("._-")
    return safe[:120] or "run"


def run_dir_of(out_dir: str | os.PathLike[str], name: str) -> Path:
    """A run's folder in a report directory: ``<out>/<safe name>``."""
    return Path(out_dir) / safe_run_name(name)


def write_run_report(report: RunReport, out_dir: str | os.PathLike[str]) -> dict[str, Path]:
    """Write ``out_dir/<safe name>/summary.json`` and every plot that has data (those unchanged since
    the last write are kept); return their paths."""
    from pytest_neuronprobe.report.figure_cache import plan_figures, render_plans  # matplotlib: only when writing

    run_dir = run_dir_of(out_dir, report.name)
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
) -> Path:
    """Write ``out_dir/index.html`` alone, from the runs' report data and their folders already in
    ``out_dir`` (``<out>/<safe name>/*.png``, linked; e.g. after merging report directories)."""
    from pytest_neuronprobe.report.html import write_index_html

    listed = [(report, run_dir_of(out_dir, report.name)) for report in runs]
    tests = [r.as_dict() for r in records]
    return write_index_html(out_dir, listed, tests, header, baselines=baselines, history=history)


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
    ``results.json`` (``{"header": header, "tests": [record, ...]}``) into ``out_dir``.

    ``baselines``: each run's baseline pair (None: none for that run; no mapping: no baseline given),
    for the Δ columns; ``history``: earlier sessions' entries, for the trends."""
    from pytest_neuronprobe.report.figure_cache import plan_figures, render_plans

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    run_files: dict[str, dict[str, Path]] = {}
    plans = []
    for report in runs:
        if report.error:
            continue
        run_dir = run_dir_of(out, report.name)
        run_files[report.name] = {"summary": write_json_atomic(run_dir / "summary.json", report.summary)}
        plans.append(plan_figures(report, run_dir))
    render_plans(plans)
    for plan in plans:
        run_files[plan.report.name].update(plan.paths)
    index = write_index(out, runs, records, header, baselines=baselines, history=history)
    tests = [r.as_dict() for r in records]
    results = write_json_atomic(out / "results.json", {"header": header, "tests": tests})
    return ReportFiles(index_html=index, results_json=results, run_files=run_files)
