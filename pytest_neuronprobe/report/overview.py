"""The top of index.html: a compact header, the claims x runs matrix (the worst first) and the runs x
headline metrics table with the change against each run's baseline."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from pytest_neuronprobe.baseline import BaselinePair
from pytest_neuronprobe.claims.metrics import HEADLINE_METRICS, Metric, flatten
from pytest_neuronprobe.core.errors import NeuronProbeError
from pytest_neuronprobe.core.formatting import format_cell, format_interval, format_short
from pytest_neuronprobe.report.markup import SEVERITY, SYMBOLS, esc, outcome_class, undefined
from pytest_neuronprobe.report.plotting import RunData

#: The headline metrics the overview table and the trends show (a subset of HEADLINE_METRICS).
REPORT_METRICS: tuple[str, ...] = (
    "projection.prediction.r",
    "projection.head.r",
    "projection.live.r",
    "projection.null.random.selectivity",
    "projection.control.selectivity",
    "projection.input_probe.r",
    "patching.slope",
    "patching.r_squared",
    "patching.direct_slope",
)
assert set(REPORT_METRICS) <= set(HEADLINE_METRICS)
METRIC_LABELS = {
    "projection.prediction.r": "prediction r",
    "projection.head.r": "head r",
    "projection.live.r": "live r",
    "projection.null.random.selectivity": "selectivity",
    "projection.control.selectivity": "control selectivity",
    "projection.input_probe.r": "input probe r",
    "patching.slope": "patching slope",
    "patching.r_squared": "patching R²",
    "patching.direct_slope": "direct slope",
}
_TOKEN = re.compile(r"[^-_./ ]+[-_./ ]*|[-_./ ]+")


def _clip(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    keep = limit - 1
    return text[: keep - keep // 3] + "…" + text[len(text) - keep // 3 :]


def short_labels(names: Sequence[str], limit: int = 24) -> dict[str, str]:
    """A short, unique label per run name: what tells the names apart (common leading and trailing
    name parts dropped), clipped to ``limit`` characters."""
    tokens = [_TOKEN.findall(n) for n in names]
    prefix = suffix = 0
    if len(names) > 1:
        shortest = min(len(t) for t in tokens)
        while prefix < shortest - 1 and len({t[prefix] for t in tokens}) == 1:
            prefix += 1
        while suffix < shortest - prefix - 1 and len({t[-1 - suffix] for t in tokens}) == 1:
            suffix += 1
    labels = {}
    for name, parts in zip(names, tokens, strict=True):
        core = "".join(parts[prefix : len(parts) - suffix]).strip("-_./ ") or name
        labels[name] = _clip(core, limit)
    if len(set(labels.values())) < len(labels):  # clipping made two alike: number them
        labels = {n: f"{_clip(n, limit - 4)} #{i + 1}" for i, n in enumerate(names)}
    return labels


def run_error(report: RunData) -> str | None:
    """Why a run has no results, or None."""
    error = getattr(report, "error", None) or report.summary.get("error")
    return str(error) if error else None


def metrics_of(summary: Mapping[str, object]) -> dict[str, Metric]:
    """The named metrics of a summary; none for a summary that is not one."""
    try:
        return flatten(summary)
    except NeuronProbeError:
        return {}


# ---------------------------------------------------------------- the matrix


@dataclass
class MatrixRow:
    """One claim or test across runs."""

    key: str
    label: str
    title: str
    cells: dict[str, list[Mapping[str, object]]] = field(default_factory=dict)

    def worst(self) -> int:
        return min((SEVERITY.get(str(r.get("outcome")), 3) for rs in self.cells.values() for r in rs), default=9)


def _strip_run(nodeid: str, run: str) -> str:
    """The node id without the run's parameter id: ``test_x[run-2]`` -> ``test_x[2]``, ``test_x[run]`` -> ``test_x``."""
    match = re.search(r"\[(.*)\]$", nodeid)
    if not match or not run or run not in match.group(1):
        return nodeid
    rest = match.group(1).replace(run, "").strip("-")
    return nodeid[: match.start()] + (f"[{rest}]" if rest else "")


