"""The history of a project's runs: one JSON line per run per session in ``<dir>/history.jsonl``.

Each line (a :class:`HistoryEntry`) holds when the session ended (``time``), the run's name and
label, its training date (``stamp``: the mtime of its head file, ISO 8601 UTC), the git commit of
the working directory when there is one, the neuron it probes, and the headline metrics with their
intervals. The file is only ever appended to, one ``write`` per line on a descriptor opened with
``O_APPEND``, so concurrent sessions do not interleave lines; under pytest-xdist only the
controller writes. Lines that cannot be read are skipped with a warning naming ``file:line``.

Claims refer to it as ``previous`` (the latest earlier entry of the same run name, else of the
same neuron) and ``best`` (the best earlier value of the metric among the entries of the same
run name or neuron: the highest for ``>=``/``>`` claims, the lowest for ``<=``/``<``, else the
highest).
"""

from __future__ import annotations

import json
import os
import subprocess
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TypedDict

from pytest_neuronprobe.baseline import NeuronIdentity
from pytest_neuronprobe.claims.metrics import HEADLINE_METRICS, Metric, flatten
from pytest_neuronprobe.core.errors import NeuronProbeError

__all__ = [
    "HISTORY_FILE",
    "REFERENCES",
    "HistoryEntry",
    "HistoryWarning",
    "MetricPoint",
    "append_history",
    "entry_of",
    "git_commit",
    "head_stamp",
    "read_history",
    "reference_metrics",
]

HISTORY_FILE = "history.jsonl"
#: The claim words that refer to the history.
REFERENCES = ("previous", "best")


class HistoryWarning(UserWarning):
    """A history line that could not be read (skipped)."""


class MetricPoint(TypedDict):
    """One headline metric of a history entry: its estimate and 95% interval (None: undefined or none)."""

    value: float | None
    ci_low: float | None
    ci_high: float | None


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="seconds")


def _opt_str(x: object) -> str | None:
    return x if isinstance(x, str) and x else None


def _opt_float(x: object) -> float | None:
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    return float(x)


@dataclass(frozen=True)
class HistoryEntry:
    """One run of one session, as a line of history.jsonl."""

    #: When the session appended it (ISO 8601 UTC).
    time: str
    #: The run's name (its directory name) and its label in that session.
    run: str
    label: str
    #: The run's training date: the mtime of its head file (ISO 8601 UTC), or None.
    stamp: str | None
    #: git HEAD of the session's working directory, when it is a git checkout.
    commit: str | None
    metrics: Mapping[str, MetricPoint] = field(default_factory=dict)
    #: The neuron the run probes (base model, layer, neuron, hook, head type), to find earlier runs of it.
    identity: NeuronIdentity | None = None

    def to_json(self) -> dict[str, object]:
        return {
            "time": self.time,
            "run": self.run,
            "label": self.label,
            "stamp": self.stamp,
            "commit": self.commit,
            "identity": None if self.identity is None else self.identity.to_json(),
            "metrics": {name: dict(point) for name, point in self.metrics.items()},
        }

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> HistoryEntry:
        """An entry from its JSON object; NeuronProbeError naming the key when one is missing or malformed."""
        time, run = data.get("time"), data.get("run")
        if not isinstance(time, str) or not isinstance(run, str) or not run:
            raise NeuronProbeError(
                "expected 'time' and 'run' (strings)", key="time" if not isinstance(time, str) else "run"
            )
        raw = data.get("metrics")
        if not isinstance(raw, Mapping):
            raise NeuronProbeError("expected an object of metrics", key="metrics")
        metrics: dict[str, MetricPoint] = {}
        for name, point in raw.items():
            if not isinstance(point, Mapping):
                raise NeuronProbeError("expected {value, ci_low, ci_high}", key=f"metrics.{name}")
            metrics[str(name)] = MetricPoint(
                value=_opt_float(point.get("value")),
                ci_low=_opt_float(point.get("ci_low")),
                ci_high=_opt_float(point.get("ci_high")),
            )
        identity = data.get("identity")
        return cls(
            time=time,
            run=run,
            label=_opt_str(data.get("label")) or run,
            stamp=_opt_str(data.get("stamp")),
            commit=_opt_str(data.get("commit")),
            metrics=metrics,
            identity=NeuronIdentity.from_json(identity) if isinstance(identity, Mapping) else None,
        )

    def metric(self, name: str) -> Metric | None:
        """A headline metric of this entry as a claims :class:`Metric` (None when it was not recorded)."""
        point = self.metrics.get(name)
        if point is None:
            return None
        value = point["value"]
        has_interval = point["ci_low"] is not None or point["ci_high"] is not None
        reason = None if value is not None else f"undefined in the entry of {self.time}"
        return Metric(name, value, point["ci_low"], point["ci_high"], reason, has_interval=has_interval)


