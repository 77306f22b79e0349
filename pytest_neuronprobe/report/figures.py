"""Which figures a run report has: one :class:`PlotFile` per PNG (the plots themselves live in
``projection_plots`` and ``patching_plots``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from pytest_neuronprobe.report.attribution_plots import has_attribution, plot_attribution
from pytest_neuronprobe.report.patching_plots import (
    has_patching_arrays,
    has_patching_means,
    has_per_input_slopes,
    plot_patching_curves,
    plot_patching_scatter,
    plot_per_input_slopes,
)
from pytest_neuronprobe.report.plotting import PathLike, RunData
from pytest_neuronprobe.report.projection_plots import (
    has_correlation,
    has_null,
    has_projection,
    plot_correlation_heatmap,
    plot_null,
    plot_projection,
)


class PlotFile(NamedTuple):
    """One figure of a run report."""

    key: str  # its key in write_run_report's result
    filename: str
    title: str
    has_data: Callable[[RunData], bool]
    plot: Callable[[RunData, PathLike], Path]
    #: What the figure reads besides the run's name and the summary's "run" section (its title): the
    #: RunData fields and the summary sections. Its cache key is a digest of exactly these.
    fields: tuple[str, ...] = ()
    sections: tuple[str, ...] = ()


_PROJECTION = ("projection_arrays",)
_PATCHING = ("patching_arrays",)
PLOT_FILES: tuple[PlotFile, ...] = (
    PlotFile(
        "projection",
        "projection.png",
        "Projections vs ground truth",
        has_projection,
        plot_projection,
        _PROJECTION,
        ("projections", "absent"),
    ),
    PlotFile(
        "correlation",
        "projection_correlation.png",
        "Correlation matrix of projections",
        has_correlation,
        plot_correlation_heatmap,
        _PROJECTION,
    ),
    PlotFile(
        "patching_curves",
        "patching_curves.png",
        "Patching: mean changes per factor",
        has_patching_means,
        plot_patching_curves,
        _PATCHING,
        ("patching",),
    ),
    PlotFile(
        "patching_scatter",
        "patching_scatter.png",
        "Patching: prediction change vs activation change",
        has_patching_arrays,
        plot_patching_scatter,
        _PATCHING,
        ("patching",),
    ),
    PlotFile(
        "per_input_slopes",
        "per_input_slopes.png",
        "Patching: per-input slopes",
        has_per_input_slopes,
        plot_per_input_slopes,
        _PATCHING,
        ("patching",),
    ),
    PlotFile(
        "attribution",
        "attribution.png",
        "Attribution: what the head reads",
        has_attribution,
        plot_attribution,
        (),
        ("attribution",),
    ),
    PlotFile(
        "null",
        "null.png",
        "Null distribution",
        has_null,
        plot_null,
        ("null_values", "null_label"),
        ("null", "projections"),
    ),
)
#: Figure key -> its title (index.html's captions and table of contents).
FIGURE_TITLES = {p.key: p.title for p in PLOT_FILES}
