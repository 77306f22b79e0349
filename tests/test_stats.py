"""Tests of pytest_neuronprobe.stats: every number checked against an independent computation."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
from scipy import stats as sps

from pytest_neuronprobe.analyses.fits import LinearFit, bootstrap_slope_ci, fit_line
from pytest_neuronprobe.analyses.nulls import NullComparison, empirical_null
from pytest_neuronprobe.analyses.stats import Correlation, Undefined, correlate, finite_or_none

CORR_KEYS = {"correlation", "r_squared", "p_value", "spearman", "ci_low", "ci_high", "n"}


def _noisy(n: int, slope: float = 0.8, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    return x, slope * x + rng.normal(size=n)


def _hand_pearson(x: np.ndarray, y: np.ndarray) -> float:
    n = len(x)
    sx, sy = x.sum(), y.sum()
    sxy, sxx, syy = (x * y).sum(), (x * x).sum(), (y * y).sum()
    return float((n * sxy - sx * sy) / math.sqrt((n * sxx - sx**2) * (n * syy - sy**2)))


def _strict_json(d: dict) -> str:
    return json.dumps(d, allow_nan=False)


# --------------------------------------------------------------------------------- Undefined


def test_undefined_comparisons_are_always_false():
    u = Undefined("x")
    assert not (u > 0) and not (u < 0) and not (u >= 0) and not (u <= 0)
    assert not (0 < u) and not (0 > u) and not (0.0 <= u) and not (0.0 >= u)
    assert not (u == 0) and not (0 == u) and not (u == u)  # noqa: PLR0124
    assert u != 0 and u != u  # noqa: PLR0124
    assert not (u == pytest.approx(1.0))
    assert not (pytest.approx(1.0) == u)
    assert (u == pytest.approx(1.0)) is False
    assert (pytest.approx(1.0) == u) is False
    assert not (pytest.approx(0.0, abs=1e9) == u)
    # numpy scalars defer to Undefined
    assert not (np.float64(1.0) < u) and not (np.float64(1.0) == u) and not (u > np.float64(0))


def test_undefined_behaves_like_a_poisoned_float():
    u = Undefined("constant input: y")
    assert not bool(u)
    assert math.isnan(float(u))
    assert u + 1 is u and 1 - u is u and 2 * u is u and u / 3 is u and -u is u and abs(u) is u
    assert repr(u) == "undefined(constant input: y)"
    assert f"{u:.3f}" == "undefined(constant input: y)"
    assert hash(u) == hash(u) and len({u, Undefined("constant input: y")}) == 2
    with pytest.raises(dataclasses.FrozenInstanceError):
        u.reason = "other"  # type: ignore[misc]  # frozen
    assert np.isnan(np.asarray([u, 1.0], dtype=float)[0])


def test_finite_or_none():
    assert finite_or_none(1) == 1.0 and isinstance(finite_or_none(np.float32(0.5)), float)
    for bad in (None, float("nan"), float("inf"), -np.inf, np.float64("nan"), Undefined("x")):
        assert finite_or_none(bad) is None


# ------------------------------------------------------------------------------- correlate


def test_pearson_matches_hand_formula_and_corrcoef():
    x, y = _noisy(500)
    c = correlate(x, y, n_resamples=0)
    assert c.defined
    assert c.r == pytest.approx(_hand_pearson(x, y), abs=1e-12)
    assert c.r == pytest.approx(np.corrcoef(x, y)[0, 1], abs=1e-12)
    assert c.r_squared == pytest.approx(c.r**2, abs=1e-15)
    assert c.n == 500


@pytest.mark.parametrize("n", [3, 5, 30, 500])
def test_p_value_matches_t_distribution(n):
    x, y = _noisy(n, slope=0.3, seed=n)
    c = correlate(x, y, n_resamples=0)
    r = _hand_pearson(x, y)
    t = r * math.sqrt((n - 2) / (1 - r * r))
    p = 2 * sps.t.sf(abs(t), df=n - 2)
    assert c.p_value == pytest.approx(p, rel=1e-9, abs=1e-300)


def test_spearman_is_pearson_of_ranks():
    rng = np.random.default_rng(3)
    x = rng.normal(size=200)
    y = np.exp(x) + rng.normal(scale=0.5, size=200)
    y[::10] = y[0]  # ties
    c = correlate(x, y, n_resamples=0)
    rx, ry = sps.rankdata(x), sps.rankdata(y)
    assert c.spearman == pytest.approx(_hand_pearson(rx, ry), abs=1e-12)


def test_bootstrap_ci_contains_r_and_narrows_with_n():
    widths = []
    for n in (50, 500, 5000):
        x, y = _noisy(n, slope=0.5, seed=7)
        c = correlate(x, y, n_resamples=1000, seed=0)
        lo, hi = c.ci
        assert lo < c.r < hi
        assert -1 <= lo and hi <= 1
        widths.append(hi - lo)
    assert widths[0] > widths[1] > widths[2]
    # about 1/sqrt(n): a tenfold n shrinks the interval about threefold
    assert 2.0 < widths[1] / widths[2] < 4.5


def test_tiny_sample_interval_is_undefined_not_nan():
    c = correlate([1.0, 2.0, 3.0, 5.0], [1.0, 2.5, 2.0, 4.0])
    assert c.defined and isinstance(c.ci_low, Undefined)
    assert "fewer than 6 points" in c.ci_low.reason
    assert not (c.ci_low < c.r)
    _strict_json(c.as_dict())


def test_bootstrap_ci_agrees_with_fisher_z():
    x, y = _noisy(2000, slope=0.6, seed=11)
    c = correlate(x, y, n_resamples=2000, seed=1)
    z, se = math.atanh(c.r), 1 / math.sqrt(c.n - 3)
    lo, hi = math.tanh(z - 1.96 * se), math.tanh(z + 1.96 * se)
    width = hi - lo
    assert c.ci_low == pytest.approx(lo, abs=0.15 * width)
    assert c.ci_high == pytest.approx(hi, abs=0.15 * width)


def test_bootstrap_is_deterministic_per_seed():
    x, y = _noisy(300, seed=5)
    a = correlate(x, y, seed=42)
    b = correlate(x, y, seed=42)
    c = correlate(x, y, seed=43)
    assert a.ci == b.ci
    assert a.ci != c.ci
    assert a.r == c.r


def test_ci_respects_confidence_level():
    x, y = _noisy(400, seed=9)
    c90 = correlate(x, y, confidence=0.90)
    c99 = correlate(x, y, confidence=0.99)
    assert (c99.ci_high - c99.ci_low) > (c90.ci_high - c90.ci_low)
    with pytest.raises(ValueError):
        correlate(x, y, confidence=1.5)


def test_perfect_linear_data():
    x = np.linspace(-3, 5, 100)
    c = correlate(x, 2 * x + 1)
    assert c.r == pytest.approx(1.0, abs=1e-12)
    assert c.r_squared == pytest.approx(1.0, abs=1e-12)
    assert c.spearman == pytest.approx(1.0)
    assert c.p_value < 1e-100
    assert c.ci_low == pytest.approx(1.0, abs=1e-9) and c.ci_high == pytest.approx(1.0, abs=1e-9)
    neg = correlate(x, -x, n_resamples=0)
    assert neg.r == pytest.approx(-1.0, abs=1e-12)


@pytest.mark.parametrize(
    ("x", "y", "reason"),
    [
        (np.arange(10.0), np.full(10, 3.0), "constant input: y"),
        (np.full(10, 3.0), np.arange(10.0), "constant input: x"),
        (np.ones(10), np.ones(10), "constant input: x and y"),
        ([1.0, 2.0], [2.0, 1.0], "fewer than 3 points"),
        ([1.0, np.nan, 3.0, 4.0], [1.0, 2.0, 3.0, 5.0], "non-finite values in x"),
        ([1.0, 2.0, 3.0, 4.0], [1.0, np.inf, 3.0, 5.0], "non-finite values in y"),
    ],
)
def test_undefined_correlations(x, y, reason):
    c = correlate(x, y, label="head")
    assert not c.defined
    assert c.reason == reason
    assert isinstance(c.r, Undefined) and c.r.reason == reason
    # any claim on it fails
    assert not (c.r > 0.8) and not (c.r < 0.8) and not (c.r == pytest.approx(0.0))
    assert not (abs(c.r) >= 0) and not (c.r_squared <= 1) and not (c.p_value < 0.05)
    assert not (c.ci_low < c.r < c.ci_high)
    d = c.as_dict()
    assert set(d) == CORR_KEYS | {"reason"}
    assert d["correlation"] is None and d["ci_low"] is None and d["reason"] == reason
    assert d["n"] == len(x)
    _strict_json(d)
    assert repr(c) == f"Correlation(head: undefined — {reason}, n={len(x)})"


def test_undefined_claim_fails_as_assertion():
    c = correlate(np.arange(5.0), np.zeros(5))
    with pytest.raises(AssertionError):
        assert c.r > 0.8
    with pytest.raises(AssertionError):
        assert c.r == pytest.approx(0.0, abs=10)


def test_as_dict_keys_values_and_json():
    x, y = _noisy(200, seed=2)
    c = correlate(x, y, label="prediction")
    d = c.as_dict()
    assert set(d) == CORR_KEYS
    assert d["correlation"] == c.r and d["ci_high"] == c.ci_high and d["n"] == 200
    assert all(type(v) is float for k, v in d.items() if k != "n")
    assert type(d["n"]) is int
    _strict_json(d)
    off = correlate(x, y, n_resamples=0).as_dict()
    assert off["ci_low"] is None and off["ci_high"] is None and "reason" not in off
    _strict_json(off)


def test_repr_is_short():
    x, y = _noisy(500, seed=2)
    c = correlate(x, y, label="head")
    assert repr(c) == f"Correlation(head: r={c.r:.3f}, ci=[{c.ci_low:.3f}, {c.ci_high:.3f}], n=500)"
    assert "bootstrap disabled" in repr(correlate(x, y, n_resamples=0))


def test_constructor_normalises_none_and_nan():
    c = Correlation(None, None, float("nan"), None, 4, None, None, reason="why")
    assert not c.defined and isinstance(c.p_value, Undefined) and c.p_value.reason == "why"
    assert c.as_dict()["p_value"] is None
    _strict_json(c.as_dict())


def test_mismatched_lengths_raise():
    with pytest.raises(ValueError):
        correlate([1, 2, 3], [1, 2])
    with pytest.raises(ValueError):
        correlate(np.ones((3, 2)), np.ones((3, 2)))


def test_large_n_bootstrap_runs():
    x, y = _noisy(20000, seed=4)
    c = correlate(x, y, n_resamples=200)
    assert c.ci_low < c.r < c.ci_high


# --------------------------------------------------------------------------------- fit_line


def test_fit_line_exact_line():
    x = np.array([0.0, 1.0, 2.0, 5.0, -3.0])
    f = fit_line(x, 2 * x + 1)
    assert f.slope == pytest.approx(2.0, abs=1e-12)
    assert f.intercept == pytest.approx(1.0, abs=1e-12)
    assert f.r_squared == pytest.approx(1.0, abs=1e-12)
    assert f.n == 5 and f.defined
    assert isinstance(f.ci_low, Undefined) and f.ci_low.reason == "not computed"


def test_fit_line_matches_polyfit_and_r2_formula():
    rng = np.random.default_rng(8)
    x = rng.normal(3.0, 2.0, size=400)
    y = -0.7 * x + 4 + rng.normal(size=400)
    f = fit_line(x, y)
    slope, intercept = np.polyfit(x, y, 1)
    assert f.slope == pytest.approx(slope, rel=1e-10)
    assert f.intercept == pytest.approx(intercept, rel=1e-10)
    resid = y - (slope * x + intercept)
    r2 = 1 - (resid**2).sum() / ((y - y.mean()) ** 2).sum()
    assert f.r_squared == pytest.approx(r2, rel=1e-10)
    # simple regression: R² equals Pearson r²
    assert f.r_squared == pytest.approx(np.corrcoef(x, y)[0, 1] ** 2, rel=1e-10)
    d = f.as_dict()
    assert set(d) == {"slope", "intercept", "r_squared", "n", "ci_low", "ci_high"}
    assert d["ci_low"] is None
    _strict_json(d)


def test_fit_line_constant_y():
    x = np.arange(10.0)
    f = fit_line(x, np.full(10, 0.1))
    assert f.defined
    assert f.slope == 0.0 and f.intercept == 0.1
    assert isinstance(f.r_squared, Undefined)
    assert not (f.r_squared > 0.5) and not (f.r_squared < 0.5)
    d = f.as_dict()
    assert d["slope"] == 0.0 and d["r_squared"] is None and "reason" not in d
    _strict_json(d)


@pytest.mark.parametrize(
    ("x", "y", "reason"),
    [
        (np.ones(5), np.arange(5.0), "constant activation change"),
        ([1.0], [2.0], "fewer than 2 points"),
        ([], [], "fewer than 2 points"),
        ([1.0, np.nan, 2.0], [1.0, 2.0, 3.0], "non-finite values in activation change"),
    ],
)
def test_fit_line_undefined(x, y, reason):
    f = fit_line(x, y)
    assert not f.defined and f.reason == reason
    assert not (f.slope > 0) and not (f.slope == pytest.approx(1.0)) and not (f.r_squared >= 0)
    d = f.as_dict()
    assert d["slope"] is None and d["intercept"] is None and d["r_squared"] is None
    assert d["reason"] == reason
    _strict_json(d)
    assert repr(f) == f"LinearFit(undefined — {reason}, n={len(x)})"


def test_fit_line_repr_and_groups_ci():
    x, y, g, true_slope = _clustered(200, 8, slope=1.0, seed=12)
    f = fit_line(x, y, groups=g)
    assert f.ci_low < f.slope < f.ci_high
    assert f.ci_low < true_slope < f.ci_high
    assert f.ci == bootstrap_slope_ci(x, y, g)
    assert repr(f) == (
        f"LinearFit(slope={f.slope:.3g}, ci=[{f.ci_low:.3g}, {f.ci_high:.3g}], R²={f.r_squared:.3g}, n={len(x)})"
    )
    _strict_json(f.as_dict())


def test_linear_fit_constructor_defaults():
    f = LinearFit(1.0, 0.0, float("nan"), 3)
    assert isinstance(f.r_squared, Undefined) and isinstance(f.ci_high, Undefined)
    _strict_json(f.as_dict())


# ------------------------------------------------------------------------ bootstrap_slope_ci


def _clustered(n_groups: int, per: int, slope: float, seed: int):
    """Texts with a shared random offset (correlated within a text) and a known slope."""
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(n_groups), per)
    x = rng.normal(size=n_groups * per) + rng.normal(size=n_groups)[g]
    y = slope * x + rng.normal(size=n_groups)[g] + 0.5 * rng.normal(size=n_groups * per)
    return x, y, g, slope


def _slow_cluster_ci(x, y, g, n_resamples, seed, confidence=0.95):
    rng = np.random.default_rng(seed)
    ids = np.unique(g)
    members = {k: np.flatnonzero(g == k) for k in ids}
    slopes = []
    for _ in range(n_resamples):
        pick = rng.choice(ids, size=len(ids), replace=True)
        rows = np.concatenate([members[k] for k in pick])
        slopes.append(np.polyfit(x[rows], y[rows], 1)[0])
    a = (1 - confidence) / 2
    return tuple(np.percentile(slopes, [100 * a, 100 * (1 - a)]))


def test_cluster_ci_contains_true_slope():
    hits = 0
    for seed in range(10):
        x, y, g, true_slope = _clustered(100, 8, slope=0.7, seed=100 + seed)
        lo, hi = bootstrap_slope_ci(x, y, g, n_resamples=500, seed=seed)
        hits += lo < true_slope < hi
    assert hits >= 8


def test_cluster_ci_agrees_with_slow_loop():
    x, y, g, _ = _clustered(100, 8, slope=0.7, seed=3)
    fast = bootstrap_slope_ci(x, y, g, n_resamples=2000, seed=0)
    slow = _slow_cluster_ci(x, y, g, n_resamples=1000, seed=1)
    width = slow[1] - slow[0]
    assert fast[0] == pytest.approx(slow[0], abs=0.12 * width)
    assert fast[1] == pytest.approx(slow[1], abs=0.12 * width)
    # standard error of the slope under clustering is larger than the naive OLS one
    naive = sps.linregress(x, y).stderr
    assert (fast[1] - fast[0]) / (2 * 1.96) > naive


def test_cluster_ci_deterministic_and_group_labels_arbitrary():
    x, y, g, _ = _clustered(50, 4, slope=1.0, seed=5)
    a = bootstrap_slope_ci(x, y, g, seed=3)
    assert a == bootstrap_slope_ci(x, y, g, seed=3)
    # string group labels in the same sorted order give the same draws
    labels = np.array([f"t{k:03d}" for k in g])
    assert bootstrap_slope_ci(x, y, labels, seed=3) == a
    # a reordering of the rows does not change the result
    perm = np.random.default_rng(0).permutation(len(x))
    b = bootstrap_slope_ci(x[perm], y[perm], g[perm], seed=3)
    assert b == pytest.approx(a, rel=1e-9)


def test_cluster_ci_undefined_cases():
    x, y, g, _ = _clustered(20, 4, slope=1.0, seed=6)
    assert bootstrap_slope_ci(x, y, np.zeros(len(x), dtype=int)) == (None, None)
    assert bootstrap_slope_ci(np.ones(len(x)), y, g) == (None, None)
    assert bootstrap_slope_ci(x, y, g, n_resamples=0) == (None, None)
    xn = x.copy()
    xn[0] = np.nan
    assert bootstrap_slope_ci(xn, y, g) == (None, None)
    with pytest.raises(ValueError):
        bootstrap_slope_ci(x, y, g[:-1])


def test_empirical_null_closed_form():
    null = np.array([0.1, -0.2, 0.3, -0.4, 0.5, 0.6, -0.7, 0.8, 0.9, -1.0])
    res = empirical_null(-0.65, null, label="head")
    # |null| >= 0.65: 0.7, 0.8, 0.9, 1.0 -> 4
    assert res.p_value == pytest.approx(5 / 11)
    assert res.percentile_95 == pytest.approx(np.percentile(np.abs(null), 95))
    assert res.percentile_95 == pytest.approx(0.9 + 0.55 * 0.1)  # linear interpolation
    assert res.selectivity == pytest.approx(0.65 - res.percentile_95)
    assert res.observed == -0.65 and res.n_null == 10 and res.defined
    d = res.as_dict()
    assert set(d) == {"observed", "p_value", "percentile_95", "selectivity", "n_null"}
    _strict_json(d)
    assert repr(res).startswith("NullComparison(head: observed=-0.650, p=0.455")


def test_empirical_null_extremes_and_ties():
    null = np.linspace(-0.5, 0.5, 999)
    assert empirical_null(0.9, null).p_value == pytest.approx(1 / 1000)
    assert empirical_null(0.0, null).p_value == pytest.approx(1.0)
    # ties count as at least as extreme
    assert empirical_null(0.5, [0.5, -0.5, 0.1]).p_value == pytest.approx(3 / 4)


@pytest.mark.parametrize(
    ("observed", "null", "fragment"),
    [
        (Undefined("constant input: y"), [0.1, 0.2], "constant input: y"),
        (float("nan"), [0.1, 0.2], "not finite"),
        (0.3, [], "empty null"),
        (0.3, [0.1, float("nan")], "non-finite values in null"),
        (0.3, [0.1, Undefined("x")], "non-finite values in null"),
    ],
)
def test_empirical_null_undefined(observed, null, fragment):
    res = empirical_null(observed, null)
    assert not res.defined and fragment in res.reason
    assert not (res.p_value < 0.05) and not (res.selectivity > 0)
    d = res.as_dict()
    assert d["p_value"] is None and fragment in d["reason"]
    _strict_json(d)


def test_null_comparison_constructor():
    r = NullComparison(0.5, None, 0.2, 0.3, 10)
    assert not r.defined and r.as_dict()["p_value"] is None
