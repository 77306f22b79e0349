"""--neuron-max-samples N (ini neuron_max_samples): analyse at most N texts per run. The n that assertion
messages, claims files, the terminal table and summary.json report is N; a marker's max_samples wins."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .conftest import FAST_PATCHING, FAST_PROJECTION

#: Failing on purpose: the assertion messages say n.
SUITE = f"""
import pytest

{FAST_PROJECTION}
def test_projection(projection):
    assert projection.head.r > 2

{FAST_PATCHING}
def test_patching(patching):
    assert patching.slope > 5
"""

#: The tiny runs' test split.
ALL = 12


def _n_lines(result: pytest.RunResult) -> list[str]:
    return [line for line in result.outlines if line.startswith("E ") and " n = " in line]


@pytest.mark.parametrize("how", ["option", "ini"])
def test_assertion_messages_say_n_is_max_samples(pytester: pytest.Pytester, regression_run: Path, how: str) -> None:
    pytester.makepyfile(SUITE)
    args = [f"--neuron-run={regression_run}"]
    if how == "ini":
        pytester.makeini("[pytest]\nneuron_max_samples = 5\n")
    else:
        args.append("--neuron-max-samples=5")
    result = pytester.runpytest_inprocess(*args)
    result.assert_outcomes(failed=2)
    name = regression_run.name
    result.stdout.fnmatch_lines(
        [
            "neuronprobe: device: *; max samples: 5; *",
            f"neuronprobe: projection of {name} (5 texts, test split, 50 resamples) … * s",
            f"E         projection.head.r = *, n = 5 (run {name}, test split)",
            f"E         patching.slope = *, n = 15 points (run {name}, scale x3, 5 texts)",
        ]
    )


def test_without_the_option_every_text_is_analysed(pytester: pytest.Pytester, regression_run: Path) -> None:
    pytester.makepyfile(SUITE)
    result = pytester.runpytest_inprocess(f"--neuron-run={regression_run}")
    result.assert_outcomes(failed=2)
    name = regression_run.name
    result.stdout.fnmatch_lines(
        [
            "neuronprobe: device: *; max samples: all; *",
            f"E         projection.head.r = *, n = {ALL} (run {name}, test split)",
            f"E         patching.slope = *, n = {3 * ALL} points (run {name}, scale x3, {ALL} texts)",
        ]
    )


def test_more_than_the_split_holds_is_all_of_it(pytester: pytest.Pytester, regression_run: Path) -> None:
    pytester.makepyfile(SUITE)
    result = pytester.runpytest_inprocess(f"--neuron-run={regression_run}", "--neuron-max-samples=1000")
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(
        [
            "neuronprobe: device: *; max samples: 1000; *",
            f"E         projection.head.r = *, n = {ALL} (run *",
            f"E         patching.slope = *, n = {3 * ALL} points (run *, {ALL} texts)",
        ]
    )


def test_a_marker_max_samples_wins_over_the_option(pytester: pytest.Pytester, regression_run: Path) -> None:
    pytester.makepyfile(f"""
        import pytest

        {FAST_PROJECTION}
        def test_option(projection, neuron_dataset):
            print("OPTION", len(neuron_dataset), repr(projection))

        @pytest.mark.projection(max_samples=3, n_resamples=50, null_directions=10)
        def test_marker(projection, neuron_dataset):
            print("MARKER", len(neuron_dataset), repr(projection))

        @pytest.mark.patching(max_samples=4, n_resamples=50, factors=[0.0, 1.0, 2.0])
        def test_patching_marker(patching):
            assert patching.slope > 5
    """)
    result = pytester.runpytest_inprocess(f"--neuron-run={regression_run}", "--neuron-max-samples=6", "-s")
    result.assert_outcomes(passed=2, failed=1)
    printed = {line.split()[0]: line for line in result.outlines if line.startswith(("OPTION ", "MARKER "))}
    assert printed["OPTION"].startswith("OPTION 6 ProjectionResult(") and ", n=6," in printed["OPTION"]
    assert printed["MARKER"].startswith("MARKER 3 ProjectionResult(") and ", n=3," in printed["MARKER"]
    result.stdout.fnmatch_lines(
        [f"E         patching.slope = *, n = 12 points (run {regression_run.name}, scale x3, 4 texts)"]
    )


def test_claims_files_and_the_report_use_max_samples(pytester: pytest.Pytester, regression_run: Path) -> None:
    pytester.makefile(".yaml", neuron_claims='projection.head.r: ">= 2"\npatching.slope: ">= 5"\n')
    result = pytester.runpytest_inprocess(
        f"--neuron-run={regression_run}", "--neuron-max-samples=5", "--neuron-report=rep"
    )
    result.assert_outcomes(failed=2)
    name = regression_run.name
    result.stdout.fnmatch_lines(
        [
            "*projection.head.r >= 2 failed: *n=5)*",
            "*patching.slope >= 5 failed: *n_texts=5)*",
            f"run {name} (L* N*, regression, test split, n=5)",
        ]
    )
    summary = json.loads((pytester.path / "rep" / name / "summary.json").read_text(encoding="utf-8"))
    assert summary["dataset_size"] == 5
    assert summary["projections"]["head"]["n"] == 5
    assert len(summary["patching"]["per_input"]) == 5
