"""One run's detail in index.html, collapsed until opened: its claims and tests with the values each
used, all its numbers, its figures (the PNGs next to index.html) and provenance."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from pytest_neuronprobe.analyses.options import NAMES
from pytest_neuronprobe.claims.metrics import Metric
from pytest_neuronprobe.core.formatting import format_fixed, format_interval, format_p_value
from pytest_neuronprobe.report.attribution_plots import attribution_table
from pytest_neuronprobe.report.figures import PLOT_FILES
from pytest_neuronprobe.report.markup import (
    badge,
    counts_html,
    esc,
    is_undefined,
    kv_table,
    num_cell,
    undefined,
    value_html,
    values_list,
)
from pytest_neuronprobe.report.overview import metrics_of, run_error
from pytest_neuronprobe.report.plotting import RunData, absent_reason

_PATCHING_SHOWN = (
    ("mode", "mode"),
    ("factors", "factors"),
    ("baseline_correlation", "baseline correlation"),
    ("slope", "pooled slope"),
    ("intercept", "intercept"),
    ("r_squared", "R²"),
    ("direct_slope", "direct slope"),
    ("direct_intercept", "direct intercept"),
)
_PATCHING_HIDDEN = {"per_input", "avg_activation_changes", "avg_prediction_changes"}


def projection_table(summary: Mapping[str, object], report: RunData) -> str:
    """r, its interval, R², p, Spearman and n per projection; absent ones with the reason."""
    projections = summary.get("projections")
    if not isinstance(projections, Mapping) or not projections:
        return '<p class="muted">No projection analysis in this run.</p>'
    order = [n for n in NAMES if n in projections] + [n for n in projections if n not in NAMES]
    rows = []
    for name in order:
        stats = projections.get(name)
        label = f"<th>{esc(name)}</th>"
        if not isinstance(stats, Mapping) or not any(k in stats for k in ("correlation", "r_squared", "p_value", "n")):
            rows.append(
                f'<tr>{label}<td colspan="6" class="absent">absent: {esc(absent_reason(report, name))}</td></tr>'
            )
            continue
        ci = format_interval(stats.get("ci_low"), stats.get("ci_high"))
        ci_cell = f'<td class="num">{undefined() if ci is None else esc(ci)}</td>'
        rows.append(
            f"<tr>{label}{num_cell(stats.get('correlation'))}{ci_cell}{num_cell(stats.get('r_squared'))}"
            f"{num_cell(stats.get('p_value'), format_p_value)}{num_cell(stats.get('spearman'))}"
            f"{num_cell(stats.get('n'))}</tr>"
        )
    head = (
        "<thead><tr><th>projection</th><th>r</th><th>95% CI of r</th><th>R²</th><th>p</th>"
        "<th>Spearman ρ</th><th>n</th></tr></thead>"
    )
    return f"<table>{head}<tbody>{''.join(rows)}</tbody></table>"


def _patching_table(patch: Mapping[str, object]) -> str:
    rows = [(label, patch.get(key)) for key, label in _PATCHING_SHOWN if key in patch or key in ("mode", "slope")]
    per_input = patch.get("per_input")
    if isinstance(per_input, list):
        rows.append(("inputs", len(per_input)))
    known = {k for k, _ in _PATCHING_SHOWN} | _PATCHING_HIDDEN
    rows += [(k, v) for k, v in patch.items() if k not in known and not k.endswith("_reason")]
    label_keys = {label: key for key, label in _PATCHING_SHOWN}

    def cell(label: str, v: object) -> str:
        why = patch.get(f"{label_keys.get(label, label)}_reason")
        return undefined(str(why)) if v is None and why else value_html(v)

    body = "".join(f"<tr><th>{esc(k)}</th><td>{cell(k, v)}</td></tr>" for k, v in rows)
    return f'<table class="kv"><tbody>{body}</tbody></table>'


_CONTROL_SHOWN = (
    ("r", "control r (mean over shuffles)"),
    ("r_sd", "sd over shuffles"),
    ("r_min", "lowest"),
    ("r_max", "highest"),
    ("head_r", "head r (its prediction)"),
    ("selectivity", "selectivity (head r - control r)"),
)


def control_table(summary: Mapping[str, object]) -> str:
    """The control task (each undefined number with its reason) and the input probe."""
    control, probe = summary.get("control"), summary.get("input_probe")
    rows = []
    if isinstance(control, Mapping):
        for key, label in _CONTROL_SHOWN:
            value = control.get(key)
            cell = f'<td class="num">{undefined(str(control.get(f"{key}_reason") or ""))}</td>'
            rows.append(f"<tr><th>{esc(label)}</th>{cell if value is None else num_cell(value)}</tr>")
        fit = f"{control.get('n_shuffles')} shuffles, {control.get('n_train')} train texts, {control.get('fit')}"
        rows.append(f"<tr><th>control heads</th><td>{esc(fit)}</td></tr>")
    if isinstance(probe, Mapping):
        ci = format_interval(probe.get("ci_low"), probe.get("ci_high"))
        text = (
            undefined(str(probe.get("reason") or ""))
            if probe.get("correlation") is None
            else esc(f"{format_fixed(probe.get('correlation'))} (95% CI {ci or 'undefined'}, n = {probe.get('n')})")
        )
        rows.append(f'<tr><th>input probe r</th><td class="num">{text}</td></tr>')
    return f'<table class="kv"><tbody>{"".join(rows)}</tbody></table>'


def numbers_html(summary: Mapping[str, object], report: RunData) -> list[str]:
    """The run, projection, weight, patching, null and direct-effect tables."""
    parts: list[str] = []
    run = summary.get("run")
    run_info = dict(run) if isinstance(run, Mapping) else {}
    if "dataset_size" in summary:
        run_info["dataset_size"] = summary["dataset_size"]
    if run_info:
        parts += ["<h4>Run</h4>", kv_table(run_info)]
    parts += ["<h4>Projections (Pearson r with ground truth)</h4>", projection_table(summary, report)]
    weights = summary.get("weight_similarities")
    if isinstance(weights, Mapping) and weights:
        cells = "".join(f"<th>{esc(k)}</th>" for k in weights)
        values = "".join(num_cell(v) for v in weights.values())
        parts += [
            "<h4>Weight cosine similarities</h4>",
            f"<table><thead><tr>{cells}</tr></thead><tbody><tr>{values}</tr></tbody></table>",
        ]
    patch = summary.get("patching")
    if isinstance(patch, Mapping) and patch:
        parts += ["<h4>Patching</h4>", _patching_table(patch)]
    if "control" in summary or "input_probe" in summary:
        parts += ["<h4>Control task and input probe</h4>", control_table(summary)]
    attribution = summary.get("attribution")
    if isinstance(attribution, Mapping) and attribution:
        target = attribution.get("target") if isinstance(attribution.get("target"), Mapping) else {}
        head = {
            k: v for k, v in attribution.items() if k in ("ablation", "n_units", "n_texts", "spearman", "trustworthy")
        }
        parts += [
            "<h4>Attribution (verified units, largest exact effect first)</h4>",
            kv_table({**head, "target": target}),
            attribution_table(attribution),
        ]
    for key, label in (("null", "Null distribution"), ("direct_effect", "Direct effect")):
        value = summary.get(key)
        if isinstance(value, Mapping) and value:
            parts += [f"<h4>{label}</h4>", kv_table(value)]
    return parts


def claim_values(record: Mapping[str, object], metrics: Mapping[str, Metric]) -> str:
    """The numbers a claim used (its metric's estimate, interval, threshold, baseline), an undefined
    one with its reason; no interval entries for a metric that has none."""
    values = record.get("values") or {}
    values = values if isinstance(values, Mapping) else {}
    metric = str(record.get("metric") or "")
    if metric:
        values = {k[len(metric) + 1 :]: v for k, v in values.items() if str(k).startswith(metric + ".")}
    m = metrics.get(metric)
    items = []
    for key, value in values.items():
        if key in ("ci_low", "ci_high") and is_undefined(value) and (m is None or not m.has_interval):
            continue  # a metric without an interval
        if is_undefined(value) and key == "estimate" and m is not None:
            items.append(f"<li>{esc(key)} = {undefined(m.reason)}</li>")
        else:
            items.append(f"<li>{esc(key)} = {value_html(value)}</li>")
    return f'<ul class="values">{"".join(items)}</ul>' if items else '<span class="muted">—</span>'


def _test_row(record: Mapping[str, object]) -> tuple[str, str]:
    """(what a Python test checked: its name and docstring, the values shown): the fixtures' standard
    numbers only for a failure, labelled as such."""
    name, _, doc = str(record.get("claim", "")).partition(": ")
    what = f"<code>{esc(name.split('[')[0])}</code>" + (f"<br>{esc(doc)}" if doc else "")
    values = record.get("values") or {}
    if record.get("outcome") in ("failed", "error") and isinstance(values, Mapping) and values:
        shown = f'<span class="muted">the run\'s standard numbers:</span>{values_list(values.items())}'
    else:
        shown = '<span class="muted">—</span>'
    return what, shown


def claims_table(records: Sequence[Mapping[str, object]], metrics: Mapping[str, Metric]) -> str:
    """The run's claims and tests: outcome, what was checked, message, the values used, the test id."""
    if not records:
        return '<p class="muted">No claims or tests were checked against this run.</p>'
    rows = []
    for r in sorted(records, key=lambda r: (r.get("outcome") == "passed", r.get("kind") != "claim")):
        outcome = str(r.get("outcome", ""))
        if r.get("kind") == "claim":
            what, shown = esc(r.get("claim", "")), claim_values(r, metrics)
        else:
            what, shown = _test_row(r)
        rows.append(
            f"<tr><td>{badge(outcome)}</td>"
            f'<td class="claim" title="{esc(r.get("claim", ""))}">{what}</td>'
            f'<td class="msg">{esc(r.get("message", ""))}</td>'
            f'<td>{shown}</td><td class="test"><code>{esc(r.get("nodeid", ""))}</code></td></tr>'
        )
    head = "<thead><tr><th>outcome</th><th>checked</th><th>message</th><th>values used</th><th>test</th></tr></thead>"
    return f"<table>{head}<tbody>{''.join(rows)}</tbody></table>"


def _rel(path: Path, out_dir: Path) -> str:
    return Path(os.path.relpath(path.resolve(), out_dir.resolve())).as_posix()


def figures_html(run_dir: Path, out_dir: Path, run_name: str) -> list[str]:
    """The run's figures that exist on disk, linked (loaded only when the section is opened)."""
    parts = []
    for plot in PLOT_FILES:
        path = run_dir / plot.filename
        if path.is_file():
            rel = esc(_rel(path, out_dir))
            alt = esc(f"{plot.title} ({run_name})")
            parts.append(
                f'<figure><a href="{rel}"><img src="{rel}" loading="lazy" alt="{alt}"></a>'
                f"<figcaption>{esc(plot.title)} — <code>{esc(plot.filename)}</code></figcaption></figure>"
            )
    return parts


def run_detail(
    index: int, report: RunData, run_dir: Path, records: Sequence[Mapping[str, object]], out_dir: Path, label: str
) -> str:
    """One run's collapsed ``<details>`` section."""
    summary = report.summary if isinstance(report.summary, Mapping) else {}
    anchor = f"run-{index}"
    error = run_error(report)
    figures = [] if error else figures_html(run_dir, out_dir, report.name)
    toc = [
        f'<a href="#{anchor}-claims">Claims and tests ({len(records)})</a>',
        f'<a href="#{anchor}-numbers">Numbers</a>',
    ]
    toc += [f'<a href="#{anchor}-figures">Figures ({len(figures)})</a>'] if figures else []
    toc.append(f'<a href="#{anchor}-provenance">Provenance</a>')
    parts = [
        f'<details class="run" id="{anchor}"><summary>{esc(label)} <span class="muted">{esc(report.name)}</span>'
        f"{counts_html(records)}</summary>",
        f'<nav class="toc">{"".join(toc)}</nav>',
    ]
    if error:
        parts.append(f'<p class="msg"><b>This run could not be analysed:</b> {esc(error)}</p>')
    parts += [f'<h3 id="{anchor}-claims">Claims and tests</h3>', claims_table(records, metrics_of(summary))]
    parts += [f'<h3 id="{anchor}-numbers">Numbers</h3>', *numbers_html(summary, report)]
    if figures:
        parts += [f'<h3 id="{anchor}-figures">Figures</h3>', *figures]
    provenance = summary.get("provenance")
    parts += [
        f'<h3 id="{anchor}-provenance">Provenance</h3>',
        kv_table(provenance)
        if isinstance(provenance, Mapping) and provenance
        else '<p class="muted">none recorded</p>',
    ]
    summary_path = run_dir / "summary.json"
    if summary_path.is_file():
        rel = esc(_rel(summary_path, out_dir))
        parts.append(f'<p>All numbers: <a href="{rel}"><code>{rel}</code></a></p>')
    parts.append("</details>")
    return "\n".join(parts)
