"""The end of a session, one way: complete, gather, write, say.

1. :func:`complete` (after the test loop, in each process that holds runs): computes the default
   analyses that the report or the baseline needs and no test asked for, then freezes each run's
   summary. Workers complete the runs they touched; the controller only the runs no worker reported.
2. :func:`finish` (controller or lone process, at session end): merges local and worker results and
   writes the report, the baseline and the history lines from them (in that order). No analysis
   starts and no probe is opened here.
3. :func:`summary_lines`: the terminal text, from what was gathered and written.
"""

from __future__ import annotations

import contextlib
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from pytest_neuronprobe.core.errors import NeuronProbeError
from pytest_neuronprobe.pytest.records import FinishResult, RunResults

if TYPE_CHECKING:  # pragma: no cover
    from pytest_neuronprobe.baseline import BaselinePair
    from pytest_neuronprobe.pytest.session import NeuronSession
    from pytest_neuronprobe.report.files import RunReport


def wants_complete_runs(state: NeuronSession) -> bool:
    """Whether the end of the session needs both analyses of every run (a report, a new baseline, history)."""
    settings = state.settings
    return settings.report_dir is not None or settings.update_baseline or settings.history_dir is not None


def complete(state: NeuronSession, *, worker: bool) -> None:
    """Compute what the end of the session needs that no test asked for, and freeze each run's results."""
    for label in state.labels:
        if worker and not state.touched(label):
            continue  # another worker holds this run
        if not worker and label in state.remote:
            continue  # a worker delivered it
        try:
            if wants_complete_runs(state):
                state.projection(label)
                state.patching(label)
                if state.control_wanted:
                    state.control(label)
            results = state.results(label)
        except Exception as exc:  # noqa: BLE001 - reported at the end, and must not stop the other runs
            results = RunResults.failed(label, exc)
        if results is not None:
            state.done[label] = results


def gathered(state: NeuronSession) -> dict[str, RunResults]:
    """Every run's results: this process's merged with the workers'."""
    out: dict[str, RunResults] = {}
    for label in state.all_labels():
        local, remote = state.done.get(label), state.remote.get(label)
        merged = local.merged(remote) if local is not None else remote
        if merged is not None:
            out[label] = merged
    return out


def finish(state: NeuronSession) -> FinishResult:
    """Write the report and the baseline from the gathered results; never raises (but SIGINT and SIGTERM
    interrupt it, leaving each file and the report whole or as it was)."""
    from pytest_neuronprobe.core.atomic import terminate_as_interrupt

    with terminate_as_interrupt():
        return _finish(state)


def _finish(state: NeuronSession) -> FinishResult:
    out = FinishResult()
    state.final = gathered(state)
    for label, results in state.final.items():
        if results.error:
            out.errors.append(f"{label}: {results.error}")
    settings = state.settings
    state.pairs, state.unpaired = pairs(state)
    if settings.report_dir is not None:
        try:
            _write_report(state, settings.report_dir, out)
        except Exception as exc:  # noqa: BLE001
            out.errors.append(f"report: {type(exc).__name__}: {exc}")
    if settings.update_baseline and settings.baseline is not None:
        try:
            _write_baseline(state, settings.baseline, out)
        except Exception as exc:  # noqa: BLE001
            out.errors.append(f"baseline: {type(exc).__name__}: {exc}")
    if settings.history_dir is not None:
        try:
            _append_history(state, settings.history_dir, out)
        except Exception as exc:  # noqa: BLE001
            out.errors.append(f"history: {type(exc).__name__}: {exc}")
    state.finished = out
    return out


def pairs(state: NeuronSession) -> tuple[dict[str, BaselinePair | None] | None, dict[str, str]]:
    """Each gathered run's baseline pair, compared with the run's own summary (None without a baseline),
    and why a run has none (label -> reason)."""
    if state.settings.baseline is None:
        return None, {}
    out: dict[str, BaselinePair | None] = {}
    why: dict[str, str] = {}
    for label, results in state.final.items():
        try:
            pair, reason = state.baseline_pair(label)
        except NeuronProbeError as exc:
            pair, reason = None, str(exc)
        out[label] = pair.compared_with(results.summary) if pair is not None and not results.error else pair
        if pair is None:
            why[label] = reason
    return out, why


def report_of(results: RunResults, path: str | None = None) -> RunReport:
    """The report's view of one run's results (``path``: the run's resolved path, for its folder name)."""
    from pytest_neuronprobe.report.files import RunReport

    summary = dict(results.summary)
    if results.error:
        summary["error"] = results.error
    return RunReport(
        name=results.label,
        summary=summary,
        projection_arrays=results.projection_arrays,
        patching_arrays=results.patching_arrays,
        null_values=results.null_values,
        error=results.error,
        path=path,
    )


