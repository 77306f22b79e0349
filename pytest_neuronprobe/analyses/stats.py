"""Correlations behind the numbers the plugin reports (SPEC §3-5), and the undefined-number sentinel.

Pure numpy/scipy. Undefined numbers are represented by :class:`Undefined`, a float-like
sentinel whose every comparison is ``False`` (so any claim made on it fails) and which
``as_dict()`` writes as ``None`` (JSON ``null``), never ``NaN``.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt
from scipy import stats as _sps

from pytest_neuronprobe.analyses.intervals import bootstrap_r, percentile_interval, r_p_value, resample_counts
from pytest_neuronprobe.core.formatting import format_interval

FloatArray: TypeAlias = npt.NDArray[np.float64]
IntArray: TypeAlias = npt.NDArray[np.intp]

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


Number: TypeAlias = "float | Undefined"


def finite_or_none(x: Any) -> float | None:
    """``float(x)`` if it is a finite number, else ``None`` (for NaN, inf, None, Undefined)."""
    if x is None or isinstance(x, Undefined):
        return None
    v = float(x)
    return v if math.isfinite(v) else None


def reason_of(x: Any) -> str:
    """Why ``x`` is not a finite number (its reason when it is an :class:`Undefined`)."""
    if isinstance(x, Undefined):
        return x.reason
    return "not computed" if x is None else "not a finite number"


def put_number(d: dict[str, Any], key: str, x: Any, reason: str | None = None) -> None:
    """``d[key] = finite_or_none(x)``, and ``d[key + "_reason"]`` (``reason``, else ``x``'s own) when it is null."""
    d[key] = finite_or_none(x)
    if d[key] is None:
        d[f"{key}_reason"] = reason or reason_of(x)


def is_defined(x: Any) -> bool:
    """True when ``x`` is a finite number."""
    return finite_or_none(x) is not None


def as_number(x: Any, reason: str) -> Number:
    """Normalise a field value: finite numbers to ``float``, anything else to ``Undefined``."""
    if isinstance(x, Undefined):
        return x
    v = finite_or_none(x)
    return Undefined(reason) if v is None else v


def check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie strictly between 0 and 1, got {confidence!r}")


def as_1d_pair(x: npt.ArrayLike, y: npt.ArrayLike, x_name: str, y_name: str) -> tuple[np.ndarray, np.ndarray]:
    xa = np.asarray(x, dtype=float)
    ya = np.asarray(y, dtype=float)
    if xa.ndim != 1 or ya.ndim != 1:
        raise ValueError(f"{x_name} and {y_name} must be 1-D, got shapes {xa.shape} and {ya.shape}")
    if xa.shape != ya.shape:
        raise ValueError(f"{x_name} and {y_name} differ in length: {xa.size} vs {ya.size}")
    return xa, ya


def nonfinite_reason(xa: np.ndarray, ya: np.ndarray, x_name: str, y_name: str) -> str | None:
    bad = [name for name, a in ((x_name, xa), (y_name, ya)) if not np.all(np.isfinite(a))]
    return f"non-finite values in {' and '.join(bad)}" if bad else None


def is_constant(a: np.ndarray) -> bool:
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
    #: The bootstrap behind the interval: the sorted resampled r (NaN, last: degenerate resamples).
    bootstrap: FloatArray = field(default_factory=lambda: np.empty(0), repr=False, compare=False)

    def __post_init__(self) -> None:
        why = self.reason or "undefined"
        for name in ("r", "r_squared", "p_value", "spearman", "ci_low", "ci_high"):
            object.__setattr__(self, name, as_number(getattr(self, name), why))
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

    def p_beyond(self, threshold: float, side: str) -> float:
        """One-sided bootstrap p-value of ``r >= threshold`` (``side="lower"``) or ``r <= threshold``
        (``"upper"``): the level at which the interval's bound would just reach ``threshold``; 1 if undefined."""
        if not isinstance(self.r, float) or self.bootstrap.size == 0:
            return 1.0
        return r_p_value(self.r, self.n, self.bootstrap, threshold, side)

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
        ci = format_interval(self.ci_low, self.ci_high, ".3f")
        missing = self.ci_low if isinstance(self.ci_low, Undefined) else self.ci_high
        ci_txt = ci if ci is not None else repr(missing)
        return f"Correlation({head}r={self.r:.3f}, ci={ci_txt}, n={self.n})"


#: Below this many points the interval of r is undefined (most resamples of 5 points are degenerate).
MIN_INTERVAL_POINTS = 6


def _bootstrap_r_ci(
    r: float, xa: np.ndarray, ya: np.ndarray, n_resamples: int, seed: int | None, confidence: float
) -> tuple[Number, Number, FloatArray]:
    """The expanded percentile interval of r (:mod:`intervals`) and the sorted resampled r behind it."""
    if n_resamples == 0:
        off = Undefined("bootstrap disabled")
        return off, off, np.empty(0)
    if xa.size < MIN_INTERVAL_POINTS:
        few = Undefined(f"bootstrap interval undefined: fewer than {MIN_INTERVAL_POINTS} points")
        return few, few, np.empty(0)
    r_star = bootstrap_r(xa, ya, resample_counts(xa.size, n_resamples, seed))
    iv = percentile_interval(r, xa.size, r_star, confidence)
    if iv is None:
        why = Undefined("bootstrap interval undefined (degenerate resamples)")
        return why, why, r_star
    return iv[0], iv[1], r_star


def correlate(
    x: npt.ArrayLike,
    y: npt.ArrayLike,
    *,
    label: str = "",
    n_resamples: int = 1000,
    seed: int | None = 0,
    confidence: float = 0.95,
    x_name: str = "x",
    y_name: str = "y",
) -> Correlation:
    """Pearson ``r`` (two-sided p), ``r²``, Spearman rho and a seeded bootstrap interval of ``r``.

    The interval is the expanded percentile interval of r over paired resamples
    (:mod:`pytest_neuronprobe.analyses.intervals`). ``n_resamples=0`` disables it. Fewer than 3 points,
    a constant input or a non-finite value make the whole correlation undefined (with the reason).
    """
    check_confidence(confidence)
    if n_resamples < 0:
        raise ValueError(f"n_resamples must be >= 0, got {n_resamples}")
    xa, ya = as_1d_pair(x, y, x_name, y_name)
    n = int(xa.size)

    def undefined(reason: str) -> Correlation:
        u = Undefined(reason)
        return Correlation(u, u, u, u, n, u, u, reason=reason, label=label)

    reason = nonfinite_reason(xa, ya, x_name, y_name)
    if reason is None and n < 3:
        reason = "fewer than 3 points"
    if reason is None:
        const = [name for name, a in ((x_name, xa), (y_name, ya)) if is_constant(a)]
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

    ci_low, ci_high, r_star = _bootstrap_r_ci(r, xa, ya, n_resamples, seed, confidence)
    return Correlation(
        r=r,
        r_squared=r * r,
        p_value=as_number(p, "p-value undefined"),
        spearman=as_number(rho, "spearman undefined"),
        n=n,
        ci_low=ci_low,
        ci_high=ci_high,
        label=label,
        bootstrap=r_star,
    )


def pearson(a: FloatArray, b: FloatArray) -> float | None:
    """Pearson r over the rows where both are finite; None with fewer than 2 such rows or a constant side."""
    mask = np.isfinite(a) & np.isfinite(b)
    if mask.sum() < 2:
        return None
    x = a[mask] - a[mask].mean()
    y = b[mask] - b[mask].mean()
    den = math.sqrt(float(np.dot(x, x)) * float(np.dot(y, y)))
    if not math.isfinite(den) or den == 0.0:
        return None
    return float(np.clip(np.dot(x, y) / den, -1.0, 1.0))
