"""`neuronprobe merge`: the report directories of CI matrix jobs (shards) as one report.

Each shard is a ``--neuron-report`` directory: ``results.json`` (``{"header", "tests"}``), one folder per
run (``<run>/summary.json`` and its PNGs) and ``index.html``. The merge copies every run folder, concatenates
the test records (a record of the same run and node id in two shards is kept once when both have the same
outcome), writes one ``results.json`` and one ``index.html``, and, with a baseline directory, each complete
run's summary as ``<baseline>/<run>/summary.json``. The same run with different numbers in two shards is an
error, as is any unreadable input; nothing is written then. The merged report is built in a temporary
directory beside the output and renamed into place: it is whole or absent.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pytest_neuronprobe.baseline import BaselinePair, Pairing, Summary, load_summary
from pytest_neuronprobe.core.atomic import atomic_dir, write_json_atomic
from pytest_neuronprobe.core.errors import NeuronProbeError
from pytest_neuronprobe.core.jsonable import jsonable
from pytest_neuronprobe.report.files import (
    RunReport,
    TestRecord,
    check_report_dir,
    run_folders,
    safe_run_name,
    write_index,
)

__all__ = ["MergeResult", "Shard", "merge_reports", "read_shard", "summary_difference"]

#: Provenance keys that say when or where a run was analysed, not what came out: two shards may differ in them.
_WHEN_OR_WHERE = frozenset({"created", "head_mtime", "model_source"})
#: The header key that names the merged shards.
MERGED_FROM = "merged from"


@dataclass
class Shard:
    """One shard's report directory, read: its header, test records and run folders (label -> folder)."""

    path: Path
    header: dict[str, object] | None
    records: list[TestRecord]
    folders: dict[str, Path] = field(default_factory=dict)
    summaries: dict[str, Summary] = field(default_factory=dict)

    @property
    def results_json(self) -> Path:
        return self.path / "results.json"


@dataclass(frozen=True)
class MergeResult:
    """What a merge wrote: the report's index.html and results.json, its runs and records, the baseline files."""

    index_html: Path
    results_json: Path
    runs: tuple[str, ...]
    n_records: int
    baseline_files: tuple[Path, ...] = ()
    #: Runs left out of the baseline, with the reason (no complete analyses).
    baseline_skipped: tuple[str, ...] = ()


def _read_results(path: Path) -> tuple[dict[str, object] | None, list[TestRecord]]:
    file = path / "results.json"
    if not file.is_file():
        raise NeuronProbeError(
            "no results.json (expected a report directory written by --neuron-report or neuronprobe merge)",
            path=file,
        )
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except OSError as exc:
        raise NeuronProbeError(f"cannot read: {exc.strerror or exc}", path=file) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise NeuronProbeError(f"invalid JSON: {exc}", path=file) from None
    if not isinstance(data, dict) or not isinstance(data.get("tests"), list):
        raise NeuronProbeError('expected a JSON object {"header": ..., "tests": [...]}', path=file)
    header = data.get("header")
    if header is not None and not isinstance(header, dict):
        raise NeuronProbeError(f"expected an object or null, got {type(header).__name__}", path=file, key="header")
    records = []
    for i, entry in enumerate(data["tests"]):
        if not isinstance(entry, dict) or not isinstance(entry.get("nodeid"), str):
            raise NeuronProbeError("expected a test record with a string 'nodeid'", path=file, key=f"tests[{i}]")
        try:
            records.append(TestRecord.from_dict(entry))
        except (TypeError, ValueError) as exc:
            raise NeuronProbeError(f"bad test record: {exc}", path=file, key=f"tests[{i}]") from None
    return header, records


def read_shard(path: str | os.PathLike[str]) -> Shard:
    """Read one report directory; a NeuronProbeError names the file that is missing or bad."""
    root = Path(path)
    if not root.is_dir():
        what = "not a directory" if root.exists() else "no such directory"
        raise NeuronProbeError(f"{what} (expected a report directory written by --neuron-report)", path=root)
    header, records = _read_results(root)
    shard = Shard(root, header, records)
    # A folder is named after its run's label (safe_run_name); the records know the labels.
    labels = {safe_run_name(r.run): r.run for r in records if r.run is not None}
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if not (folder / "summary.json").is_file():
            continue
        summary = load_summary(folder / "summary.json")
        label = labels.get(folder.name) or str(summary["run"]["name"])
        if label in shard.folders:
            raise NeuronProbeError(f"run {label!r} has two folders here ({shard.folders[label].name})", path=folder)
        shard.folders[label], shard.summaries[label] = folder, summary
    return shard


