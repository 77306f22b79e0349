"""Helpers for the plugin's integration tests: each test drives an inner pytest session with `pytester`
against the tiny session runs of tests/conftest.py (`regression_run`, `hidden_run`, ...).

Inner sessions run in-process (the base model stays loaded between them), except for xdist.
Analyses are kept cheap with `FAST` markers where the test does not need the default options.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

# pytester's in-process runs drop every module first imported inside them; import the heavy ones
# here once, so inner sessions reuse them (and the base models loaded into `models`' cache).
import hypothesis  # noqa: F401  (its pytest plugin imports it at every terminal summary)
import matplotlib  # noqa: F401
import pytest

import pytest_neuronprobe.analyses.patching
import pytest_neuronprobe.analyses.projection
import pytest_neuronprobe.baseline
import pytest_neuronprobe.claims.expressions
import pytest_neuronprobe.claims.loader
import pytest_neuronprobe.claims.metrics
import pytest_neuronprobe.claims.verdicts
import pytest_neuronprobe.compare
import pytest_neuronprobe.core.formatting
import pytest_neuronprobe.history
import pytest_neuronprobe.merge
import pytest_neuronprobe.pytest.assertion
import pytest_neuronprobe.report.figure_cache
import pytest_neuronprobe.report.figures
import pytest_neuronprobe.report.files
import pytest_neuronprobe.report.html
import pytest_neuronprobe.report.markup
import pytest_neuronprobe.report.overview
import pytest_neuronprobe.report.patching_plots
import pytest_neuronprobe.report.plotting
import pytest_neuronprobe.report.projection_plots
import pytest_neuronprobe.report.run_detail
import pytest_neuronprobe.report.summary
import pytest_neuronprobe.report.terminal
import pytest_neuronprobe.report.trend  # noqa: F401

#: Marker lines that make an analysis cheap (the tiny runs analyse 12 test-split texts).
FAST_PROJECTION = "@pytest.mark.projection(n_resamples=50, null_directions=10)"
FAST_PATCHING = "@pytest.mark.patching(n_resamples=50, factors=[0.0, 1.0, 2.0])"
#: Keys summary.json must have (SPEC §5).
SUMMARY_KEYS = {"run", "dataset_size", "weight_similarities", "projections", "patching"}
RUN_KEYS = {"path", "name", "target_layer", "target_neuron", "head_type", "base_model", "split"}
PROJECTION_ENTRY_KEYS = {"correlation", "r_squared", "p_value", "spearman", "ci_low", "ci_high", "n"}
PATCHING_KEYS = {
    "mode",
    "factors",
    "baseline_correlation",
    "slope",
    "intercept",
    "r_squared",
    "avg_activation_changes",
    "avg_prediction_changes",
    "per_input",
}


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_torch_thread: None) -> None:
    """Every integration module runs on one torch thread (tests/conftest.py)."""


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


@pytest.fixture
def two_runs(regression_run: Path, hidden_run: Path) -> list[Path]:
    """Two tiny runs (a linear head and a hidden-layer head reading the same neuron)."""
    return [regression_run, hidden_run]


@pytest.fixture
def constant_run(regression_run: Path, tmp_path: Path) -> Path:
    """A copy of the regression run whose dataset activations are all equal: every correlation is undefined.

    The base model directory is a symlink to the original's, so the model is not booted again.
    """
    import shutil

    import pandas as pd

    dst = tmp_path / "constant-neuron_l1_n31"
    shutil.copytree(regression_run, dst, ignore=shutil.ignore_patterns("base_model"))
    for model_dir in (dst / "models").glob("*/best_model"):
        original = regression_run / model_dir.relative_to(dst) / "base_model"
        if original.is_dir():
            (model_dir / "base_model").symlink_to(original.resolve(), target_is_directory=True)
    for csv in (dst / "datasets").glob("*.csv"):
        data = pd.read_csv(csv, keep_default_na=False)
        data["activation"] = 0.5
        data.to_csv(csv, index=False)
    return dst
