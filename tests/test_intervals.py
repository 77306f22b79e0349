"""The bootstrap intervals of r and of the patching slope and their one-sided p-values, against slow loops and
closed forms."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pytest_neuronprobe.analyses.fits import LinearFit, bootstrap_slope_ci, bootstrap_slopes
from pytest_neuronprobe.analyses.intervals import p_beyond, percentile_interval, resample_counts
from pytest_neuronprobe.analyses.stats import correlate


def _data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.exponential(size=n)
    return x, 0.6 * x + rng.standard_t(5, size=n)


def _expanded_loop(x: np.ndarray, y: np.ndarray, resamples: int, seed: int, level: float) -> tuple[float, float]:
    """The expanded percentile interval, resample by resample: the percentile interval of r*, its distances
    from atanh r on the Fisher-z scale stretched by sqrt(n / (n - 3))."""
    n = len(x)
    rng = np.random.default_rng(seed)
    r_star = []
    for _ in range(resamples):
        idx = rng.integers(0, n, size=n)
        if np.ptp(x[idx]) > 0 and np.ptp(y[idx]) > 0:
            r_star.append(float(np.corrcoef(x[idx], y[idx])[0, 1]))
    lo, hi = np.quantile(r_star, [level, 1 - level])
    z, s = math.atanh(float(np.corrcoef(x, y)[0, 1])), math.sqrt(n / (n - 3))
    return math.tanh(z - (z - math.atanh(lo)) * s), math.tanh(z + (math.atanh(hi) - z) * s)


@pytest.mark.parametrize("n", [8, 20, 40, 300])
def test_interval_equals_a_slow_loop_over_resamples(n):
    x, y = _data(n, n)
    c = correlate(x, y, n_resamples=200, seed=3)
    assert c.ci == pytest.approx(_expanded_loop(x, y, 200, 3, 0.025), abs=1e-9)
    assert c.p_beyond(c.ci_low, "lower") == pytest.approx(0.025, abs=2 / 200)  # the p-value inverts it


def test_expansion_is_the_normal_theory_ratio():
    """On normal data the plain percentile interval of atanh r is about 1.96/sqrt(n) wide each side, and the
    expanded one 1.96/sqrt(n - 3): the normal-theory Fisher interval."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=30)
    y = 0.5 * x + rng.normal(size=30)
    c = correlate(x, y, n_resamples=4000, seed=1)
    r = float(np.corrcoef(x, y)[0, 1])
    plain = np.quantile(np.arctanh(c.bootstrap[np.isfinite(c.bootstrap)]), [0.025, 0.975])
    got = np.arctanh(np.array(c.ci)) - math.atanh(r)
    assert got / (plain - math.atanh(r)) == pytest.approx([math.sqrt(30 / 27)] * 2, rel=1e-6)
    assert float(got[1] - got[0]) == pytest.approx(2 * 1.96 / math.sqrt(27), rel=0.25)


def test_resample_chunks_are_one_draw():
    whole = np.concatenate(list(resample_counts(50, 30, 7)))
    idx = np.random.default_rng(7).integers(0, 50, size=(30, 50))
    assert np.array_equal(whole, np.stack([np.bincount(i, minlength=50) for i in idx]))
    assert whole.sum(axis=1).tolist() == [50] * 30


def test_p_value_inverts_the_interval():
    """The bound at level a equals the threshold whose p-value is a (up to one resample)."""
    x, y = _data(200, 1)
    c = correlate(x, y, n_resamples=2000, seed=0)
    assert isinstance(c.r, float)
    for level in (0.05, 0.2):
        bounds = percentile_interval(c.r, c.n, c.bootstrap, 1 - 2 * level)
        assert bounds is not None
        lo, hi = bounds
        assert c.p_beyond(lo, "lower") == pytest.approx(level, abs=2 / 2000)
        assert c.p_beyond(hi, "upper") == pytest.approx(level, abs=2 / 2000)
    # far from the estimate on the right side: the floor 1/B; on the wrong side: near 1
    assert c.p_beyond(-0.99, "lower") == pytest.approx(1 / 2000)
    assert c.p_beyond(0.99, "lower") > 0.99
    assert c.p_beyond(-1.0, "lower") == pytest.approx(1 / 2000) and c.p_beyond(1.0, "lower") == 1.0
    assert c.p_beyond(1.0, "upper") == pytest.approx(1 / 2000) and c.p_beyond(-1.0, "upper") == 1.0
    assert correlate(x, y, n_resamples=0).p_beyond(0.0, "lower") == 1.0


