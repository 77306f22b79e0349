"""The terminal summary of a session: per run its baseline pairing, metrics (with intervals, Δ and broken
claims marked) and verdict counts; skips; the cache line; files written.

Verbosity: 0 (and above) the full tables; ``-q`` (-1) one line per run (verdict counts, headline metrics)
plus the skip, cache and file lines; ``-qq`` (-2 and below) only errors.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from pytest_neuronprobe.baseline import BaselinePair
from pytest_neuronprobe.claims.metrics import HEADLINE_METRICS, Metric, flatten
from pytest_neuronprobe.core.formatting import format_cell, format_short

if TYPE_CHECKING:  # pragma: no cover
    from pytest_neuronprobe.report.files import RunReport, TestRecord

__all__ = ["NO_RUN_REASON", "QUIET_METRICS", "SessionView", "Written", "session_lines"]

NO_RUN_REASON = (
    "no --neuron-run given (pass --neuron-run PATH or set neuron_run in the ini file; "
    "--neuron-require-run makes this an error)"
)
#: The metrics of a run's `-q` line (those the run has), besides any metric of a broken claim.
QUIET_METRICS = (
    "projection.prediction.r",
    "projection.head.r",
    "projection.null.random.selectivity",
    "patching.slope",
    "patching.direct_slope",
)
#: Record outcomes in the order the counts are written.
OUTCOMES = ("passed", "failed", "error", "skipped", "xfailed", "xpassed")
#: The outcomes of a claim that did not hold.
BROKEN = ("failed", "error")
#: How a record's message starts when its claim held though it was expected to fail (a strict xfail): the test
#: failed, the claim did not break.
HELD_UNEXPECTEDLY = "[XPASS(strict)]"
MARK = "✗"
#: A cell of a metric one side does not have (its analysis did not run).
NOT_RUN = "not run"


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
    @property
    def history_file(self) -> Path | None: ...
    @property
    def history_entries(self) -> int: ...


@dataclass
class SessionView:
    """What the terminal summary reads."""

    runs: Mapping[str, RunReport]
    #: Each run's baseline (None: none for that run); None without a baseline. A bare summary Mapping is
    #: still accepted in place of a BaselinePair (then the pairing is not described).
    baselines: Mapping[str, BaselinePair | Mapping[str, object] | None] | None = None
    baseline_path: Path | None = None
    counters: Mapping[str, int] = field(default_factory=dict)
    #: The session's test records (tests and claims); a claim record's `metric` marks the rows it broke.
    records: Sequence[TestRecord] = ()
    #: The number of test records (default: len(records)).
    n_records: int = 0
    finished: Written | None = None
    #: Why a run has no baseline (label -> reason, as Pairing.pair gives it), said in place of the pairing.
    unpaired: Mapping[str, str] = field(default_factory=dict)

    def records_of(self, label: str) -> list[TestRecord]:
        return [r for r in self.records if r.run == label]

    def pair_of(self, label: str) -> BaselinePair | None:
        """The run's baseline pair; a bare summary becomes a pair with no reason."""
        base = self.baselines.get(label) if self.baselines is not None else None
        if base is None or isinstance(base, BaselinePair):
            return base
        run = base.get("run")
        name = run.get("name") if isinstance(run, Mapping) else None
        return BaselinePair(label=label, name=str(name or "?"), reason="", summary=dict(base))


def session_lines(view: SessionView, verbosity: int = 0) -> list[str]:
    """The summary lines; `-q` (verbosity -1) keeps one line per run, `-qq` only errors."""
    if verbosity <= -2:
        return [f"ERROR {err}" for err in view.finished.errors] if view.finished is not None else []
    lines: list[str] = []
    for label, report in view.runs.items():
        lines += quiet_line(label, report, view) if verbosity < 0 else run_lines(label, report, view)
    counters = view.counters
    if counters.get("no_run"):
        lines.append(f"{counters['no_run']} test(s) skipped: {NO_RUN_REASON}")
    if counters.get("no_baseline"):
        hint = "see the skip reasons" if view.baseline_path else "pass --neuron-baseline PATH"
        lines.append(f"{counters['no_baseline']} test(s) skipped: no baseline for their run ({hint})")
    if counters.get("analyses"):
        secs = counters.get("analysis_ms", 0) / 1000
        lines.append(
            f"neuronprobe: analyses took {secs:.2f} s ({counters.get('analyses_cached', 0)} of "
            f"{counters['analyses']} from cache)"
        )
    if view.finished is not None:
        lines += written_lines(view.finished, view.n_records or len(view.records))
    return lines