def _comparable(summary: Mapping[str, object]) -> dict[str, object]:
    """A summary without what says when or where it was analysed (times, paths)."""
    out = dict(summary)
    run = out.get("run")
    if isinstance(run, Mapping):
        out["run"] = {k: v for k, v in run.items() if k != "path"}
    provenance = out.get("provenance")
    if isinstance(provenance, Mapping):
        out["provenance"] = {
            k: v for k, v in provenance.items() if k not in _WHEN_OR_WHERE and not str(k).endswith("_path")
        }
    return out


def _first_difference(a: object, b: object, where: str) -> str | None:
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        for key in [*a, *(k for k in b if k not in a)]:
            name = f"{where}.{key}" if where else str(key)
            if key not in a or key not in b:
                return f"{name}: only in {'the second' if key not in a else 'the first'}"
            found = _first_difference(a[key], b[key], name)
            if found:
                return found
        return None
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return f"{where}: {len(a)} vs {len(b)} items"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            found = _first_difference(x, y, f"{where}[{i}]")
            if found:
                return found
        return None
    return None if a == b else f"{where}: {_short(a)} vs {_short(b)}"


def _short(value: object) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def summary_difference(a: Mapping[str, object], b: Mapping[str, object]) -> str | None:
    """Where two summaries of one run first differ, ignoring when and where they were analysed; None if equal."""
    return _first_difference(_comparable(a), _comparable(b), "")


@dataclass
class _Merged:
    """The shards folded together: each run's folder and summary (first shard wins), the records, the header."""

    folders: dict[str, Path] = field(default_factory=dict)
    summaries: dict[str, Summary] = field(default_factory=dict)
    records: list[TestRecord] = field(default_factory=list)
    header: dict[str, object] | None = None


def _fold_runs(shards: Sequence[Shard], merged: _Merged) -> None:
    by_folder: dict[str, str] = {}
    for shard in shards:
        for label, folder in shard.folders.items():
            summary = shard.summaries[label]
            if label in merged.folders:
                first = merged.folders[label] / "summary.json"
                diff = summary_difference(merged.summaries[label], summary)
                if diff:
                    raise NeuronProbeError(
                        f"run {label!r} has different numbers in two shards: {first} and "
                        f"{folder / 'summary.json'} (first difference: {diff})"
                    )
                continue
            if folder.name in by_folder:
                raise NeuronProbeError(
                    f"runs {by_folder[folder.name]!r} and {label!r} would share the folder {folder.name!r}: "
                    f"{merged.folders[by_folder[folder.name]]} and {folder}"
                )
            by_folder[folder.name] = label
            merged.folders[label], merged.summaries[label] = folder, summary


def _fold_records(shards: Sequence[Shard], merged: _Merged) -> None:
    seen: dict[tuple[str | None, str], tuple[TestRecord, Shard]] = {}
    ranked: list[tuple[int, int, int, TestRecord]] = []
    for s, shard in enumerate(shards):
        for i, record in enumerate(shard.records):
            key = (record.run, record.nodeid)
            if key in seen:
                other, where = seen[key]
                if other.outcome != record.outcome:
                    raise NeuronProbeError(
                        f"test {record.nodeid!r} has different outcomes in two shards: {other.outcome} in "
                        f"{where.results_json} and {record.outcome} in {shard.results_json}"
                    )
                continue
            seen[key] = (record, shard)
            ranked.append((record.order, s, i, record))
    # Each shard numbers its tests in collection order; interleaved by that number, the tests of one
    # function stay together, one per run, as one session with every run would list them.
    ranked.sort(key=lambda t: t[:3])
    for order, (_, _, _, record) in enumerate(ranked):
        record.order = order
        merged.records.append(record)


def _merged_header(shards: Sequence[Shard]) -> dict[str, object]:
    """Each header key once: its value where every shard agrees, else their distinct values joined."""
    values: dict[str, list[object]] = {}
    for shard in shards:
        for key, value in (shard.header or {}).items():
            values.setdefault(str(key), []).append(value)
    header: dict[str, object] = {}
    for key, vals in values.items():
        distinct: list[object] = []
        for v in vals:
            if v not in distinct:
                distinct.append(v)
        header[key] = distinct[0] if len(distinct) == 1 else ", ".join(map(str, distinct))
    header[MERGED_FROM] = ", ".join(dict.fromkeys(str(s.path) for s in shards))
    return header


