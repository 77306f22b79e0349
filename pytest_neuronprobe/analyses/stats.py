"""Statistics behind every number the plugin reports (SPEC §3-5).

Pure numpy/scipy. Undefined numbers are represented by :class:`Undefined`, a float-like
sentinel whose every comparison is ``False`` (so any claim made on it fails) and which
``as_dict()`` writes as ``None`` (JSON ``null``), never ``NaN``.
"""

from __future__ import annotations

import inspect
import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Union

import numpy as np
from scipy import special as _special
from scipy import stats as _sps

__all__ = [
    "Undefined",
    "Number",
    "Correlation",
    "LinearFit",
    "NullComparison",
    "correlate",
    "fit_line",
    "bootstrap_slope_ci",
    "empirical_null",
    "finite_or_none",
    "is_defined",
]

# Above this many elements per vectorised bootstrap batch, scipy's work is split in batches.
_BATCH_ELEMENTS = 2_000_000


# ---------------------------------------------------------------------------------------------
# Undefined
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Undefined:
    """A number that does not exist, with the reason why.

    Every ordering or equality comparison returns ``False`` (``!=`` returns ``True``), also
    against ``pytest.approx`` and numpy scalars; arithmetic returns the same ``Undefined``;
    ``bool()`` is ``False``; ``float()`` is ``nan``. Hashing is by identity.
    """

    reason: str = "undefined"

    # numpy scalars/arrays defer binary operations to our reflected methods.
    __array_ufunc__ = None

    def __repr__(self) -> str:
        return f"undefined({self.reason})"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        try:
            return format(repr(self), spec)
        except (TypeError, ValueError):
            return repr(self)

    def __bool__(self) -> bool:
        return False

    def __float__(self) -> float:
        return math.nan

    def __hash__(self) -> int:
        return id(self)

    # Comparisons: never true.
    def __eq__(self, other: object) -> bool:
        return False

    def __ne__(self, other: object) -> bool:
        return True

    def __lt__(self, other: object) -> bool:
        return False

    __le__ = __gt__ = __ge__ = __lt__

    # Arithmetic: stays undefined.
    def _same(self, *args: object) -> Undefined:
        return self

    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = _same
    __truediv__ = __rtruediv__ = __floordiv__ = __rfloordiv__ = _same
    __mod__ = __rmod__ = __pow__ = __rpow__ = _same
    __neg__ = __pos__ = __abs__ = __round__ = _same


Number = Union[float, Undefined]


def finite_or_none(x: Any) -> float | None:
    """``float(x)`` if it is a finite number, else ``None`` (for NaN, inf, None, Undefined)."""
    if x is None or isinstance(x, Undefined):
        return None
    v = float(x)
    return v if math.isfinite(v) else None


def is_defined(x: Any) -> bool:
    """True when ``x`` is a finite number."""
    return finite_or_none(x) is not None


def _num(x: Any, reason: str) -> Number:
    """Normalise a field value: finite numbers to ``float``, anything else to ``Undefined``."""
    if isinstance(x, Undefined):
        return x
    v = finite_or_none(x)
    return Undefined(reason) if v is None else v


def _fmt(x: Number, spec: str) -> str:
    return format(x, spec) if not isinstance(x, Undefined) else "undefined"


def _fmt_ci(lo: Number, hi: Number, spec: str) -> str | None:
    if isinstance(lo, Undefined) or isinstance(hi, Undefined):
        return None
    return f"[{lo:{spec}}, {hi:{spec}}]"


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie strictly between 0 and 1, got {confidence!r}")


def _as_1d_pair(x: Any, y: Any, x_name: str, y_name: str) -> tuple[np.ndarray, np.ndarray]:
    xa = np.asarray(x, dtype=float)
    ya = np.asarray(y, dtype=float)
    if xa.ndim != 1 or ya.ndim != 1:
        raise ValueError(f"{x_name} and {y_name} must be 1-D, got shapes {xa.shape} and {ya.shape}")
    if xa.shape != ya.shape:
        raise ValueError(f"{x_name} and {y_name} differ in length: {xa.size} vs {ya.size}")
    return xa, ya