# ---------------------------------------------------------------------------------------------
# One run
# ---------------------------------------------------------------------------------------------


def _header(label: str, summary: Mapping[str, object]) -> str:
    run = summary.get("run")
    run = run if isinstance(run, Mapping) else {}
    return (
        f"run {label} (L{run.get('target_layer')} N{run.get('target_neuron')}, {run.get('head_type')}, "
        f"{run.get('split')} split, n={summary.get('dataset_size')})"
    )


def broken_claims(records: Iterable[TestRecord]) -> dict[str, list[str]]:
    """metric -> the expressions of its claims that did not hold (failed or errored) in these records."""
    out: dict[str, list[str]] = {}
    for r in records:
        if r.kind == "claim" and r.metric and r.outcome in BROKEN and not r.message.startswith(HELD_UNEXPECTEDLY):
            expr = r.claim.removeprefix(r.metric).strip() or r.claim
            out.setdefault(r.metric, []).append(expr)
    return out


def outcome_counts(records: Iterable[TestRecord]) -> str:
    """``3 passed, 1 failed`` in the order of :data:`OUTCOMES` (other outcomes last)."""
    counts = Counter(r.outcome for r in records)
    order = [*OUTCOMES, *sorted(set(counts) - set(OUTCOMES))]
    return ", ".join(f"{counts[o]} {o}" for o in order if counts[o])


def _row_names(metrics: Mapping[str, Metric], base: Mapping[str, Metric], records: Sequence[TestRecord]) -> list[str]:
    """The headline metrics either side has, then the other metrics this run's claims judged."""
    names = [n for n in HEADLINE_METRICS if n in metrics or n in base]
    claimed = [r.metric for r in records if r.kind == "claim" and r.metric]
    names += [m for m in dict.fromkeys(claimed) if m not in names and (m in metrics or m in base)]
    return names


def run_lines(label: str, report: RunReport, view: SessionView) -> list[str]:
    """One run: its header, its baseline pairing (and warning), its table, its claim counts."""
    if report.error:
        return [f"run {label}: ERROR {report.error}"]
    summary = report.summary
    metrics = flatten(summary)
    records = view.records_of(label)
    broken = broken_claims(records)
    lines = [_header(label, summary)]
    pair = view.pair_of(label)
    if pair is not None:
        lines.append(f"  paired with baseline run {pair.name}" + (f": {pair.reason}" if pair.reason else ""))
        if pair.differences:
            lines.append(
                "  WARNING: this run and its baseline were analysed differently, so the Δ compares unlike "
                "with like: " + "; ".join(pair.differences)
            )
        base = flatten(pair.summary)
        table = delta_table(_row_names(metrics, base, records), base, metrics, broken)
        lines += [f"  compared with the baseline {view.baseline_path}:", *("  " + line for line in table)]
    else:
        if view.baselines is not None:
            why = view.unpaired.get(label) or "the baseline holds no summary for this run"
            lines.append(f"  no baseline for this run: {why}")
        lines += ["  " + line for line in metric_table(metrics, broken, _row_names(metrics, {}, records))]
    claims = [r for r in records if r.kind == "claim"]
    if claims:
        note = f" ({MARK} marks the metric of a claim that did not hold)" if broken else ""
        lines.append(f"  claims: {outcome_counts(claims)}{note}")
    return lines


def quiet_line(label: str, report: RunReport, view: SessionView) -> list[str]:
    """`-q`: one line per run: its verdict counts and its headline metrics, compactly."""
    if report.error:
        return [f"run {label}: ERROR {report.error}"]
    records = view.records_of(label)
    counts = f"{outcome_counts(records)} of {len(records)} record(s)" if records else "no tests"
    metrics = flatten(report.summary)
    pair = view.pair_of(label)
    base = flatten(pair.summary) if pair is not None else {}
    broken = broken_claims(records)
    cells = []
    for name in [*QUIET_METRICS, *(m for m in broken if m not in QUIET_METRICS)]:
        m = metrics.get(name)
        if m is None:
            continue
        cell = f"{name.removeprefix('projection.')} {MARK if name in broken else ''}{format_short(m.value)}"
        if m.ci_low is not None and m.ci_high is not None:
            cell += f" [{format_short(m.ci_low)}, {format_short(m.ci_high)}]"
        b = base.get(name)
        if b is not None and b.value is not None and m.value is not None:
            delta = m.value - b.value
            cell += f" Δ{'+' if delta > 0 else ''}{format_short(delta, 2)}"
        cells.append(cell)
    warn = f"; WARNING: analysed differently from baseline {pair.name}" if pair is not None and pair.differences else ""
    return [f"run {label}: {counts}" + (f"; {', '.join(cells)}" if cells else "") + warn]