def test_p_beyond_counts():
    d = np.array([0.1, 0.2, 0.3, np.nan])
    assert p_beyond(d, 0.2, "below") == pytest.approx(2 / 3)
    assert p_beyond(d, 0.25, "above") == pytest.approx(1 / 3)
    assert p_beyond(d, 0.05, "below") == pytest.approx(1 / 3)  # the floor: 3 resamples show no less
    assert p_beyond(np.array([np.nan]), 0.0, "above") == 1.0


def _cr0_slope(x: np.ndarray, y: np.ndarray, clusters: list[np.ndarray]) -> tuple[float, float]:
    """OLS slope with intercept and its cluster-robust (CR0) standard error, cluster by cluster."""
    xm, ym = x.mean(), y.mean()
    sxx = float(((x - xm) ** 2).sum())
    b = float(((x - xm) * (y - ym)).sum()) / sxx
    scores = [float(((x[c] - xm) * (y[c] - ym - b * (x[c] - xm))).sum()) for c in clusters]
    return b, math.sqrt(sum(s * s for s in scores)) / sxx


def test_slope_interval_equals_a_slow_studentized_cluster_bootstrap():
    rng = np.random.default_rng(4)
    texts, per = 15, 8
    g = np.repeat(np.arange(texts), per)
    x = rng.normal(size=texts * per) * rng.exponential(size=texts)[g]
    y = (1 + 0.3 * rng.normal(size=texts))[g] * x + 0.2 * rng.standard_t(4, size=texts * per)
    b_hat, se_hat = _cr0_slope(x, y, [np.flatnonzero(g == k) for k in range(texts)])
    draws = np.random.default_rng(9).integers(0, texts, size=(300, texts))
    t = []
    for drawn in draws:
        rows = [np.flatnonzero(g == k) for k in drawn]
        xb, yb = np.concatenate([x[r] for r in rows]), np.concatenate([y[r] for r in rows])
        offsets = np.cumsum([0] + [len(r) for r in rows])
        b, se = _cr0_slope(xb, yb, [np.arange(offsets[i], offsets[i + 1]) for i in range(texts)])
        t.append((b - b_hat) / se)
    q_lo, q_hi = np.quantile(t, [0.025, 0.975])
    lo, hi = bootstrap_slope_ci(x, y, g, n_resamples=300, seed=9)
    assert (lo, hi) == pytest.approx((b_hat - q_hi * se_hat, b_hat - q_lo * se_hat), abs=1e-9)
    boot = bootstrap_slopes(x, y, g, n_resamples=300, seed=9)
    assert boot is not None and boot.se == pytest.approx(se_hat, rel=1e-9)
    # the p-value inverts the interval: at the bound, the level
    fit = LinearFit(b_hat, 0.0, 0.5, texts * per, lo, hi, se=boot.se, bootstrap=boot.t_sorted)
    assert fit.p_beyond(lo, "lower") == pytest.approx(0.025, abs=2 / 300)
    assert fit.p_beyond(hi, "upper") == pytest.approx(0.025, abs=2 / 300)


def test_exact_line_gives_a_point_interval():
    x = np.tile(np.linspace(-1, 1, 8), 10)
    g = np.repeat(np.arange(10), 8)
    assert bootstrap_slope_ci(x, 2 * x, g) == pytest.approx((2.0, 2.0))
