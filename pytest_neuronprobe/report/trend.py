"""Trends: each headline metric across runs ordered by training date (the head file's mtime), the
history's entries and this session's runs (highlighted), as small inline SVG charts (no matplotlib:
fast, sharp, a few kilobytes each)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pytest_neuronprobe.core.formatting import format_distinct, format_interval, format_short
from pytest_neuronprobe.history import HistoryEntry, head_stamp
from pytest_neuronprobe.report.markup import esc
from pytest_neuronprobe.report.overview import METRIC_LABELS, REPORT_METRICS, metrics_of, run_error
from pytest_neuronprobe.report.plotting import RunData

WIDTH, HEIGHT = 370, 150
LEFT, RIGHT, TOP, BOTTOM = 46, 10, 10, 30


@dataclass(frozen=True)
class TrendPoint:
    """One run's value of one metric at its training date."""

    run: str
    stamp: str | None
    time: str
    value: float | None
    ci_low: float | None
    ci_high: float | None
    current: bool


@dataclass(frozen=True)
class _Observation:
    run: str
    stamp: str | None
    time: str
    current: bool
    points: Mapping[str, tuple[float | None, float | None, float | None]]


def _observations(runs: Sequence[RunData], history: Sequence[HistoryEntry]) -> list[_Observation]:
    """The current runs and the history's entries, one per (run, training date), ordered by that date;
    a current run replaces the history's entries of the same run and date, a later entry an earlier one."""
    out: dict[tuple[str, str | None], _Observation] = {}
    for entry in history:
        points = {n: (p["value"], p["ci_low"], p["ci_high"]) for n, p in entry.metrics.items()}
        out[(entry.run, entry.stamp)] = _Observation(entry.run, entry.stamp, entry.time, False, points)
    for report in runs:
        if run_error(report):
            continue
        stamp = head_stamp(report.summary)
        flat = metrics_of(report.summary)
        points = {n: (m.value, m.ci_low, m.ci_high) for n, m in flat.items()}
        out[(report.name, stamp)] = _Observation(report.name, stamp, "", True, points)
    return sorted(out.values(), key=lambda o: (o.stamp is None, o.stamp or "", o.time, o.run))


def trend_points(runs: Sequence[RunData], history: Sequence[HistoryEntry], metric: str) -> list[TrendPoint]:
    """The points of one metric's trend, ordered by training date (undefined date: last)."""
    points = []
    for o in _observations(runs, history):
        if metric in o.points:
            value, low, high = o.points[metric]
            points.append(TrendPoint(o.run, o.stamp, o.time, value, low, high, o.current))
    return points


def _y_range(points: Sequence[TrendPoint]) -> tuple[float, float]:
    ys = [y for p in points for y in (p.value, p.ci_low, p.ci_high) if y is not None]
    low, high = min(ys), max(ys)
    span = high - low if high - low > 1e-9 * max(1.0, abs(high)) else 0.0  # rounding noise is no range
    pad = span * 0.08 or max(abs(high) * 0.05, 0.01)
    return low - pad, high + pad


def _tip(p: TrendPoint, metric: str) -> str:
    interval = format_interval(p.ci_low, p.ci_high)
    when = p.stamp or "unknown training date"
    where = "this session" if p.current else f"history, session of {p.time}"
    return f"{p.run}\n{metric} = {format_short(p.value)}{' ' + interval if interval else ''}\ntrained {when} ({where})"


def trend_svg(points: Sequence[TrendPoint], metric: str) -> str:
    """One metric's chart: value and 95% interval per run, in training-date order, this session's runs
    filled orange, the history's grey."""
    defined = [p for p in points if p.value is not None]
    if not defined:
        return ""
    y0, y1 = _y_range(defined)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    step = plot_w / max(len(points) - 1, 1)

    def x(i: int) -> float:
        return LEFT + (i * step if len(points) > 1 else plot_w / 2)

    def y(v: float) -> float:
        return TOP + plot_h * (1 - (v - y0) / (y1 - y0))

    parts = [f'<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="#fbfcfd" stroke="#d0d7de"/>']
    ticks = [y0 + (y1 - y0) * f for f in (0.1, 0.5, 0.9)]
    for v in ticks:
        parts.append(
            f'<text x="{LEFT - 4}" y="{y(v) + 4:.1f}" text-anchor="end" font-size="10" fill="#57606a">'
            f"{esc(format_distinct(v, *ticks))}</text>"
            f'<line x1="{LEFT}" x2="{LEFT + plot_w}" y1="{y(v):.1f}" y2="{y(v):.1f}" stroke="#eaeef2"/>'
        )
    line = " ".join(f"{x(i):.1f},{y(p.value):.1f}" for i, p in enumerate(points) if p.value is not None)
    parts.append(f'<polyline points="{line}" fill="none" stroke="#8c959f" stroke-width="1"/>')
    for i, p in enumerate(points):
        if p.value is None:
            parts.append(
                f'<text x="{x(i):.1f}" y="{TOP + plot_h - 3}" text-anchor="middle" font-size="10">&times;</text>'
            )
            continue
        if p.ci_low is not None and p.ci_high is not None:
            parts.append(
                f'<line x1="{x(i):.1f}" x2="{x(i):.1f}" y1="{y(p.ci_low):.1f}" y2="{y(p.ci_high):.1f}" '
                f'stroke="{"#bc4c00" if p.current else "#8c959f"}" stroke-width="1.5"/>'
            )
        style = 'r="5" fill="#fb8f44" stroke="#953800"' if p.current else 'r="3.5" fill="#afb8c1" stroke="#57606a"'
        parts.append(
            f'<circle class="{"current" if p.current else "past"}" cx="{x(i):.1f}" cy="{y(p.value):.1f}" {style}>'
            f"<title>{esc(_tip(p, metric))}</title></circle>"
        )
    for i in sorted({0, len(points) - 1}):
        date = (points[i].stamp or "?")[:10]
        anchor = "start" if i == 0 and len(points) > 1 else ("end" if len(points) > 1 else "middle")
        parts.append(
            f'<text x="{x(i):.1f}" y="{HEIGHT - 12}" text-anchor="{anchor}" font-size="10" fill="#57606a">'
            f"{esc(date)}</text>"
        )
    return (
        f'<svg class="trend" data-metric="{esc(metric)}" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{esc(metric)} by training date">{"".join(parts)}</svg>'
    )


def trends_html(runs: Sequence[RunData], history: Sequence[HistoryEntry]) -> str:
    """A chart per headline metric (those no run has are left out)."""
    figures = []
    for metric in REPORT_METRICS:
        points = trend_points(runs, history, metric)
        svg = trend_svg(points, metric)
        if not svg:
            continue
        current = sum(p.current for p in points)
        caption = f"{METRIC_LABELS[metric]} (<code>{esc(metric)}</code>): {len(points)} runs, {current} of this session"
        figures.append(
            f'<figure class="trend" id="trend-{esc(metric)}">{svg}<figcaption>{caption}</figcaption></figure>'
        )
    if not figures:
        return '<p class="muted">No run has a headline metric to plot.</p>'
    return (
        f'<div class="trends">{"".join(figures)}</div>'
        '<p class="meta">ordered by training date (the head file\'s modification time); '
        "orange: this session's runs, grey: the history (--neuron-history); bars: 95% intervals</p>"
    )
