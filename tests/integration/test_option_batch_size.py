"""--neuron-batch-size N: texts per forward pass; the same numbers at any batch size; progress while it runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pytest_neuronprobe.pytest import session as S

from .conftest import FAST_PATCHING, FAST_PROJECTION

SUITE = f"""
import json

import pytest

{FAST_PROJECTION}
def test_projection(projection):
    print("HEAD", projection.options["batch_size"], json.dumps(projection.as_dict()["projections"]["head"]))

{FAST_PATCHING}
def test_patching(patching):
    print("SLOPE", patching.options["batch_size"], repr(patching.slope))
"""


def _values(result: pytest.RunResult, tag: str) -> tuple[str, str]:
    line = next(line for line in result.outlines if line.startswith(tag + " "))
    _, batch, value = line.split(" ", 2)
    return batch, value


def test_batch_size_changes_no_number_and_progress_is_shown(
    pytester: pytest.Pytester, regression_run: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(S, "PROGRESS_SECONDS", 0.0)  # say every step
    pytester.makepyfile(SUITE)
    args = [f"--neuron-run={regression_run}", "-s", "--neuron-no-cache"]
    small = pytester.runpytest_inprocess(*args, "--neuron-batch-size=2")
    default = pytester.runpytest_inprocess(*args)
    quiet = pytester.runpytest_inprocess(*args, "--neuron-batch-size=5", "-q")
    for result in (small, default, quiet):
        result.assert_outcomes(passed=2)
    assert _values(small, "HEAD")[0] == "2" and _values(default, "HEAD")[0] == "32"
    # Padding widths differ, so float32 rounding does too (~1e-8): the same numbers to 1e-6.
    head_small, head_default = (json.loads(_values(r, "HEAD")[1]) for r in (small, default))
    assert head_small == pytest.approx(head_default, rel=1e-6, abs=1e-6)
    assert float(_values(small, "SLOPE")[1]) == pytest.approx(float(_values(default, "SLOPE")[1]), abs=1e-6)
    # 12 test-split texts in batches of 2: progress after each batch but the last, on the terminal.
    small.stdout.fnmatch_lines(
        [
            f"neuronprobe: projection of {regression_run.name}: 2/12 texts (17%, * s)",
            f"neuronprobe: projection of {regression_run.name}: 10/12 texts (83%, * s)",
            f"neuronprobe: patching of {regression_run.name}: 2/12 texts (17%, * s)",
        ]
    )
    assert "batch size: 2" in small.stdout.str()
    assert "texts (" not in quiet.stdout.str()