def _run_reports(merged: _Merged) -> list[RunReport]:
    """The merged runs in the order the records first name them; a run with records but no folder failed in
    its shard (its session wrote no files for it) and is listed with that reason."""
    order = [r.run for r in merged.records if r.run is not None]
    order += list(merged.folders)
    reports: list[RunReport] = []
    for label in dict.fromkeys(order):
        if label in merged.summaries:
            reports.append(RunReport(name=label, summary=merged.summaries[label]))
        else:
            error = "no summary.json in its shard's report (its analyses failed there; see that job's log)"
            reports.append(RunReport(name=label, summary={"error": error}, error=error))
    return reports


def _check_paths(out: Path, baseline: Path | None, against: Path | None) -> None:
    """--out a new or empty directory or an earlier report; --baseline a directory; --against existing."""
    check_report_dir(out, key="--out")
    if baseline is not None and baseline.exists() and not baseline.is_dir():
        raise NeuronProbeError("--baseline must be a directory (one <run>/summary.json per run)", path=baseline)
    if against is not None and not against.exists():
        raise NeuronProbeError(
            "--against: no such file or directory (a summary.json or report directory)", path=against
        )


def _pairs(against: Path, merged: _Merged) -> dict[str, BaselinePair | None]:
    """Each merged run's baseline pair in `against` (the shards' --neuron-baseline), by the plugin's rules."""
    pairing = Pairing.load(against, update=False)
    out: dict[str, BaselinePair | None] = {}
    for label, summary in merged.summaries.items():
        pair, _ = pairing.pair(label, summary)
        out[label] = pair.compared_with(summary) if pair is not None else None
    return out


def _write_report(
    out: Path, merged: _Merged, runs: Sequence[RunReport], baselines: dict[str, BaselinePair | None] | None
) -> None:
    with atomic_dir(out) as tmp:
        for folder in merged.folders.values():
            shutil.copytree(folder, tmp / folder.name)
        tests = [r.as_dict() for r in merged.records]
        write_json_atomic(tmp / "results.json", {"header": merged.header, "tests": tests})
        write_index(tmp, runs, merged.records, merged.header, baselines=baselines)


def _complete(summary: Mapping[str, object]) -> bool:
    projections = summary.get("projections")
    has_projection = isinstance(projections, Mapping) and any(projections.values())
    return "error" not in summary and has_projection and bool(summary.get("patching"))


def _run_path(summary: Mapping[str, object]) -> str | None:
    run = summary.get("run")
    path = run.get("path") if isinstance(run, Mapping) else None
    return path if isinstance(path, str) else None


def _write_baseline(directory: Path, merged: _Merged) -> tuple[list[Path], list[str]]:
    written, skipped = [], []
    # the same unique folder names as the report: two names that sanitise alike never share one
    folders = run_folders([(label, _run_path(summary)) for label, summary in merged.summaries.items()])
    for label, summary in merged.summaries.items():
        if not _complete(summary):
            skipped.append(f"{label} (its analyses are not complete)")
            continue
        target = directory / folders[label] / "summary.json"
        written.append(write_json_atomic(target, jsonable(summary)))
    return written, skipped


def merge_reports(
    reports: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    *,
    baseline: str | os.PathLike[str] | None = None,
    against: str | os.PathLike[str] | None = None,
) -> MergeResult:
    """Merge shard report directories into ``out`` (whole or absent); with ``baseline``, write each complete
    run's summary there; with ``against`` (the baseline the shards were checked against), the index shows each
    run's Δ against it. Bad input raises NeuronProbeError naming the file, before anything is written."""
    if not reports:
        raise NeuronProbeError("no report directories to merge")
    out_dir = Path(out)
    baseline_dir = None if baseline is None else Path(baseline)
    against_path = None if against is None else Path(against)
    shards = [read_shard(p) for p in reports]
    _check_paths(out_dir, baseline_dir, against_path)
    merged = _Merged()
    _fold_runs(shards, merged)
    _fold_records(shards, merged)
    merged.header = _merged_header(shards)
    runs = _run_reports(merged)
    baselines = _pairs(against_path, merged) if against_path is not None else None  # read before --baseline writes
    try:
        _write_report(out_dir, merged, runs, baselines)
        written, skipped = _write_baseline(baseline_dir, merged) if baseline_dir is not None else ([], [])
    except OSError as exc:
        where = exc.filename or out_dir
        raise NeuronProbeError(f"cannot write: {exc.strerror or exc}", path=where) from None
    return MergeResult(
        index_html=out_dir / "index.html",
        results_json=out_dir / "results.json",
        runs=tuple(r.name for r in runs),
        n_records=len(merged.records),
        baseline_files=tuple(written),
        baseline_skipped=tuple(skipped),
    )
