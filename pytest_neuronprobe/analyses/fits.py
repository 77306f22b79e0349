"""Least-squares line fits (patching's slope, SPEC §4) and a cluster bootstrap of the slope."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from pytest_neuronprobe.analyses.intervals import resample_counts, t_p_value
from pytest_neuronprobe.analyses.stats import (
    Number,
    Undefined,
    as_1d_pair,
    as_number,
    check_confidence,
    finite_or_none,
    is_constant,
    nonfinite_reason,
)
from pytest_neuronprobe.core.formatting import format_interval, format_spec


@dataclass(frozen=True)
class LinearFit:
    """Ordinary least-squares line ``y = intercept + slope * x`` with an optional slope interval."""

    slope: Number
    intercept: Number
    r_squared: Number
    n: int
    ci_low: Number = field(default_factory=lambda: Undefined("not computed"))
    ci_high: Number = field(default_factory=lambda: Undefined("not computed"))
    reason: str | None = None
    #: The studentized bootstrap behind the interval: the slope's cluster-robust se and the sorted t*.
    se: float = field(default=math.nan, repr=False, compare=False)
    bootstrap: npt.NDArray[np.float64] = field(default_factory=lambda: np.empty(0), repr=False, compare=False)

    def __post_init__(self) -> None:
        why = self.reason or "undefined"
        for name in ("slope", "intercept", "r_squared"):
            object.__setattr__(self, name, as_number(getattr(self, name), why))
        for name in ("ci_low", "ci_high"):
            object.__setattr__(self, name, as_number(getattr(self, name), "not computed"))
        object.__setattr__(self, "n", int(self.n))
        if isinstance(self.slope, Undefined) and self.reason is None:
            object.__setattr__(self, "reason", self.slope.reason)

    @property
    def defined(self) -> bool:
        """True when the slope exists."""
        return not isinstance(self.slope, Undefined)

    @property
    def ci(self) -> tuple[Number, Number]:
        """The slope interval as ``(low, high)``."""
        return (self.ci_low, self.ci_high)

    def p_beyond(self, threshold: float, side: str) -> float:
        """One-sided bootstrap p-value of ``slope >= threshold`` (``side="lower"``) or ``<=`` (``"upper"``),
        inverting the studentized interval (floor ``1/B``); 1 without a bootstrap."""
        if not isinstance(self.slope, float) or (self.bootstrap.size == 0 and self.se != 0.0):
            return 1.0
        return t_p_value(self.slope, self.se, self.bootstrap, threshold, side)

    def as_dict(self) -> dict[str, Any]:
        """Undefined numbers are ``None``; ``reason`` only when the slope is undefined."""
        d: dict[str, Any] = {
            "slope": finite_or_none(self.slope),
            "intercept": finite_or_none(self.intercept),
            "r_squared": finite_or_none(self.r_squared),
            "n": self.n,
            "ci_low": finite_or_none(self.ci_low),
            "ci_high": finite_or_none(self.ci_high),
        }
        if not self.defined:
            d["reason"] = self.reason
        return d

    def __repr__(self) -> str:
        if not self.defined:
            return f"LinearFit(undefined — {self.reason}, n={self.n})"
        parts = [f"slope={self.slope:.3g}"]
        ci = format_interval(self.ci_low, self.ci_high, ".3g")
        if ci is not None:
            parts.append(f"ci={ci}")
        parts.append(f"R²={format_spec(self.r_squared, '.3g')}")
        parts.append(f"n={self.n}")
        return f"LinearFit({', '.join(parts)})"


def fit_line(
    x: npt.ArrayLike,
    y: npt.ArrayLike,
    *,
    groups: npt.ArrayLike | None = None,
    n_resamples: int = 1000,
    seed: int | None = 0,
    confidence: float = 0.95,
    x_name: str = "activation change",
    y_name: str = "prediction change",
) -> LinearFit:
    """Least-squares fit of ``y`` on ``x`` with intercept; ``r_squared = 1 - SS_res/SS_tot``.

    A constant ``y`` gives slope exactly 0 and an undefined ``r_squared``; a constant ``x``,
    fewer than 2 points or non-finite values leave everything undefined. With ``groups`` the
    slope interval is a cluster bootstrap over groups (:func:`bootstrap_slope_ci`).
    """
    xa, ya = as_1d_pair(x, y, x_name, y_name)
    n = int(xa.size)
    reason = nonfinite_reason(xa, ya, x_name, y_name)
    if reason is None and n < 2:
        reason = "fewer than 2 points"
    if reason is None and is_constant(xa):
        reason = f"constant {x_name}"
    if reason is not None:
        u = Undefined(reason)
        return LinearFit(u, u, u, n, reason=reason)

    ci_low: Number = Undefined("not computed")
    ci_high: Number = ci_low
    if groups is not None:
        lo, hi = bootstrap_slope_ci(xa, ya, groups, n_resamples=n_resamples, seed=seed, confidence=confidence)
        if lo is not None and hi is not None:
            ci_low, ci_high = lo, hi
        else:
            ci_low = ci_high = Undefined("cluster bootstrap undefined")

    if is_constant(ya):
        return LinearFit(0.0, float(ya[0]), Undefined(f"constant {y_name}"), n, ci_low=ci_low, ci_high=ci_high)
    xm, ym = xa.mean(), ya.mean()
    dx, dy = xa - xm, ya - ym
    slope = float(np.dot(dx, dy) / np.dot(dx, dx))
    intercept = float(ym - slope * xm)
    resid = ya - (intercept + slope * xa)
    ss_res, ss_tot = float(np.dot(resid, resid)), float(np.dot(dy, dy))
    r2: Number = min(1.0, max(0.0, 1.0 - ss_res / ss_tot)) if ss_tot > 0 else Undefined(f"constant {y_name}")
    return LinearFit(slope, intercept, r2, n, ci_low=ci_low, ci_high=ci_high)


@dataclass(frozen=True)
class SlopeBootstrap:
    """A studentized cluster bootstrap of the pooled slope: the slope, its cluster-robust standard error
    and the sorted ``t* = (slope* - slope) / se*`` of the usable resamples."""

    slope: float
    se: float
    t_sorted: npt.NDArray[np.float64]

    def interval(self, confidence: float) -> tuple[float, float]:
        """``(slope - t*_(1-a) se, slope - t*_(a) se)``; ``(slope, slope)`` when the points fit exactly."""
        if self.se == 0.0:
            return self.slope, self.slope
        alpha = (1.0 - confidence) / 2.0
        q_lo, q_hi = np.quantile(self.t_sorted, [alpha, 1.0 - alpha])
        return float(self.slope - q_hi * self.se), float(self.slope - q_lo * self.se)


def _slope_and_se(counts: npt.NDArray[np.float64], suff: npt.NDArray[np.float64]) -> tuple[np.ndarray, np.ndarray]:
    """Per resample (a row of group counts): the pooled slope and its cluster-robust (CR0) standard error
    ``sqrt(sum_g count_g u_g^2) / Sxx``, with ``u_g`` group g's score ``sum (x - xbar)(y - ybar - b (x - xbar))``."""
    cnt, sx, sy, sxy, sxx = (counts @ suff).T
    with np.errstate(divide="ignore", invalid="ignore"):
        xbar, ybar = sx / cnt, sy / cnt
        vx = sxx - sx * xbar
        b = (sxy - sx * ybar) / vx
        # u_g as a combination of the group's sums (count, Sx, Sy, Sxy, Sxx), coefficients per resample.
        coef = np.stack([xbar * ybar - b * xbar * xbar, 2 * b * xbar - ybar, -xbar, np.ones_like(b), -b], axis=1)
        u = coef @ suff.T
        se = np.sqrt((counts * u * u).sum(axis=1)) / vx
        ok = vx > 1e-12 * sxx
    return np.where(ok, b, np.nan), np.where(ok, se, np.nan)


