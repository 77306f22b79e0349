"""index.html: one self-contained page (inline CSS, figures as data URIs) with every run's key numbers,
claims, figures, provenance and summary.json."""

from __future__ import annotations

import base64
import datetime as _dt
import html
import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from pytest_neuronprobe.analyses.options import NAMES
from pytest_neuronprobe.core.atomic import write_text_atomic
from pytest_neuronprobe.core.formatting import (
    UNDEFINED,
    format_fixed,
    format_general,
    format_interval,
    format_p_value,
)
from pytest_neuronprobe.core.jsonable import jsonable
from pytest_neuronprobe.report.figures import FIGURE_TITLES
from pytest_neuronprobe.report.plotting import RunData, absent_reason

_CSS = """
:root { --fg:#24292f; --muted:#57606a; --line:#d0d7de; --bg:#ffffff; --soft:#f6f8fa;
        --pass:#1a7f37; --fail:#cf222e; --skip:#6e7781; }
* { box-sizing: border-box; }
body { margin:0; font:15px/1.5 -apple-system,"Segoe UI",Helvetica,Arial,sans-serif;
       color:var(--fg); background:var(--soft); }
main { max-width:1180px; margin:0 auto; padding:24px 28px 60px; }
header.top { background:var(--bg); border:1px solid var(--line); border-radius:8px; padding:18px 22px; }
h1 { font-size:24px; margin:0 0 10px; }
h2 { font-size:21px; margin:0 0 6px; word-break:break-all; }
h3 { font-size:17px; margin:26px 0 8px; padding-bottom:4px; border-bottom:1px solid var(--line); }
h4 { font-size:15px; margin:16px 0 6px; color:var(--muted); }
section.run { background:var(--bg); border:1px solid var(--line); border-radius:8px;
              padding:20px 22px; margin-top:22px; }
table { border-collapse:collapse; margin:6px 0 10px; font-size:14px; }
th, td { border:1px solid var(--line); padding:5px 10px; text-align:left; vertical-align:top; }
th { background:var(--soft); font-weight:600; }
td.num { text-align:right; font-variant-numeric:tabular-nums; white-space:nowrap; }
table.kv th { width:220px; }
tbody tr:nth-child(even) td { background:#fbfcfd; }
.undef { color:var(--muted); font-style:italic; }
.absent { color:var(--muted); font-style:italic; }
.badge { display:inline-block; min-width:62px; text-align:center; padding:1px 8px; border-radius:10px;
         color:#fff; font-size:12px; font-weight:600; text-transform:uppercase; letter-spacing:.03em; }
.badge.passed { background:var(--pass); } .badge.failed { background:var(--fail); }
.badge.error { background:#82071e; } .badge.skipped { background:var(--skip); }
.badge.other { background:#8250df; }
.counts .badge { margin-right:6px; }
nav.toc { font-size:14px; margin:8px 0 4px; }
nav.toc a { margin-right:14px; }
nav.toc ul { margin:4px 0; padding-left:20px; }
a { color:#0969da; text-decoration:none; } a:hover { text-decoration:underline; }
code, pre { font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace; font-size:13px; }
pre { background:var(--soft); border:1px solid var(--line); border-radius:6px; padding:10px;
      overflow:auto; max-height:420px; white-space:pre-wrap; word-break:break-word; }
td.msg { max-width:420px; white-space:pre-wrap; word-break:break-word; font-size:13px; }
td.claim { max-width:360px; }
td.nodeid { font-size:12px; color:var(--muted); word-break:break-all; max-width:260px; }
ul.values { margin:0; padding-left:16px; font-size:13px; }
ul.values li { white-space:nowrap; }
figure { margin:14px 0 22px; }
figure img { max-width:100%; height:auto; border:1px solid var(--line); border-radius:4px; background:#fff; }
figcaption { font-size:13px; color:var(--muted); margin-top:4px; }
.muted { color:var(--muted); }
"""


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _h_value(value: object) -> str:
    """One value as HTML; numbers formatted, undefined numbers spelled out."""
    if value is None or (isinstance(value, (float, np.floating)) and not math.isfinite(float(value))):
        return f'<span class="undef">{UNDEFINED}</span>'
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    if isinstance(value, (int, float, np.integer, np.floating)):
        return _e(format_general(value))
    if isinstance(value, Mapping):
        if not value:
            return '<span class="muted">—</span>'
        items = "".join(f"<li>{_e(k)} = {_h_value(v)}</li>" for k, v in value.items())
        return f'<ul class="values">{items}</ul>'
    if isinstance(value, (list, tuple, np.ndarray)):
        seq = list(value)
        if len(seq) <= 10 and all(not isinstance(v, (Mapping, list, tuple)) for v in seq):
            return "[" + ", ".join(_h_value(v) for v in seq) + "]"
        return f'<span class="muted">[{len(seq)} items]</span>'
    return _e(value)


