"""What every figure shares: the run data it reads (:class:`RunData`), tolerant readers of that data,
matplotlib-safe text, and the figure plumbing (new figure, placeholder panel, PNG save).

Figures are drawn on ``matplotlib.figure.Figure`` objects with the Agg canvas, never through pyplot's
global state, so they are safe to call from threads and worker processes.
"""

from __future__ import annotations

import functools
import io
import os
import re
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol, TypeAlias

import numpy as np
import numpy.typing as npt
from matplotlib import rc_context
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.legend import Legend
from matplotlib.text import Text
from matplotlib.transforms import Bbox

from pytest_neuronprobe.core.atomic import write_bytes_atomic
from pytest_neuronprobe.core.formatting import finite_number

FloatArray: TypeAlias = npt.NDArray[np.float64]
#: Where a figure is written.
PathLike: TypeAlias = "str | os.PathLike[str]"

DPI = 110
#: PIL's PNG options (zlib level 3, not its default 6: ~7% larger files, a little faster to write).
PNG_OPTIONS = {"compress_level": 3}
#: Space kept around text that reaches beyond the figure.
PAD_INCHES = 0.15


class RunData(Protocol):
    """What the figures and index.html read about one run (:class:`report.files.RunReport` is the one
    implementation; a protocol so that the figures need not import the module that writes them)."""

    @property
    def name(self) -> str: ...

    @property
    def summary(self) -> Mapping[str, object]: ...

    @property
    def projection_arrays(self) -> Mapping[str, object] | None: ...

    @property
    def patching_arrays(self) -> Mapping[str, object] | None: ...

    @property
    def null_values(self) -> npt.ArrayLike | None: ...

    @property
    def null_label(self) -> str: ...


# ---------------------------------------------------------------- reading the run data


def as_array(value: object) -> FloatArray | None:
    """``value`` as a float array; None when it is None or not numeric."""
    if value is None:
        return None
    try:
        return np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        return None


def float_list(values: object) -> FloatArray:
    """A JSON list of numbers (None allowed) as a float array with NaN for undefined entries."""
    if not isinstance(values, (list, tuple, np.ndarray)):
        return np.array([], dtype=float)
    return np.array([np.nan if finite_number(v) is None else finite_number(v) for v in values], dtype=float)


def first_number(mapping: object, keys: Sequence[str]) -> float | None:
    """The first finite number among ``mapping[key]`` for ``keys``."""
    if not isinstance(mapping, Mapping):
        return None
    for key in keys:
        if key in mapping:
            value = finite_number(mapping[key])
            if value is not None:
                return value
    return None


def summary_section(report: RunData, key: str) -> dict[str, object]:
    """A copy of the summary's ``key`` section ({} when it is missing or not a mapping)."""
    value = report.summary.get(key) if isinstance(report.summary, Mapping) else None
    return dict(value) if isinstance(value, Mapping) else {}


def absent_reason(report: RunData, name: str) -> str:
    """Why the projection ``name`` is absent from this run."""
    entry = summary_section(report, "projections").get(name)
    if isinstance(entry, Mapping):
        for key in ("absent", "reason", "absent_reason"):
            reason = entry.get(key)
            if isinstance(reason, str) and reason:
                return reason
    absent = report.summary.get("absent") if isinstance(report.summary, Mapping) else None
    if isinstance(absent, Mapping) and isinstance(absent.get(name), str):
        return str(absent[name])
    return "not computed for this run"


def column_means(matrix: FloatArray) -> FloatArray:
    """Column means ignoring non-finite entries (NaN where a column has none), without warnings."""
    finite = np.isfinite(matrix)
    counts = finite.sum(axis=0)
    sums = np.where(finite, matrix, 0.0).sum(axis=0)
    out = np.full(matrix.shape[1], np.nan)
    np.divide(sums, counts, out=out, where=counts > 0)
    return out


