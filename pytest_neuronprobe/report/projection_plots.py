"""The projection figures: each projection against the ground truth, their correlation matrix, and the
null distribution of |r| for random directions."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle

from pytest_neuronprobe.analyses.options import NAMES
from pytest_neuronprobe.analyses.stats import pearson
from pytest_neuronprobe.core.formatting import UNDEFINED, format_fixed, format_interval, format_p_value
from pytest_neuronprobe.report.plotting import (
    FloatArray,
    PathLike,
    RunData,
    absent_reason,
    as_array,
    first_number,
    label_text,
    line_fit,
    new_figure,
    placeholder,
    run_title,
    save_png,
    style_axes,
    summary_section,
)

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
#: Panels shown only when the run has their array; the others say why they are absent.
OPTIONAL_PANELS = ("prediction", "live")


def plot_projection(report: RunData, path: PathLike) -> Path:
    """Scatter each projection against the ground-truth activation, with fit line and stats box."""
    arrays = report.projection_arrays or {}
    stats = summary_section(report, "projections")
    truth = as_array(arrays.get("ground_truth"))
    names = [n for n in NAMES if n in arrays or n not in OPTIONAL_PANELS]
    ncols = 2 if len(names) <= 4 else 3
    nrows = math.ceil(len(names) / ncols)
    fig = new_figure(5.0 * ncols, 4.3 * nrows + 0.5)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for ax, name in zip(axes.flat, names, strict=False):  # more axes than panels
        _projection_panel(ax, name, as_array(arrays.get(name)), truth, stats.get(name), report)
    for ax in list(axes.flat)[len(names) :]:
        fig.delaxes(ax)
    fig.suptitle(f"Projections vs ground truth: {run_title(report)}", fontsize=14)
    return save_png(fig, path)


def _projection_panel(
    ax: Axes,
    name: str,
    x: FloatArray | None,
    y: FloatArray | None,
    stats: object,
    report: RunData,
) -> None:
    title = PROJECTION_TITLES.get(name, name)
    if x is None:
        placeholder(ax, f"absent: {absent_reason(report, name)}", title)
        return
    if y is None:
        placeholder(ax, "absent: no ground-truth activations", title)
        return
    x, y = x.ravel(), y.ravel()
    if x.shape != y.shape:
        placeholder(ax, f"absent: {x.size} values vs {y.size} ground-truth values", title)
        return
    mask = np.isfinite(x) & np.isfinite(y)
    if not mask.any():
        placeholder(ax, "no finite data", title)
        return
    n = int(mask.sum())
    ax.scatter(
        x[mask], y[mask], s=12 if n > 300 else 22, alpha=0.45, color="#1f77b4", edgecolors="none", rasterized=n > 5000
    )
    fit = line_fit(x, y)
    if fit is not None:
        xs = np.linspace(x[mask].min(), x[mask].max(), 2)
        ax.plot(xs, fit[0] * xs + fit[1], color="#d62728", linewidth=1.8)
    s = stats if isinstance(stats, Mapping) else {}
    box = "\n".join(
        [
            f"r = {format_fixed(s.get('correlation'))}",
            f"95% CI {format_interval(s.get('ci_low'), s.get('ci_high')) or UNDEFINED}",
            f"R² = {format_fixed(s.get('r_squared'))}",
            f"p = {format_p_value(s.get('p_value'))}",
            f"ρ = {format_fixed(s.get('spearman'))}",
            f"n = {format_fixed(s.get('n'))}",
        ]
    )
    handle = Line2D([], [], linestyle="none")
    ax.legend([handle], [box], loc="best", handlelength=0, handletextpad=0, fontsize=9, framealpha=0.85, borderpad=0.6)
    ax.set_title(title, fontsize=12)
    ax.set_xlabel(PROJECTION_LABELS.get(name, name), fontsize=10)
    ax.set_ylabel(PROJECTION_LABELS["ground_truth"], fontsize=10)
    style_axes(ax)


def _aligned_arrays(report: RunData) -> tuple[list[str], list[FloatArray]]:
    """The non-empty projection arrays with as many values as the first one, ground truth first."""
    arrays = report.projection_arrays or {}
    order = ["ground_truth", *NAMES]
    order += sorted(k for k in arrays if k not in order)
    read = [(k, as_array(arrays.get(k))) for k in order if k in arrays]
    present = [(k, a.ravel()) for k, a in read if a is not None and a.size > 0]
    if not present:
        return [], []
    ref = present[0][1].size
    kept = [(k, a) for k, a in present if a.size == ref]
    return [k for k, _ in kept], [a for _, a in kept]


def plot_correlation_heatmap(report: RunData, path: PathLike) -> Path:
    """Annotated Pearson correlation matrix of the per-text projection arrays."""
    names, arrays = _aligned_arrays(report)
    k = len(names)
    size = max(5.0, 1.0 * k + 2.6)
    fig = new_figure(size + 1.0, size)
    ax = fig.add_subplot()
    if k < 2:
        placeholder(ax, "need at least two projection arrays", "Correlation matrix")
        return save_png(fig, path)
    matrix = np.full((k, k), np.nan)
    for i in range(k):
        for j in range(i, k):
            r = pearson(arrays[i], arrays[j])
            matrix[i, j] = matrix[j, i] = np.nan if r is None else r
    # Undefined cells are white and hatched: a grey would read as r ≈ 0 on coolwarm.
    cmap = colormaps["coolwarm"].with_extremes(bad="white")
    image = ax.imshow(np.ma.masked_invalid(matrix), cmap=cmap, vmin=-1, vmax=1)
    fontsize = 10 if k <= 6 else 8
    for i in range(k):
        for j in range(k):
            v = matrix[i, j]
            if np.isnan(v):
                ax.add_patch(
                    Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, hatch="///", edgecolor="#d0d7de", linewidth=0)
                )
                ax.text(
                    j,
                    i,
                    UNDEFINED,
                    ha="center",
                    va="center",
                    fontsize=fontsize - 2,
                    color="#24292f",
                    style="italic",
                    bbox={"facecolor": "white", "edgecolor": "none", "pad": 1.5},
                )
            else:
                ax.text(
                    j,
                    i,
                    f"{v:.3f}",
                    ha="center",
                    va="center",
                    fontsize=fontsize,
                    color="white" if abs(v) > 0.6 else "#24292f",
                )
    labels = [label_text(n) for n in names]
    ax.set_xticks(range(k), labels, rotation=35, ha="right", rotation_mode="anchor", fontsize=10)
    ax.set_yticks(range(k), labels, fontsize=10)
    ax.tick_params(length=0)
    fig.colorbar(image, ax=ax, shrink=0.8, label="Pearson r")
    n = arrays[0].size
    ax.set_title(f"Correlation matrix (n = {n})\n{run_title(report)}", fontsize=12)
    return save_png(fig, path)


def _observed_abs_r(report: RunData) -> float | None:
    null = summary_section(report, "null")
    observed = first_number(null, ("observed_abs_r", "observed", "observed_r"))
    if observed is None:
        head = summary_section(report, "projections").get("head")
        observed = first_number(head, ("correlation",))
    return None if observed is None else abs(observed)


def plot_null(report: RunData, path: PathLike) -> Path:
    """Histogram of null |r| values with the observed head |r| and the null's 95th percentile."""
    null = summary_section(report, "null")
    random = null.get("random")
    if isinstance(random, dict):  # summary.json nests the random-direction null under "random"
        null = random
    read = as_array(report.null_values)
    values = read.ravel()[np.isfinite(read.ravel())] if read is not None else np.array([])
    fig = new_figure(9.0, 5.4)
    ax = fig.add_subplot()
    p = first_number(null, ("empirical_p", "p_value", "p_empirical", "p"))
    selectivity = first_number(null, ("selectivity",))
    title = (
        f"Null: |r| of {values.size} {label_text(report.null_label)}: {run_title(report)}\n"
        f"empirical p = {format_fixed(p, '.4g')} · selectivity = {format_fixed(selectivity, '.3f')}"
    )
    if values.size == 0:
        placeholder(ax, "no null values")
        ax.set_title(title, fontsize=12)
        return save_png(fig, path)
    observed = _observed_abs_r(report)
    q95 = float(np.percentile(values, 95))
    top = float(values.max())
    bins = np.linspace(0.0, top * 1.02 if top > 0 else 1.0, int(np.clip(np.sqrt(values.size), 10, 40)) + 1)
    ax.hist(
        values,
        bins=bins.tolist(),
        color="#8c959f",
        edgecolor="white",
        linewidth=0.3,
        label=label_text(report.null_label),
    )
    ax.axvline(q95, color="#bf8700", linestyle="--", linewidth=1.8, label=f"null 95th percentile = {q95:.3f}")
    if observed is not None:
        ax.axvline(observed, color="#d62728", linewidth=2.2, label=f"observed |r| (head) = {observed:.3f}")
    else:
        ax.text(
            0.98,
            0.95,
            f"observed |r|: {UNDEFINED}",
            ha="right",
            va="top",
            transform=ax.transAxes,
            fontsize=10,
            color="#d62728",
        )
    ax.set_xlabel("|Pearson r| with ground truth", fontsize=10)
    ax.set_ylabel("count", fontsize=10)
    ax.set_title(title, fontsize=12)
    ax.legend(fontsize=9, loc="best")
    style_axes(ax)
    return save_png(fig, path)


# ---------------------------------------------------------------- whether a run has the data


def has_projection(report: RunData) -> bool:
    """Ground truth and at least one projection array."""
    arrays = report.projection_arrays or {}
    truth = as_array(arrays.get("ground_truth"))
    return truth is not None and truth.size > 0 and any(as_array(arrays.get(n)) is not None for n in NAMES)


def has_correlation(report: RunData) -> bool:
    """At least two aligned arrays of at least two values."""
    names, arrays = _aligned_arrays(report)
    return len(names) >= 2 and arrays[0].size >= 2


def has_null(report: RunData) -> bool:
    """At least one finite null value."""
    values = as_array(report.null_values)
    return values is not None and bool(np.isfinite(values).any())