def matrix_rows(records: Sequence[Mapping[str, object]]) -> list[MatrixRow]:
    """One row per claim or test (its records keyed by run), the worst rows first."""
    rows: dict[str, MatrixRow] = {}
    for r in records:
        run, nodeid = str(r.get("run") or ""), str(r.get("nodeid", ""))
        key = _strip_run(nodeid, run)
        if key not in rows:
            test = key.split("::")[-1]
            if r.get("kind") == "claim":
                label, title = str(r.get("claim") or test), key
            else:
                doc = str(r.get("claim", "")).partition(": ")[2]
                label, title = test, f"{doc}\n{key}".strip()
            rows[key] = MatrixRow(key, label, title)
        rows[key].cells.setdefault(run, []).append(r)
    order = {k: i for i, k in enumerate(rows)}
    return sorted(rows.values(), key=lambda row: (row.worst(), order[row.key]))


def run_order(runs: Sequence[RunData], records: Sequence[Mapping[str, object]]) -> list[int]:
    """Indexes of the runs, the failing (and erroring) runs first, otherwise as given."""
    worst: dict[str, int] = {}
    for r in records:
        run = str(r.get("run"))
        worst[run] = min(worst.get(run, 9), SEVERITY.get(str(r.get("outcome")), 3))
    return sorted(range(len(runs)), key=lambda i: (-1 if run_error(runs[i]) else worst.get(runs[i].name, 9), i))


def _cell(row: MatrixRow, report: RunData, index: int) -> str:
    found = row.cells.get(report.name)
    if not found:
        return '<td class="cell none" title="not run on this run"></td>'
    worst = min(found, key=lambda r: SEVERITY.get(str(r.get("outcome")), 3))
    outcome = str(worst.get("outcome", ""))
    message = str(worst.get("message") or "").strip().splitlines()
    tip = f"{report.name}: {outcome}" + (f" — {message[0][:300]}" if message else "")
    if len(found) > 1:
        tip += f" ({len(found)} results)"
    symbol = SYMBOLS.get(outcome, "?")
    return (
        f'<td class="cell {outcome_class(outcome)}" title="{esc(tip)}">'
        f'<a href="#run-{index}-claims">{esc(symbol)}</a></td>'
    )


def matrix_html(runs: Sequence[RunData], records: Sequence[Mapping[str, object]], labels: Mapping[str, str]) -> str:
    """The claims x runs table: a coloured cell per result, the failing claims and runs first."""
    rows = matrix_rows(records)
    if not rows:
        return '<p class="muted">No tests or claims used a run.</p>'
    order = run_order(runs, records)
    head = "".join(
        f'<th class="run{" bad" if run_error(runs[i]) else ""}" title="{esc(runs[i].name)}">'
        f'<a href="#run-{i}">{esc(labels[runs[i].name])}</a></th>'
        for i in order
    )
    body = []
    for row in rows:
        cells = "".join(_cell(row, runs[i], i) for i in order)
        body.append(f'<tr><th class="claim" title="{esc(row.title)}">{esc(row.label)}</th>{cells}</tr>')
    legend = " ".join(f"{s} {o}" for o, s in SYMBOLS.items())
    return (
        f'<table class="matrix" id="matrix"><thead><tr><th>claim / test</th>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table>"
        f'<p class="meta">{esc(legend)} · hover a cell for its message, click it for the run\'s details</p>'
    )


# ---------------------------------------------------------------- the metrics table


def _delta_html(cur: Metric, base: Metric | None) -> str:
    if base is None or base.value is None or cur.value is None:
        why = "no baseline value" if base is None or base.value is None else "undefined now"
        return f'<small class="flat">Δ {esc(why)}</small>'
    d = cur.value - base.value
    outside = cur.ci_low is not None and cur.ci_high is not None and not cur.ci_low <= base.value <= cur.ci_high
    strong = outside if cur.has_interval else abs(d) > 1e-3 * max(1.0, abs(base.value))
    cls = "flat" if d == 0 or not strong else ("up" if d > 0 else "down")
    arrow = "▲" if d > 0 else ("▼" if d < 0 else "=")
    return f'<small class="{cls}">{arrow} {esc(format_cell(d, sign=True))}</small>'


