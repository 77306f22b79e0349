"""Baseline summaries: loading a summary.json file or a report directory, and pairing them with runs.

Each side of a comparison is a summary.json file, a run's report directory holding
``summary.json``, or a report directory holding ``<run>/summary.json`` per run. Runs are keyed
by ``summary["run"]["name"]``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_neuronprobe.core.errors import NeuronProbeError

__all__ = ["Pairing", "Summary", "load_summaries", "load_summary"]

#: A summary.json dict (SPEC §5), as read from JSON.
Summary = dict[str, Any]


def _read_json(path: Path) -> Summary:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise NeuronProbeError(f"cannot read summary: {exc.strerror or exc}", path=path) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise NeuronProbeError(f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}", path=path) from None
    if not isinstance(data, dict):
        raise NeuronProbeError(f"expected a JSON object (a summary.json), got {type(data).__name__}", path=path)
    if "projections" not in data and "patching" not in data:
        raise NeuronProbeError("not a neuronprobe summary.json (no 'projections' or 'patching' key)", path=path)
    return data


def _run_name(summary: Mapping[str, object], path: Path) -> str:
    run = summary.get("run")
    name = run.get("name") if isinstance(run, Mapping) else None
    if not isinstance(name, str) or not name:
        raise NeuronProbeError("expected run.name (a non-empty string)", path=path, key="run.name")
    return name


def load_summaries(path: str | Path) -> dict[str, Summary]:
    """Summaries keyed by run name, from a summary.json file or a report directory.

    A directory is read as ``<dir>/summary.json`` if present, else ``<dir>/*/summary.json``.
    """
    path = Path(path)
    if path.is_dir():
        own = path / "summary.json"
        files = [own] if own.is_file() else sorted(path.glob("*/summary.json"))
        if not files:
            raise NeuronProbeError(
                "no summary.json in this directory or its run subdirectories "
                "(expected <dir>/summary.json or <dir>/<run>/summary.json)",
                path=path,
            )
    elif path.exists():
        files = [path]
    else:
        raise NeuronProbeError("no such file or directory", path=path)
    out: dict[str, Summary] = {}
    where: dict[str, Path] = {}
    for file in files:
        summary = _read_json(file)
        name = _run_name(summary, file)
        if name in out:
            raise NeuronProbeError(f"run {name!r} appears twice (also in {where[name]})", path=file)
        out[name], where[name] = summary, file
    return out


def load_summary(path: str | Path) -> Summary:
    """The one summary at ``path``; an error if ``path`` holds several runs."""
    summaries = load_summaries(path)
    if len(summaries) != 1:
        raise NeuronProbeError(
            f"holds {len(summaries)} runs ({', '.join(summaries)}); use load_summaries or pick one run", path=path
        )
    return next(iter(summaries.values()))


@dataclass(frozen=True)
class BaselinePair:
    """Which baseline summary a run is compared with, why, and how the two were analysed differently."""

    #: The current run's label, and the paired baseline run's name.
    label: str
    name: str
    #: Why these two pair: "same run name", "same neuron (<identity>)", "the baseline's only summary",
    #: or "--neuron-baseline-run <pattern>".
    reason: str
    summary: Summary
    #: Each way the pair was analysed differently ("split: all vs test", "n: 60 vs 24", ...); empty: comparable.
    differences: tuple[str, ...] = ()

    @property
    def comparable(self) -> bool:
        return not self.differences


@dataclass
class Pairing:
    """The baseline summaries of a session, and which one each run compares with."""

    path: Path
    summaries: dict[str, Summary]
    #: Why there are no summaries (no baseline written yet), or None.
    missing: str | None = None

    @classmethod
    def load(cls, path: Path, *, update: bool) -> Pairing:
        """Read the baseline at `path`; a baseline not written yet is empty, with the reason."""
        if not path.exists():
            then = (
                "it will be written at the end of this session" if update else "create it with --neuron-update-baseline"
            )
            return cls(path, {}, f"no baseline at {path} yet; {then}")
        return cls(path, load_summaries(path))

    def summary_for(self, label: str, name: str, *, single_run: bool) -> tuple[Summary | None, str]:
        """The baseline summary of the run `label` (run name `name`), or None with the reason."""
        if not self.summaries:
            return None, self.missing or f"baseline {self.path} holds no summaries"
        for key in (label, name):
            if key in self.summaries:
                return self.summaries[key], ""
        if self.path.is_file() and len(self.summaries) == 1 and single_run:
            return next(iter(self.summaries.values())), ""
        return None, (
            f"baseline {self.path} has no summary for run {label!r} (it holds: "
            f"{', '.join(self.summaries)}); record one with --neuron-update-baseline"
        )
