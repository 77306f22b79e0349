"""End to end, as CI uses the plugin on every training run: check run A (with a report), make it the
baseline, then check a new run (a renamed copy of A whose head was degraded) against that baseline:
the new run pairs with A by its neuron, and exactly the claims the degradation breaks fail."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.run_copies import copy_run, model_dir

from .conftest import read_json

#: Judged on the estimate, so the claims untouched by a degraded head pass exactly (the same numbers).
CLAIMS = """
options:
  judge: estimate
projection.prediction.r: ">= baseline - 0.05"
projection.head.r: ">= baseline - 0.05"
projection.weights.head_input: ">= baseline - 0.05"
projection.input.r: ">= baseline - 0.05"
projection.live.r: ">= baseline - 0.05"
projection.neuron_dir.r: "baseline +- 0.001"
dataset_size: "== baseline"
baseline.comparable: "== 1"
"""
DEGRADED = {"projection.prediction.r", "projection.head.r", "projection.weights.head_input"}
STILL_PASS = {
    "projection.input.r",
    "projection.live.r",
    "projection.neuron_dir.r",
    "dataset_size",
    "baseline.comparable",
}


def degraded_copy(run: Path, parent: Path, name: str) -> Path:
    """A copy of `run` named `name` whose linear head's weights are mostly noise (same neuron, same model)."""
    import torch
    from safetensors.torch import load_file, save_file

    copy = copy_run(run, parent)
    renamed = copy.with_name(name)
    shutil.move(copy, renamed)
    head = model_dir(renamed) / "head.safetensors"
    tensors = load_file(head)
    weight = tensors["output.weight"]
    noise = torch.randn(weight.shape, generator=torch.Generator().manual_seed(0))
    tensors["output.weight"] = (0.2 * weight + 3 * weight.std() * noise).contiguous()
    save_file(tensors, head)
    return renamed


def _outcomes(result: pytest.RunResult) -> dict[str, str]:
    """metric -> PASSED/FAILED from `-rA`'s short summary lines of the claims items."""
    out: dict[str, str] = {}
    for line in result.outlines:
        for word in ("PASSED", "FAILED"):
            if line.startswith(word) and "neuron_claims.yaml::" in line:
                out[line.split("::", 1)[1].split(" ", 1)[0]] = word
    return out


def test_a_degraded_new_run_fails_exactly_the_degraded_claims(
    pytester: pytest.Pytester, regression_run: Path, tmp_path: Path
) -> None:
    pytester.makefile(".yaml", neuron_claims=CLAIMS)
    # 1. Check run A with a report, and make its summary the baseline.
    first = pytester.runpytest_inprocess(
        f"--neuron-run={regression_run}",
        "--neuron-report=report",
        "--neuron-baseline=baseline",
        "--neuron-update-baseline",
        "-rA",
    )
    first.assert_outcomes(skipped=len(DEGRADED | STILL_PASS))  # no baseline yet: its baseline claims skip
    assert (pytester.path / "report" / "index.html").is_file()
    assert read_json(pytester.path / "baseline" / regression_run.name / "summary.json")["run"]["name"] == (
        regression_run.name
    )
    # 2. A new training run of the same neuron: a new name, a worse head.
    new = degraded_copy(regression_run, tmp_path, "regression-neuron_l1_n31-seed0-retrained")
    result = pytester.runpytest_inprocess(f"--neuron-run={new}", "--neuron-baseline=baseline", "-rA")
    result.assert_outcomes(passed=len(STILL_PASS), failed=len(DEGRADED))
    outcomes = _outcomes(result)
    assert {m for m, o in outcomes.items() if o == "FAILED"} == DEGRADED
    assert {m for m, o in outcomes.items() if o == "PASSED"} == STILL_PASS
    # The failures name the baseline run and why the new run was paired with it.
    result.stdout.fnmatch_lines(
        [
            f"*projection.head.r >= baseline - 0.05 failed: judged on the estimate *(baseline: "
            f"{regression_run.name}, paired by same neuron (* layer 1 neuron 31 *regression))*"
        ]
    )
    # 3. The same copy, not degraded, against the same baseline: everything holds.
    clean = copy_run(regression_run, tmp_path / "clean")
    shutil.move(clean, clean.with_name("regression-neuron_l1_n31-seed0-again"))
    again = pytester.runpytest_inprocess(
        f"--neuron-run={clean.with_name('regression-neuron_l1_n31-seed0-again')}", "--neuron-baseline=baseline"
    )
    again.assert_outcomes(passed=len(DEGRADED | STILL_PASS))
