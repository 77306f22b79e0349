"""The terminal summary of a session: headline metrics per run, the baseline comparison, skips, files written."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from pytest_neuronprobe.claims.metrics import HEADLINE_METRICS, Metric, flatten
from pytest_neuronprobe.compare import diff_rows, format_table
from pytest_neuronprobe.core.formatting import format_short

if TYPE_CHECKING:  # pragma: no cover
    from pytest_neuronprobe.report.files import RunReport

NO_RUN_REASON = (
    "no --neuron-run given (pass --neuron-run PATH or set neuron_run in the ini file; "
    "--neuron-require-run makes this an error)"
)


class Written(Protocol):
    """What the end of the session wrote (the pytest layer's FinishResult)."""

    @property
    def index_html(self) -> Path | None: ...
    @property
    def report_files(self) -> Mapping[str, Mapping[str, Path]]: ...
    @property
    def baseline_files(self) -> Sequence[Path]: ...
    @property
    def baseline_untouched(self) -> Sequence[str]: ...
    @property
    def errors(self) -> Sequence[str]: ...


@dataclass
class SessionView:
    """What the terminal summary reads."""

    runs: Mapping[str, RunReport]
    #: Each run's baseline summary (None: none for that run); None without a baseline.
    baselines: Mapping[str, Mapping[str, object] | None] | None = None
    baseline_path: Path | None = None
    counters: Mapping[str, int] = field(default_factory=dict)
    n_records: int = 0
    finished: Written | None = None


def session_lines(view: SessionView, verbosity: int = 0) -> list[str]:
    """The summary lines; `-q` (verbosity -1) keeps one line per run, `-qq` none."""
    lines: list[str] = []
    if verbosity >= -1:
        for label, report in view.runs.items():
            lines += run_lines(label, report, view, verbosity)
    counters = view.counters
    if counters.get("no_run"):
        lines.append(f"{counters['no_run']} test(s) skipped: {NO_RUN_REASON}")
    if counters.get("no_baseline"):
        hint = "see the skip reasons" if view.baseline_path else "pass --neuron-baseline PATH"
        lines.append(f"{counters['no_baseline']} test(s) skipped: no baseline for their run ({hint})")
    if counters.get("analyses") and verbosity >= 0:
        secs = counters.get("analysis_ms", 0) / 1000
        lines.append(
            f"neuronprobe: analyses took {secs:.2f} s ({counters.get('analyses_cached', 0)} of "
            f"{counters['analyses']} from cache)"
        )
    if view.finished is not None:
        lines += written_lines(view.finished, view.n_records)
    return lines


def run_lines(label: str, report: RunReport, view: SessionView, verbosity: int) -> list[str]:
    """One run's header line and (unless quiet) its metric table or baseline comparison."""
    if report.error:
        return [f"run {label}: ERROR {report.error}"]
    summary = report.summary
    metrics = flatten(summary)
    run = summary.get("run")
    run = run if isinstance(run, Mapping) else {}
    lines = [
        f"run {label} (L{run.get('target_layer')} N{run.get('target_neuron')}, {run.get('head_type')}, "
        f"{run.get('split')} split, n={summary.get('dataset_size')})"
    ]
    if verbosity < 0:
        return lines
    base = view.baselines.get(label) if view.baselines is not None else None
    if base is not None:
        names = [n for n in HEADLINE_METRICS if n in metrics or n in flatten(base)]
        table = format_table(diff_rows(base, summary, names), f"compared with the baseline {view.baseline_path}:")
        lines += ["  " + line for line in table.splitlines()]
    else:
        lines += ["  " + line for line in metric_table(metrics)]
    return lines


def metric_table(metrics: Mapping[str, Metric]) -> list[str]:
    """The headline metrics: estimate, 95% interval, n."""
    rows = [("metric", "estimate", "95% interval", "n")]
    for name in HEADLINE_METRICS:
        m = metrics.get(name)
        if m is None:
            continue
        ci = f"[{format_short(m.ci_low)}, {format_short(m.ci_high)}]" if m.has_interval else ""
        prefix = name.rsplit(".", 1)[0]
        n_metric = metrics.get(f"{prefix}.n") or (
            metrics.get("patching.n_texts") if name.startswith("patching.") else None
        )
        n = format_short(n_metric.value) if n_metric is not None and n_metric.value is not None else ""
        rows.append((name, format_short(m.value) if m.value is not None else f"undefined ({m.reason})", ci, n))
    if len(rows) == 1:
        return ["(no metrics)"]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    return [
        "  ".join([r[0].ljust(widths[0]), r[1].rjust(widths[1]), r[2].ljust(widths[2]), r[3].rjust(widths[3])]).rstrip()
        for r in rows
    ]


def written_lines(done: Written, n_records: int) -> list[str]:
    """Which report and baseline files were written, and what went wrong."""
    lines: list[str] = []
    if done.index_html is not None:
        lines.append(f"report written: {done.index_html} ({len(done.report_files)} run(s), {n_records} test record(s))")
    if done.baseline_files:
        lines.append("baseline updated: wrote " + ", ".join(map(str, done.baseline_files)))
        if done.baseline_untouched:
            lines.append(
                "baseline also holds run(s) not in this session, left unchanged: " + ", ".join(done.baseline_untouched)
            )
    lines += [f"ERROR {err}" for err in done.errors]
    return lines