def _h_num(value: object, formatter: Callable[[object], str] = format_fixed) -> str:
    text = formatter(value)
    if text == UNDEFINED:
        return f'<td class="num"><span class="undef">{UNDEFINED}</span></td>'
    return f'<td class="num">{_e(text)}</td>'


def _kv_table(mapping: Mapping[str, object], prefix: str = "") -> str:
    rows = []

    def walk(m: Mapping[str, object], pre: str) -> None:
        for key, value in m.items():
            name = f"{pre}{key}"
            if isinstance(value, Mapping) and value:
                walk(value, f"{name}.")
            else:
                rows.append(f"<tr><th>{_e(name)}</th><td>{_h_value(value)}</td></tr>")

    walk(mapping, prefix)
    if not rows:
        return '<p class="muted">none</p>'
    return f'<table class="kv"><tbody>{"".join(rows)}</tbody></table>'


def _projection_table(summary: Mapping[str, object], report: RunData) -> str:
    projections = summary.get("projections")
    if not isinstance(projections, Mapping) or not projections:
        return '<p class="muted">No projection analysis in this run.</p>'
    order = [n for n in NAMES if n in projections]
    order += [n for n in projections if n not in order]
    rows = []
    for name in order:
        stats = projections.get(name)
        label = f"<th>{_e(name)}</th>"
        if not isinstance(stats, Mapping) or not any(k in stats for k in ("correlation", "r_squared", "p_value", "n")):
            rows.append(
                f'<tr>{label}<td colspan="6" class="absent">absent: {_e(absent_reason(report, name))}</td></tr>'
            )
            continue
        ci = format_interval(stats.get("ci_low"), stats.get("ci_high"))
        ci_cell = (
            f'<td class="num"><span class="undef">{UNDEFINED}</span></td>'
            if ci is None
            else f'<td class="num">{_e(ci)}</td>'
        )
        rows.append(
            f"<tr>{label}{_h_num(stats.get('correlation'))}{ci_cell}{_h_num(stats.get('r_squared'))}"
            f"{_h_num(stats.get('p_value'), format_p_value)}{_h_num(stats.get('spearman'))}"
            f"{_h_num(stats.get('n'))}</tr>"
        )
    head = (
        "<thead><tr><th>projection</th><th>r</th><th>95% CI of r</th><th>R²</th><th>p</th>"
        "<th>Spearman ρ</th><th>n</th></tr></thead>"
    )
    return f"<table>{head}<tbody>{''.join(rows)}</tbody></table>"


def _patching_table(patch: Mapping[str, object]) -> str:
    rows = [
        ("mode", patch.get("mode")),
        ("factors", patch.get("factors")),
        ("baseline correlation", patch.get("baseline_correlation")),
        ("pooled slope", patch.get("slope")),
        ("intercept", patch.get("intercept")),
        ("R²", patch.get("r_squared")),
    ]
    for key in ("direct_slope", "direct_intercept"):
        if key in patch:
            rows.append((key.replace("_", " "), patch[key]))
    per_input = patch.get("per_input")
    if isinstance(per_input, list):
        rows.append(("inputs", len(per_input)))
    shown = {
        "mode",
        "factors",
        "baseline_correlation",
        "slope",
        "intercept",
        "r_squared",
        "direct_slope",
        "direct_intercept",
        "per_input",
        "avg_activation_changes",
        "avg_prediction_changes",
    }
    rows += [(k, v) for k, v in patch.items() if k not in shown]
    body = "".join(f"<tr><th>{_e(k)}</th><td>{_h_value(v)}</td></tr>" for k, v in rows)
    return f'<table class="kv"><tbody>{body}</tbody></table>'


