"""Coverage of the reported 95% intervals on simulated data with a known truth: a small version of
benchmarks/bench_coverage.py (its simulations, 200 datasets per case, a looser band; deterministic)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

DATASETS = 200
# Binomial sd of a 95% coverage over 200 datasets is 1.5%: the band is about 3 sd each side.
LOW, HIGH = 0.905, 0.99


def _bench() -> ModuleType:
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_coverage.py"
    spec = importlib.util.spec_from_file_location("bench_coverage", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("bench_coverage", module)
    spec.loader.exec_module(module)
    return module


BENCH = _bench()


@pytest.mark.parametrize(
    ("dist", "n", "rho"), [("normal", 20, 0.5), ("normal", 200, 0.9), ("skewed", 200, 0.5), ("heavy", 200, 0.9)]
)
def test_interval_of_r_covers(dist: str, n: int, rho: float) -> None:
    coverage, width = BENCH.r_coverage(dist, n, rho, DATASETS)
    assert LOW <= coverage <= HIGH, f"{dist} n={n} rho={rho}: coverage {coverage:.3f}"
    assert 0 < width < 1


@pytest.mark.parametrize(("dist", "texts"), [("normal", 20), ("heavy", 50), ("skewed", 200)])
def test_patching_slope_interval_covers(dist: str, texts: int) -> None:
    coverage, _ = BENCH.slope_coverage(dist, texts, DATASETS)
    assert LOW <= coverage <= HIGH, f"{dist} {texts} texts: coverage {coverage:.3f}"


def test_null_baseline_p_value_is_valid() -> None:
    """Under the null, p <= 0.05 in at most 5% of datasets: 10/201 exactly for K=200 (up to noise)."""
    share = BENCH.null_rejection(4000)
    assert 0.035 <= share <= 10 / 201 + 3 * (0.05 * 0.95 / 4000) ** 0.5
