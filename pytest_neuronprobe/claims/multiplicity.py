"""Error rates across claims (``--neuron-error-control``): one-sided bootstrap p-values, Holm and BH.

A claim judged on an interval's bound is a one-sided test at level :data:`LEVEL` = 0.025 (the bound of a
95% interval): ``>= t`` tests "the value is below t", and passes when the bootstrap puts at most 2.5% of its
mass on the wrong side. Its p-value is that share (see ``Correlation.p_beyond`` and ``LinearFit.p_beyond``);
a range claim needs both ends, so its p is the larger of the two. Holm keeps the chance that any false claim
of the family passes at or below ``LEVEL``; Benjamini-Hochberg keeps the expected share of false claims among
the passing ones at or below it. A family of one judges as without error control.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

from pytest_neuronprobe.claims.verdicts import Claim, Verdict

__all__ = ["ERROR_CONTROLS", "LEVEL", "adjust", "benjamini_hochberg", "claim_p_value", "holm", "in_family"]

#: ``none``: each claim judged on its own (the default); ``holm``: family-wise error rate; ``bh``: FDR.
ERROR_CONTROLS = ("none", "holm", "bh")
#: The one-sided level of a 95% interval's bound, at which adjusted p-values are judged.
LEVEL = 0.025
#: Metrics whose claims are judged on a bootstrap interval (the family's possible members).
INTERVAL_METRICS = ("patching.slope",)


class Bootstrapped(Protocol):
    """A result with a bootstrap behind its interval (``Correlation``, ``LinearFit``)."""

    def p_beyond(self, threshold: float, side: str) -> float: ...


def in_family(claim: Claim) -> bool:
    """Whether the claim is judged on an interval's bound: a ``>=``/``>``/``<=``/``<``/range claim on
    ``projection.<name>.r`` or ``patching.slope`` with ``judge: bound``."""
    on_interval = claim.metric in INTERVAL_METRICS or (
        claim.metric.startswith("projection.") and claim.metric.endswith(".r") and claim.metric.count(".") == 2
    )
    return on_interval and claim.judge == "bound" and claim.expr.kind in ("lower", "upper", "range")


def claim_p_value(claim: Claim, verdict: Verdict, result: Bootstrapped | None) -> float:
    """The claim's raw one-sided p-value from the bootstrap behind its interval; 1 when it has none
    (undefined value or interval, a missing reference): such a claim never passes."""
    v = verdict.values
    if result is None or v.get("estimate") is None:
        return 1.0
    kind = claim.expr.kind
    if kind == "lower" and v.get("threshold") is not None:
        return result.p_beyond(float(v["threshold"]), "lower")  # type: ignore[arg-type]
    if kind == "upper" and v.get("threshold") is not None:
        return result.p_beyond(float(v["threshold"]), "upper")  # type: ignore[arg-type]
    if kind == "range" and v.get("low") is not None and v.get("high") is not None:
        low, high = float(v["low"]), float(v["high"])  # type: ignore[arg-type]
        return max(result.p_beyond(low, "lower"), result.p_beyond(high, "upper"))
    return 1.0


def holm(p: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values: ``max_{j<=i} min(1, (m - j + 1) p_(j))`` in sorted order."""
    a = np.asarray(p, dtype=float)
    m = a.size
    order = np.argsort(a, kind="stable")
    adjusted = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * a[order]))
    out = np.empty(m)
    out[order] = adjusted
    return [float(x) for x in out]


def benjamini_hochberg(p: Sequence[float]) -> list[float]:
    """Benjamini-Hochberg step-up adjusted p-values: ``min_{j>=i} min(1, m p_(j) / j)`` in sorted order."""
    a = np.asarray(p, dtype=float)
    m = a.size
    order = np.argsort(a, kind="stable")
    scaled = a[order] * m / np.arange(1, m + 1)
    adjusted = np.minimum(1.0, np.minimum.accumulate(scaled[::-1])[::-1])
    out = np.empty(m)
    out[order] = adjusted
    return [float(x) for x in out]


def adjust(p: Sequence[float], method: str) -> list[float]:
    """Adjusted p-values of a family by ``method`` (``none`` returns them as they are)."""
    if method == "holm":
        return holm(p)
    if method == "bh":
        return benjamini_hochberg(p)
    if method == "none":
        return [float(x) for x in p]
    raise ValueError(f"unknown error control {method!r}: choose from {', '.join(ERROR_CONTROLS)}")
