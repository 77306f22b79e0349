"""Report artifacts for analysed runs: PNG plots, summary.json and a self-contained index.html.

Pure functions over plain data (no pytest, no analysis imports). Plots are drawn on
``matplotlib.figure.Figure`` objects with the Agg canvas, never through pyplot's global state,
so they are safe to call from threads and worker processes.
"""

from __future__ import annotations

import base64
import datetime as _dt
import functools
import html
import io
import json
import math
import os
import re
import shutil
import subprocess
import tempfile
import textwrap
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle

from pytest_neuronprobe.core.atomic import write_bytes_atomic, write_json_atomic, write_text_atomic

__all__ = [
    "RunReport",
    "plot_projection",
    "plot_correlation_heatmap",
    "plot_patching_curves",
    "plot_patching_scatter",
    "plot_per_input_slopes",
    "plot_null",
    "write_run_report",
    "write_index_html",
    "screenshot_html",
    "safe_run_name",
    "PLOT_FILES",
]

DPI = 110
UNDEFINED = "undefined"
PROJECTION_ORDER = ("prediction", "head", "input", "output", "neuron_dir", "live")
PROJECTION_LABELS = {
    "ground_truth": "ground truth activation",
    "prediction": "head prediction",
    "head": "projection on head direction",
    "input": "projection on W_in[:, n] (resid_mid)",
    "output": "projection on W_out[n] (resid_post)",
    "neuron_dir": "final resid · W_out[n] / ‖W_out[n]‖",
    "live": "live activation (recomputed)",
}
PROJECTION_TITLES = {
    "prediction": "Prediction",
    "head": "Head direction",
    "input": "Input weights",
    "output": "Output weights",
    "neuron_dir": "Neuron direction (final layer)",
    "live": "Live activation",
}
MODE_LABELS = {"scale": "scale factor", "set": "value set", "add": "added delta"}
MAX_SLOPE_BARS = 30
TEXT_LABEL_CHARS = 40


@dataclass(frozen=True)
class RunReport:
    """Everything the report needs about one run, as plain data."""

    name: str
    summary: dict
    projection_arrays: dict[str, np.ndarray] | None = None
    patching_arrays: dict | None = None
    null_values: np.ndarray | None = None
    null_label: str = "random directions"


# ---------------------------------------------------------------- numbers and text


def _num(value: Any) -> float | None:
    """A finite float, or None for None/NaN/inf/non-numbers (bools are not numbers here)."""
    if isinstance(value, (bool, np.bool_)) or value is None:
        return None
    if isinstance(value, (int, float, np.integer, np.floating)):
        f = float(value)
        return f if math.isfinite(f) else None
    return None


def _first_num(mapping: Mapping[str, Any] | None, keys: Sequence[str]) -> float | None:
    if not isinstance(mapping, Mapping):
        return None
    for key in keys:
        if key in mapping:
            value = _num(mapping[key])
            if value is not None:
                return value
    return None


def _fmt(value: Any, spec: str = ".4f") -> str:
    f = _num(value)
    if f is None:
        return UNDEFINED
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    return format(f, spec)


def _fmt_p(value: Any) -> str:
    f = _num(value)
    if f is None:
        return UNDEFINED
    if f == 0.0:
        return "< 1e-300"
    return f"{f:.2e}" if f < 1e-3 else f"{f:.4f}"


def _fmt_general(value: Any) -> str:
    f = _num(value)
    if f is None:
        return UNDEFINED
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if f == 0.0:
        return "0"
    if abs(f) < 1e-3 or abs(f) >= 1e5:
        return f"{f:.3e}"
    return f"{f:.4f}".rstrip("0").rstrip(".")


def _fmt_ci(low: Any, high: Any) -> str:
    lo, hi = _num(low), _num(high)
    if lo is None or hi is None:
        return UNDEFINED
    return f"[{lo:.3f}, {hi:.3f}]"


@functools.lru_cache(maxsize=4096)
def _has_glyph(char: str) -> bool:
    from matplotlib.font_manager import FontProperties, findfont, get_font

    try:
        return get_font(findfont(FontProperties())).get_char_index(ord(char)) != 0
    except Exception:
        return char.isascii()


def _mpl(text: Any) -> str:
    """Text safe for a matplotlib label: one line, no mathtext, no glyph-missing warnings."""
    s = re.sub(r"\s+", " ", str(text)).strip()
    s = "".join(c if c == " " or _has_glyph(c) else "?" for c in s)
    return s.replace("$", r"\$")


def _truncate(text: str, limit: int) -> str:
    s = re.sub(r"\s+", " ", str(text)).strip()
    return s if len(s) <= limit else s[: limit - 1] + "…"


def _array(value: Any) -> np.ndarray | None:
    if value is None:
        return None
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        return None
    return arr


def _col_mean(matrix: np.ndarray) -> np.ndarray:
    """Column means ignoring non-finite entries (NaN where a column has none), without warnings."""
    finite = np.isfinite(matrix)
    counts = finite.sum(axis=0)
    sums = np.where(finite, matrix, 0.0).sum(axis=0)
    out = np.full(matrix.shape[1], np.nan)
    np.divide(sums, counts, out=out, where=counts > 0)
    return out


