"""Patching's fits (SPEC §4): prediction change on activation change, pooled and per text, and the result."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TypedDict

import numpy as np

from pytest_neuronprobe.analyses.fits import LinearFit, bootstrap_slopes, fit_line
from pytest_neuronprobe.analyses.options import PatchingOptions
from pytest_neuronprobe.analyses.stats import (
    FloatArray,
    Number,
    Undefined,
    as_number,
    correlate,
    finite_or_none,
    put_number,
)
from pytest_neuronprobe.core.formatting import format_3f
from pytest_neuronprobe.core.probe import Probe


class PatchingArrays(TypedDict):
    """The per-(text, factor) values behind a patching result (for plots and the report)."""

    texts: list[str]
    factors: FloatArray
    activation: FloatArray
    prediction: FloatArray
    patched_activation: FloatArray
    patched_prediction: FloatArray
    activation_change: FloatArray
    prediction_change: FloatArray
    direct_per_text: FloatArray


@dataclass(frozen=True)
class PerInput:
    """One text's own fit of prediction change on activation change."""

    text: str
    slope: float | Undefined
    r_squared: float | Undefined
    direct_slope: float | Undefined

    def as_dict(self) -> dict[str, object]:
        d: dict[str, object] = {"text": self.text}
        for name in ("slope", "r_squared", "direct_slope"):
            put_number(d, name, getattr(self, name))
        return d


@dataclass(frozen=True)
class PatchingResult:
    """Pooled and per-text effects of patching the neuron on the head's prediction."""

    run_name: str
    mode: str
    factors: tuple[float, ...]
    n_texts: int
    fit: LinearFit
    baseline_correlation: float | Undefined
    direct: LinearFit
    avg_activation_changes: tuple[float, ...]
    avg_prediction_changes: tuple[float, ...]
    per_input: tuple[PerInput, ...] = field(repr=False)
    options: dict[str, object] = field(repr=False)
    arrays: PatchingArrays = field(repr=False, compare=False)

    @property
    def slope(self) -> float | Undefined:
        return self.fit.slope

    @property
    def intercept(self) -> float | Undefined:
        return self.fit.intercept

    @property
    def r_squared(self) -> float | Undefined:
        return self.fit.r_squared

    @property
    def slope_ci(self) -> tuple[Number, Number]:
        return self.fit.ci

    @property
    def direct_slope(self) -> float | Undefined:
        """The slope the direct path alone predicts (neuron output → head, linearised per text)."""
        return self.direct.slope

    @property
    def direct_fraction(self) -> float | Undefined:
        if isinstance(self.slope, float) and isinstance(self.direct_slope, float) and self.slope != 0:
            return self.direct_slope / self.slope
        return Undefined("slope is zero or undefined")

    def as_dict(self) -> dict[str, object]:
        """The `patching` part of summary.json (SPEC §5), plus extras; each null number has its `<name>_reason`."""
        d: dict[str, object] = {"mode": self.mode, "factors": list(self.factors), "n_texts": self.n_texts}
        put_number(d, "baseline_correlation", self.baseline_correlation)
        for name, value in (("slope", self.fit.slope), ("intercept", self.fit.intercept)):
            put_number(d, name, value)
        put_number(d, "r_squared", self.fit.r_squared)
        put_number(d, "slope_ci_low", self.fit.ci_low)
        put_number(d, "slope_ci_high", self.fit.ci_high)
        d["avg_activation_changes"] = [finite_or_none(v) for v in self.avg_activation_changes]
        d["avg_prediction_changes"] = [finite_or_none(v) for v in self.avg_prediction_changes]
        d["per_input"] = [p.as_dict() for p in self.per_input]
        put_number(d, "direct_slope", self.direct.slope)
        put_number(d, "direct_fraction", self.direct_fraction)
        d["options"] = dict(self.options)
        return d

    def __repr__(self) -> str:
        return (
            f"PatchingResult({self.run_name!r}, {self.mode} x{len(self.factors)}, n={self.n_texts}, "
            f"slope={format_3f(self.slope)} ci=[{format_3f(self.fit.ci_low)}, {format_3f(self.fit.ci_high)}], "
            f"R²={format_3f(self.r_squared)}, direct={format_3f(self.direct_slope)})"
        )


