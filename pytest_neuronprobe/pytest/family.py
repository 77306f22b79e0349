"""--neuron-error-control: a claim's verdict within its family (README: "Error rates across claims").

The family is every claims-file item of the session (after deselection) judged on an interval's bound
(:func:`in_family`), one per claim per run. Every process (the session, or each xdist worker) computes the
whole family's raw p-values once, from the same seeded, cached analyses, so each claim item's outcome is
decided where it runs and is the same under ``-n``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, cast

import pytest

from pytest_neuronprobe.claims.multiplicity import LEVEL, Bootstrapped, adjust, claim_p_value, in_family
from pytest_neuronprobe.claims.verdicts import Claim, Verdict
from pytest_neuronprobe.core.formatting import format_short

if TYPE_CHECKING:  # pragma: no cover
    from pytest_neuronprobe.pytest.session import NeuronSession


class ClaimItem(Protocol):
    """What this module needs of a claims-file item (``items.ClaimItem``, which imports this module)."""

    claim: Claim
    label: str | None
    config: pytest.Config
    session: pytest.Session

    @property
    def nodeid(self) -> str: ...

    def judge(self, state: NeuronSession, *, quiet: bool = False) -> Verdict: ...


#: nodeid -> (raw p, adjusted p), and the family size, computed once per process.
FAMILY_KEY = pytest.StashKey[tuple[dict[str, tuple[float, float]], int]]()


def members(item: ClaimItem) -> list[ClaimItem]:
    """The session's claims-file items (those of ``item``'s class) judged on an interval, in collection order."""
    cls: type = type(item)
    found = [i for i in item.session.items if type(i) is cls]
    return [i for i in cast("list[ClaimItem]", found) if i.label is not None and in_family(i.claim)]


def _bootstrapped(item: ClaimItem, state: NeuronSession) -> Bootstrapped | None:
    assert item.label is not None
    if item.claim.metric == "patching.slope":
        return state.patching(item.label).fit
    return state.projection(item.label)[item.claim.metric.split(".")[1]]


def raw_p(item: ClaimItem, state: NeuronSession, verdict: Verdict | None = None) -> float:
    """The claim's raw one-sided p-value; 1 when it cannot be judged (skipped, failing input, no interval)."""
    try:
        verdict = verdict if verdict is not None else item.judge(state, quiet=True)
        return claim_p_value(item.claim, verdict, _bootstrapped(item, state))
    except (Exception, pytest.skip.Exception):  # noqa: BLE001 - it fails (or skips) in its own item, never passes
        return 1.0


def family(item: ClaimItem, state: NeuronSession) -> tuple[dict[str, tuple[float, float]], int]:
    """Every member's (raw p, adjusted p) by node id, and the family size (memoised per process)."""
    stash = item.config.stash
    if FAMILY_KEY not in stash:
        group = members(item)
        p = [raw_p(m, state) for m in group]
        adjusted = adjust(p, state.settings.error_control)
        stash[FAMILY_KEY] = ({m.nodeid: (a, b) for m, a, b in zip(group, p, adjusted, strict=True)}, len(group))
    return stash[FAMILY_KEY]


def judge_in_family(item: ClaimItem, verdict: Verdict, state: NeuronSession) -> Verdict:
    """The verdict under error control: it passes when the bound does and the adjusted p <= LEVEL."""
    ps, size = family(item, state)
    p, adjusted = ps.get(item.nodeid, (raw_p(item, state, verdict), 1.0))
    method = state.settings.error_control
    passed = verdict.passed and adjusted <= LEVEL
    note = (
        f"error control {method} over {size} claim(s): p={format_short(p)}, adjusted p={format_short(adjusted)} "
        f"{'<=' if adjusted <= LEVEL else '>'} {LEVEL}"
    )
    n_boot = _resamples(item, state)
    if n_boot and size / n_boot > LEVEL and method == "holm":
        note += f" (with {n_boot} resamples no p is below {format_short(1 / n_boot)}: raise n_resamples)"
    if verdict.passed and not passed:
        message = f"{item.claim.text} failed after {note}; on its own: {verdict.message}"
    else:
        message = f"{verdict.message}; {note}"
    values = {**verdict.values, "p": p, "p_adjusted": adjusted, "family_size": float(size)}
    return Verdict(passed, message, verdict.judged_on, values)


def _resamples(item: ClaimItem, state: NeuronSession) -> int:
    """How many bootstrap resamples are behind the claim's interval (0 when unknown)."""
    result = _bootstrapped(item, state)
    size = getattr(result, "bootstrap", None)
    return int(size.size) if size is not None else 0