def _pearson(a: np.ndarray, b: np.ndarray) -> float | None:
    mask = np.isfinite(a) & np.isfinite(b)
    if mask.sum() < 2:
        return None
    x = a[mask] - a[mask].mean()
    y = b[mask] - b[mask].mean()
    den = math.sqrt(float(np.dot(x, x)) * float(np.dot(y, y)))
    if not math.isfinite(den) or den == 0.0:
        return None
    return float(np.clip(np.dot(x, y) / den, -1.0, 1.0))


def _line_fit(x: np.ndarray, y: np.ndarray) -> tuple[float, float] | None:
    mask = np.isfinite(x) & np.isfinite(y)
    if mask.sum() < 2 or np.ptp(x[mask]) == 0:
        return None
    slope, intercept = np.polyfit(x[mask], y[mask], 1)
    return float(slope), float(intercept)


# ---------------------------------------------------------------- figure plumbing


def _new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: str | os.PathLike[str]) -> Path:
    buf = io.BytesIO()
    # "tight" keeps long titles and outside legends inside the image instead of clipping them.
    fig.savefig(buf, format="png", dpi=DPI, facecolor="white", bbox_inches="tight", pad_inches=0.15)
    return write_bytes_atomic(path, buf.getvalue())


def _placeholder(ax: Axes, message: str, title: str | None = None) -> None:
    if title:
        ax.set_title(_mpl(title), fontsize=12)
    ax.text(
        0.5, 0.5, _mpl_multiline(message, 38), ha="center", va="center",
        fontsize=11, color="#57606a", transform=ax.transAxes,
    )
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_color("#d0d7de")
    ax.set_facecolor("#f6f8fa")


def _mpl_multiline(text: str, width: int) -> str:
    return "\n".join(_mpl(line) for line in textwrap.wrap(str(text), width) or [""])


def _run_title(report: RunReport) -> str:
    run = report.summary.get("run") if isinstance(report.summary, Mapping) else None
    run = run if isinstance(run, Mapping) else {}
    parts = []
    if run.get("target_layer") is not None:
        parts.append(f"layer {run['target_layer']}")
    if run.get("target_neuron") is not None:
        parts.append(f"neuron {run['target_neuron']}")
    if run.get("base_model"):
        parts.append(str(run["base_model"]))
    head = f"{', '.join(parts)}  —  {report.name}" if parts else report.name
    return _mpl(head)


def _summary_section(report: RunReport, key: str) -> dict:
    value = report.summary.get(key) if isinstance(report.summary, Mapping) else None
    return dict(value) if isinstance(value, Mapping) else {}


def _absent_reason(report: RunReport, name: str) -> str:
    entry = _summary_section(report, "projections").get(name)
    if isinstance(entry, Mapping):
        for key in ("absent", "reason", "absent_reason"):
            if isinstance(entry.get(key), str) and entry[key]:
                return entry[key]
    absent = report.summary.get("absent") if isinstance(report.summary, Mapping) else None
    if isinstance(absent, Mapping) and isinstance(absent.get(name), str):
        return absent[name]
    return "not computed for this run"


def _style_axes(ax: Axes) -> None:
    ax.grid(True, alpha=0.3)
    ax.tick_params(labelsize=9)


# ---------------------------------------------------------------- plots


def plot_projection(report: RunReport, path: str | os.PathLike[str]) -> Path:
    """Scatter each projection against the ground-truth activation, with fit line and stats box."""
    arrays = report.projection_arrays or {}
    stats = _summary_section(report, "projections")
    truth = _array(arrays.get("ground_truth"))
    names = [n for n in ("prediction",) if n in arrays]
    names += ["head", "input", "output", "neuron_dir"]
    names += [n for n in ("live",) if n in arrays]
    ncols = 2 if len(names) <= 4 else 3
    nrows = math.ceil(len(names) / ncols)
    fig = _new_figure(5.0 * ncols, 4.3 * nrows + 0.5)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for ax, name in zip(axes.flat, names):
        _projection_panel(ax, name, _array(arrays.get(name)), truth, stats.get(name), report)
    for ax in list(axes.flat)[len(names):]:
        fig.delaxes(ax)
    fig.suptitle(f"Projections vs ground truth: {_run_title(report)}", fontsize=14)
    return _save(fig, path)