def _claims_table(claims: Sequence[Mapping[str, object]]) -> str:
    if not claims:
        return '<p class="muted">No claims were checked against this run.</p>'
    rows = []
    for c in claims:
        outcome = str(c.get("outcome", ""))
        cls = outcome if outcome in ("passed", "failed", "skipped", "error") else "other"
        rows.append(
            f'<tr><td><span class="badge {cls}">{_e(outcome)}</span></td>'
            f'<td class="claim">{_e(c.get("claim", ""))}</td>'
            f'<td class="msg">{_e(c.get("message", ""))}</td>'
            f"<td>{_h_value(c.get('values') or {})}</td>"
            f'<td class="nodeid"><code>{_e(c.get("nodeid", ""))}</code></td></tr>'
        )
    head = "<thead><tr><th>outcome</th><th>claim</th><th>message</th><th>values</th><th>test</th></tr></thead>"
    return f"<table>{head}<tbody>{''.join(rows)}</tbody></table>"


def _counts(claims: Sequence[Mapping[str, object]]) -> str:
    counts: dict[str, int] = {}
    for c in claims:
        counts[str(c.get("outcome", ""))] = counts.get(str(c.get("outcome", "")), 0) + 1
    parts = []
    for outcome in ("passed", "failed", "error", "skipped", *sorted(counts)):
        if outcome in counts:
            cls = outcome if outcome in ("passed", "failed", "skipped", "error") else "other"
            parts.append(f'<span class="badge {cls}">{counts.pop(outcome)} {_e(outcome)}</span>')
    return "".join(parts) or '<span class="muted">no claims</span>'


def _image_html(path: Path, key: str, run_name: str) -> str:
    title = FIGURE_TITLES.get(key, key.replace("_", " "))
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        return f'<p class="muted">{_e(title)}: image unavailable ({_e(exc)})</p>'
    encoded = base64.b64encode(data).decode("ascii")
    return (
        f'<figure><img src="data:image/png;base64,{encoded}" alt="{_e(title)} ({_e(run_name)})">'
        f"<figcaption>{_e(title)} — <code>{_e(Path(path).name)}</code></figcaption></figure>"
    )


def _key_numbers(summary: Mapping[str, object], report: RunData) -> list[str]:
    """The run, projection, weight, patching, null and direct-effect tables of a run section."""
    parts: list[str] = []
    run = summary.get("run")
    run_info = dict(run) if isinstance(run, Mapping) else {}
    if "dataset_size" in summary:
        run_info["dataset_size"] = summary["dataset_size"]
    if run_info:
        parts += ["<h4>Run</h4>", _kv_table(run_info)]
    parts += ["<h4>Projections (Pearson r with ground truth)</h4>", _projection_table(summary, report)]
    weights = summary.get("weight_similarities")
    if isinstance(weights, Mapping) and weights:
        cells = "".join(f"<th>{_e(k)}</th>" for k in weights)
        values = "".join(_h_num(v) for v in weights.values())
        parts += [
            "<h4>Weight cosine similarities</h4>",
            f"<table><thead><tr>{cells}</tr></thead><tbody><tr>{values}</tr></tbody></table>",
        ]
    patch = summary.get("patching")
    if isinstance(patch, Mapping) and patch:
        parts += ["<h4>Patching</h4>", _patching_table(patch)]
    for key, label in (("null", "Null distribution"), ("direct_effect", "Direct effect")):
        value = summary.get(key)
        if isinstance(value, Mapping) and value:
            parts += [f"<h4>{label}</h4>", _kv_table(value)]
    return parts


