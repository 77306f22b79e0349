"""What every part of index.html shares: the stylesheet, escaping, and values, numbers, tables and
outcome badges as HTML."""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Iterable, Mapping

import numpy as np

from pytest_neuronprobe.core.formatting import UNDEFINED, format_fixed, format_general

#: Outcomes with their own colour; any other outcome is drawn as "other".
OUTCOMES = ("failed", "error", "xpassed", "passed", "xfailed", "skipped")
#: How bad an outcome is, for ordering (the worst first).
SEVERITY = {"error": 0, "failed": 1, "xpassed": 2, "skipped": 4, "xfailed": 5, "passed": 6}
#: One character per outcome for the overview matrix.
SYMBOLS = {"passed": "✓", "failed": "✗", "error": "E", "skipped": "s", "xfailed": "x", "xpassed": "X"}

CSS = """
:root { --fg:#24292f; --muted:#57606a; --line:#d0d7de; --bg:#ffffff; --soft:#f6f8fa;
        --pass:#1a7f37; --fail:#cf222e; --skip:#6e7781; --xfail:#9a6700; --warn:#9a6700; --err:#82071e; }
* { box-sizing: border-box; }
body { margin:0; font:14px/1.45 -apple-system,"Segoe UI",Helvetica,Arial,sans-serif;
       color:var(--fg); background:var(--soft); }
main { max-width:1240px; margin:0 auto; padding:14px 22px 60px; }
header.top, section.block { background:var(--bg); border:1px solid var(--line); border-radius:8px;
       padding:12px 18px; margin-top:14px; }
header.top { margin-top:0; }
h1 { font-size:20px; margin:0 0 4px; }
h2 { font-size:17px; margin:0 0 8px; }
h3 { font-size:15px; margin:20px 0 6px; padding-bottom:3px; border-bottom:1px solid var(--line); }
h4 { font-size:14px; margin:14px 0 4px; color:var(--muted); }
p.meta { margin:2px 0; color:var(--muted); font-size:13px; }
p.meta b { color:var(--fg); font-weight:600; }
ul.chips { list-style:none; margin:4px 0; padding:0; display:flex; flex-wrap:wrap; gap:4px 6px; }
ul.chips li { border:1px solid var(--line); border-radius:10px; padding:0 8px; font-size:12px; background:var(--soft); }
ul.chips li.bad { border-color:var(--fail); }
table { border-collapse:collapse; margin:4px 0 8px; font-size:13px; }
th, td { border:1px solid var(--line); padding:3px 8px; text-align:left; vertical-align:top; }
th { background:var(--soft); font-weight:600; }
td.num { text-align:right; font-variant-numeric:tabular-nums; white-space:nowrap; }
table.kv th { min-width:180px; }
.undef, .absent, .muted { color:var(--muted); }
.undef, .absent { font-style:italic; }
td.num .undef { white-space:normal; display:inline-block; max-width:22em; text-align:left; }
.badge { display:inline-block; min-width:58px; text-align:center; padding:0 7px; border-radius:10px;
         color:#fff; font-size:11px; font-weight:600; text-transform:uppercase; letter-spacing:.03em; }
.passed { --c:var(--pass); } .failed { --c:var(--fail); } .error { --c:var(--err); }
.skipped { --c:var(--skip); } .xfailed { --c:var(--xfail); } .xpassed { --c:#8250df; } .other { --c:#8250df; }
.badge { background:var(--c); }
.counts .badge { margin-right:4px; }
table.matrix { table-layout:auto; }
table.matrix th.claim { min-width:220px; max-width:460px; font-weight:normal; word-break:normal;
                        overflow-wrap:anywhere; }
table.matrix th.run { text-align:center; white-space:nowrap; font-size:12px; }
table.matrix td.cell { text-align:center; padding:0; min-width:34px; background:var(--c); }
table.matrix td.cell a { display:block; padding:3px 6px; color:#fff; font-weight:700; text-decoration:none; }
table.matrix td.passed { background:#dafbe1; } table.matrix td.passed a { color:var(--pass); }
table.matrix td.skipped { background:#eaeef2; } table.matrix td.skipped a { color:var(--skip); }
table.matrix td.xfailed { background:#fff8c5; } table.matrix td.xfailed a { color:var(--xfail); }
table.matrix td.none { background:var(--soft); }
table.metrics td.num small { display:block; color:var(--muted); font-size:11px; }
td.broken { box-shadow: inset 0 0 0 2px var(--fail); }
.up { color:var(--pass); } .down { color:var(--fail); } .flat { color:var(--muted); }
.warn { color:var(--warn); }
div.trends { display:flex; flex-wrap:wrap; gap:10px; }
figure.trend { margin:0; width:370px; }
figure.trend figcaption { font-size:12px; color:var(--muted); }
details.run { background:var(--bg); border:1px solid var(--line); border-radius:8px; margin-top:8px; padding:6px 14px; }
details.run > summary { cursor:pointer; font-weight:600; }
details.run > summary .counts { font-weight:normal; margin-left:8px; }
nav.toc a { margin-right:12px; font-size:13px; }
a { color:#0969da; text-decoration:none; } a:hover { text-decoration:underline; }
code, pre { font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace; font-size:12px; }
td.msg { min-width:260px; max-width:480px; white-space:pre-wrap; overflow-wrap:anywhere; font-size:12px; }
td.claim { min-width:200px; max-width:380px; overflow-wrap:anywhere; }
td.test { min-width:200px; max-width:300px; font-size:12px; color:var(--muted); overflow-wrap:anywhere;
          word-break:normal; }
ul.values { margin:0; padding-left:14px; font-size:12px; }
ul.values li { white-space:nowrap; }
figure { margin:10px 0 16px; }
figure img { max-width:100%; height:auto; border:1px solid var(--line); border-radius:4px; background:#fff; }
figcaption { font-size:12px; color:var(--muted); margin-top:2px; }
"""