def _projection_panel(
    ax: Axes, name: str, x: np.ndarray | None, y: np.ndarray | None,
    stats: Any, report: RunReport,
) -> None:
    title = PROJECTION_TITLES.get(name, name)
    if x is None:
        _placeholder(ax, f"absent: {_absent_reason(report, name)}", title)
        return
    if y is None:
        _placeholder(ax, "absent: no ground-truth activations", title)
        return
    x, y = x.ravel(), y.ravel()
    if x.shape != y.shape:
        _placeholder(ax, f"absent: {x.size} values vs {y.size} ground-truth values", title)
        return
    mask = np.isfinite(x) & np.isfinite(y)
    if not mask.any():
        _placeholder(ax, "no finite data", title)
        return
    n = int(mask.sum())
    ax.scatter(x[mask], y[mask], s=12 if n > 300 else 22, alpha=0.45, color="#1f77b4",
               edgecolors="none", rasterized=n > 5000)
    fit = _line_fit(x, y)
    if fit is not None:
        xs = np.linspace(x[mask].min(), x[mask].max(), 2)
        ax.plot(xs, fit[0] * xs + fit[1], color="#d62728", linewidth=1.8)
    s = stats if isinstance(stats, Mapping) else {}
    box = "\n".join([
        f"r = {_fmt(s.get('correlation'))}",
        f"95% CI {_fmt_ci(s.get('ci_low'), s.get('ci_high'))}",
        f"R² = {_fmt(s.get('r_squared'))}",
        f"p = {_fmt_p(s.get('p_value'))}",
        f"ρ = {_fmt(s.get('spearman'))}",
        f"n = {_fmt(s.get('n'))}",
    ])
    handle = Line2D([], [], linestyle="none")
    ax.legend([handle], [box], loc="best", handlelength=0, handletextpad=0, fontsize=9,
              framealpha=0.85, borderpad=0.6)
    ax.set_title(title, fontsize=12)
    ax.set_xlabel(PROJECTION_LABELS.get(name, name), fontsize=10)
    ax.set_ylabel(PROJECTION_LABELS["ground_truth"], fontsize=10)
    _style_axes(ax)


def _aligned_arrays(report: RunReport) -> tuple[list[str], list[np.ndarray]]:
    arrays = report.projection_arrays or {}
    order = ["ground_truth", *PROJECTION_ORDER]
    order += sorted(k for k in arrays if k not in order)
    present = [(k, _array(arrays.get(k))) for k in order if k in arrays]
    present = [(k, a.ravel()) for k, a in present if a is not None and a.size > 0]
    if not present:
        return [], []
    ref = present[0][1].size
    kept = [(k, a) for k, a in present if a.size == ref]
    return [k for k, _ in kept], [a for _, a in kept]


def plot_correlation_heatmap(report: RunReport, path: str | os.PathLike[str]) -> Path:
    """Annotated Pearson correlation matrix of the per-text projection arrays."""
    names, arrays = _aligned_arrays(report)
    k = len(names)
    size = max(5.0, 1.0 * k + 2.6)
    fig = _new_figure(size + 1.0, size)
    ax = fig.add_subplot()
    if k < 2:
        _placeholder(ax, "need at least two projection arrays", "Correlation matrix")
        return _save(fig, path)
    matrix = np.full((k, k), np.nan)
    for i in range(k):
        for j in range(i, k):
            r = _pearson(arrays[i], arrays[j])
            matrix[i, j] = matrix[j, i] = np.nan if r is None else r
    # Undefined cells are white and hatched: a grey would read as r ≈ 0 on coolwarm.
    cmap = colormaps["coolwarm"].with_extremes(bad="white")
    image = ax.imshow(np.ma.masked_invalid(matrix), cmap=cmap, vmin=-1, vmax=1)
    fontsize = 10 if k <= 6 else 8
    for i in range(k):
        for j in range(k):
            v = matrix[i, j]
            if np.isnan(v):
                ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, hatch="///",
                                       edgecolor="#d0d7de", linewidth=0))
                ax.text(j, i, UNDEFINED, ha="center", va="center", fontsize=fontsize - 2,
                        color="#24292f", style="italic",
                        bbox={"facecolor": "white", "edgecolor": "none", "pad": 1.5})
            else:
                ax.text(j, i, f"{v:.3f}", ha="center", va="center", fontsize=fontsize,
                        color="white" if abs(v) > 0.6 else "#24292f")
    labels = [_mpl(n) for n in names]
    ax.set_xticks(range(k), labels, rotation=35, ha="right", rotation_mode="anchor", fontsize=10)
    ax.set_yticks(range(k), labels, fontsize=10)
    ax.tick_params(length=0)
    fig.colorbar(image, ax=ax, shrink=0.8, label="Pearson r")
    n = arrays[0].size
    ax.set_title(f"Correlation matrix (n = {n})\n{_run_title(report)}", fontsize=12)
    return _save(fig, path)


def _patching_means(report: RunReport) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    patch = _summary_section(report, "patching")
    pa = report.patching_arrays or {}
    factors = _array(pa.get("factors"))
    if factors is None or factors.size == 0:
        factors = _float_list(patch.get("factors"))
    if factors.size == 0:
        return None
    factors = factors.ravel()
    act = _array(pa.get("activation_change"))
    pred = _array(pa.get("prediction_change"))
    if (act is not None and pred is not None and act.ndim == 2 and act.shape == pred.shape
            and act.shape[0] > 0 and act.shape[1] == factors.size):
        return factors, _col_mean(act), _col_mean(pred)
    mean_act = _float_list(patch.get("avg_activation_changes"))
    mean_pred = _float_list(patch.get("avg_prediction_changes"))
    if mean_act.size != factors.size or mean_pred.size != factors.size:
        return None
    return factors, mean_act, mean_pred


def _float_list(values: Any) -> np.ndarray:
    """A JSON list of numbers (None allowed) as a float array with NaN for undefined entries."""
    if not isinstance(values, (list, tuple, np.ndarray)):
        return np.array([], dtype=float)
    return np.array([np.nan if _num(v) is None else _num(v) for v in values], dtype=float)


def _mode(report: RunReport) -> str:
    return str(_summary_section(report, "patching").get("mode") or "scale")


