"""The attribution figure (per-layer effects, estimate vs exact effect) and the verified-units table, read
from the summary's `attribution` section alone."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from pytest_neuronprobe.core.formatting import format_interval
from pytest_neuronprobe.report.markup import esc, num_cell, undefined
from pytest_neuronprobe.report.plotting import (
    PathLike,
    RunData,
    new_figure,
    placeholder,
    run_title,
    save_png,
    style_axes,
    summary_section,
)

#: How many verified units are named on the figure.
LABELLED = 5


def has_attribution(report: RunData) -> bool:
    verified = summary_section(report, "attribution").get("verified")
    return isinstance(verified, list) and bool(verified)


def _num(x: object) -> float:
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else float("nan")


def _target(section: Mapping[str, object]) -> Mapping[str, object]:
    target = section.get("target")
    return target if isinstance(target, Mapping) else {}


def _units(section: Mapping[str, object]) -> list[Mapping[str, object]]:
    verified = section.get("verified")
    return [u for u in verified if isinstance(u, Mapping)] if isinstance(verified, list) else []


# long: one figure, two panels drawn from the same units (their layers, estimates and exact effects)
def plot_attribution(report: RunData, path: PathLike) -> Path:
    """Left: per layer, the largest first-order estimates (dots) and the verified units' exact effects with
    their 95% intervals; the target in red. Right: estimate vs exact effect of the verified units."""
    fig = new_figure(12.5, 5.4)
    left, right = fig.subplots(1, 2)
    section = summary_section(report, "attribution")
    units = _units(section)
    target = _target(section).get("unit")
    if not units:
        placeholder(left, "no attribution sweep", "Effect per layer")
        placeholder(right, "no attribution sweep", "Estimate vs exact effect")
        return save_png(fig, path)
    layers = section.get("layers")
    for entry in layers if isinstance(layers, list) else []:
        pairs = entry.get("top") if isinstance(entry, Mapping) else None
        if not isinstance(pairs, list):
            continue
        top = [_num(p[1]) for p in pairs if isinstance(p, list) and len(p) == 2]
        offset = -0.15 if entry.get("kind") == "H" else 0.0
        marker = "^" if entry.get("kind") == "H" else "o"
        x = np.full(len(top), _num(entry.get("layer")) + offset)
        left.scatter(x, top, s=14, color="#9e9e9e", marker=marker, alpha=0.7, zorder=1)
    for i, u in enumerate(units):
        is_target = u.get("unit") == target
        layer = _num(u.get("layer")) + (0.15 if u.get("kind") != "H" else -0.15)
        effect, lo, hi = _num(u.get("effect")), _num(u.get("ci_low")), _num(u.get("ci_high"))
        color = "#d62728" if is_target else "#1f77b4"
        yerr = [[max(effect - lo, 0)], [max(hi - effect, 0)]] if np.isfinite(lo) and np.isfinite(hi) else None
        left.errorbar(
            [layer],
            [effect],
            yerr=yerr,
            fmt="*" if is_target else "s",
            color=color,
            ms=9 if is_target else 5,
            capsize=2,
            zorder=3,
        )
        if i < LABELLED or is_target:
            left.annotate(
                str(u.get("unit")), (layer, effect), xytext=(5, 3), textcoords="offset points", fontsize=8, color=color
            )
    left.scatter([], [], s=14, color="#9e9e9e", label="largest estimates per layer (▲ heads)")
    left.scatter([], [], marker="s", color="#1f77b4", label="verified: exact effect, 95% CI")
    left.scatter([], [], marker="*", s=60, color="#d62728", label=f"target {target or '(not a unit)'}")
    layer_ids = sorted(
        {int(_num(e.get("layer"))) for e in layers if isinstance(e, Mapping)} if isinstance(layers, list) else set()
    )
    left.set_xticks(layer_ids or [0])
    left.set_xlabel("layer", fontsize=10)
    left.set_ylabel("mean |prediction change| when ablated", fontsize=10)
    left.set_title(f"Effect per layer ({section.get('ablation', 'mean')} ablation)", fontsize=12)
    left.legend(fontsize=8, loc="best")
    style_axes(left)

    est = np.array([_num(u.get("estimate")) for u in units])
    eff = np.array([_num(u.get("effect")) for u in units])
    colors = ["#d62728" if u.get("unit") == target else "#1f77b4" for u in units]
    right.scatter(est, eff, c=colors, s=22, zorder=3)
    finite = np.concatenate([est[np.isfinite(est)], eff[np.isfinite(eff)]])
    largest = float(finite.max()) if finite.size else 1.0
    right.plot([0, largest], [0, largest], "k--", alpha=0.4, label="estimate = exact")
    for u, x, y in list(zip(units, est, eff, strict=True))[:LABELLED]:
        right.annotate(str(u.get("unit")), (x, y), xytext=(5, 3), textcoords="offset points", fontsize=8)
    rho = section.get("spearman")
    trust = "" if section.get("trustworthy") else " — NOT trustworthy"
    rho_text = f"{rho:.3f}" if isinstance(rho, float) else "undefined"
    right.set_title(f"Verified units: Spearman ρ = {rho_text}{trust}", fontsize=12)
    right.set_xlabel("first-order estimate (mean |gradient x change|)", fontsize=10)
    right.set_ylabel("exact effect (patched)", fontsize=10)
    right.legend(fontsize=8, loc="best")
    style_axes(right)
    fig.suptitle(f"What the head reads: {run_title(report)}", fontsize=14)
    return save_png(fig, path)


def attribution_table(section: Mapping[str, object]) -> str:
    """The verified units, largest exact effect first: exact effect, its interval, estimate, direct path."""
    target = _target(section).get("unit")
    rows = []
    for u in _units(section):
        mark = " (target)" if u.get("unit") == target else ""
        ci = format_interval(u.get("ci_low"), u.get("ci_high"))
        direct = (
            num_cell(u.get("direct"))
            if u.get("direct") is not None
            else (f'<td class="num">{undefined(str(u.get("direct_reason") or ""))}</td>')
        )
        rows.append(
            f"<tr><th>{esc(str(u.get('unit')))}{esc(mark)}</th>{num_cell(u.get('effect'))}"
            f'<td class="num">{undefined() if ci is None else esc(ci)}</td>{num_cell(u.get("effect_signed"))}'
            f"{num_cell(u.get('estimate'))}{direct}{num_cell(u.get('rank_estimate'))}</tr>"
        )
    head = (
        "<thead><tr><th>unit</th><th>exact effect</th><th>95% CI</th><th>signed mean</th><th>estimate</th>"
        "<th>direct path</th><th>rank by estimate</th></tr></thead>"
    )
    return f"<table>{head}<tbody>{''.join(rows)}</tbody></table>"