#: Opens the collapsed run section a link points at (the page works without it: sections open by click).
SCRIPT = """
function openTarget() {
  var el = location.hash ? document.getElementById(location.hash.slice(1)) : null;
  while (el) { if (el.tagName === "DETAILS") { el.open = true; } el = el.parentElement; }
}
window.addEventListener("hashchange", openTarget); window.addEventListener("DOMContentLoaded", openTarget);
"""


def esc(value: object) -> str:
    """``value`` as HTML text (attribute-safe)."""
    return html.escape(str(value), quote=True)


def outcome_class(outcome: str) -> str:
    """The CSS class of an outcome."""
    return outcome if outcome in OUTCOMES else "other"


def undefined(reason: str | None = None) -> str:
    """The undefined marker, with its reason when known."""
    why = f" ({esc(reason)})" if reason else ""
    return f'<span class="undef">{UNDEFINED}{why}</span>'


def is_undefined(value: object) -> bool:
    """None, NaN/inf, or the text "undefined" (how JUnit properties carry undefined numbers)."""
    if value is None or value == UNDEFINED:
        return True
    return isinstance(value, (float, np.floating)) and not math.isfinite(float(value))


def value_html(value: object) -> str:
    """One value as HTML; numbers formatted, undefined numbers spelled out."""
    if is_undefined(value):
        return undefined()
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    if isinstance(value, (int, float, np.integer, np.floating)):
        return esc(format_general(value))
    if isinstance(value, Mapping):
        if not value:
            return '<span class="muted">—</span>'
        return values_list(value.items())
    if isinstance(value, (list, tuple, np.ndarray)):
        seq = list(value)
        if len(seq) <= 10 and all(not isinstance(v, (Mapping, list, tuple)) for v in seq):
            return "[" + ", ".join(value_html(v) for v in seq) + "]"
        return f'<span class="muted">[{len(seq)} items]</span>'
    return esc(value)


def values_list(items: Iterable[tuple[object, object]]) -> str:
    """``name = value`` items as a compact list."""
    rows = "".join(f"<li>{esc(k)} = {value_html(v)}</li>" for k, v in items)
    return f'<ul class="values">{rows}</ul>' if rows else '<span class="muted">—</span>'


def num_cell(value: object, formatter: Callable[[object], str] = format_fixed) -> str:
    """A right-aligned number cell."""
    text = formatter(value)
    if text == UNDEFINED:
        return f'<td class="num">{undefined()}</td>'
    return f'<td class="num">{esc(text)}</td>'


def kv_table(mapping: Mapping[str, object], prefix: str = "") -> str:
    """A nested mapping as ``dotted.key | value`` rows."""
    rows: list[str] = []

    def walk(m: Mapping[str, object], pre: str) -> None:
        for key, value in m.items():
            name = f"{pre}{key}"
            if isinstance(value, Mapping) and value:
                walk(value, f"{name}.")
            else:
                rows.append(f"<tr><th>{esc(name)}</th><td>{value_html(value)}</td></tr>")

    walk(mapping, prefix)
    if not rows:
        return '<p class="muted">none</p>'
    return f'<table class="kv"><tbody>{"".join(rows)}</tbody></table>'


def badge(outcome: str, text: str | None = None) -> str:
    """An outcome badge."""
    return f'<span class="badge {outcome_class(outcome)}">{esc(outcome if text is None else text)}</span>'


def counts_html(records: Iterable[Mapping[str, object]]) -> str:
    """``3 passed  1 failed`` badges, the worst first."""
    counts: dict[str, int] = {}
    for r in records:
        outcome = str(r.get("outcome", ""))
        counts[outcome] = counts.get(outcome, 0) + 1
    order = sorted(counts, key=lambda o: (SEVERITY.get(o, 3), o))
    parts = [badge(o, f"{counts[o]} {o}") for o in order]
    return f'<span class="counts">{"".join(parts)}</span>' if parts else '<span class="muted">no tests</span>'
