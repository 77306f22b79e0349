"""The patching figures: mean changes per factor, every (activation change, prediction change) point,
and the per-input slopes."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from pytest_neuronprobe.core.formatting import finite_number, format_fixed
from pytest_neuronprobe.report.plotting import (
    FloatArray,
    PathLike,
    RunData,
    as_array,
    column_means,
    float_list,
    label_text,
    new_figure,
    placeholder,
    run_title,
    save_png,
    style_axes,
    summary_section,
    truncate,
)

MODE_LABELS = {"scale": "scale factor", "set": "value set", "add": "added delta"}
MAX_SLOPE_BARS = 30
TEXT_LABEL_CHARS = 40
#: Up to this many factors get one colour (and legend entry) each; more share a colour bar.
MAX_LEGEND_FACTORS = 12


def _patching_means(report: RunData) -> tuple[FloatArray, FloatArray, FloatArray] | None:
    """(factors, mean activation change, mean prediction change), from the arrays or else the summary."""
    patch = summary_section(report, "patching")
    pa = report.patching_arrays or {}
    factors = as_array(pa.get("factors"))
    if factors is None or factors.size == 0:
        factors = float_list(patch.get("factors"))
    if factors.size == 0:
        return None
    factors = factors.ravel()
    act = as_array(pa.get("activation_change"))
    pred = as_array(pa.get("prediction_change"))
    if (
        act is not None
        and pred is not None
        and act.ndim == 2
        and act.shape == pred.shape
        and act.shape[0] > 0
        and act.shape[1] == factors.size
    ):
        return factors, column_means(act), column_means(pred)
    mean_act = float_list(patch.get("avg_activation_changes"))
    mean_pred = float_list(patch.get("avg_prediction_changes"))
    if mean_act.size != factors.size or mean_pred.size != factors.size:
        return None
    return factors, mean_act, mean_pred


def _mode(report: RunData) -> str:
    return str(summary_section(report, "patching").get("mode") or "scale")


def plot_patching_curves(report: RunData, path: PathLike) -> Path:
    """Mean changes vs factor (left) and the mean (activation, prediction) change trajectory (right)."""
    fig = new_figure(12.5, 5.2)
    left, right = fig.subplots(1, 2)
    means = _patching_means(report)
    mode = _mode(report)
    xlabel = MODE_LABELS.get(mode, mode)
    if means is None:
        placeholder(left, "no patching data", "Mean change per factor")
        placeholder(right, "no patching data", "Change trajectory")
        fig.suptitle(f"Patching: {run_title(report)}", fontsize=14)
        return save_png(fig, path)
    factors, act, pred = means
    order = np.argsort(factors, kind="stable")
    factors, act, pred = factors[order], act[order], pred[order]
    left.plot(factors, act, "o-", color="#1f77b4", label="activation change")
    left.plot(factors, pred, "o-", color="#d62728", label="prediction change")
    left.axhline(0, color="k", linestyle="--", alpha=0.3)
    if mode == "scale":
        left.axvline(1.0, color="k", linestyle=":", alpha=0.4)
    left.set_xlabel(label_text(xlabel), fontsize=10)
    left.set_ylabel("mean change from baseline", fontsize=10)
    left.set_title("Mean change per factor", fontsize=12)
    left.legend(fontsize=9, loc="best")
    style_axes(left)

    right.plot(act, pred, "o-", color="#2ca02c", label="mean over inputs")
    finite = np.isfinite(act) & np.isfinite(pred)
    for f, a, p in zip(factors[finite], act[finite], pred[finite], strict=True):
        right.annotate(f"{f:g}", (a, p), xytext=(5, 5), textcoords="offset points", fontsize=9)
    if mode == "scale" and np.any(factors == 1.0):
        i = int(np.flatnonzero(factors == 1.0)[0])
        right.plot([act[i]], [pred[i]], "o", color="k", markersize=9, label="baseline (factor 1)")
    right.axhline(0, color="k", linestyle="--", alpha=0.3)
    right.axvline(0, color="k", linestyle="--", alpha=0.3)
    right.set_xlabel("mean activation change", fontsize=10)
    right.set_ylabel("mean prediction change", fontsize=10)
    right.set_title(f"Change trajectory (labels: {label_text(xlabel)})", fontsize=12)
    right.legend(fontsize=9, loc="best")
    style_axes(right)
    fig.suptitle(f"Patching ({label_text(mode)}): {run_title(report)}", fontsize=14)
    return save_png(fig, path)


def _points(report: RunData) -> tuple[FloatArray, FloatArray, FloatArray] | None:
    """(activation change, prediction change) as (inputs, factors) matrices, and the factors."""
    pa = report.patching_arrays or {}
    act = as_array(pa.get("activation_change"))
    pred = as_array(pa.get("prediction_change"))
    factors = as_array(pa.get("factors"))
    if act is None or pred is None or act.shape != pred.shape or act.size == 0:
        return None
    if act.ndim == 1:
        act, pred = act[:, None], pred[:, None]
    if act.ndim != 2 or factors is None or factors.ravel().size != act.shape[1]:
        return None
    return act, pred, factors.ravel()


def plot_patching_scatter(report: RunData, path: PathLike) -> Path:
    """Every (activation change, prediction change) point coloured by factor, with the pooled fit."""
    patch = summary_section(report, "patching")
    fig = new_figure(9.5, 6.8)
    ax = fig.add_subplot()
    mode = _mode(report)
    slope, intercept = finite_number(patch.get("slope")), finite_number(patch.get("intercept"))
    r2, base_r = finite_number(patch.get("r_squared")), finite_number(patch.get("baseline_correlation"))
    title = (
        f"Prediction change vs activation change: {run_title(report)}\n"
        f"pooled slope {format_fixed(slope)} · intercept {format_fixed(intercept)} · R² {format_fixed(r2)}"
        f" · baseline r {format_fixed(base_r)}"
    )
    points = _points(report)
    if points is None:
        placeholder(ax, "no per-input patching data")
        ax.set_title(title, fontsize=12)
        return save_png(fig, path)
    act, pred, factors = points
    mask = np.isfinite(act) & np.isfinite(pred)
    label = MODE_LABELS.get(mode, mode)
    _scatter_by_factor(fig, ax, act, pred, factors, mask, label)
    lines = _fit_lines(ax, act[mask], patch, slope, intercept) if mask.any() else []
    ax.axhline(0, color="k", linestyle="--", alpha=0.25)
    ax.axvline(0, color="k", linestyle="--", alpha=0.25)
    if factors.size <= MAX_LEGEND_FACTORS:
        handles, labels = ax.get_legend_handles_labels()
        legend_points = [(h, lab) for h, lab in zip(handles, labels, strict=True) if h not in lines]
        # Beside the axes (below the title), so a long title never runs into it.
        scatter_legend = ax.legend(
            [h for h, _ in legend_points],
            [lab for _, lab in legend_points],
            title=label_text(label),
            fontsize=9,
            title_fontsize=9,
            loc="upper left",
            bbox_to_anchor=(1.01, 1.0),
            borderaxespad=0.0,
        )
        ax.add_artist(scatter_legend)
    if lines:
        ax.legend(lines, [str(ln.get_label()) for ln in lines], fontsize=9, loc="lower right", framealpha=0.9)
    ax.set_xlabel("activation change", fontsize=10)
    ax.set_ylabel("prediction change", fontsize=10)
    ax.set_title(title, fontsize=12)
    style_axes(ax)
    return save_png(fig, path)


def _scatter_by_factor(
    fig: Figure, ax: Axes, act: FloatArray, pred: FloatArray, factors: FloatArray, mask: np.ndarray, label: str
) -> None:
    size = 14 if int(mask.sum()) > 1500 else 26
    cmap = colormaps["viridis"]
    if factors.size <= MAX_LEGEND_FACTORS:
        colors = cmap(np.linspace(0, 0.92, factors.size))
        for j, f in enumerate(factors):
            m = mask[:, j]
            ax.scatter(act[m, j], pred[m, j], s=size, alpha=0.7, color=colors[j], edgecolors="none", label=f"{f:g}")
    else:
        norm = Normalize(np.nanmin(factors), np.nanmax(factors))
        grid = np.broadcast_to(factors, act.shape)
        ax.scatter(act[mask], pred[mask], c=grid[mask], cmap=cmap, norm=norm, s=size, alpha=0.7, edgecolors="none")
        fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=ax, label=label_text(label))


def _fit_lines(
    ax: Axes, act: FloatArray, patch: Mapping[str, object], slope: float | None, intercept: float | None
) -> list[Line2D]:
    """The pooled fit and the direct-path line, over the range of the finite activation changes."""
    lines: list[Line2D] = []
    xs = np.linspace(act.min(), act.max(), 2)
    if slope is not None:
        (line,) = ax.plot(
            xs, slope * xs + (intercept or 0.0), color="#d62728", linewidth=2, label=f"pooled fit (slope {slope:.3f})"
        )
        lines.append(line)
    direct = finite_number(patch.get("direct_slope"))
    if direct is not None:
        d_int = finite_number(patch.get("direct_intercept")) or 0.0
        (line,) = ax.plot(
            xs,
            direct * xs + d_int,
            color="#24292f",
            linestyle="--",
            linewidth=1.6,
            label=f"direct path (slope {direct:.3f})",
        )
        lines.append(line)
    return lines


def _per_input_entries(report: RunData) -> list[Mapping[str, object]]:
    entries = summary_section(report, "patching").get("per_input") or []
    return [e for e in entries if isinstance(e, Mapping)] if isinstance(entries, Iterable) else []


def plot_per_input_slopes(report: RunData, path: PathLike) -> Path:
    """Horizontal bars of per-input slopes (the most extreme 30), coloured by per-input R²."""
    patch = summary_section(report, "patching")
    read = [
        (str(e.get("text", "")), finite_number(e.get("slope")), finite_number(e.get("r_squared")))
        for e in _per_input_entries(report)
    ]
    undefined = sum(1 for _, s, _ in read if s is None)
    defined = sorted(((t, s, r) for t, s, r in read if s is not None), key=lambda e: e[1])
    total = len(defined)
    if total > MAX_SLOPE_BARS:
        half = MAX_SLOPE_BARS // 2
        shown = defined[:half] + defined[-(MAX_SLOPE_BARS - half) :]
    else:
        shown = defined
    height = max(3.2, 0.3 * len(shown) + 1.8)
    fig = new_figure(10.5, height)
    ax = fig.add_subplot()
    subtitle = f"{total} input{'s' if total != 1 else ''}"
    if total > len(shown):
        subtitle += (
            f", showing the {len(shown)} most extreme ({len(shown) // 2} lowest, "
            f"{len(shown) - len(shown) // 2} highest)"
        )
    if undefined:
        subtitle += f", {undefined} undefined"
    title = f"Per-input slopes: {run_title(report)}\n{subtitle}"
    if not shown:
        placeholder(ax, "no per-input slopes")
        ax.set_title(title, fontsize=12)
        return save_png(fig, path)
    cmap = colormaps["viridis"]
    norm = Normalize(0.0, 1.0)
    colors = [cmap(norm(r)) if r is not None else "#bbbbbb" for _, _, r in shown]
    y = np.arange(len(shown))
    ax.barh(y, [s for _, s, _ in shown], color=colors, edgecolor="none", height=0.75)
    ax.set_yticks(y, [label_text(truncate(t, TEXT_LABEL_CHARS)) for t, _, _ in shown], fontsize=8.5)
    ax.axvline(0, color="k", linewidth=0.8)
    pooled = finite_number(patch.get("slope"))
    if pooled is not None:
        ax.axvline(pooled, color="#d62728", linestyle="--", linewidth=1.6, label=f"pooled slope {pooled:.3f}")
        ax.legend(fontsize=9, loc="lower right", framealpha=0.9)
    if total > len(shown) and len(shown) >= 2:
        ax.axhline(len(shown) // 2 - 0.5, color="#8c959f", linestyle=":", linewidth=1)
    ax.set_ylim(-0.6, len(shown) - 0.4)
    fig.colorbar(
        ScalarMappable(norm=norm, cmap=cmap),
        ax=ax,
        label="per-input R²",
        shrink=0.6 if len(shown) > 12 else 1.0,
        aspect=25,
        fraction=0.04,
    )
    ax.set_xlabel("slope of prediction change on activation change", fontsize=10)
    ax.set_title(title, fontsize=12)
    ax.grid(True, axis="x", alpha=0.3)
    ax.tick_params(axis="x", labelsize=9)
    return save_png(fig, path)


# ---------------------------------------------------------------- whether a run has the data


def has_patching_means(report: RunData) -> bool:
    """Factors with mean changes (from the arrays or the summary)."""
    return _patching_means(report) is not None


def has_patching_arrays(report: RunData) -> bool:
    """Per-input activation changes."""
    act = as_array((report.patching_arrays or {}).get("activation_change"))
    return act is not None and act.size > 0


def has_per_input_slopes(report: RunData) -> bool:
    """At least one defined per-input slope."""
    return any(finite_number(e.get("slope")) is not None for e in _per_input_entries(report))