def plot_patching_curves(report: RunReport, path: str | os.PathLike[str]) -> Path:
    """Mean changes vs factor (left) and the mean (activation, prediction) change trajectory (right)."""
    fig = _new_figure(12.5, 5.2)
    left, right = fig.subplots(1, 2)
    means = _patching_means(report)
    mode = _mode(report)
    xlabel = MODE_LABELS.get(mode, mode)
    if means is None:
        _placeholder(left, "no patching data", "Mean change per factor")
        _placeholder(right, "no patching data", "Change trajectory")
        fig.suptitle(f"Patching: {_run_title(report)}", fontsize=14)
        return _save(fig, path)
    factors, act, pred = means
    order = np.argsort(factors, kind="stable")
    factors, act, pred = factors[order], act[order], pred[order]
    left.plot(factors, act, "o-", color="#1f77b4", label="activation change")
    left.plot(factors, pred, "o-", color="#d62728", label="prediction change")
    left.axhline(0, color="k", linestyle="--", alpha=0.3)
    if mode == "scale":
        left.axvline(1.0, color="k", linestyle=":", alpha=0.4)
    left.set_xlabel(_mpl(xlabel), fontsize=10)
    left.set_ylabel("mean change from baseline", fontsize=10)
    left.set_title("Mean change per factor", fontsize=12)
    left.legend(fontsize=9, loc="best")
    _style_axes(left)

    right.plot(act, pred, "o-", color="#2ca02c", label="mean over inputs")
    finite = np.isfinite(act) & np.isfinite(pred)
    for f, a, p in zip(factors[finite], act[finite], pred[finite]):
        right.annotate(f"{f:g}", (a, p), xytext=(5, 5), textcoords="offset points", fontsize=9)
    if mode == "scale" and np.any(factors == 1.0):
        i = int(np.flatnonzero(factors == 1.0)[0])
        right.plot([act[i]], [pred[i]], "o", color="k", markersize=9, label="baseline (factor 1)")
    right.axhline(0, color="k", linestyle="--", alpha=0.3)
    right.axvline(0, color="k", linestyle="--", alpha=0.3)
    right.set_xlabel("mean activation change", fontsize=10)
    right.set_ylabel("mean prediction change", fontsize=10)
    right.set_title(f"Change trajectory (labels: {_mpl(xlabel)})", fontsize=12)
    right.legend(fontsize=9, loc="best")
    _style_axes(right)
    fig.suptitle(f"Patching ({_mpl(mode)}): {_run_title(report)}", fontsize=14)
    return _save(fig, path)


