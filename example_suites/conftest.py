"""Shared by the example suites: findings already known about particular runs.

A researcher's suite states what a good probe head should show; some runs are known not to show
it, for a reason worth writing down. `known_finding` turns such a finding into a strict xfail
for the runs it names (by glob over run names), and leaves every other run to the plain
assertion: a run that unexpectedly starts to satisfy the claim fails (XPASS strict), so the note
is revisited instead of going stale.
"""

from __future__ import annotations

from fnmatch import fnmatchcase

import pytest

#: The four runs `neuronprobe demo` builds (see pytest_neuronprobe/demo.py).
DEMO_RUNS = ("regression-linear-*", "regression-hidden32-*", "classification-5bins-*", "token-ft1-*")

#: finding -> (run globs, why). The numbers quoted are those of the demo runs (test split, n=120).
FINDINGS: dict[str, tuple[tuple[str, ...], str]] = {
    "token head direction": (
        ("token-ft1-*",),
        "a token head predicts sum_i i*softmax(digit logits): a non-linear read-out through ln_final and "
        "the unembedding, so its mean-gradient direction is a poor linear summary of it (head r ~ 0.22, no "
        "better than random directions) even though its prediction tracks the neuron (r ~ 0.79)",
    ),
    "not one-for-one": (
        DEMO_RUNS,
        "the demo heads read the final residual stream, where the neuron's own write W_out[n] is one small "
        "part; they mostly read what computes the neuron (its inputs stay in the residual stream), so "
        "patching the neuron moves their prediction by only ~0.01-0.08 per unit of activation",
    ),
    "reads upstream": (
        ("regression-hidden32-*", "classification-5bins-*", "token-ft1-*"),
        "the attribution sweep (every neuron of layers 0-2 ablated to its mean at the read token, top 20 "
        "verified exactly) shows these heads depend most on layer-0 neuron L0.N500 (exact effect 0.013-0.076 "
        "per text), not on their neuron L2.N3, which ranks 13th-21st with 1-4% of the verified units' summed "
        "effect; only the linear head ranks its own neuron first (L2.N3: 0.044, 10% of the sum)",
    ),
    "indirect effect": (
        ("token-ft1-*",),
        "the token run fine-tuned the last block: the neuron's effect on the digit read-out goes through it "
        "(direct-path slope ~ 0, total slope ~ 0.026)",
    ),
}


def known_finding(request: pytest.FixtureRequest, run_name: str, finding: str) -> None:
    """Mark this test as a strict expected failure when `run_name` is one the finding names."""
    globs, why = FINDINGS[finding]
    if any(fnmatchcase(run_name, g) for g in globs):
        request.applymarker(pytest.mark.xfail(strict=True, reason=f"known finding ({finding}): {why}"))


@pytest.fixture
def expect(request: pytest.FixtureRequest, neuron_run):
    """`expect("finding")` inside a test: xfail (strict) for the runs that finding names."""

    def apply(finding: str) -> None:
        known_finding(request, neuron_run.name, finding)

    return apply