def patching_result(
    probe: Probe,
    texts: Sequence[str],
    used_split: str,
    sweep: Mapping[str, FloatArray],
    options: PatchingOptions,
    no_direct_path: str | None = None,
) -> PatchingResult:
    """Fits and summaries from a sweep's per-(text, factor) values; `no_direct_path`: why the direct path is
    undefined (`patching.direct_reason`)."""
    act0, pred0, act, pred, slopes = (
        sweep[k] for k in ("activation", "prediction", "patched_activation", "patched_prediction", "direct_per_text")
    )
    d_act, d_pred = act - act0[:, None], pred - pred0[:, None]
    T = d_act.shape[0]
    fit = _slope_fit(d_act, d_pred, options)
    direct = _direct_fit(d_act, slopes, no_direct_path)
    per_input = _per_input(texts, d_act, d_pred, slopes)
    base = correlate(act0, pred0, n_resamples=0, x_name="baseline activation", y_name="baseline prediction")
    factors = options.values
    summary_options = {
        **{k: v for k, v in dataclasses.asdict(options).items() if k != "texts"},
        "factors": list(factors),
        "split": used_split,
        "n_texts": T,
    }
    arrays = PatchingArrays(
        texts=list(texts),
        factors=np.array(factors),
        activation=act0,
        prediction=pred0,
        patched_activation=act,
        patched_prediction=pred,
        activation_change=d_act,
        prediction_change=d_pred,
        direct_per_text=slopes,
    )
    return PatchingResult(
        run_name=probe.run.name,
        mode=options.mode,
        factors=factors,
        n_texts=T,
        fit=fit,
        baseline_correlation=base.r,
        direct=direct,
        avg_activation_changes=tuple(float(v) for v in d_act.mean(0)),
        avg_prediction_changes=tuple(float(v) for v in d_pred.mean(0)),
        per_input=per_input,
        options=summary_options,
        arrays=arrays,
    )


def _slope_fit(d_act: FloatArray, d_pred: FloatArray, options: PatchingOptions) -> LinearFit:
    """The pooled fit of prediction change on activation change, with its cluster-bootstrap interval (texts)."""
    T, F = d_act.shape
    fit = fit_line(d_act.ravel(), d_pred.ravel())
    if not (fit.defined and options.n_resamples > 0 and T > 1):
        return fit
    groups = np.repeat(np.arange(T), F)
    boot = bootstrap_slopes(d_act.ravel(), d_pred.ravel(), groups, n_resamples=options.n_resamples, seed=options.seed)
    if boot is None:
        return fit
    lo, hi = boot.interval(0.95)
    ci_low, ci_high = as_number(lo, "not computed"), as_number(hi, "not computed")
    return replace(fit, ci_low=ci_low, ci_high=ci_high, se=boot.se, bootstrap=boot.t_sorted)


def _direct_fit(d_act: FloatArray, slopes: FloatArray, no_direct_path: str | None) -> LinearFit:
    """The pooled fit of the direct path's linearised changes; undefined with the reason where it has none."""
    direct = fit_line(d_act.ravel(), (slopes[:, None] * d_act).ravel())
    if no_direct_path is None:
        return direct
    why = Undefined(no_direct_path)
    return LinearFit(why, why, why, n=direct.n, reason=no_direct_path)


def _per_input(texts: Sequence[str], d_act: FloatArray, d_pred: FloatArray, slopes: FloatArray) -> tuple[PerInput, ...]:
    """Each text's own fit of prediction change on activation change, and its direct-path slope."""
    per_input = []
    for i in range(len(d_act)):
        own = fit_line(d_act[i], d_pred[i])
        per_input.append(
            PerInput(
                text=texts[i],
                slope=own.slope,
                r_squared=own.r_squared,
                direct_slope=float(slopes[i]) if np.isfinite(slopes[i]) else Undefined("no direct path"),
            )
        )
    return tuple(per_input)
