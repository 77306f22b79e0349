"""The studentized Fisher-z interval of r and its one-sided p-values, against slow loops and closed forms."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pytest_neuronprobe.analyses.fits import LinearFit, bootstrap_slope_ci, bootstrap_slopes
from pytest_neuronprobe.analyses.intervals import p_beyond, r_p_value, resample_counts, studentized_r, t_interval
from pytest_neuronprobe.analyses.stats import correlate


def _se_z_loop(x: np.ndarray, y: np.ndarray) -> float:
    """The delta-method se of atanh(r): the sd of r's influence function over the points, one by one."""
    n = len(x)
    xs = [(v - x.mean()) / x.std() for v in x]
    ys = [(v - y.mean()) / y.std() for v in y]
    r = sum(a * b for a, b in zip(xs, ys, strict=True)) / n
    infl = [a * b - r / 2 * (a * a + b * b) for a, b in zip(xs, ys, strict=True)]
    return math.sqrt(sum(v * v for v in infl) / n / n) / (1 - r * r)


def _data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.exponential(size=n)
    return x, 0.6 * x + rng.standard_t(5, size=n)


@pytest.mark.parametrize("n", [20, 40, 300])
def test_interval_equals_a_slow_loop_over_resamples(n):
    x, y = _data(n, n)
    rng = np.random.default_rng(3)
    r = float(np.corrcoef(x, y)[0, 1])
    se = _se_z_loop(x, y)
    t = []
    for _ in range(200):
        idx = rng.integers(0, n, size=n)
        xb, yb = x[idx], y[idx]
        if np.all(xb == xb[0]) or np.all(yb == yb[0]):
            continue
        rb = float(np.corrcoef(xb, yb)[0, 1])
        if abs(rb) > 1 - 1e-12:
            continue
        t.append((math.atanh(rb) - math.atanh(r)) / _se_z_loop(xb, yb))
    q_lo, q_hi = np.quantile(t, [0.025, 0.975])
    want = (math.tanh(math.atanh(r) - q_hi * se), math.tanh(math.atanh(r) - q_lo * se))
    c = correlate(x, y, n_resamples=200, seed=3)
    assert c.se_z == pytest.approx(se, rel=1e-9)
    assert c.ci == pytest.approx(want, abs=1e-9)


def test_below_20_points_the_interval_is_the_percentile_interval_of_a_slow_loop():
    x, y = _data(12, 5)
    rng = np.random.default_rng(3)
    r_star = []
    for _ in range(200):
        idx = rng.integers(0, 12, size=12)
        if np.ptp(x[idx]) > 0 and np.ptp(y[idx]) > 0:
            r_star.append(float(np.corrcoef(x[idx], y[idx])[0, 1]))
    c = correlate(x, y, n_resamples=200, seed=3)
    assert c.ci == pytest.approx(tuple(np.quantile(r_star, [0.025, 0.975])), abs=1e-9)
    assert c.p_beyond(c.ci_low, "lower") == pytest.approx(0.025, abs=2 / 200)  # the p-value inverts it too


def test_se_is_the_normal_theory_value_on_normal_data_and_the_spread_of_r():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 3000))
    y = 0.7 * x + math.sqrt(1 - 0.49) * rng.normal(size=x.shape)
    r, se, _ = studentized_r(x, y, resample_counts(3000, 2, 0))
    # normal data: se(atanh r) = 1/sqrt(n); over datasets, atanh(r) spreads by that much
    assert np.median(se) == pytest.approx(1 / math.sqrt(3000), rel=0.03)
    assert np.std(np.arctanh(r)) == pytest.approx(1 / math.sqrt(3000), rel=0.1)


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
        bounds = t_interval(c.r, c.se_z, c.t_star, 1 - 2 * level)
        assert bounds is not None
        lo, hi = bounds
        assert c.p_beyond(lo, "lower") == pytest.approx(level, abs=2 / 2000)
        assert c.p_beyond(hi, "upper") == pytest.approx(level, abs=2 / 2000)
    # far from the estimate on the right side: the floor 1/(B+1); on the wrong side: near 1
    assert c.p_beyond(-0.99, "lower") == pytest.approx(1 / 2000)
    assert c.p_beyond(0.99, "lower") > 0.99
    assert c.p_beyond(-1.0, "lower") == pytest.approx(1 / 2000) and c.p_beyond(1.0, "lower") == 1.0
    assert correlate(x, y, n_resamples=0).p_beyond(0.0, "lower") == 1.0


def test_p_beyond_counts():
    d = np.array([0.1, 0.2, 0.3, np.nan])
    assert p_beyond(d, 0.2, "below") == pytest.approx(2 / 3)
    assert p_beyond(d, 0.25, "above") == pytest.approx(1 / 3)
    assert p_beyond(d, 0.05, "below") == pytest.approx(1 / 3)  # the floor: 3 resamples show no less
    assert p_beyond(np.array([np.nan]), 0.0, "above") == 1.0
    assert r_p_value(0.5, 0.0, np.zeros(9), 0.4, "lower") == pytest.approx(1 / 9)
    assert r_p_value(0.5, 0.0, np.zeros(9), 0.6, "lower") == 1.0


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
