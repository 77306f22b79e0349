"""What does the head read? The attribution sweep over every neuron, verified by exact patching.

Patching answers "does the head follow THIS neuron?"; the attribution sweep asks which units the head's
prediction actually depends on (every MLP neuron the head can see, ablated to its mean at the read token;
the 20 largest first-order estimates and the target verified exactly). A head that reads its neuron should
depend on it more than on any other unit. Known exceptions are in conftest.py ("reads upstream").
"""

from __future__ import annotations


def test_the_estimates_rank_units_like_their_exact_effects(attribution):
    """The first-order estimates can be trusted to pick the units worth verifying (Spearman >= 0.8)."""
    assert attribution.trustworthy, attribution


def test_the_head_depends_most_on_its_neuron(attribution, expect):
    """Of all the units the head can see, its own neuron changes the prediction most when ablated."""
    expect("reads upstream")
    assert attribution.target_rank == 1, attribution
    assert attribution.top[0] == attribution.target, attribution