def _path_of(state: NeuronSession, label: str) -> str:
    if label in state.entries:
        return str(state.entries[label].path)
    return state.remote_paths.get(label, "?")


def _known_path(state: NeuronSession, label: str) -> str | None:
    path = _path_of(state, label)
    return None if path == "?" else path


def folders(state: NeuronSession) -> dict[str, str]:
    """Each gathered run's folder name in the report and the baseline directory (unique in the session)."""
    from pytest_neuronprobe.report.files import run_folders

    return run_folders([(label, _known_path(state, label)) for label in state.final])


def _write_report(state: NeuronSession, out_dir: Path, out: FinishResult) -> None:
    from pytest_neuronprobe.history import read_history
    from pytest_neuronprobe.report.files import write_report

    settings = state.settings
    history = read_history(settings.history_dir) if settings.history_dir is not None else []
    header: dict[str, object] = {
        "runs": ", ".join(f"{label} ({_path_of(state, label)})" for label in state.final) or "none",
        "device": settings.device,
        "baseline": str(settings.baseline) if settings.baseline else "none",
        "judge": settings.judge,
        "max samples": settings.max_samples if settings.max_samples else "all",
        "batch size": settings.batch_size,
    }
    records = sorted(state.records, key=lambda r: (r.order, r.nodeid))
    state.say(f"writing the report: {len(state.final)} run(s) to {out_dir}")
    files = write_report(
        out_dir,
        [report_of(r, _known_path(state, label)) for label, r in state.final.items()],
        records,
        header,
        baselines=state.pairs,
        history=history,
    )
    out.index_html = files.index_html
    out.report_files = files.run_files


def _write_baseline(state: NeuronSession, path: Path, out: FinishResult) -> None:
    from pytest_neuronprobe.baseline import load_summaries
    from pytest_neuronprobe.core.atomic import write_json_atomic
    from pytest_neuronprobe.core.jsonable import jsonable

    good = {label: r for label, r in state.final.items() if r.error is None and r.has_projection and r.has_patching}
    if not good:
        out.errors.append("baseline: nothing to write (no run was analysed completely)")
        return
    if path.is_file() or (not path.exists() and path.suffix == ".json"):
        if len(good) != 1:
            out.errors.append(
                f"baseline: {path} is a single summary file but this session has {len(good)} "
                "runs; pass a directory to --neuron-baseline to keep one summary per run"
            )
            return
        (results,) = good.values()
        out.baseline_files.append(write_json_atomic(path, jsonable(results.summary)))
        return
    names = folders(state)
    for label, results in good.items():
        target = path / names[label] / "summary.json"
        out.baseline_files.append(write_json_atomic(target, jsonable(results.summary)))
    with contextlib.suppress(NeuronProbeError):  # the summaries were just written; listing the rest is a courtesy
        out.baseline_untouched = [n for n in load_summaries(path) if n not in good]


def _append_history(state: NeuronSession, directory: Path, out: FinishResult) -> None:
    """One history line per run analysed without an error (the controller or lone process only)."""
    from pytest_neuronprobe.history import entry_of, git_commit

    time = datetime.now(timezone.utc).isoformat(timespec="seconds")
    commit = git_commit(state.base_dir)
    entries = [
        entry_of(label, _run_name(state, label), results.summary, time=time, commit=commit)
        for label, results in state.final.items()
        if results.error is None and (results.has_projection or results.has_patching)
    ]
    if entries:
        from pytest_neuronprobe.history import append_history

        out.history_file = append_history(directory, entries)
        out.history_entries = len(entries)


def _run_name(state: NeuronSession, label: str) -> str:
    if label in state.entries:
        return state.entries[label].run.name
    path = state.remote_paths.get(label)
    return Path(path).name if path else label


def summary_lines(state: NeuronSession, verbosity: int) -> list[str]:
    """The terminal summary: key metrics per run, the baseline comparison, skips, files written."""
    from pytest_neuronprobe.report.terminal import SessionView, session_lines

    runs = {label: report_of(results) for label, results in state.final.items()}
    view = SessionView(
        runs=runs,
        baselines=state.pairs,
        baseline_path=state.settings.baseline,
        counters=state.counters.as_dict(),
        records=sorted(state.records, key=lambda r: (r.order, r.nodeid)),
        n_records=len(state.records),
        finished=state.finished,
        unpaired=state.unpaired,
    )
    return session_lines(view, verbosity)
