"""The control task and the input probe, on constructed data with known answers and on the tiny runs."""

from __future__ import annotations

import dataclasses
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from pytest_neuronprobe.analyses.cache import dumps, loads
from pytest_neuronprobe.analyses.control import (
    NO_TRAIN_REASON,
    TOKEN_REASON,
    ControlResult,
    HeadShape,
    analyze_control,
    control_predictions,
    control_task,
    input_probe,
)
from pytest_neuronprobe.analyses.head_fit import ridge_fit
from pytest_neuronprobe.analyses.options import ControlOptions, ProjectionOptions
from pytest_neuronprobe.analyses.projection import analyze_projection
from pytest_neuronprobe.analyses.stats import Undefined
from pytest_neuronprobe.build.train import MLP_STEPS, train_feature_head
from pytest_neuronprobe.claims.metrics import flatten, needs_control
from pytest_neuronprobe.core.errors import OptionError
from pytest_neuronprobe.core.probe import open_probe
from pytest_neuronprobe.core.runs import load_run
from tests.run_copies import config_path, copy_run, dataset_path, model_dir

pytestmark = pytest.mark.usefixtures("one_torch_thread")


LINEAR = HeadShape("regression", None, 1)
HIDDEN = HeadShape("regression", 8, 1)


def _gaussian(n: int, d: int, seed: int) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).standard_normal((n, d))).float()


def _slow_r(x_train: np.ndarray, y: np.ndarray, x_eval: np.ndarray, y_eval: np.ndarray) -> float:
    """Least squares with bias by numpy's lstsq: the reference fit."""
    design = np.column_stack([x_train, np.ones(len(x_train))])
    coef = np.linalg.lstsq(design, y, rcond=None)[0]
    return float(np.corrcoef(x_eval @ coef[:-1] + coef[-1], y_eval)[0, 1])


@pytest.mark.parametrize(("shape", "n_train", "n_eval"), [(LINEAR, 4000, 20000), (HIDDEN, 600, 6000)])
def test_pure_noise_targets_give_selectivity_near_zero(shape: HeadShape, n_train: int, n_eval: int) -> None:
    """Targets independent of the features: the head itself fits noise, so it is no better than its control."""
    x_train, x_eval = _gaussian(n_train, 8, 0), _gaussian(n_eval, 8, 1)
    rng = np.random.default_rng(2)
    y_train, y_eval = rng.standard_normal(n_train), rng.standard_normal(n_eval)
    head = control_predictions(shape, x_train, y_train, x_eval, seed=99, steps=30)  # the "real" head, on noise
    result = control_task(shape, x_train, y_train, x_eval, y_eval, head, shuffles=5, seed=0, steps=30)
    assert abs(result.selectivity) < 0.05, result
    assert abs(result.r) < 0.05 and abs(result.head_r) < 0.05, result


def test_a_head_reading_its_own_neuron_has_r_one_and_a_control_near_zero() -> None:
    """A target that is one feature: a control head's r is that of a random direction, about ±1/sqrt(width)
    per shuffle (here 0.06), so the mean of 20 is within ±0.05 of 0 (sd 0.014)."""
    x_train, x_eval = _gaussian(600, 256, 3), _gaussian(2000, 256, 4)
    neuron = 5
    y_train, y_eval = x_train[:, neuron].double().numpy(), x_eval[:, neuron].double().numpy()
    result = control_task(
        LINEAR, x_train, y_train, x_eval, y_eval, x_eval[:, neuron].double().numpy(), shuffles=20, seed=0, steps=1
    )
    assert result.head_r == pytest.approx(1.0, abs=1e-12)
    assert abs(result.r) < 0.05 and result.r_min < result.r < result.r_max, result
    assert result.selectivity == pytest.approx(1.0 - result.r, abs=1e-12)
    assert result.r_sd == pytest.approx(float(np.std(result.shuffle_r, ddof=1)))


def test_closed_form_control_equals_lstsq_on_the_same_shuffles() -> None:
    x_train, x_eval = _gaussian(300, 12, 5), _gaussian(200, 12, 6)
    w = np.arange(12.0)
    y_train = x_train.double().numpy() @ w + np.random.default_rng(7).standard_normal(300)
    y_eval = x_eval.double().numpy() @ w
    result = control_task(LINEAR, x_train, y_train, x_eval, y_eval, y_eval, shuffles=4, seed=11, steps=1)
    for k, r in enumerate(result.shuffle_r):
        shuffled = y_train[np.random.default_rng(11 + k).permutation(300)]
        assert r == pytest.approx(
            _slow_r(x_train.double().numpy(), shuffled, x_eval.double().numpy(), y_eval), abs=1e-7
        )
    assert result.r == pytest.approx(np.mean(result.shuffle_r))
    assert len(set(result.shuffle_r)) == 4  # each shuffle differs


def test_ridge_fit_is_lstsq_when_well_conditioned() -> None:
    x = np.random.default_rng(0).standard_normal((100, 5))
    y = x @ np.array([1.0, -2.0, 0.5, 0.0, 3.0]) + 0.7 + np.random.default_rng(1).standard_normal(100) * 0.1
    w, b = ridge_fit(x, y)
    coef = np.linalg.lstsq(np.column_stack([x, np.ones(100)]), y, rcond=None)[0]
    np.testing.assert_allclose(np.append(w, b), coef, atol=1e-7)


