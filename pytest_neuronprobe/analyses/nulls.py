"""An observed statistic against an empirical null distribution (the projection's null baselines)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from pytest_neuronprobe.analyses.stats import Number, Undefined, as_number, finite_or_none


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
            object.__setattr__(self, name, as_number(getattr(self, name), why))
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


def empirical_null(observed: Any, null: npt.ArrayLike, *, label: str = "") -> NullComparison:
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
        return NullComparison(obs if obs is not None else u, u, u, u, n_null, label=label, reason=reason)
    assert obs is not None  # else `reason` is set
    a_obs = abs(obs)
    a_null = np.abs(null_a)
    p = (1 + int(np.count_nonzero(a_null >= a_obs))) / (1 + n_null)
    p95 = float(np.percentile(a_null, 95))
    return NullComparison(obs, p, p95, a_obs - p95, n_null, label=label)
