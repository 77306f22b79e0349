"""Coverage of every interval the plugin reports, measured on simulated data with a known truth (issue 14).

Each case draws `--datasets` datasets and calls the plugin's own interval code on each, with its defaults
(1000 resamples, seed 0, 95%):

- `r`: the interval of Pearson r (`analyses.intervals`, as `correlate` computes it), for x and y built from
  two independent standardised draws (normal; skewed: exponential; heavy-tailed: Student t with 5 df) as
  `y = rho x + sqrt(1 - rho^2) e`, so the population r is exactly `rho`; n = 20 ... 2000, rho 0, 0.5, 0.9.
- `slope`: the cluster-bootstrap interval of the pooled patching slope (`fits.bootstrap_slope_ci`): per
  text 8 factors `[0, 0.25, ..., 2]` of an activation `a_t` (activation change `(f - 1) a_t`), a per-text
  slope `1 + 0.3 u_t` (between-text heterogeneity) and noise; the true pooled slope is 1.
- `null p`: the null baseline's empirical p-value (`nulls.empirical_null`, K = 200) when the observed |r| is
  one more draw of the null (a head no better than a random direction): the share with p <= 0.05, which a
  valid p-value keeps at or below 0.05.

Usage: python benchmarks/bench_coverage.py [--datasets 1000] [--quick]   (prints the README's table)
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pytest_neuronprobe.analyses.fits import bootstrap_slope_ci  # noqa: E402
from pytest_neuronprobe.analyses.intervals import bootstrap_r, percentile_interval, resample_counts  # noqa: E402
from pytest_neuronprobe.analyses.nulls import empirical_null  # noqa: E402
from pytest_neuronprobe.analyses.stats import correlate  # noqa: E402

Draw = Callable[[np.random.Generator, tuple[int, ...]], np.ndarray]
DISTRIBUTIONS: dict[str, Draw] = {
    "normal": lambda rng, shape: rng.standard_normal(shape),
    "skewed": lambda rng, shape: rng.exponential(size=shape) - 1.0,
    "heavy": lambda rng, shape: rng.standard_t(5, size=shape) / np.sqrt(5.0 / 3.0),
}
FACTORS = np.array([0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0])


def r_coverage(dist: str, n: int, rho: float, datasets: int, seed: int = 1) -> tuple[float, float]:
    """(coverage of rho, mean width) of the plugin's interval of r over `datasets` simulated datasets."""
    rng = np.random.default_rng([seed, n, int(rho * 100)])
    draw = DISTRIBUTIONS[dist]
    hits, width = 0, 0.0
    per_chunk = max(1, 200_000 // n)
    for start in range(0, datasets, per_chunk):
        d = min(per_chunk, datasets - start)
        x, e = draw(rng, (d, n)), draw(rng, (d, n))
        y = rho * x + np.sqrt(1.0 - rho * rho) * e
        r_star = bootstrap_r(x, y, resample_counts(n, 1000, 0))  # correlate's draws for seed 0
        r = [float(np.corrcoef(x[i], y[i])[0, 1]) for i in range(d)]
        if start == 0:  # the same code path as the plugin's `correlate`
            ci = percentile_interval(r[0], n, r_star[0], 0.95)
            assert ci is not None and np.allclose(correlate(x[0], y[0]).ci, ci, rtol=0, atol=1e-9)
        for i in range(d):
            iv = percentile_interval(r[i], n, r_star[i], 0.95)
            if iv is not None:
                hits += iv[0] <= rho <= iv[1]
                width += iv[1] - iv[0]
    return hits / datasets, width / datasets


def slope_coverage(dist: str, texts: int, datasets: int, seed: int = 2) -> tuple[float, float]:
    """(coverage of the true pooled slope 1, mean width) of the cluster-bootstrap slope interval."""
    rng = np.random.default_rng([seed, texts])
    draw = DISTRIBUTIONS[dist]
    groups = np.repeat(np.arange(texts), len(FACTORS))
    hits, width = 0, 0.0
    for _ in range(datasets):
        act = 1.0 + 0.5 * np.abs(draw(rng, (texts, 1)))
        slope = 1.0 + 0.3 * draw(rng, (texts, 1))
        d_act = (FACTORS - 1.0) * act
        d_pred = slope * d_act + 0.2 * draw(rng, d_act.shape)
        lo, hi = bootstrap_slope_ci(d_act.ravel(), d_pred.ravel(), groups)
        assert lo is not None and hi is not None
        hits += lo <= 1.0 <= hi
        width += hi - lo
    return hits / datasets, width / datasets


def null_rejection(datasets: int, k: int = 200, level: float = 0.05, seed: int = 3) -> float:
    """Share of datasets whose null-baseline p-value is <= `level` when the observed value is null."""
    rng = np.random.default_rng(seed)
    values = np.abs(rng.standard_normal((datasets, k + 1)))  # |r| of K + 1 exchangeable directions
    rejected = sum(empirical_null(v[0], v[1:]).p_value <= level for v in values)
    return rejected / datasets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", type=int, default=1000)
    parser.add_argument("--quick", action="store_true", help="n <= 200 and fewer cases")
    args = parser.parse_args()
    sizes = (20, 50, 200) if args.quick else (20, 50, 200, 2000)
    t0 = time.perf_counter()
    print(f"coverage of nominal 95% intervals, {args.datasets} datasets per case, 1000 resamples each")
    print("| interval | data | n | truth | coverage | mean width |\n|---|---|---|---|---|---|")
    for dist in DISTRIBUTIONS:
        for n in sizes:
            for rho in (0.0, 0.5, 0.9):
                cov, w = r_coverage(dist, n, rho, args.datasets)
                print(f"| r | {dist} | {n} | {rho} | {100 * cov:.1f}% | {w:.3f} |", flush=True)
    for dist in DISTRIBUTIONS:
        for texts in (20, 50, 200):
            cov, w = slope_coverage(dist, texts, args.datasets)
            print(f"| patching slope | {dist} | {texts} texts x 8 | 1 | {100 * cov:.1f}% | {w:.3f} |", flush=True)
    share = null_rejection(args.datasets * 10)
    print(f"null-baseline p <= 0.05 under the null: {100 * share:.2f}% of {args.datasets * 10} (valid: <= 5%)")
    print(f"took {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