def _nonfinite_reason(xa: np.ndarray, ya: np.ndarray, x_name: str, y_name: str) -> str | None:
    bad = [name for name, a in ((x_name, xa), (y_name, ya)) if not np.all(np.isfinite(a))]
    return f"non-finite values in {' and '.join(bad)}" if bad else None


def _constant(a: np.ndarray) -> bool:
    return a.size > 0 and bool(np.all(a == a[0]))


# ---------------------------------------------------------------------------------------------
# Correlation
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Correlation:
    """Pearson/Spearman correlation of two paired samples with a bootstrap interval of ``r``.

    Numeric fields are ``float`` or :class:`Undefined` (``None``/NaN given to the constructor
    become ``Undefined``); ``reason`` says why ``r`` is undefined.
    """

    r: Number
    r_squared: Number
    p_value: Number
    spearman: Number
    n: int
    ci_low: Number
    ci_high: Number
    reason: str | None = None
    label: str = ""

    def __post_init__(self) -> None:
        why = self.reason or "undefined"
        for name in ("r", "r_squared", "p_value", "spearman", "ci_low", "ci_high"):
            object.__setattr__(self, name, _num(getattr(self, name), why))
        object.__setattr__(self, "n", int(self.n))
        if isinstance(self.r, Undefined) and self.reason is None:
            object.__setattr__(self, "reason", self.r.reason)

    @property
    def defined(self) -> bool:
        """True when ``r`` exists."""
        return not isinstance(self.r, Undefined)

    @property
    def ci(self) -> tuple[Number, Number]:
        """The bootstrap interval of ``r`` as ``(low, high)``."""
        return (self.ci_low, self.ci_high)

    def as_dict(self) -> dict[str, Any]:
        """SPEC §5 entry: undefined numbers are ``None``; ``reason`` only when undefined."""
        d: dict[str, Any] = {
            "correlation": finite_or_none(self.r),
            "r_squared": finite_or_none(self.r_squared),
            "p_value": finite_or_none(self.p_value),
            "spearman": finite_or_none(self.spearman),
            "ci_low": finite_or_none(self.ci_low),
            "ci_high": finite_or_none(self.ci_high),
            "n": self.n,
        }
        if not self.defined:
            d["reason"] = self.reason
        return d

    def __repr__(self) -> str:
        head = f"{self.label}: " if self.label else ""
        if not self.defined:
            return f"Correlation({head}undefined — {self.reason}, n={self.n})"
        ci = _fmt_ci(self.ci_low, self.ci_high, ".3f")
        missing = self.ci_low if isinstance(self.ci_low, Undefined) else self.ci_high
        ci_txt = ci if ci is not None else repr(missing)
        return f"Correlation({head}r={self.r:.3f}, ci={ci_txt}, n={self.n})"


