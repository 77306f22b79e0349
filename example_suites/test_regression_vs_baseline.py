"""Has anything got worse since the baseline? Regression checks against `--neuron-baseline`.

    pytest example_suites --neuron-run 'demo_runs/*' --neuron-baseline example_suites/baseline
    pytest example_suites --neuron-run 'demo_runs/*' --neuron-baseline example_suites/baseline --neuron-update-baseline

`neuron_baseline` is the baseline summary.json of the run under test; without a baseline (or
without one for this run) these tests are skipped, with the reason, and counted in the terminal
summary. The terminal summary also prints metric | baseline | now | delta per run. Updating
writes the new summaries only after the whole session; the tests still compare with the old ones.
Tolerances are on the estimates: they absorb the bootstrap's and the platform's noise, not a real
change of the head.
"""

from __future__ import annotations

import pytest

from pytest_neuronprobe import assert_claim


def test_same_analysis_as_the_baseline(neuron_run, projection, neuron_baseline):
    """Compare like with like: the same neuron, the same number of analysed texts."""
    before = neuron_baseline["run"]
    assert (neuron_run.layer, neuron_run.neuron) == (before["target_layer"], before["target_neuron"])
    assert projection.n == neuron_baseline["dataset_size"]


def test_prediction_no_worse(projection, neuron_baseline):
    """The prediction's correlation has not dropped by more than 0.05."""
    before = neuron_baseline["projections"]["prediction"]["correlation"]
    assert projection.prediction.r >= before - 0.05


def test_head_direction_no_worse(projection, neuron_baseline):
    """The same claim in the claims-file language (the message says which numbers it used)."""
    assert_claim("projection.head.r >= baseline - 0.05", projection, baseline=neuron_baseline, judge="estimate")


@pytest.mark.patching(factors=[0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0])
def test_patching_slope_unchanged(patching, neuron_baseline):
    """The causal effect of the neuron on the prediction is what it was (within 20%)."""
    before = neuron_baseline["patching"]["slope"]
    assert patching.slope == pytest.approx(before, rel=0.2, abs=1e-3)


def test_live_activations_still_match(projection, neuron_baseline):
    """If the model or its processing changed, the live activations would drift from the dataset."""
    assert projection.live.r >= neuron_baseline["projections"]["live"]["correlation"] - 1e-3
