"""Figures rendered only when what they show changed, and rendered side by side when there are many.

Each figure's cache key is a sha256 of what it reads (:attr:`PlotFile.fields` and
:attr:`PlotFile.sections` of the run, its name and the summary's ``run`` section) and of the plotting
code and matplotlib version. ``<out>/<run>/figures.json`` maps each PNG to the key it was drawn
from: a PNG whose key is unchanged is kept, so a warm re-run renders none.

matplotlib's Agg renderer is not thread-safe, so many figures render in forked worker processes
(:data:`WORKERS_ENV`: their number; 1 renders in this process; where fork is unavailable, or the
workers fail to start, they render in this process).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import warnings
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pytest_neuronprobe.core.atomic import write_text_atomic
from pytest_neuronprobe.report.figures import PLOT_FILES, PlotFile
from pytest_neuronprobe.report.plotting import RunData

CACHE_FILE = "figures.json"
#: Environment variable: how many processes render figures (default: up to 4, one per CPU, for 12+ figures).
WORKERS_ENV = "NEURONPROBE_REPORT_WORKERS"
#: Fewer figures than this render in this process (starting workers costs about a figure's time).
PARALLEL_FROM = 12
_BY_KEY = {p.key: p for p in PLOT_FILES}


@functools.lru_cache(maxsize=1)
def code_digest() -> str:
    """A digest of the plotting code and matplotlib's version: a change re-renders every figure."""
    import matplotlib

    from pytest_neuronprobe.report import figures, patching_plots, plotting, projection_plots

    h = hashlib.sha256(matplotlib.__version__.encode())
    for module in (figures, plotting, projection_plots, patching_plots):
        h.update(Path(str(module.__file__)).read_bytes())
    return h.hexdigest()


def _feed(h: hashlib._Hash, value: object) -> None:
    """Feed ``value`` into ``h`` unambiguously (type-tagged, length-prefixed, mappings by sorted key)."""
    if value is None:
        h.update(b"N")
    elif isinstance(value, np.ndarray):
        array = np.ascontiguousarray(value)
        h.update(f"A{array.dtype.str}{array.shape}".encode())
        if array.dtype == object:
            _feed(h, array.tolist())
        else:
            h.update(array.tobytes())
    elif isinstance(value, Mapping):
        h.update(f"M{len(value)}".encode())
        for key in sorted(value, key=str):
            _feed(h, str(key))
            _feed(h, value[key])
    elif isinstance(value, (list, tuple)):
        h.update(f"L{len(value)}".encode())
        for item in value:
            _feed(h, item)
    elif isinstance(value, str):
        data = value.encode("utf-8", "surrogatepass")
        h.update(f"S{len(data)}:".encode() + data)
    elif isinstance(value, np.generic):
        _feed(h, value.item())
    else:
        h.update(f"V{type(value).__name__}:{value!r};".encode())


def figure_digest(plot: PlotFile, report: RunData) -> str:
    """The cache key of one figure of one run."""
    h = hashlib.sha256(f"{code_digest()}:{plot.key}".encode())
    summary = report.summary if isinstance(report.summary, Mapping) else {}
    _feed(h, report.name)
    for name in ("run", *plot.sections):
        _feed(h, summary.get(name))
    for name in plot.fields:
        _feed(h, getattr(report, name, None))
    return h.hexdigest()


def read_cache(run_dir: Path) -> dict[str, str]:
    """``<run_dir>/figures.json``: each PNG's key when it was drawn (empty when absent or unreadable)."""
    try:
        data = json.loads((run_dir / CACHE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}  # none yet, or unreadable: render everything
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


@dataclass
class FigurePlan:
    """One run's figures: every one it has, and those to render."""

    report: RunData
    run_dir: Path
    paths: dict[str, Path] = field(default_factory=dict)
    digests: dict[str, str] = field(default_factory=dict)
    todo: list[PlotFile] = field(default_factory=list)
    #: The keys of figures.json before this write.
    cached: dict[str, str] = field(default_factory=dict)


def plan_figures(report: RunData, run_dir: Path) -> FigurePlan:
    """Which figures the run has (a PNG of a figure it no longer has is removed) and which changed."""
    plan = FigurePlan(report, run_dir, cached=read_cache(run_dir))
    for plot in PLOT_FILES:
        path = run_dir / plot.filename
        if not plot.has_data(report):
            path.unlink(missing_ok=True)
            continue
        plan.paths[plot.key] = path
        plan.digests[plot.filename] = digest = figure_digest(plot, report)
        if plan.cached.get(plot.filename) != digest or not path.is_file():
            plan.todo.append(plot)
    return plan


def _render(report: RunData, key: str, path: Path) -> None:
    _BY_KEY[key].plot(report, path)


def workers_for(jobs: int) -> int:
    """How many processes render ``jobs`` figures (:data:`WORKERS_ENV`, else by CPU count and load)."""
    raw = os.environ.get(WORKERS_ENV, "").strip()
    if raw.isdigit() and int(raw) > 0:
        return min(int(raw), jobs)
    if jobs < PARALLEL_FROM:
        return 1
    return max(1, min(4, os.cpu_count() or 1, jobs // 6))


def _render_in_workers(jobs: Sequence[tuple[FigurePlan, PlotFile]], count: int) -> bool:
    """Render the jobs in ``count`` forked processes; False (nothing to undo: the PNGs are written
    atomically) when processes cannot be used here, so the caller renders them itself."""
    import multiprocessing
    from concurrent.futures.process import BrokenProcessPool

    if "fork" not in multiprocessing.get_all_start_methods():
        return False  # spawn/forkserver would re-import the caller's main module: not for a library
    with warnings.catch_warnings():
        # Python 3.12+ warns on fork() in a process with threads (torch's); the children only draw.
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            with ProcessPoolExecutor(count, mp_context=multiprocessing.get_context("fork")) as pool:
                futures = [
                    pool.submit(_render, plan.report, plot.key, plan.run_dir / plot.filename) for plan, plot in jobs
                ]
                for future in futures:
                    future.result()
        except (BrokenProcessPool, OSError):
            return False
    return True


def render_plans(plans: Sequence[FigurePlan], workers: int | None = None) -> int:
    """Render every plan's changed figures and record their keys; return how many were rendered."""
    jobs = [(plan, plot) for plan in plans for plot in plan.todo]
    count = workers if workers is not None else workers_for(len(jobs))
    if not (count > 1 and len(jobs) > 1 and _render_in_workers(jobs, count)):
        for plan, plot in jobs:
            plot.plot(plan.report, plan.run_dir / plot.filename)
    for plan in plans:
        if plan.digests != plan.cached:
            write_text_atomic(plan.run_dir / CACHE_FILE, json.dumps(plan.digests, indent=1, sort_keys=True) + "\n")
    return len(jobs)
