"""Holm and Benjamini-Hochberg over claims: closed forms, and error rates over simulated sessions."""

from __future__ import annotations

import numpy as np
import pytest

from pytest_neuronprobe.analyses.stats import correlate
from pytest_neuronprobe.claims.metrics import flatten
from pytest_neuronprobe.claims.multiplicity import LEVEL, adjust, benjamini_hochberg, claim_p_value, holm, in_family
from pytest_neuronprobe.claims.verdicts import evaluate, parse_claim


def test_holm_and_bh_match_hand_computed_values():
    p = [0.01, 0.04, 0.03, 0.005]
    # sorted 0.005, 0.01, 0.03, 0.04: Holm 4p, 3p, 2p, 1p with a running max
    assert holm(p) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    # BH: m p / rank with a running min from the top: 0.02, 0.02, 0.04, 0.04
    assert benjamini_hochberg(p) == pytest.approx([0.02, 0.04, 0.04, 0.02])
    assert adjust(p, "none") == p
    assert holm([0.9, 0.8]) == [1.0, 1.0] and holm([]) == [] and benjamini_hochberg([0.5]) == [0.5]
    with pytest.raises(ValueError, match="holm, bh"):
        adjust(p, "bonferroni")


def _sessions(rng: np.random.Generator, sessions: int, m: int, false: int) -> tuple[np.ndarray, np.ndarray]:
    """p-values of `sessions` simulated sessions of `m` claims, the first `false` of them false (true null:
    uniform p) and the rest true (p concentrated near 0); and which claims are false."""
    p = rng.uniform(size=(sessions, m))
    p[:, false:] = rng.beta(0.1, 8.0, size=(sessions, m - false))
    return p, np.arange(m) < false


@pytest.mark.parametrize("level", [0.05, LEVEL])
def test_holm_keeps_the_family_wise_error_rate(level):
    rng = np.random.default_rng(0)
    for m, false in ((20, 20), (160, 160), (40, 10)):
        p, is_false = _sessions(rng, 2000, m, false)
        passed = np.array([np.array(holm(row)) <= level for row in p])
        fwer = (passed & is_false).any(axis=1).mean()
        assert fwer <= level + 2 * np.sqrt(level / 2000)  # at most the level, up to simulation noise
        if m == 160:  # and no slack left at the global null: Holm's FWER is close to the level
            assert fwer >= level / 2


@pytest.mark.parametrize("level", [0.05, LEVEL])
def test_bh_keeps_the_false_discovery_rate(level):
    rng = np.random.default_rng(1)
    for m, false in ((20, 20), (100, 50), (40, 10)):
        p, is_false = _sessions(rng, 2000, m, false)
        passed = np.array([np.array(benjamini_hochberg(row)) <= level for row in p])
        fdp = (passed & is_false).sum(axis=1) / np.maximum(1, passed.sum(axis=1))
        # BH: FDR = (false / m) * level for independent p-values
        assert fdp.mean() <= level * false / m + 2 * fdp.std() / np.sqrt(2000)
        # without control, far more false claims pass
        raw_fdp = ((p <= level) & is_false).sum(axis=1) / np.maximum(1, (p <= level).sum(axis=1))
        assert raw_fdp.mean() > fdp.mean()


def test_bootstrap_p_values_of_false_claims_are_valid():
    """A false claim (r >= its true value + 0.1, ... ) gets p <= 0.025 at most about 2.5% of the time."""
    rng = np.random.default_rng(2)
    hits, total = 0, 0
    for _ in range(300):
        x = rng.normal(size=100)
        y = 0.6 * x + 0.8 * rng.normal(size=100)
        c = correlate(x, y, n_resamples=400, seed=0)
        total += 1
        hits += c.p_beyond(0.6, "lower") <= LEVEL  # the claim r >= 0.6 is false by a hair: its null is true
    assert hits / total <= LEVEL + 2 * np.sqrt(LEVEL / total)


def test_claim_p_value_by_kind_and_the_family():
    x = np.linspace(0, 1, 80)
    y = x + np.random.default_rng(3).normal(scale=0.3, size=80)
    c = correlate(x, y)
    summary = {"run": {"name": "r"}, "projections": {"head": c.as_dict()}}
    metrics = flatten(summary)
    for text, expected in (
        ("projection.head.r >= 0.5", c.p_beyond(0.5, "lower")),
        ("projection.head.r <= 0.95", c.p_beyond(0.95, "upper")),
        ("projection.head.r between 0.5 and 0.95", max(c.p_beyond(0.5, "lower"), c.p_beyond(0.95, "upper"))),
    ):
        claim = parse_claim(text)
        assert in_family(claim)
        assert claim_p_value(claim, evaluate(claim, metrics), c) == expected
    assert not in_family(parse_claim("projection.head.r >= 0.5", judge="estimate"))
    assert not in_family(parse_claim("projection.head.r_squared >= 0.5"))
    assert not in_family(parse_claim("projection.head.n == 80"))
    assert in_family(parse_claim("patching.slope 1 +- 0.2"))
    claim = parse_claim("projection.input.r >= 0.5")  # absent: p = 1, never passes
    assert claim_p_value(claim, evaluate(claim, metrics), None) == 1.0