def _metric_cell(name: str, cur: Metric | None, base: Metric | None, broken: Sequence[str], delta: str) -> str:
    cls = "num broken" if broken else "num"
    if cur is None:
        return f'<td class="{cls}" title="{esc(name)}: not in this run\'s summary"><span class="muted">—</span></td>'
    interval = format_interval(cur.ci_low, cur.ci_high) if cur.has_interval else None
    tip = f"{name}: {format_short(cur.value)}" + (f" {interval}" if interval else "")
    if base is not None:
        b_int = format_interval(base.ci_low, base.ci_high) if base.has_interval else None
        tip += f"; baseline {format_short(base.value)}" + (f" {b_int}" if b_int else "")
    if broken:
        tip += "; breaks: " + "; ".join(broken)
    shown = esc(format_short(cur.value)) if cur.value is not None else undefined(cur.reason)
    parts = [shown, f"<small>{esc(interval)}</small>" if interval else ""]
    return f'<td class="{cls}" title="{esc(tip)}">{"".join(parts)}{delta}</td>'


def _baseline_cell(pair: BaselinePair | None) -> str:
    if pair is None:
        return '<td class="muted">none</td>'
    warn = ""
    if pair.differences:
        listed = "; ".join(pair.differences)
        warn = f'<br><span class="warn" title="{esc(listed)}">⚠ analysed differently: {esc(listed)}</span>'
    return f'<td title="{esc(pair.name)}"><code>{esc(pair.name)}</code><br><small>{esc(pair.reason)}</small>{warn}</td>'


def failing_metrics(records: Sequence[Mapping[str, object]]) -> dict[tuple[str, str], list[str]]:
    """(run, metric) -> the failed claims that judged that metric on that run."""
    out: dict[tuple[str, str], list[str]] = {}
    for r in records:
        if r.get("kind") == "claim" and r.get("outcome") in ("failed", "error") and r.get("metric"):
            out.setdefault((str(r.get("run")), str(r["metric"])), []).append(str(r.get("claim", "")))
    return out


def metrics_html(
    runs: Sequence[RunData],
    records: Sequence[Mapping[str, object]],
    labels: Mapping[str, str],
    baselines: Mapping[str, BaselinePair | None] | None,
) -> str:
    """Runs x headline metrics: value, interval and the change against the run's baseline."""
    broken = failing_metrics(records)
    head = "".join(f'<th title="{esc(m)}">{esc(METRIC_LABELS[m])}</th>' for m in REPORT_METRICS)
    head = "<th>run</th>" + ("<th>baseline</th>" if baselines is not None else "") + head
    body = []
    for i in run_order(runs, records):
        report = runs[i]
        row = f'<th title="{esc(report.name)}"><a href="#run-{i}">{esc(labels[report.name])}</a></th>'
        error = run_error(report)
        pair = baselines.get(report.name) if baselines is not None else None
        if baselines is not None:
            row += _baseline_cell(pair)
        if error:
            row += f'<td colspan="{len(REPORT_METRICS)}" class="msg">no numbers: {esc(error)}</td>'
            body.append(f"<tr>{row}</tr>")
            continue
        cur, base = metrics_of(report.summary), metrics_of(pair.summary) if pair is not None else {}
        for name in REPORT_METRICS:
            delta = _delta_html(cur[name], base.get(name)) if pair is not None and name in cur else ""
            row += _metric_cell(name, cur.get(name), base.get(name), broken.get((report.name, name), []), delta)
        body.append(f"<tr>{row}</tr>")
    note = (
        "no baseline given (--neuron-baseline): no Δ"
        if baselines is None
        else "Δ = now - baseline; coloured where the baseline lies outside the current 95% interval"
    )
    return (
        f'<table class="metrics" id="metrics"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'
        f'<p class="meta">{esc(note)}; a red frame: a claim on that metric failed</p>'
    )