def head_stamp(summary: Mapping[str, object]) -> str | None:
    """A run's training date from its summary: provenance ``head_mtime``, else the mtime of ``head_path``."""
    prov = summary.get("provenance")
    if not isinstance(prov, Mapping):
        return None
    stamp = _opt_str(prov.get("head_mtime"))
    if stamp is not None:
        return stamp
    head = _opt_str(prov.get("head_path"))
    try:
        return _iso(os.stat(head).st_mtime) if head else None
    except OSError:
        return None


def git_commit(cwd: str | os.PathLike[str]) -> str | None:
    """``git rev-parse HEAD`` in `cwd`, or None (no git, not a checkout, no commit yet)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    text = out.stdout.strip()
    return text if out.returncode == 0 and text else None


def entry_of(
    label: str, run_name: str, summary: Mapping[str, object], *, time: str | None = None, commit: str | None = None
) -> HistoryEntry:
    """The history entry of one run's summary (headline metrics with intervals)."""
    flat = flatten(summary)
    metrics = {
        name: MetricPoint(value=m.value, ci_low=m.ci_low, ci_high=m.ci_high)
        for name in HEADLINE_METRICS
        if (m := flat.get(name)) is not None
    }
    return HistoryEntry(
        time=time or _iso(datetime.now(timezone.utc).timestamp()),
        run=run_name,
        label=label,
        stamp=head_stamp(summary),
        commit=commit,
        metrics=metrics,
        identity=NeuronIdentity.of_summary(summary),
    )


def append_history(directory: str | os.PathLike[str], entries: Iterable[HistoryEntry]) -> Path:
    """Append one JSON line per entry to ``<directory>/history.jsonl`` (created if needed): one
    ``write`` per line on an ``O_APPEND`` descriptor, so concurrent writers never interleave a line."""
    path = Path(directory) / HISTORY_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        for entry in entries:
            line = json.dumps(entry.to_json(), ensure_ascii=False, allow_nan=False, separators=(",", ":"))
            os.write(fd, (line + "\n").encode("utf-8"))
    finally:
        os.close(fd)
    return path


def read_history(directory: str | os.PathLike[str]) -> list[HistoryEntry]:
    """The entries of ``<directory>/history.jsonl`` in file order (none when it does not exist yet);
    a line that is not a valid entry is skipped with a :class:`HistoryWarning` naming ``file:line``."""
    path = Path(directory) / HISTORY_FILE
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return []
    except OSError as exc:
        warnings.warn(f"{path}: cannot read the history: {exc.strerror or exc}", HistoryWarning, stacklevel=2)
        return []
    entries: list[HistoryEntry] = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
            if not isinstance(data, dict):
                raise NeuronProbeError(f"expected a JSON object, got {type(data).__name__}")
            entries.append(HistoryEntry.from_json(data))
        except (json.JSONDecodeError, NeuronProbeError) as exc:
            warnings.warn(f"{path}:{number}: skipped a history line: {exc}", HistoryWarning, stacklevel=2)
    return entries


def _related(
    entries: Sequence[HistoryEntry], run_name: str, identity: NeuronIdentity | None
) -> tuple[list[HistoryEntry], list[HistoryEntry]]:
    """(entries of the same run name, entries of the same neuron)."""
    same_run = [e for e in entries if e.run == run_name]
    same_neuron = [
        e for e in entries if identity is not None and e.identity is not None and identity.matches(e.identity)
    ]
    return same_run, same_neuron


def _best(entries: Sequence[HistoryEntry], lowest: bool) -> dict[str, Metric]:
    best: dict[str, Metric] = {}
    for entry in entries:
        for name in entry.metrics:
            m = entry.metric(name)
            if m is None or m.value is None:
                continue
            held = best.get(name)
            if held is None or held.value is None or (m.value < held.value if lowest else m.value > held.value):
                best[name] = m
    return best


def reference_metrics(
    which: str,
    entries: Sequence[HistoryEntry],
    run_name: str,
    identity: NeuronIdentity | None,
    *,
    lowest: bool = False,
    where: str = "the history",
) -> tuple[dict[str, Metric] | None, str]:
    """What `previous` or `best` stands for, for one run: metrics, or None with the reason (no earlier entry).

    previous: the latest entry of the same run name, else of the same neuron; best: per metric the highest
    (``lowest``: the lowest) earlier value among the entries of the same run name or neuron.
    """
    same_run, same_neuron = _related(entries, run_name, identity)
    if not same_run and not same_neuron:
        return None, f"no earlier entry for run {run_name!r} or its neuron in {where}"
    if which == "previous":
        entry = (same_run or same_neuron)[-1]
        metrics = {name: m for name in entry.metrics if (m := entry.metric(name)) is not None}
        return metrics, ""
    mine = {id(e) for e in same_run}
    return _best([*same_run, *(e for e in same_neuron if id(e) not in mine)], lowest), ""