def bootstrap_slopes(
    x: npt.ArrayLike, y: npt.ArrayLike, groups: npt.ArrayLike, *, n_resamples: int = 1000, seed: int | None = 0
) -> SlopeBootstrap | None:
    """A studentized cluster bootstrap of the pooled OLS slope over ``groups`` (e.g. texts).

    Groups are resampled with replacement; slopes and their cluster-robust standard errors come from summed
    per-group sufficient statistics. Resamples whose ``x`` is constant are dropped; ``None`` when undefined
    (fewer than 2 groups, non-finite or constant ``x``, ``n_resamples=0``, or fewer than half the resamples
    usable).
    """
    if n_resamples < 0:
        raise ValueError(f"n_resamples must be >= 0, got {n_resamples}")
    xa, ya = as_1d_pair(x, y, "x", "y")
    g = np.asarray(groups)
    if g.shape != xa.shape:
        raise ValueError(f"groups must have the shape of x, got {g.shape} vs {xa.shape}")
    if n_resamples == 0 or xa.size < 2 or nonfinite_reason(xa, ya, "x", "y") or is_constant(xa):
        return None
    _, inv = np.unique(g, return_inverse=True)
    inv = inv.reshape(-1)
    n_groups = int(inv.max()) + 1
    if n_groups < 2:
        return None
    # Centre once (stability), then per-group sums: count, Σx, Σy, Σxy, Σx².
    xc, yc = xa - xa.mean(), ya - ya.mean()
    suff = np.stack(
        [
            np.bincount(inv, minlength=n_groups).astype(float),
            *(np.bincount(inv, weights=w, minlength=n_groups) for w in (xc, yc, xc * yc, xc * xc)),
        ],
        axis=1,
    )
    b_hat, se_hat = (float(v[0]) for v in _slope_and_se(np.ones((1, n_groups)), suff))
    parts = [_slope_and_se(c, suff) for c in resample_counts(n_groups, n_resamples, seed)]
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.concatenate([(b - b_hat) / se for b, se in parts])
    t = np.sort(t[np.isfinite(t)])
    if not (math.isfinite(b_hat) and math.isfinite(se_hat)):
        return None
    if se_hat <= 1e-12 * abs(b_hat):  # every point on one line (up to rounding): so is every resample
        return SlopeBootstrap(b_hat, 0.0, t)
    return SlopeBootstrap(b_hat, se_hat, t) if t.size >= max(2, n_resamples // 2) else None


def bootstrap_means_ci(
    values: npt.ArrayLike, *, n_resamples: int = 1000, seed: int | None = 0, confidence: float = 0.95
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Percentile intervals of each column's mean of `values` `[texts, columns]`, resampling the texts (rows)
    with replacement (the same resamples for every column); NaN where undefined (fewer than 2 texts, no
    resamples, non-finite values)."""
    check_confidence(confidence)
    v = np.asarray(values, dtype=float)
    nan = np.full(v.shape[1], np.nan)
    if n_resamples <= 0 or len(v) < 2:
        return nan, nan.copy()
    suff = np.concatenate([np.ones((len(v), 1)), v], axis=1)
    sums = np.concatenate([counts @ suff for counts in resample_counts(len(suff), n_resamples, seed)])
    means = sums[:, 1:] / sums[:, :1]
    alpha = (1.0 - confidence) / 2.0
    lo, hi = np.percentile(means, [100.0 * alpha, 100.0 * (1.0 - alpha)], axis=0)
    bad = ~np.isfinite(v).all(0)
    lo[bad], hi[bad] = np.nan, np.nan
    return lo, hi


def bootstrap_slope_ci(
    x: npt.ArrayLike,
    y: npt.ArrayLike,
    groups: npt.ArrayLike,
    *,
    n_resamples: int = 1000,
    seed: int | None = 0,
    confidence: float = 0.95,
) -> tuple[float | None, float | None]:
    """The studentized cluster-bootstrap interval of the pooled OLS slope over ``groups``
    (:func:`bootstrap_slopes`); ``(None, None)`` when undefined."""
    check_confidence(confidence)
    boot = bootstrap_slopes(x, y, groups, n_resamples=n_resamples, seed=seed)
    return (None, None) if boot is None else boot.interval(confidence)
