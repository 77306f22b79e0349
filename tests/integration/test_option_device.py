"""--neuron-device DEV (ini neuron_device): where the base model runs. The default is cpu even where an
accelerator exists; `auto` resolves on each machine (cuda, then mps, then cpu) and the cache key holds the
resolved device; an unavailable device is an error on every test that needs the model, never a pass."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .conftest import FAST_PATCHING, FAST_PROJECTION

SUITE = f"""
import pytest

{FAST_PROJECTION}
def test_projection(projection, hooked_model):
    print("DEVICE", hooked_model.device, sorted({{p.device.type for p in hooked_model.bridge.parameters()}}))

{FAST_PATCHING}
def test_patching(patching):
    pass

def test_plain():
    pass
"""


def _accelerators(monkeypatch: pytest.MonkeyPatch, available: bool) -> None:
    """Make torch report CUDA and MPS as (un)available, whatever this machine has."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: available)
    if getattr(torch.backends, "mps", None) is not None:
        monkeypatch.setattr(torch.backends.mps, "is_available", lambda: available)


def _device_line(result: pytest.RunResult) -> str:
    return next(line[line.index("DEVICE ") :] for line in result.outlines if "DEVICE " in line)


def _provenance_device(report: Path, run: Path) -> str:
    return str(json.loads((report / run.name / "summary.json").read_text(encoding="utf-8"))["provenance"]["device"])


@pytest.mark.parametrize("how", ["option", "ini"])
def test_auto_falls_back_to_cpu_without_an_accelerator(
    pytester: pytest.Pytester, regression_run: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    _accelerators(monkeypatch, available=False)
    pytester.makepyfile(SUITE)
    args = [f"--neuron-run={regression_run}", "--neuron-report=rep", "-s"]
    if how == "ini":
        pytester.makeini("[pytest]\nneuron_device = auto\n")
    else:
        args.append("--neuron-device=auto")
    result = pytester.runpytest_inprocess(*args)
    result.assert_outcomes(passed=3)
    source = "ini" if how == "ini" else "command line"
    result.stdout.fnmatch_lines(
        [f"neuronprobe: device: auto ({source}); *", f"neuronprobe: loaded {regression_run.name}: * on cpu … * s"]
    )
    assert _device_line(result) == "DEVICE cpu ['cpu']"
    assert _provenance_device(pytester.path / "rep", regression_run) == "cpu"


def test_default_is_cpu_even_where_cuda_is_available(
    pytester: pytest.Pytester, regression_run: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _accelerators(monkeypatch, available=True)  # nothing asks for it: the default never touches the GPU
    pytester.makepyfile(SUITE)
    result = pytester.runpytest_inprocess(f"--neuron-run={regression_run}", "--neuron-report=rep", "-s")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(["neuronprobe: device: cpu (default); *"])
    assert _device_line(result) == "DEVICE cpu ['cpu']"
    assert _provenance_device(pytester.path / "rep", regression_run) == "cpu"


def test_the_cache_key_holds_the_resolved_device(
    pytester: pytest.Pytester, regression_run: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `auto` is cpu on this (accelerator-less) machine: the analyses cached under cpu are reused...
    _accelerators(monkeypatch, available=False)
    pytester.makepyfile(SUITE)
    args = [f"--neuron-run={regression_run}", f"--neuron-cache-dir={pytester.path / 'c'}"]
    first = pytester.runpytest_inprocess(*args, "--neuron-device=cpu")
    first.assert_outcomes(passed=3)
    first.stdout.fnmatch_lines(["neuronprobe: analyses took * s (0 of 2 from cache)"])
    auto = pytester.runpytest_inprocess(*args, "--neuron-device=auto")
    auto.assert_outcomes(passed=3)
    auto.stdout.fnmatch_lines(["neuronprobe: analyses took * s (2 of 2 from cache)"])
    assert len(sorted((pytester.path / "c").rglob("*.npz"))) == 2


@pytest.mark.parametrize("device", ["cuda", "cuda:1", "mps"])
def test_an_unavailable_device_is_an_error_not_a_pass(
    pytester: pytest.Pytester, regression_run: Path, monkeypatch: pytest.MonkeyPatch, device: str
) -> None:
    _accelerators(monkeypatch, available=False)
    pytester.makepyfile(SUITE)
    result = pytester.runpytest_inprocess(f"--neuron-run={regression_run}", f"--neuron-device={device}")
    result.assert_outcomes(passed=1, errors=2)  # the plain test still runs
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    name = "CUDA" if device.startswith("cuda") else "MPS"
    kind = "cuda" if device.startswith("cuda") else "mps"
    result.stdout.fnmatch_lines(
        [f"neuronprobe: device: {device} (command line); *", f"*device '{kind}' requested but {name} is not available*"]
    )


@pytest.mark.parametrize(
    "ini, cli, message",
    [
        (
            [],
            ["--neuron-device=cuda:x"],
            "*argument --neuron-device: invalid device 'cuda:x': choose from cpu, cuda, mps, auto*",
        ),
        ([], ["--neuron-device="], "*argument --neuron-device: invalid device '': choose from cpu, cuda, mps, auto*"),
        (
            ["neuron_device = gpu"],
            [],
            "*ini option neuron_device: invalid device 'gpu': choose from cpu, cuda, mps, auto*",
        ),
        (["neuron_device = cuda:"], [], "*ini option neuron_device: invalid device 'cuda:'*"),
    ],
    ids=["cli bad index", "cli empty", "ini gpu", "ini empty index"],
)
def test_bad_device_is_a_usage_error(
    pytester: pytest.Pytester, regression_run: Path, ini: list[str], cli: list[str], message: str
) -> None:
    if ini:
        pytester.makeini("[pytest]\n" + "\n".join(ini) + "\n")
    pytester.makepyfile(SUITE)
    result = pytester.runpytest_inprocess(f"--neuron-run={regression_run}", *cli)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])
    assert not [line for line in result.outlines if "passed" in line or "DEVICE" in line]
