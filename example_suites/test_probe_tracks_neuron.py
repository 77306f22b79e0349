"""Does the probe head really track its neuron? The seed notebooks' questions, as assertions.

Run against one or more probe-training runs:

    pytest example_suites --neuron-run 'demo_runs/*' --neuron-report reports/

Every test runs once per run (ids = run names). Claims on a correlation are judged on its 95%
bootstrap interval (`.ci_low`), not just the estimate, so a lucky sample does not pass. A number
that is undefined (e.g. a constant projection) fails every comparison, with its reason.
Known exceptions for particular runs are in conftest.py (`expect(...)`): strict xfails with the
reason written down.
"""

from __future__ import annotations

import pytest

# ----------------------------------------------------------------------------- the data


def test_dataset_was_made_by_this_model(projection):
    """The neuron recomputed now matches the dataset's activations (same model, tokenisation, processing)."""
    assert projection.self_check.ok, projection.self_check.message
    assert projection.live.ci_low > 0.999


def test_ground_truth_varies(neuron_dataset):
    """A neuron that never changes cannot be tracked: the analysed activations must vary."""
    assert len(neuron_dataset) >= 100
    assert neuron_dataset["activation"].std() > 0


# ----------------------------------------------------------------------------- projections (seed 000)


def test_prediction_tracks_ground_truth(projection):
    """The head's prediction correlates with the neuron's activation, the whole interval above 0.7."""
    assert projection.prediction.ci_low > 0.7


def test_ground_truth_is_a_function_of_the_neuron_input(projection):
    """Sanity: the residual stream just before the MLP, read through W_in[:, n], predicts the neuron."""
    assert projection.input.ci_low > 0.8
    assert projection.input.r > projection.output.r


def test_head_direction_tracks_neuron(projection, expect):
    """The residual stream projected on the head's direction tracks the neuron."""
    expect("token head direction")
    assert projection.head.ci_low > 0.7


def test_head_is_selective_over_the_null(projection, expect):
    """The head direction beats random directions and the other neurons' output directions."""
    expect("token head direction")
    null = projection.null
    assert null.random.p_value <= 0.05
    assert null.random.selectivity > 0
    assert null.neurons.p_value <= 0.05


# ----------------------------------------------------------------------------- patching (seed 004)

FACTORS = [0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0]


@pytest.mark.patching(factors=FACTORS)
def test_prediction_moves_with_the_neuron(patching):
    """Causal dependence: scaling the neuron moves the prediction, the slope's interval excludes 0."""
    assert patching.fit.ci_low > 0
    assert patching.r_squared > 0.3


@pytest.mark.patching(factors=FACTORS)
def test_head_follows_the_neuron_one_for_one(patching, expect):
    """A head that reads the neuron itself changes its prediction one-for-one with the activation."""
    expect("not one-for-one")
    assert patching.slope == pytest.approx(1.0, abs=0.25)


@pytest.mark.patching(factors=FACTORS)
def test_effect_goes_through_the_direct_path(patching, expect):
    """Direct vs total effect: the neuron's own write into the read layer explains the whole slope."""
    expect("indirect effect")
    assert patching.slope == pytest.approx(patching.direct_slope, rel=0.15)