def line_fit(x: FloatArray, y: FloatArray) -> tuple[float, float] | None:
    """Least-squares (slope, intercept) over the finite pairs; None without two distinct x values."""
    mask = np.isfinite(x) & np.isfinite(y)
    if mask.sum() < 2 or np.ptp(x[mask]) == 0:
        return None
    slope, intercept = np.polyfit(x[mask], y[mask], 1)
    return float(slope), float(intercept)


# ---------------------------------------------------------------- text for matplotlib


@functools.lru_cache(maxsize=4096)
def _has_glyph(char: str) -> bool:
    from matplotlib.font_manager import FontProperties, findfont, get_font

    try:
        return bool(get_font(findfont(FontProperties())).get_char_index(ord(char)) != 0)
    except Exception:  # noqa: BLE001 - no usable font: fall back to ASCII
        return char.isascii()


def label_text(text: object) -> str:
    """Text safe for a matplotlib label: one line, no mathtext, no glyph-missing warnings."""
    s = re.sub(r"\s+", " ", str(text)).strip()
    s = "".join(c if c == " " or _has_glyph(c) else "?" for c in s)
    return s.replace("$", r"\$")


def truncate(text: str, limit: int) -> str:
    """``text`` on one line, cut to ``limit`` characters with an ellipsis."""
    s = re.sub(r"\s+", " ", str(text)).strip()
    return s if len(s) <= limit else s[: limit - 1] + "…"


def _multiline(text: str, width: int) -> str:
    return "\n".join(label_text(line) for line in textwrap.wrap(str(text), width) or [""])


def run_title(report: RunData) -> str:
    """``layer 8, neuron 481, gpt2  —  <run name>`` (the parts the summary knows)."""
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
    return label_text(head)


# ---------------------------------------------------------------- figure plumbing


def new_figure(width: float, height: float) -> Figure:
    """A constrained-layout figure on its own Agg canvas."""
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save_png(fig: Figure, path: PathLike) -> Path:
    """Write ``fig`` as a PNG atomically, laid out and drawn once.

    Text that the layout leaves outside the figure (a long title, a legend beside the axes) widens the
    image instead of being clipped.
    """
    buf = io.BytesIO()
    box = _content_box(fig)
    fig.savefig(buf, format="png", dpi=DPI, facecolor="white", bbox_inches=box, pil_kwargs=PNG_OPTIONS)
    return write_bytes_atomic(path, buf.getvalue())


def _content_box(fig: Figure) -> Bbox | None:
    """Lay ``fig`` out (then switch its layout engine off, so that savefig draws it just once) and return
    the box in inches holding the figure and any text reaching beyond it (None: the figure holds all)."""
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]  # new_figure's Agg canvas
    engine = fig.get_layout_engine()
    if engine is not None:
        engine.execute(fig)
        with rc_context({"figure.autolayout": False, "figure.constrained_layout.use": False}):
            fig.set_layout_engine(None)
    outer: list[Artist] = [*fig.texts, *fig.legends]
    for ax in fig.axes:
        outer += [ax.title, *ax.texts]  # (no left or right titles here)
        outer += [a for a in ax.get_children() if isinstance(a, Legend)]
    extents = [
        a.get_window_extent(renderer)
        for a in outer
        if a.get_visible() and not (isinstance(a, Text) and not a.get_text())
    ]
    whole = Bbox.union([fig.bbox, *extents])
    if whole.width <= fig.bbox.width + 1 and whole.height <= fig.bbox.height + 1:
        return None
    pad = PAD_INCHES * fig.dpi
    return whole.padded(pad).transformed(fig.dpi_scale_trans.inverted())


def placeholder(ax: Axes, message: str, title: str | None = None) -> None:
    """A grey panel saying why there is nothing to plot."""
    if title:
        ax.set_title(label_text(title), fontsize=12)
    ax.text(
        0.5,
        0.5,
        _multiline(message, 38),
        ha="center",
        va="center",
        fontsize=11,
        color="#57606a",
        transform=ax.transAxes,
    )
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_color("#d0d7de")
    ax.set_facecolor("#f6f8fa")


def style_axes(ax: Axes) -> None:
    """The grid and tick size every data panel uses."""
    ax.grid(True, alpha=0.3)
    ax.tick_params(labelsize=9)
