"""What a report writes where: ``<out>/<run>/summary.json`` and the run's PNGs, ``<out>/index.html``
and ``<out>/results.json``; and the plain records it is written from (:class:`RunReport`, :class:`TestRecord`)."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import SupportsFloat, SupportsInt

import numpy as np
import numpy.typing as npt

from pytest_neuronprobe.core.atomic import write_json_atomic
from pytest_neuronprobe.core.jsonable import jsonable


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


def write_run_report(report: RunReport, out_dir: str | os.PathLike[str]) -> dict[str, Path]:
    """Write ``out_dir/<safe name>/summary.json`` and every plot that has data; return their paths."""
    from pytest_neuronprobe.report.figures import PLOT_FILES  # matplotlib: only when writing

    run_dir = Path(out_dir) / safe_run_name(report.name)
    paths: dict[str, Path] = {"summary": write_json_atomic(run_dir / "summary.json", report.summary)}
    for plot_file in PLOT_FILES:
        if plot_file.has_data(report):
            paths[plot_file.key] = plot_file.plot(report, run_dir / plot_file.filename)
    return paths


def write_report(
    out_dir: str | os.PathLike[str],
    runs: Sequence[RunReport],
    records: Sequence[TestRecord] = (),
    header: Mapping[str, object] | None = None,
) -> ReportFiles:
    """Write every run's report (runs with an error get none, but are listed), ``index.html`` and
    ``results.json`` (``{"header": header, "tests": [record, ...]}``) into ``out_dir``."""
    from pytest_neuronprobe.report.html import write_index_html  # matplotlib: only when writing

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    run_files: dict[str, dict[str, Path]] = {}
    listed: list[tuple[RunReport, Mapping[str, Path]]] = []
    for report in runs:
        if report.error:
            listed.append((report, {}))
            continue
        run_files[report.name] = write_run_report(report, out)
        listed.append((report, run_files[report.name]))
    tests = [r.as_dict() for r in records]
    index = write_index_html(out, listed, tests, header)
    results = write_json_atomic(out / "results.json", {"header": header, "tests": tests})
    return ReportFiles(index_html=index, results_json=results, run_files=run_files)
