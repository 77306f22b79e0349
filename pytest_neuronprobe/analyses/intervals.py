"""The bootstrap interval of Pearson r and one-sided bootstrap p-values (README: "What the numbers mean").

The interval of r is an *expanded percentile* interval of the paired resamples' r (SPEC §3's bootstrap
interval, widened on the Fisher-z scale for small n). It replaced a studentized (bootstrap-t) interval, which
was erratic on real activations, and BCa before it (coverage: benchmarks/bench_coverage.py). Vectorised over a
leading axis of datasets, so the coverage benchmark calls exactly this code.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from typing import cast

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

# Raw moment orders (i, j) of E[x^i y^j] that r needs.
_ORDERS = [(1, 0), (0, 1), (2, 0), (1, 1), (0, 2)]
_COL = {o: k for k, o in enumerate(_ORDERS)}
# Keep |r| below 1 so that atanh stays finite (r = 1 - 1e-15 is already z = 17.6).
_R_MAX = 1.0 - 1e-15


# Resamples are drawn in chunks of about this many row indices (memory bounded for large n).
CHUNK_ELEMENTS = 2_000_000


def resample_counts(n: int, n_resamples: int, seed: int | None) -> Iterator[FloatArray]:
    """How often each of ``n`` rows is drawn in each paired resample (seeded), in chunks of resamples; the
    chunks' rows are the rows of one ``(n_resamples, n)`` draw."""
    rng = np.random.default_rng(seed)
    chunk = max(1, CHUNK_ELEMENTS // max(n, 1))
    for start in range(0, n_resamples, chunk):
        b = min(chunk, n_resamples - start)
        idx = rng.integers(0, n, size=(b, n))
        flat = (idx + (np.arange(b) * n)[:, None]).ravel()
        yield np.bincount(flat, minlength=b * n).reshape(b, n).astype(float)


def _central(m: FloatArray, p: int, q: int) -> FloatArray:
    """E[(x - Ex)^p (y - Ey)^q] from the raw moments ``m[..., _COL[(i, j)]]``."""
    mx, my = m[..., _COL[(1, 0)]], m[..., _COL[(0, 1)]]
    total = np.zeros_like(mx)
    for i in range(p + 1):
        for j in range(q + 1):
            raw = m[..., _COL[(i, j)]] if i + j else 1.0
            total = total + math.comb(p, i) * math.comb(q, j) * (-mx) ** (p - i) * (-my) ** (q - j) * raw
    return total


def _r_of(m: FloatArray) -> FloatArray:
    """Pearson r from raw moments ``m[..., _COL[(i, j)]]`` (any leading shape; NaN where a side is constant)."""
    with np.errstate(all="ignore"):
        v20, v02, v11 = _central(m, 2, 0), _central(m, 0, 2), _central(m, 1, 1)
        return cast(FloatArray, np.clip(v11 / np.sqrt(v20 * v02), -1.0, 1.0))


def bootstrap_r(x: FloatArray, y: FloatArray, counts: Iterable[FloatArray]) -> FloatArray:
    """The sorted resampled r per dataset: ``x``, ``y`` are ``(D, n)`` (or ``(n,)``), ``counts`` chunks of
    ``(b, n)``; NaN (sorted last) where a resample is degenerate (a constant side)."""
    x2, y2 = np.atleast_2d(x), np.atleast_2d(y)
    n = x2.shape[-1]
    with np.errstate(all="ignore"):
        xs = (x2 - x2.mean(-1, keepdims=True)) / x2.std(-1, keepdims=True)
        ys = (y2 - y2.mean(-1, keepdims=True)) / y2.std(-1, keepdims=True)
    powers = np.stack([xs**i * ys**j for i, j in _ORDERS], axis=-1)  # (D, n, K)
    d, k = powers.shape[0], powers.shape[-1]
    flat = powers.transpose(1, 0, 2).reshape(n, d * k)
    # One matrix product per chunk: (b, n) @ (n, D*K), the resamples' raw moments of every dataset.
    r = np.concatenate([_r_of((c @ flat).reshape(-1, d, k).transpose(1, 0, 2) / n) for c in counts], axis=-1)
    r[~np.isfinite(r)] = np.nan
    out = np.sort(r, axis=-1)
    return out if x.ndim > 1 else out[0]


def percentile_interval(r: float, n: int, r_sorted: FloatArray, confidence: float) -> tuple[float, float] | None:
    """The expanded percentile interval of ``r`` from ``n`` points (None when fewer than half the resamples are
    usable): the percentile interval's distances from ``atanh r`` on the Fisher-z scale, times
    ``sqrt(n / (n - 3))`` (resamples of n points spread z like a variance of 1/n, samples like 1/(n - 3))."""
    usable = r_sorted[np.isfinite(r_sorted)]
    if usable.size < max(2, r_sorted.size // 2):
        return None
    alpha = (1.0 - confidence) / 2.0
    z_lo, z_hi = np.arctanh(np.clip(np.quantile(usable, [alpha, 1.0 - alpha]), -_R_MAX, _R_MAX))
    z = math.atanh(max(-_R_MAX, min(_R_MAX, r)))
    stretch = math.sqrt(n / (n - 3))
    return math.tanh(z - (z - z_lo) * stretch), math.tanh(z + (z_hi - z) * stretch)


def p_beyond(distribution: FloatArray, value: float, side: str) -> float:
    """``#{d <= value} / B`` (side ``"below"``) or with ``>=`` (``"above"``): the bootstrap's one-sided
    p-value, floored at ``1 / B`` (``B`` resamples can show no less); NaN entries are not resamples; ``1.0``
    with none. It is the level whose bootstrap quantile just reaches ``value``, so it agrees with the interval:
    a bound at level ``a`` beyond ``value`` means ``p <= a``."""
    d = distribution[np.isfinite(distribution)]
    if d.size == 0:
        return 1.0
    hits = np.count_nonzero(d <= value) if side == "below" else np.count_nonzero(d >= value)
    return max(1.0, float(hits)) / d.size


def r_p_value(r: float, n: int, r_sorted: FloatArray, threshold: float, side: str) -> float:
    """One-sided p-value of a claim on r (``side="lower"``: r >= threshold; ``"upper"``: r <= threshold),
    inverting :func:`percentile_interval`: the threshold is taken back to the resamples' scale first."""
    with np.errstate(all="ignore"):
        z_thr = float(np.arctanh(np.clip(threshold, -1.0, 1.0)))  # +-inf at +-1: beyond every resample
    z = math.atanh(max(-_R_MAX, min(_R_MAX, r)))
    back = math.tanh(z - (z - z_thr) / math.sqrt(n / (n - 3)))
    return p_beyond(r_sorted, back, "below" if side == "lower" else "above")


def t_p_value(estimate: float, se: float, t_sorted: FloatArray, threshold: float, side: str) -> float:
    """One-sided p-value of a studentized bootstrap interval's claim against ``threshold``, inverting it.

    ``side="lower"`` (claim: value >= threshold; the lower bound at level a passes when p <= a): the share of
    ``t*`` at or above ``(estimate - threshold) / se``; ``"upper"``: at or below it. Floor ``1 / B``.
    """
    if not (math.isfinite(se) and math.isfinite(estimate)):
        return 1.0
    if se == 0.0:  # a degenerate interval [estimate, estimate]
        holds = estimate >= threshold if side == "lower" else estimate <= threshold
        return 1.0 / max(1, t_sorted.size) if holds else 1.0
    return p_beyond(t_sorted, (estimate - threshold) / se, "above" if side == "lower" else "below")