# ---------------------------------------------------------------------------------------------
# Tables
# ---------------------------------------------------------------------------------------------


def _is_count(metric: str) -> bool:
    return metric == "dataset_size" or metric.rsplit(".", 1)[-1] in ("n", "n_null", "n_texts")


def _interval(m: Metric | None) -> str:
    if m is None or not m.has_interval:
        return ""
    if m.ci_low is None or m.ci_high is None:
        return "undefined"
    return f"[{format_cell(m.ci_low)}, {format_cell(m.ci_high)}]"


def _mark(name: str, broken: Mapping[str, list[str]]) -> str:
    return f"{MARK} broke {'; '.join(broken[name])}" if name in broken else ""


def _align(rows: Sequence[Sequence[str]], left: Iterable[int] = (0,), *, rule: bool = False) -> list[str]:
    """Columns two spaces apart: those in ``left`` left-aligned, the others right-aligned, the last as it is;
    ``rule``: a line of dashes under the header."""
    lefts = set(left)
    n = len(rows[0])
    widths = [max(len(r[i]) for r in rows) for i in range(n - 1)]
    out = []
    for r in rows:
        cells = [r[i].ljust(widths[i]) if i in lefts else r[i].rjust(widths[i]) for i in range(n - 1)]
        out.append("  ".join([*cells, r[n - 1]]).rstrip())
    if rule:
        out.insert(1, "  ".join("-" * w for w in widths))
    return out


def delta_table(
    names: Sequence[str], base: Mapping[str, Metric], now: Mapping[str, Metric], broken: Mapping[str, list[str]]
) -> list[str]:
    """metric | baseline | its 95% interval | now | its 95% interval | Δ | the claims the row broke
    (``not run``: a metric one side does not have)."""
    rows: list[tuple[str, ...]] = [("metric", "baseline", "95% interval", "now", "95% interval", "Δ", "")]
    for name in names:
        b, n = base.get(name), now.get(name)
        bv, nv = (b.value if b else None), (n.value if n else None)
        count = _is_count(name)
        delta = None if bv is None or nv is None else nv - bv
        rows.append(
            (
                name,
                format_cell(bv, count=count) if b is not None else NOT_RUN,
                _interval(b),
                format_cell(nv, count=count) if n is not None else NOT_RUN,
                _interval(n),
                NOT_RUN if b is None or n is None else format_cell(delta, sign=True, count=count),
                _mark(name, broken),
            )
        )
    if len(rows) == 1:
        return ["(no metrics)"]
    return _align(rows, rule=True)


def metric_table(
    metrics: Mapping[str, Metric], broken: Mapping[str, list[str]] | None = None, names: Sequence[str] | None = None
) -> list[str]:
    """The metrics (default: the headline ones): estimate, 95% interval, n, and the claims each row broke."""
    broken = broken or {}
    rows: list[tuple[str, ...]] = [("metric", "estimate", "95% interval", "n", "")]
    for name in names if names is not None else HEADLINE_METRICS:
        m = metrics.get(name)
        if m is None:
            continue
        ci = f"[{format_short(m.ci_low)}, {format_short(m.ci_high)}]" if m.has_interval else ""
        prefix = name.rsplit(".", 1)[0]
        n_metric = metrics.get(f"{prefix}.n") or (
            metrics.get("patching.n_texts") if name.startswith("patching.") else None
        )
        n = format_short(n_metric.value) if n_metric is not None and n_metric.value is not None else ""
        value = format_short(m.value) if m.value is not None else f"undefined ({m.reason})"
        rows.append((name, value, ci, n, _mark(name, broken)))
    if len(rows) == 1:
        return ["(no metrics)"]
    return _align(rows, left=(0, 2))


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
    if done.history_file is not None:
        lines.append(f"history appended: {done.history_entries} run(s) to {done.history_file}")
    lines += [f"ERROR {err}" for err in done.errors]
    return lines
