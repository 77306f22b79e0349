"""Least-squares line fits (patching's slope, SPEC §4) and a cluster bootstrap of the slope."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from pytest_neuronprobe.analyses.stats import (
    BATCH_ELEMENTS,
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


def bootstrap_slope_ci(
    x: npt.ArrayLike,
    y: npt.ArrayLike,
    groups: npt.ArrayLike,
    *,
    n_resamples: int = 1000,
    seed: int | None = 0,
    confidence: float = 0.95,
) -> tuple[float | None, float | None]:
    """Percentile interval of the pooled OLS slope under a cluster bootstrap over ``groups``.

    Groups (e.g. texts) are resampled with replacement and the slope is computed from summed
    per-group sufficient statistics. Resamples whose ``x`` is constant are dropped; the result
    is ``(None, None)`` when undefined (fewer than 2 groups, non-finite or constant ``x``,
    ``n_resamples=0``, or fewer than half the resamples usable).
    """
    check_confidence(confidence)
    if n_resamples < 0:
        raise ValueError(f"n_resamples must be >= 0, got {n_resamples}")
    xa, ya = as_1d_pair(x, y, "x", "y")
    g = np.asarray(groups)
    if g.shape != xa.shape:
        raise ValueError(f"groups must have the shape of x, got {g.shape} vs {xa.shape}")
    if n_resamples == 0 or xa.size < 2 or nonfinite_reason(xa, ya, "x", "y") or is_constant(xa):
        return None, None
    _, inv = np.unique(g, return_inverse=True)
    inv = inv.reshape(-1)
    n_groups = int(inv.max()) + 1
    if n_groups < 2:
        return None, None

    # Centre once (stability), then per-group sums: count, Σx, Σy, Σxy, Σx².
    xc, yc = xa - xa.mean(), ya - ya.mean()
    suff = np.stack(
        [
            np.bincount(inv, minlength=n_groups).astype(float),
            *(np.bincount(inv, weights=w, minlength=n_groups) for w in (xc, yc, xc * yc, xc * xc)),
        ],
        axis=1,
    )
    cnt, sx, sy, sxy, sxx = _resampled_sums(suff, n_resamples, seed).T
    with np.errstate(divide="ignore", invalid="ignore"):
        vx = sxx - sx * sx / cnt
        cov = sxy - sx * sy / cnt
        ok = vx > 1e-12 * sxx
        slopes = cov[ok] / vx[ok]
    slopes = slopes[np.isfinite(slopes)]
    if slopes.size < max(2, n_resamples // 2):
        return None, None
    alpha = (1.0 - confidence) / 2.0
    lo, hi = np.percentile(slopes, [100.0 * alpha, 100.0 * (1.0 - alpha)])
    return float(lo), float(hi)


def _resampled_sums(suff: npt.NDArray[np.float64], n_resamples: int, seed: int | None) -> npt.NDArray[np.float64]:
    """The per-group statistics `suff` (one row per group) summed over each bootstrap resample of the groups."""
    n_groups = len(suff)
    rng = np.random.default_rng(seed)
    # Resamples in chunks of about BATCH_ELEMENTS draws (memory bounded for many groups); drawing the rows of
    # the (n_resamples, n_groups) index matrix chunk by chunk gives the same draws as one call.
    chunk = max(1, BATCH_ELEMENTS // n_groups)
    sums = []
    for start in range(0, n_resamples, chunk):
        r = min(chunk, n_resamples - start)
        idx = rng.integers(0, n_groups, size=(r, n_groups))
        # How often each group is drawn in each resample, then summed statistics per resample.
        flat = (idx + (np.arange(r) * n_groups)[:, None]).ravel()
        counts = np.bincount(flat, minlength=r * n_groups).reshape(r, n_groups)
        sums.append(counts.astype(float) @ suff)
    return np.concatenate(sums)


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
    sums = _resampled_sums(suff, n_resamples, seed)
    means = sums[:, 1:] / sums[:, :1]
    alpha = (1.0 - confidence) / 2.0
    lo, hi = np.percentile(means, [100.0 * alpha, 100.0 * (1.0 - alpha)], axis=0)
    bad = ~np.isfinite(v).all(0)
    lo[bad], hi[bad] = np.nan, np.nan
    return lo, hi