def _run_section(
    index: int, report: RunData, paths: Mapping[str, Path], claims: Sequence[Mapping[str, object]], out_dir: Path
) -> str:
    summary = report.summary if isinstance(report.summary, Mapping) else {}
    anchor = f"run-{index}"
    figures = [(k, Path(p)) for k, p in paths.items() if k != "summary" and str(p).endswith(".png")]
    toc = [f'<a href="#{anchor}-numbers">Key numbers</a>', f'<a href="#{anchor}-claims">Claims ({len(claims)})</a>']
    toc += [f'<a href="#{anchor}-fig-{_e(k)}">{_e(FIGURE_TITLES.get(k, k))}</a>' for k, _ in figures]
    toc.append(f'<a href="#{anchor}-provenance">Provenance</a>')
    toc.append(f'<a href="#{anchor}-summary">summary.json</a>')

    parts = [
        f'<section class="run" id="{anchor}">',
        f"<h2>{_e(report.name)}</h2>",
        f'<div class="counts">{_counts(claims)}</div>',
        f'<nav class="toc">{"".join(toc)}</nav>',
        f'<h3 id="{anchor}-numbers">Key numbers</h3>',
        *_key_numbers(summary, report),
    ]
    parts += [f'<h3 id="{anchor}-claims">Claims</h3>', _claims_table(claims)]
    if figures:
        parts.append("<h3>Figures</h3>")
        for key, path in figures:
            parts.append(f'<div id="{anchor}-fig-{_e(key)}">{_image_html(path, key, report.name)}</div>')
    parts.append(f'<h3 id="{anchor}-provenance">Provenance</h3>')
    provenance = summary.get("provenance")
    parts.append(
        _kv_table(provenance)
        if isinstance(provenance, Mapping) and provenance
        else '<p class="muted">No provenance recorded.</p>'
    )
    parts.append(f'<h3 id="{anchor}-summary">summary.json</h3>')
    summary_path = paths.get("summary")
    if summary_path is not None:
        try:
            rel = Path(os.path.relpath(Path(summary_path).resolve(), out_dir.resolve())).as_posix()
            parts.append(f'<p><a href="{_e(rel)}"><code>{_e(rel)}</code></a></p>')
        except ValueError:
            pass
    dumped = json.dumps(jsonable(summary), indent=2, allow_nan=False)
    parts.append(f"<details><summary>show</summary><pre>{_e(dumped)}</pre></details>")
    parts.append("</section>")
    return "\n".join(parts)


def _header_value(value: object) -> str:
    if isinstance(value, str):
        return _e(value)
    if isinstance(value, (list, tuple)):
        return f"<code>{_e(' '.join(map(str, value)))}</code>"
    return _h_value(value)


def write_index_html(
    out_dir: str | os.PathLike[str],
    runs: Sequence[tuple[RunData, Mapping[str, Path]]],
    claims: Sequence[Mapping[str, object]],
    header: Mapping[str, object] | None,
) -> Path:
    """Write one self-contained ``out_dir/index.html`` (inline CSS, images as data URIs)."""
    from pytest_neuronprobe.core.version import __version__

    out = Path(out_dir)
    info: dict[str, object] = {"pytest-neuronprobe": __version__}
    info.update({str(k): v for k, v in (header or {}).items()})
    if not any(k.lower() in ("when", "time", "generated", "date", "timestamp") for k in info):
        info["generated"] = _dt.datetime.now().astimezone().isoformat(timespec="seconds")
    header_rows = "".join(f"<tr><th>{_e(k)}</th><td>{_header_value(v)}</td></tr>" for k, v in info.items())

    names = [r.name for r, _ in runs]
    by_run: dict[str, list[Mapping[str, object]]] = {n: [] for n in names}
    orphans: list[Mapping[str, object]] = []
    for claim in claims:
        bucket = by_run.get(str(claim.get("run")))
        (bucket if bucket is not None else orphans).append(claim)

    toc_items = "".join(
        f'<li><a href="#run-{i}">{_e(r.name)}</a> {_counts(by_run[r.name])}</li>' for i, (r, _) in enumerate(runs)
    )
    if orphans:
        toc_items += '<li><a href="#other-claims">Claims without a run</a></li>'

    body = [
        "<main>",
        '<header class="top">',
        "<h1>pytest-neuronprobe report</h1>",
        f'<table class="kv"><tbody>{header_rows}</tbody></table>',
        f'<div class="counts">{_counts(claims)}</div>',
        f'<nav class="toc"><strong>Runs</strong><ul>{toc_items or "<li>none</li>"}</ul></nav>',
        "</header>",
    ]
    for i, (report, paths) in enumerate(runs):
        body.append(_run_section(i, report, paths, by_run[report.name], out))
    if orphans:
        body += [
            '<section class="run" id="other-claims"><h2>Claims without a run</h2>',
            _claims_table(orphans),
            "</section>",
        ]
    body.append("</main>")
    document = (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        "<title>pytest-neuronprobe report</title>\n"
        f"<style>{_CSS}</style>\n</head>\n<body>\n" + "\n".join(body) + "\n</body>\n</html>\n"
    )
    return write_text_atomic(out / "index.html", document)