def plot_patching_scatter(report: RunReport, path: str | os.PathLike[str]) -> Path:
    """Every (activation change, prediction change) point coloured by factor, with the pooled fit."""
    patch = _summary_section(report, "patching")
    pa = report.patching_arrays or {}
    act = _array(pa.get("activation_change"))
    pred = _array(pa.get("prediction_change"))
    factors = _array(pa.get("factors"))
    fig = _new_figure(9.5, 6.8)
    ax = fig.add_subplot()
    mode = _mode(report)
    slope, intercept = _num(patch.get("slope")), _num(patch.get("intercept"))
    r2, base_r = _num(patch.get("r_squared")), _num(patch.get("baseline_correlation"))
    title = (f"Prediction change vs activation change: {_run_title(report)}\n"
             f"pooled slope {_fmt(slope)} · intercept {_fmt(intercept)} · R² {_fmt(r2)}"
             f" · baseline r {_fmt(base_r)}")
    ok = act is not None and pred is not None and act.shape == pred.shape and act.size > 0
    if ok and act.ndim == 1:
        act, pred = act[:, None], pred[:, None]
    if ok and (act.ndim != 2 or factors is None or factors.ravel().size != act.shape[1]):
        ok = False
    if not ok:
        _placeholder(ax, "no per-input patching data")
        ax.set_title(title, fontsize=12)
        return _save(fig, path)
    factors = factors.ravel()
    mask = np.isfinite(act) & np.isfinite(pred)
    n_points = int(mask.sum())
    size = 14 if n_points > 1500 else 26
    cmap = colormaps["viridis"]
    label = MODE_LABELS.get(mode, mode)
    if factors.size <= 12:
        colors = cmap(np.linspace(0, 0.92, factors.size))
        for j, f in enumerate(factors):
            m = mask[:, j]
            ax.scatter(act[m, j], pred[m, j], s=size, alpha=0.7, color=colors[j],
                       edgecolors="none", label=f"{f:g}")
    else:
        norm = Normalize(np.nanmin(factors), np.nanmax(factors))
        grid = np.broadcast_to(factors, act.shape)
        ax.scatter(act[mask], pred[mask], c=grid[mask], cmap=cmap, norm=norm, s=size,
                   alpha=0.7, edgecolors="none")
        fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=ax, label=_mpl(label))
    lines: list[Line2D] = []
    if n_points:
        xs = np.linspace(act[mask].min(), act[mask].max(), 2)
        if slope is not None:
            (line,) = ax.plot(xs, slope * xs + (intercept or 0.0), color="#d62728", linewidth=2,
                              label=f"pooled fit (slope {slope:.3f})")
            lines.append(line)
        direct = _num(patch.get("direct_slope"))
        if direct is not None:
            d_int = _num(patch.get("direct_intercept")) or 0.0
            (line,) = ax.plot(xs, direct * xs + d_int, color="#24292f", linestyle="--",
                              linewidth=1.6, label=f"direct path (slope {direct:.3f})")
            lines.append(line)
    ax.axhline(0, color="k", linestyle="--", alpha=0.25)
    ax.axvline(0, color="k", linestyle="--", alpha=0.25)
    if factors.size <= 12:
        handles, labels = ax.get_legend_handles_labels()
        point_handles = [h for h in handles if h not in lines]
        # Beside the axes (below the title), so a long title never runs into it.
        scatter_legend = ax.legend(point_handles, [lab for h, lab in zip(handles, labels) if h not in lines],
                                   title=_mpl(label), fontsize=9, title_fontsize=9, loc="upper left",
                                   bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
        ax.add_artist(scatter_legend)
    if lines:
        ax.legend(lines, [ln.get_label() for ln in lines], fontsize=9, loc="lower right",
                  framealpha=0.9)
    ax.set_xlabel("activation change", fontsize=10)
    ax.set_ylabel("prediction change", fontsize=10)
    ax.set_title(title, fontsize=12)
    _style_axes(ax)
    return _save(fig, path)


def _per_input_entries(report: RunReport) -> list[dict]:
    entries = _summary_section(report, "patching").get("per_input") or []
    return [e for e in entries if isinstance(e, Mapping)]


def plot_per_input_slopes(report: RunReport, path: str | os.PathLike[str]) -> Path:
    """Horizontal bars of per-input slopes (the most extreme 30), coloured by per-input R²."""
    patch = _summary_section(report, "patching")
    entries = _per_input_entries(report)
    defined = [(str(e.get("text", "")), _num(e.get("slope")), _num(e.get("r_squared")))
               for e in entries]
    undefined = sum(1 for _, s, _ in defined if s is None)
    defined = sorted(((t, s, r) for t, s, r in defined if s is not None), key=lambda e: e[1])
    total = len(defined)
    if total > MAX_SLOPE_BARS:
        half = MAX_SLOPE_BARS // 2
        shown = defined[:half] + defined[-(MAX_SLOPE_BARS - half):]
    else:
        shown = defined
    height = max(3.2, 0.3 * len(shown) + 1.8)
    fig = _new_figure(10.5, height)
    ax = fig.add_subplot()
    subtitle = f"{total} input{'s' if total != 1 else ''}"
    if total > len(shown):
        subtitle += f", showing the {len(shown)} most extreme ({len(shown) // 2} lowest, " \
                    f"{len(shown) - len(shown) // 2} highest)"
    if undefined:
        subtitle += f", {undefined} undefined"
    title = f"Per-input slopes: {_run_title(report)}\n{subtitle}"
    if not shown:
        _placeholder(ax, "no per-input slopes")
        ax.set_title(title, fontsize=12)
        return _save(fig, path)
    cmap = colormaps["viridis"]
    norm = Normalize(0.0, 1.0)
    colors = [cmap(norm(r)) if r is not None else "#bbbbbb" for _, _, r in shown]
    y = np.arange(len(shown))
    ax.barh(y, [s for _, s, _ in shown], color=colors, edgecolor="none", height=0.75)
    ax.set_yticks(y, [_mpl(_truncate(t, TEXT_LABEL_CHARS)) for t, _, _ in shown], fontsize=8.5)
    ax.axvline(0, color="k", linewidth=0.8)
    pooled = _num(patch.get("slope"))
    if pooled is not None:
        ax.axvline(pooled, color="#d62728", linestyle="--", linewidth=1.6,
                   label=f"pooled slope {pooled:.3f}")
        ax.legend(fontsize=9, loc="lower right", framealpha=0.9)
    if total > len(shown) and len(shown) >= 2:
        ax.axhline(len(shown) // 2 - 0.5, color="#8c959f", linestyle=":", linewidth=1)
    ax.set_ylim(-0.6, len(shown) - 0.4)
    fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=ax, label="per-input R²",
                 shrink=0.6 if len(shown) > 12 else 1.0, aspect=25, fraction=0.04)
    ax.set_xlabel("slope of prediction change on activation change", fontsize=10)
    ax.set_title(title, fontsize=12)
    ax.grid(True, axis="x", alpha=0.3)
    ax.tick_params(axis="x", labelsize=9)
    return _save(fig, path)


def _observed_abs_r(report: RunReport) -> float | None:
    null = _summary_section(report, "null")
    observed = _first_num(null, ("observed_abs_r", "observed", "observed_r"))
    if observed is None:
        head = _summary_section(report, "projections").get("head")
        observed = _first_num(head, ("correlation",))
    return None if observed is None else abs(observed)


def plot_null(report: RunReport, path: str | os.PathLike[str]) -> Path:
    """Histogram of null |r| values with the observed head |r| and the null's 95th percentile."""
    null = _summary_section(report, "null")
    if isinstance(null.get("random"), dict):  # summary.json nests the random-direction null under "random"
        null = null["random"]
    values = _array(report.null_values)
    values = values.ravel()[np.isfinite(values.ravel())] if values is not None else np.array([])
    fig = _new_figure(9.0, 5.4)
    ax = fig.add_subplot()
    p = _first_num(null, ("empirical_p", "p_value", "p_empirical", "p"))
    selectivity = _first_num(null, ("selectivity",))
    title = (f"Null: |r| of {values.size} {_mpl(report.null_label)}: {_run_title(report)}\n"
             f"empirical p = {_fmt(p, '.4g')} · selectivity = {_fmt(selectivity, '.3f')}")
    if values.size == 0:
        _placeholder(ax, "no null values")
        ax.set_title(title, fontsize=12)
        return _save(fig, path)
    observed = _observed_abs_r(report)
    q95 = float(np.percentile(values, 95))
    top = float(values.max())
    bins = np.linspace(0.0, top * 1.02 if top > 0 else 1.0, int(np.clip(np.sqrt(values.size), 10, 40)) + 1)
    ax.hist(values, bins=bins, color="#8c959f",
            edgecolor="white", linewidth=0.3, label=_mpl(report.null_label))
    ax.axvline(q95, color="#bf8700", linestyle="--", linewidth=1.8,
               label=f"null 95th percentile = {q95:.3f}")
    if observed is not None:
        ax.axvline(observed, color="#d62728", linewidth=2.2, label=f"observed |r| (head) = {observed:.3f}")
    else:
        ax.text(0.98, 0.95, f"observed |r|: {UNDEFINED}", ha="right", va="top",
                transform=ax.transAxes, fontsize=10, color="#d62728")
    ax.set_xlabel("|Pearson r| with ground truth", fontsize=10)
    ax.set_ylabel("count", fontsize=10)
    ax.set_title(title, fontsize=12)
    ax.legend(fontsize=9, loc="best")
    _style_axes(ax)
    return _save(fig, path)


# ---------------------------------------------------------------- per-run artifacts


def _has_projection(r: RunReport) -> bool:
    arrays = r.projection_arrays or {}
    truth = _array(arrays.get("ground_truth"))
    return truth is not None and truth.size > 0 and any(
        _array(arrays.get(n)) is not None for n in PROJECTION_ORDER)


def _has_correlation(r: RunReport) -> bool:
    names, arrays = _aligned_arrays(r)
    return len(names) >= 2 and arrays[0].size >= 2


def _has_patching_arrays(r: RunReport) -> bool:
    act = _array((r.patching_arrays or {}).get("activation_change"))
    return act is not None and act.size > 0


def _has_null(r: RunReport) -> bool:
    values = _array(r.null_values)
    return values is not None and bool(np.isfinite(values).any())


_PlotEntry = tuple[str, str, str, Callable[[RunReport], bool], Callable[[RunReport, Any], Path]]
# (key in write_run_report's result, file name, figure title, has-data test, plot function)
PLOT_FILES: tuple[_PlotEntry, ...] = (
    ("projection", "projection.png", "Projections vs ground truth", _has_projection, plot_projection),
    ("correlation", "projection_correlation.png", "Correlation matrix of projections",
     _has_correlation, plot_correlation_heatmap),
    ("patching_curves", "patching_curves.png", "Patching: mean changes per factor",
     lambda r: _patching_means(r) is not None, plot_patching_curves),
    ("patching_scatter", "patching_scatter.png", "Patching: prediction change vs activation change",
     _has_patching_arrays, plot_patching_scatter),
    ("per_input_slopes", "per_input_slopes.png", "Patching: per-input slopes",
     lambda r: any(_num(e.get("slope")) is not None for e in _per_input_entries(r)),
     plot_per_input_slopes),
    ("null", "null.png", "Null distribution", _has_null, plot_null),
)
_FIGURE_TITLES = {key: title for key, _, title, _, _ in PLOT_FILES}


def safe_run_name(name: str) -> str:
    """A file-system-safe directory name for a run."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", str(name)).strip("._-")
    return safe[:120] or "run"


def write_run_report(report: RunReport, out_dir: str | os.PathLike[str]) -> dict[str, Path]:
    """Write ``out_dir/<safe name>/summary.json`` and every plot that has data; return their paths."""
    run_dir = Path(out_dir) / safe_run_name(report.name)
    paths: dict[str, Path] = {"summary": write_json_atomic(run_dir / "summary.json", report.summary)}
    for key, filename, _, has_data, plot in PLOT_FILES:
        if has_data(report):
            paths[key] = plot(report, run_dir / filename)
    return paths


# ---------------------------------------------------------------- index.html

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


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _h_value(value: Any) -> str:
    """One value as HTML; numbers formatted, undefined numbers spelled out."""
    if value is None or (isinstance(value, (float, np.floating)) and not math.isfinite(float(value))):
        return f'<span class="undef">{UNDEFINED}</span>'
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    if isinstance(value, (int, float, np.integer, np.floating)):
        return _e(_fmt_general(value))
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


def _h_num(value: Any, formatter: Callable[[Any], str] = _fmt) -> str:
    text = formatter(value)
    if text == UNDEFINED:
        return f'<td class="num"><span class="undef">{UNDEFINED}</span></td>'
    return f'<td class="num">{_e(text)}</td>'


def _kv_table(mapping: Mapping[str, Any], prefix: str = "") -> str:
    rows = []

    def walk(m: Mapping[str, Any], pre: str) -> None:
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


def _projection_table(summary: Mapping[str, Any], report: RunReport) -> str:
    projections = summary.get("projections")
    if not isinstance(projections, Mapping) or not projections:
        return '<p class="muted">No projection analysis in this run.</p>'
    order = [n for n in PROJECTION_ORDER if n in projections]
    order += [n for n in projections if n not in order]
    rows = []
    for name in order:
        stats = projections.get(name)
        label = f"<th>{_e(name)}</th>"
        has_numbers = isinstance(stats, Mapping) and any(
            k in stats for k in ("correlation", "r_squared", "p_value", "n"))
        if not has_numbers:
            rows.append(f'<tr>{label}<td colspan="6" class="absent">absent: '
                        f"{_e(_absent_reason(report, name))}</td></tr>")
            continue
        ci = _fmt_ci(stats.get("ci_low"), stats.get("ci_high"))
        ci_cell = (f'<td class="num"><span class="undef">{UNDEFINED}</span></td>' if ci == UNDEFINED
                   else f'<td class="num">{_e(ci)}</td>')
        rows.append(
            f"<tr>{label}{_h_num(stats.get('correlation'))}{ci_cell}{_h_num(stats.get('r_squared'))}"
            f"{_h_num(stats.get('p_value'), _fmt_p)}{_h_num(stats.get('spearman'))}"
            f"{_h_num(stats.get('n'))}</tr>")
    head = ("<thead><tr><th>projection</th><th>r</th><th>95% CI of r</th><th>R²</th><th>p</th>"
            "<th>Spearman ρ</th><th>n</th></tr></thead>")
    return f"<table>{head}<tbody>{''.join(rows)}</tbody></table>"


def _patching_table(patch: Mapping[str, Any]) -> str:
    rows = [("mode", patch.get("mode")), ("factors", patch.get("factors")),
            ("baseline correlation", patch.get("baseline_correlation")),
            ("pooled slope", patch.get("slope")), ("intercept", patch.get("intercept")),
            ("R²", patch.get("r_squared"))]
    for key in ("direct_slope", "direct_intercept"):
        if key in patch:
            rows.append((key.replace("_", " "), patch[key]))
    per_input = patch.get("per_input")
    if isinstance(per_input, list):
        rows.append(("inputs", len(per_input)))
    shown = {"mode", "factors", "baseline_correlation", "slope", "intercept", "r_squared",
             "direct_slope", "direct_intercept", "per_input", "avg_activation_changes",
             "avg_prediction_changes"}
    rows += [(k, v) for k, v in patch.items() if k not in shown]
    body = "".join(f"<tr><th>{_e(k)}</th><td>{_h_value(v)}</td></tr>" for k, v in rows)
    return f'<table class="kv"><tbody>{body}</tbody></table>'


def _claims_table(claims: Sequence[Mapping[str, Any]]) -> str:
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
            f'<td class="nodeid"><code>{_e(c.get("nodeid", ""))}</code></td></tr>')
    head = ("<thead><tr><th>outcome</th><th>claim</th><th>message</th><th>values</th>"
            "<th>test</th></tr></thead>")
    return f"<table>{head}<tbody>{''.join(rows)}</tbody></table>"


def _counts(claims: Sequence[Mapping[str, Any]]) -> str:
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
    title = _FIGURE_TITLES.get(key, key.replace("_", " "))
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        return f'<p class="muted">{_e(title)}: image unavailable ({_e(exc)})</p>'
    encoded = base64.b64encode(data).decode("ascii")
    return (f'<figure><img src="data:image/png;base64,{encoded}" alt="{_e(title)} ({_e(run_name)})">'
            f"<figcaption>{_e(title)} — <code>{_e(Path(path).name)}</code></figcaption></figure>")


def _display_json(obj: Any) -> Any:
    """``obj`` with non-finite floats as None and arrays as lists, for showing raw JSON."""
    if isinstance(obj, Mapping):
        return {str(k): _display_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, np.ndarray)):
        return [_display_json(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        return _num(obj)
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def _run_section(index: int, report: RunReport, paths: Mapping[str, Path],
                 claims: Sequence[Mapping[str, Any]], out_dir: Path) -> str:
    summary = report.summary if isinstance(report.summary, Mapping) else {}
    anchor = f"run-{index}"
    figures = [(k, Path(p)) for k, p in paths.items() if k != "summary" and str(p).endswith(".png")]
    toc = [f'<a href="#{anchor}-numbers">Key numbers</a>',
           f'<a href="#{anchor}-claims">Claims ({len(claims)})</a>']
    toc += [f'<a href="#{anchor}-fig-{_e(k)}">{_e(_FIGURE_TITLES.get(k, k))}</a>' for k, _ in figures]
    toc.append(f'<a href="#{anchor}-provenance">Provenance</a>')
    toc.append(f'<a href="#{anchor}-summary">summary.json</a>')

    parts = [f'<section class="run" id="{anchor}">',
             f"<h2>{_e(report.name)}</h2>",
             f'<div class="counts">{_counts(claims)}</div>',
             f'<nav class="toc">{"".join(toc)}</nav>',
             f'<h3 id="{anchor}-numbers">Key numbers</h3>']
    run_info = dict(summary.get("run") or {}) if isinstance(summary.get("run"), Mapping) else {}
    if "dataset_size" in summary:
        run_info["dataset_size"] = summary["dataset_size"]
    if run_info:
        parts += ["<h4>Run</h4>", _kv_table(run_info)]
    parts += ["<h4>Projections (Pearson r with ground truth)</h4>", _projection_table(summary, report)]
    weights = summary.get("weight_similarities")
    if isinstance(weights, Mapping) and weights:
        cells = "".join(f"<th>{_e(k)}</th>" for k in weights)
        values = "".join(_h_num(v) for v in weights.values())
        parts += ["<h4>Weight cosine similarities</h4>",
                  f"<table><thead><tr>{cells}</tr></thead><tbody><tr>{values}</tr></tbody></table>"]
    patch = summary.get("patching")
    if isinstance(patch, Mapping) and patch:
        parts += ["<h4>Patching</h4>", _patching_table(patch)]
    for key, label in (("null", "Null distribution"), ("direct_effect", "Direct effect")):
        value = summary.get(key)
        if isinstance(value, Mapping) and value:
            parts += [f"<h4>{label}</h4>", _kv_table(value)]

    parts += [f'<h3 id="{anchor}-claims">Claims</h3>', _claims_table(claims)]
    if figures:
        parts.append("<h3>Figures</h3>")
        for key, path in figures:
            parts.append(f'<div id="{anchor}-fig-{_e(key)}">{_image_html(path, key, report.name)}</div>')
    parts.append(f'<h3 id="{anchor}-provenance">Provenance</h3>')
    provenance = summary.get("provenance")
    parts.append(_kv_table(provenance) if isinstance(provenance, Mapping) and provenance
                 else '<p class="muted">No provenance recorded.</p>')
    parts.append(f'<h3 id="{anchor}-summary">summary.json</h3>')
    summary_path = paths.get("summary")
    if summary_path is not None:
        try:
            rel = Path(os.path.relpath(Path(summary_path).resolve(), out_dir.resolve())).as_posix()
            parts.append(f'<p><a href="{_e(rel)}"><code>{_e(rel)}</code></a></p>')
        except ValueError:
            pass
    dumped = json.dumps(_display_json(summary), indent=2, allow_nan=False, default=str)
    parts.append(f"<details><summary>show</summary><pre>{_e(dumped)}</pre></details>")
    parts.append("</section>")
    return "\n".join(parts)


def _header_value(value: Any) -> str:
    if isinstance(value, str):
        return _e(value)
    if isinstance(value, (list, tuple)):
        return f"<code>{_e(' '.join(map(str, value)))}</code>"
    return _h_value(value)


def write_index_html(
    out_dir: str | os.PathLike[str],
    runs: Sequence[tuple[RunReport, Mapping[str, Path]]],
    claims: Sequence[Mapping[str, Any]],
    header: Mapping[str, Any],
) -> Path:
    """Write one self-contained ``out_dir/index.html`` (inline CSS, images as data URIs)."""
    from pytest_neuronprobe import __version__

    out = Path(out_dir)
    info: dict[str, Any] = {"pytest-neuronprobe": __version__}
    info.update({str(k): v for k, v in (header or {}).items()})
    if not any(k.lower() in ("when", "time", "generated", "date", "timestamp") for k in info):
        info["generated"] = _dt.datetime.now().astimezone().isoformat(timespec="seconds")
    header_rows = "".join(f"<tr><th>{_e(k)}</th><td>{_header_value(v)}</td></tr>"
                          for k, v in info.items())

    names = [r.name for r, _ in runs]
    by_run: dict[str, list[Mapping[str, Any]]] = {n: [] for n in names}
    orphans: list[Mapping[str, Any]] = []
    for claim in claims:
        bucket = by_run.get(str(claim.get("run")))
        (bucket if bucket is not None else orphans).append(claim)

    toc_items = "".join(
        f'<li><a href="#run-{i}">{_e(r.name)}</a> {_counts(by_run[r.name])}</li>'
        for i, (r, _) in enumerate(runs))
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
        body += ['<section class="run" id="other-claims"><h2>Claims without a run</h2>',
                 _claims_table(orphans), "</section>"]
    body.append("</main>")
    document = (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
        "<title>pytest-neuronprobe report</title>\n"
        f"<style>{_CSS}</style>\n</head>\n<body>\n" + "\n".join(body) + "\n</body>\n</html>\n"
    )
    return write_text_atomic(out / "index.html", document)


def screenshot_html(html_path: str | os.PathLike[str], png_path: str | os.PathLike[str],
                    width: int = 1280, height: int = 2400) -> bool:
    """Screenshot a local HTML file with headless Chromium; False if Chromium is missing or fails."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        return False
    target = Path(png_path).resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    target.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="neuronprobe-chromium-") as profile:
        cmd = [
            browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
            "--no-first-run", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", f"--user-data-dir={profile}", f"--window-size={width},{height}",
            "--hide-scrollbars", f"--screenshot={target}", Path(html_path).resolve().as_uri(),
        ]
        try:
            done = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                  timeout=60, check=False)
        except (OSError, subprocess.SubprocessError):
            return False
    return done.returncode == 0 and target.is_file() and target.stat().st_size > 0