def _pearson_last_axis(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    """Vectorised Pearson r along ``axis`` (NaN where a resample is constant)."""
    xm = x - x.mean(axis=axis, keepdims=True)
    ym = y - y.mean(axis=axis, keepdims=True)
    sxy = (xm * ym).sum(axis=axis)
    sxx = (xm * xm).sum(axis=axis)
    syy = (ym * ym).sum(axis=axis)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = sxy / np.sqrt(sxx * syy)
    return np.clip(r, -1.0, 1.0)


# scipy >= 1.15 calls the generator argument `rng`; older versions `random_state`.
_RNG_KW = "rng" if "rng" in inspect.signature(_sps.bootstrap).parameters else "random_state"


def _bootstrap_kwargs(seed: int | None) -> dict[str, Any]:
    return {_RNG_KW: np.random.default_rng(seed)}


def _jackknife_pearson(xa: np.ndarray, ya: np.ndarray) -> np.ndarray:
    """Leave-one-out Pearson r for every point, in O(n) from sufficient statistics."""
    xc, yc = xa - xa.mean(), ya - ya.mean()
    m = xa.size - 1.0
    sx, sy = xc.sum() - xc, yc.sum() - yc
    sxx, syy, sxy = (xc @ xc) - xc * xc, (yc @ yc) - yc * yc, (xc @ yc) - xc * yc
    with np.errstate(divide="ignore", invalid="ignore"):
        r = (sxy - sx * sy / m) / np.sqrt((sxx - sx * sx / m) * (syy - sy * sy / m))
    return np.clip(r, -1.0, 1.0)


def _bca_from_distribution(
    theta_hat: float, theta_b: np.ndarray, theta_jack: np.ndarray, alpha: float
) -> tuple[float, float]:
    """BCa interval (Efron & Tibshirani 14.3, 15.4), computed as scipy.stats.bootstrap does."""
    with np.errstate(all="ignore"):
        b = theta_b.size
        pct = (np.count_nonzero(theta_b < theta_hat) + np.count_nonzero(theta_b <= theta_hat)) / (
            2.0 * b
        )
        z0 = _special.ndtri(pct)
        d = theta_jack.mean() - theta_jack
        a_hat = (d**3).sum() / (6.0 * ((d**2).sum()) ** 1.5)
        z_a = float(_special.ndtri(alpha))
        num1, num2 = z0 + z_a, z0 - z_a
        a1 = _special.ndtr(z0 + num1 / (1 - a_hat * num1))
        a2 = _special.ndtr(z0 + num2 / (1 - a_hat * num2))
        if not (np.isfinite(a1) and np.isfinite(a2)) or np.isnan(theta_b).any():
            return math.nan, math.nan
        lo, hi = np.quantile(theta_b, [a1, a2])
    return float(lo), float(hi)


def _bootstrap_r_ci(
    xa: np.ndarray, ya: np.ndarray, n_resamples: int, seed: int | None, confidence: float
) -> tuple[Number, Number]:
    """BCa interval of Pearson r over paired resamples; percentile interval as fall-back.

    Resampling is ``scipy.stats.bootstrap``'s (same draws as its ``method="BCa"`` for a
    given seed); the BCa acceleration uses an O(n) closed-form jackknife instead of scipy's
    O(n²) one, so large samples stay fast. Gives the same interval as scipy's BCa.
    """
    batch = max(1, min(n_resamples, _BATCH_ELEMENTS // max(xa.size, 1)))
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        res = _sps.bootstrap(
            (xa, ya),
            _pearson_last_axis,
            paired=True,
            vectorized=True,
            n_resamples=n_resamples,
            batch=batch,
            confidence_level=confidence,
            method="percentile",
            **_bootstrap_kwargs(seed),
        )
    theta_b = np.asarray(res.bootstrap_distribution, dtype=float)
    theta_hat = float(_pearson_last_axis(xa, ya))
    alpha = (1.0 - confidence) / 2.0
    lo, hi = _bca_from_distribution(theta_hat, theta_b, _jackknife_pearson(xa, ya), alpha)
    if not (math.isfinite(lo) and math.isfinite(hi)):
        lo, hi = float(res.confidence_interval.low), float(res.confidence_interval.high)
    if math.isfinite(lo) and math.isfinite(hi):
        return lo, hi
    why = Undefined("bootstrap interval undefined (degenerate resamples)")
    return why, why


def correlate(
    x: Any,
    y: Any,
    *,
    label: str = "",
    n_resamples: int = 1000,
    seed: int | None = 0,
    confidence: float = 0.95,
    x_name: str = "x",
    y_name: str = "y",
) -> Correlation:
    """Pearson ``r`` (two-sided p), ``r²``, Spearman rho and a seeded bootstrap interval of ``r``.

    The interval is BCa over paired resamples, falling back to the percentile interval when
    BCa is undefined. ``n_resamples=0`` disables it. Fewer than 3 points, a constant input or
    a non-finite value make the whole correlation undefined (with the reason).
    """
    _check_confidence(confidence)
    if n_resamples < 0:
        raise ValueError(f"n_resamples must be >= 0, got {n_resamples}")
    xa, ya = _as_1d_pair(x, y, x_name, y_name)
    n = int(xa.size)

    def undefined(reason: str) -> Correlation:
        u = Undefined(reason)
        return Correlation(u, u, u, u, n, u, u, reason=reason, label=label)

    reason = _nonfinite_reason(xa, ya, x_name, y_name)
    if reason is None and n < 3:
        reason = "fewer than 3 points"
    if reason is None:
        const = [name for name, a in ((x_name, xa), (y_name, ya)) if _constant(a)]
        if const:
            reason = f"constant input: {' and '.join(const)}"
    if reason is not None:
        return undefined(reason)

    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        pr = _sps.pearsonr(xa, ya)
        sr = _sps.spearmanr(xa, ya)
    r, p, rho = float(pr.statistic), float(pr.pvalue), float(sr.statistic)
    if not math.isfinite(r):
        return undefined("correlation is not a number (near-constant input)")

    if n_resamples == 0:
        ci_low: Number = Undefined("bootstrap disabled")
        ci_high: Number = ci_low
    else:
        ci_low, ci_high = _bootstrap_r_ci(xa, ya, n_resamples, seed, confidence)
    return Correlation(
        r=r,
        r_squared=r * r,
        p_value=_num(p, "p-value undefined"),
        spearman=_num(rho, "spearman undefined"),
        n=n,
        ci_low=ci_low,
        ci_high=ci_high,
        label=label,
    )


# ---------------------------------------------------------------------------------------------
# Linear fit
# ---------------------------------------------------------------------------------------------


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
            object.__setattr__(self, name, _num(getattr(self, name), why))
        for name in ("ci_low", "ci_high"):
            object.__setattr__(self, name, _num(getattr(self, name), "not computed"))
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
        ci = _fmt_ci(self.ci_low, self.ci_high, ".3g")
        if ci is not None:
            parts.append(f"ci={ci}")
        parts.append(f"R²={_fmt(self.r_squared, '.3g')}")
        parts.append(f"n={self.n}")
        return f"LinearFit({', '.join(parts)})"


def fit_line(
    x: Any,
    y: Any,
    *,
    groups: Any = None,
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
    xa, ya = _as_1d_pair(x, y, x_name, y_name)
    n = int(xa.size)
    reason = _nonfinite_reason(xa, ya, x_name, y_name)
    if reason is None and n < 2:
        reason = "fewer than 2 points"
    if reason is None and _constant(xa):
        reason = f"constant {x_name}"
    if reason is not None:
        u = Undefined(reason)
        return LinearFit(u, u, u, n, reason=reason)

    ci_low: Number = Undefined("not computed")
    ci_high: Number = ci_low
    if groups is not None:
        lo, hi = bootstrap_slope_ci(
            xa, ya, groups, n_resamples=n_resamples, seed=seed, confidence=confidence
        )
        if lo is not None and hi is not None:
            ci_low, ci_high = lo, hi
        else:
            ci_low = ci_high = Undefined("cluster bootstrap undefined")

    if _constant(ya):
        return LinearFit(
            0.0, float(ya[0]), Undefined(f"constant {y_name}"), n, ci_low=ci_low, ci_high=ci_high
        )
    xm, ym = xa.mean(), ya.mean()
    dx, dy = xa - xm, ya - ym
    slope = float(np.dot(dx, dy) / np.dot(dx, dx))
    intercept = float(ym - slope * xm)
    resid = ya - (intercept + slope * xa)
    ss_res, ss_tot = float(np.dot(resid, resid)), float(np.dot(dy, dy))
    r2: Number = min(1.0, max(0.0, 1.0 - ss_res / ss_tot)) if ss_tot > 0 else Undefined(
        f"constant {y_name}"
    )
    return LinearFit(slope, intercept, r2, n, ci_low=ci_low, ci_high=ci_high)


def bootstrap_slope_ci(
    x: Any,
    y: Any,
    groups: Any,
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
    _check_confidence(confidence)
    if n_resamples < 0:
        raise ValueError(f"n_resamples must be >= 0, got {n_resamples}")
    xa, ya = _as_1d_pair(x, y, "x", "y")
    g = np.asarray(groups)
    if g.shape != xa.shape:
        raise ValueError(f"groups must have the shape of x, got {g.shape} vs {xa.shape}")
    if n_resamples == 0 or xa.size < 2 or _nonfinite_reason(xa, ya, "x", "y") or _constant(xa):
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
            np.bincount(inv, weights=xc, minlength=n_groups),
            np.bincount(inv, weights=yc, minlength=n_groups),
            np.bincount(inv, weights=xc * yc, minlength=n_groups),
            np.bincount(inv, weights=xc * xc, minlength=n_groups),
        ],
        axis=1,
    )
    rng = np.random.default_rng(seed)
    # Resamples in chunks of about _BATCH_ELEMENTS draws (memory bounded for many groups); drawing the rows of
    # the (n_resamples, n_groups) index matrix chunk by chunk gives the same draws as one call.
    chunk = max(1, _BATCH_ELEMENTS // n_groups)
    sums = []
    for start in range(0, n_resamples, chunk):
        r = min(chunk, n_resamples - start)
        idx = rng.integers(0, n_groups, size=(r, n_groups))
        # How often each group is drawn in each resample, then summed statistics per resample.
        flat = (idx + (np.arange(r) * n_groups)[:, None]).ravel()
        counts = np.bincount(flat, minlength=r * n_groups).reshape(r, n_groups)
        sums.append(counts.astype(float) @ suff)
    cnt, sx, sy, sxy, sxx = np.concatenate(sums).T
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


# ---------------------------------------------------------------------------------------------
# Empirical null
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NullComparison:
    """An observed statistic against an empirical null distribution (compared in absolute value)."""

    observed: Number
    p_value: Number
    percentile_95: Number
    selectivity: Number
    n_null: int
    label: str = ""
    reason: str | None = None

    def __post_init__(self) -> None:
        why = self.reason or "undefined"
        for name in ("observed", "p_value", "percentile_95", "selectivity"):
            object.__setattr__(self, name, _num(getattr(self, name), why))
        object.__setattr__(self, "n_null", int(self.n_null))
        if isinstance(self.p_value, Undefined) and self.reason is None:
            object.__setattr__(self, "reason", self.p_value.reason)

    @property
    def defined(self) -> bool:
        """True when the comparison exists."""
        return not isinstance(self.p_value, Undefined)

    def as_dict(self) -> dict[str, Any]:
        """Undefined numbers are ``None``; ``reason`` only when undefined."""
        d: dict[str, Any] = {
            "observed": finite_or_none(self.observed),
            "p_value": finite_or_none(self.p_value),
            "percentile_95": finite_or_none(self.percentile_95),
            "selectivity": finite_or_none(self.selectivity),
            "n_null": self.n_null,
        }
        if not self.defined:
            d["reason"] = self.reason
        return d

    def __repr__(self) -> str:
        head = f"{self.label}: " if self.label else ""
        if not self.defined:
            return f"NullComparison({head}undefined — {self.reason}, n_null={self.n_null})"
        return (
            f"NullComparison({head}observed={self.observed:.3f}, p={self.p_value:.3g}, "
            f"p95={self.percentile_95:.3f}, selectivity={self.selectivity:.3f}, "
            f"n_null={self.n_null})"
        )


def empirical_null(observed: Any, null: Any, *, label: str = "") -> NullComparison:
    """Compare ``|observed|`` with ``|null|``.

    ``p_value = (1 + #{|null| >= |observed|}) / (1 + n_null)``,
    ``percentile_95 = percentile(|null|, 95)``, ``selectivity = |observed| - percentile_95``.
    Undefined when ``observed`` is undefined/non-finite, ``null`` is empty or has non-finite values.
    """
    # float() of Undefined is NaN, and numpy turns None into NaN: both end up "non-finite".
    null_a = np.asarray(null, dtype=float).ravel()
    n_null = int(null_a.size)
    obs = finite_or_none(observed)
    reason = None
    if obs is None:
        reason = (
            f"observed value undefined ({observed.reason})"
            if isinstance(observed, Undefined)
            else "observed value is not finite"
        )
    elif n_null == 0:
        reason = "empty null distribution"
    elif not np.all(np.isfinite(null_a)):
        reason = "non-finite values in null"
    if reason is not None:
        u = Undefined(reason)
        return NullComparison(
            obs if obs is not None else u, u, u, u, n_null, label=label, reason=reason
        )
    a_obs = abs(obs)
    a_null = np.abs(null_a)
    p = (1 + int(np.count_nonzero(a_null >= a_obs))) / (1 + n_null)
    p95 = float(np.percentile(a_null, 95))
    return NullComparison(obs, p, p95, a_obs - p95, n_null, label=label)