@pytest.mark.parametrize("head_type", ["regression", "classification"])
def test_non_linear_control_heads_are_trained_as_make_run_trains_its_heads(head_type: str) -> None:
    """The same recipe by another path: make-run's train_feature_head on the same rows, seed and steps."""
    x = _gaussian(120, 6, 8)
    y = np.random.default_rng(9).standard_normal(120)
    train = np.arange(120) < 90
    made = train_feature_head(head_type, x, y, train, hidden_dim=4, n_bins=3, seed=3, progress=False, steps=30)
    edges = tuple(made.config["bin_edges"]) if head_type == "classification" else None  # type: ignore[arg-type]
    e = torch.tensor(edges or (0.0, 1.0), dtype=torch.float32)
    centres = None if edges is None else (e[:-1] + e[1:]) / 2
    shape = HeadShape(head_type, 4, 3 if edges else 1, centres, edges)
    ours = control_predictions(shape, x[:90], y[:90], x, seed=3, steps=30)
    np.testing.assert_allclose(ours, made.predictions, atol=1e-5)


def test_input_probe_on_a_target_linear_in_the_input_has_r_one() -> None:
    rng = np.random.default_rng(0)
    x_train, x_eval = rng.standard_normal((80, 10)), rng.standard_normal((40, 10))
    w = rng.standard_normal(10)
    result = input_probe(x_train, x_train @ w + 2.0, x_eval, x_eval @ w + 2.0, n_resamples=50, seed=0)
    assert result.r == pytest.approx(1.0, abs=1e-9)
    assert result.n == 40


def test_no_train_rows_leave_both_undefined_with_the_reason() -> None:
    x_eval = _gaussian(20, 4, 0)
    y = np.arange(20.0)
    control = control_task(LINEAR, x_eval[:0], y[:0], x_eval, y, y, shuffles=5, seed=0, steps=1)
    assert isinstance(control.r, Undefined) and control.reason == NO_TRAIN_REASON
    d = control.as_dict()
    assert d["r"] is None and d["r_reason"] == NO_TRAIN_REASON and d["selectivity_reason"] == NO_TRAIN_REASON
    assert d["head_r"] == pytest.approx(1.0)
    assert input_probe(np.empty((0, 4)), y[:0], x_eval.double().numpy(), y, n_resamples=0, seed=0).reason == (
        NO_TRAIN_REASON
    )
    json.dumps(d, allow_nan=False)  # no NaN


def test_options_defaults_and_checks() -> None:
    assert ControlOptions().shuffles == 5 and ControlOptions().steps == MLP_STEPS
    with pytest.raises(OptionError, match="shuffles"):
        ControlOptions(shuffles=0)
    with pytest.raises(OptionError, match="unknown keyword"):
        ControlOptions.from_keywords(ControlOptions(), {"shufles": 3}, where="@pytest.mark.projection_control")
    assert needs_control(["projection.control.r"]) and needs_control(["projection.input_probe.r"])
    assert not needs_control(["projection.head.r", "patching.slope"])


# -- on the tiny runs --------------------------------------------------------------------------------


def test_tiny_runs_control_and_input_probe(regression_run: Path, classification_run: Path, token_run: Path) -> None:
    options = ControlOptions(projection=ProjectionOptions(n_resamples=50), shuffles=2, steps=20)
    for path in (regression_run, classification_run):
        probe = open_probe(load_run(path), "cpu")
        result = analyze_control(probe, options)
        projection = analyze_projection(probe, ProjectionOptions(n_resamples=0, null_directions=0))
        assert result.control.head_r == pytest.approx(projection.prediction.r, abs=1e-6)
        assert result.control.n_train == 48 and result.control.n == projection.n == 12
        assert result.control.selectivity == pytest.approx(result.control.head_r - result.control.r)
        assert result.input_probe.defined and "ControlResult(" in repr(result)
        assert loads(io.BytesIO(dumps(result, "k")), "k") == dataclasses.replace(result, run_name="")  # the cache
        flat = flatten(result.as_dict())
        assert flat["projection.control.r"].value == pytest.approx(result.control.r)
        assert flat["projection.input_probe.r"].has_interval
    token = analyze_control(open_probe(load_run(token_run), "cpu"), options)
    assert token.control.reason == TOKEN_REASON and token.input_probe.defined
    assert flatten(token.as_dict())["projection.control.r"].reason == TOKEN_REASON


def _own_hook_run(src: Path, tmp_path: Path) -> Path:
    """The regression run with a head that reads the neuron's own hook (weight one on the neuron) and a
    dataset split half train, half test."""
    from safetensors.torch import save_file

    run = copy_run(src, tmp_path)
    config = json.loads(config_path(run).read_text())
    layer, neuron = config["target_layer"], config["target_neuron"]
    config["feature_hook"] = f"blocks.{layer}.mlp.hook_post"
    config_path(run).write_text(json.dumps(config))
    probe = open_probe(load_run(src), "cpu")
    weight = torch.zeros(1, probe.model.d_mlp)
    weight[0, neuron] = 1.0
    for old in model_dir(run).glob("head.*"):
        old.unlink()
    save_file({"output.weight": weight, "output.bias": torch.zeros(1)}, str(model_dir(run) / "head.safetensors"))
    csv = dataset_path(run)
    import pandas as pd

    data = pd.read_csv(csv, keep_default_na=False)
    data["split"] = ["train" if i % 2 else "test" for i in range(len(data))]
    data.to_csv(csv, index=False)
    return run


def test_a_run_whose_head_reads_the_neurons_own_hook(regression_run: Path, tmp_path: Path) -> None:
    probe = open_probe(load_run(_own_hook_run(regression_run, tmp_path)), "cpu")
    result = analyze_control(probe, ControlOptions(projection=ProjectionOptions(n_resamples=0)))
    assert result.control.head_r == pytest.approx(1.0, abs=1e-5)
    assert abs(result.control.r) < 0.3, result  # 30 analysed texts: r of an unrelated head is ~ ±0.18
    assert result.control.selectivity > 0.7
    assert isinstance(result, ControlResult) and result.control.n_train == 30
