"""One device per analysis: the numbers on CUDA agree with the CPU ones within 1e-4 (README, "Devices").

Runs where CUDA exists; elsewhere it is skipped, and the skip says so.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from pytest_neuronprobe.analyses.joint import analyze
from pytest_neuronprobe.analyses.options import PatchingOptions, ProjectionOptions
from pytest_neuronprobe.core.errors import NeuronProbeError
from pytest_neuronprobe.core.models import resolve_device
from pytest_neuronprobe.core.probe import open_probe
from pytest_neuronprobe.core.runs import load_run

TOL = 1e-4
OPTIONS = (ProjectionOptions(n_resamples=100, null_directions=20), PatchingOptions(n_resamples=100))

needs_cuda = pytest.mark.skipif(
    not torch.cuda.is_available(),
    reason=f"CUDA is not available here (torch {torch.__version__}, CUDA build: {torch.version.cuda or 'none'}): "
    "the CPU-vs-CUDA agreement check did not run",
)


@needs_cuda
@pytest.mark.parametrize("kind", ["regression_run", "hidden_run", "token_run"])
def test_cuda_numbers_agree_with_cpu(kind: str, request: pytest.FixtureRequest) -> None:
    run = load_run(request.getfixturevalue(kind))
    results = {}
    for device in ("cpu", "cuda"):
        probe = open_probe(run, device)
        assert {p.device.type for p in probe.model.bridge.parameters()} == {device}
        results[device] = analyze(probe, *OPTIONS)
    (cpu_proj, cpu_patch), (gpu_proj, gpu_patch) = results["cpu"], results["cuda"]
    for name, values in cpu_proj.arrays.items():
        scale = max(1.0, float(np.abs(values).max())) if len(values) else 1.0
        np.testing.assert_allclose(gpu_proj.arrays[name], values, atol=TOL * scale, err_msg=name)
    for name, corr in cpu_proj.correlations.items():
        if corr.defined:
            assert gpu_proj[name].r == pytest.approx(corr.r, abs=TOL), name
    for key in ("activation_change", "prediction_change", "direct_per_text"):
        np.testing.assert_allclose(gpu_patch.arrays[key], cpu_patch.arrays[key], atol=TOL, err_msg=key)
    assert gpu_patch.slope == pytest.approx(cpu_patch.slope, abs=TOL)
    assert gpu_patch.direct_slope == pytest.approx(cpu_patch.direct_slope, abs=TOL)


def test_unavailable_devices_are_clear_errors() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type in ("cpu", "cuda", "mps")
    with pytest.raises(NeuronProbeError, match="unknown device 'tpu'"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(NeuronProbeError, match="'cuda' requested but CUDA is not available"):
            resolve_device("cuda")


def test_everything_lives_on_the_probe_device(regression_run: Path) -> None:
    """Model weights and head tensors on the one device the probe was opened on (SPEC §6: no mixing)."""
    probe = open_probe(load_run(regression_run), "cpu")
    devices = {p.device for p in probe.model.bridge.parameters()}
    devices |= {t.device for t in (probe.head.output_weight, probe.head.output_bias)}
    assert devices == {probe.device}
