"""index.html: one page that opens offline from the report directory (inline CSS and charts; each
run's PNGs are the files next to it, linked, loaded only when that run's section is opened).

Top to bottom: a compact header; the claims x runs matrix (the failing claims and runs first); runs x
headline metrics with the change against each run's baseline; a trend chart per headline metric by
training date; then one collapsed section per run with its claims, numbers, figures and provenance."""

from __future__ import annotations

import datetime as _dt
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from pytest_neuronprobe.baseline import BaselinePair
from pytest_neuronprobe.core.atomic import write_text_atomic
from pytest_neuronprobe.history import HistoryEntry
from pytest_neuronprobe.report.markup import CSS, SCRIPT, counts_html, esc, value_html
from pytest_neuronprobe.report.overview import matrix_html, metrics_html, run_error, run_order, short_labels
from pytest_neuronprobe.report.plotting import RunData
from pytest_neuronprobe.report.run_detail import claims_table, run_detail
from pytest_neuronprobe.report.trend import trends_html

#: Header keys shown elsewhere (the runs get their own compact list).
_OWN_ROWS = ("runs",)


def _header_value(value: object) -> str:
    if isinstance(value, str):
        return esc(value)
    if isinstance(value, (list, tuple)):
        return f"<code>{esc(' '.join(map(str, value)))}</code>"
    return value_html(value)


def header_html(
    header: Mapping[str, object] | None,
    runs: Sequence[RunData],
    records: Sequence[Mapping[str, object]],
    labels: Mapping[str, str],
) -> str:
    """The title, one line of session facts, the runs as short labels (full name and path on hover)."""
    from pytest_neuronprobe.core.version import __version__

    info: dict[str, object] = {"pytest-neuronprobe": __version__}
    info.update({str(k): v for k, v in (header or {}).items() if str(k) not in _OWN_ROWS})
    if not any(k.lower() in ("when", "time", "generated", "date", "timestamp") for k in info):
        info["generated"] = _dt.datetime.now().astimezone().isoformat(timespec="seconds")
    facts = " · ".join(f"{esc(k)} <b>{_header_value(v)}</b>" for k, v in info.items())
    chips = []
    for i in run_order(runs, records):
        report = runs[i]
        run = report.summary.get("run")
        path = run.get("path") if isinstance(run, Mapping) else None
        bad = run_error(report) or any(
            r.get("run") == report.name and r.get("outcome") in ("failed", "error") for r in records
        )
        tip = report.name + (f" — {path}" if path else "")
        link = f'<a href="#run-{i}">{esc(labels[report.name])}</a>'
        chips.append(f'<li{" class=bad" if bad else ""} title="{esc(tip)}">{link}</li>')
    return (
        '<header class="top"><h1>pytest-neuronprobe report</h1>'
        f'<p class="meta">{facts}</p>'
        f'<p class="meta"><b>{len(runs)} run(s)</b> {counts_html(records)}</p>'
        f'<ul class="chips" id="runs">{"".join(chips) or "<li>none</li>"}</ul></header>'
    )


def write_index_html(
    out_dir: str | os.PathLike[str],
    runs: Sequence[tuple[RunData, Path]],
    records: Sequence[Mapping[str, object]],
    header: Mapping[str, object] | None,
    *,
    baselines: Mapping[str, BaselinePair | None] | None = None,
    history: Sequence[HistoryEntry] = (),
) -> Path:
    """Write ``out_dir/index.html`` from each run's report data and its folder (its PNGs are linked)."""
    out = Path(out_dir)
    reports = [r for r, _ in runs]
    labels = short_labels([r.name for r in reports])
    names = set(labels)
    by_run: dict[str, list[Mapping[str, object]]] = {n: [] for n in names}
    for record in records:
        by_run.get(str(record.get("run")), []).append(record)
    with_run = [r for r in records if str(r.get("run")) in names]
    orphans = [r for r in records if str(r.get("run")) not in names]
    body = [
        "<main>",
        header_html(header, reports, with_run, labels),
        '<section class="block" id="overview"><h2>Claims and tests &times; runs</h2>',
        matrix_html(reports, with_run, labels),
        "</section>",
        '<section class="block" id="headline"><h2>Headline metrics</h2>',
        metrics_html(reports, with_run, labels, baselines),
        "</section>",
        '<section class="block" id="trends"><h2>Trends by training date</h2>',
        trends_html(reports, history),
        "</section>",
        '<section class="block" id="details"><h2>Runs in detail</h2>',
    ]
    for i, (report, run_dir) in enumerate(runs):
        body.append(run_detail(i, report, run_dir, by_run[report.name], out, labels[report.name]))
    body.append("</section>")
    if orphans:
        body += [
            '<section class="block" id="other-claims"><h2>Claims without a run</h2>',
            claims_table(orphans, {}),
            "</section>",
        ]
    body.append("</main>")
    document = (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        "<title>pytest-neuronprobe report</title>\n"
        f"<style>{CSS}</style>\n<script>{SCRIPT}</script>\n</head>\n<body>\n" + "\n".join(body) + "\n</body>\n</html>\n"
    )
    return write_text_atomic(out / "index.html", document)
