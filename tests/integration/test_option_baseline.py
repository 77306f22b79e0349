"""--neuron-baseline PATH and --neuron-update-baseline: the neuron_baseline fixture, baseline claims,
the comparison table, and writing the baseline once, atomically, after the whole session."""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import FAST_PROJECTION, SUMMARY_KEYS, read_json

SUITE = f"""
import pytest

{FAST_PROJECTION}
def test_no_worse_than_baseline(projection, neuron_baseline):
    before = neuron_baseline["projections"]["head"]["correlation"]
    assert projection.head.r >= before - 0.05
"""
CLAIMS = 'projection.head.r: ">= baseline - 0.05"\n'


def test_without_baseline_the_fixture_skips_and_baseline_claims_fail(
    pytester: pytest.Pytester, regression_run: Path
) -> None:
    pytester.makepyfile(SUITE)
    pytester.makefile(".yaml", neuron_claims=CLAIMS)
    result = pytester.runpytest_inprocess(f"--neuron-run={regression_run}", "-rs")
    result.assert_outcomes(skipped=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*projection.head.r >= baseline - 0.05 failed: no baseline given (use --neuron-baseline)*",
            "1 test(s) skipped: no baseline for their run (pass --neuron-baseline PATH)",
            "SKIPPED*no --neuron-baseline given*",
        ]
    )


def test_update_then_compare(pytester: pytest.Pytester, two_runs: list[Path]) -> None:
    pytester.makepyfile(SUITE)
    pytester.makefile(".yaml", neuron_claims=CLAIMS)
    args = [f"--neuron-run={run}" for run in two_runs]
    base = pytester.path / "baseline"
    # First session: no baseline yet; it is written at the end, and the baseline claims are skipped, not failed.
    result = pytester.runpytest_inprocess(*args, "--neuron-baseline=baseline", "--neuron-update-baseline", "-rs")
    result.assert_outcomes(skipped=4)
    result.stdout.fnmatch_lines(
        [
            f"neuronprobe: *baseline: {base} (will be updated)",
            "4 test(s) skipped: no baseline for their run (see the skip reasons)",
            f"baseline updated: wrote {base / two_runs[0].name / 'summary.json'}, "
            f"{base / two_runs[1].name / 'summary.json'}",
        ]
    )
    result.stdout.fnmatch_lines(
        [f"SKIPPED [[]2[]] neuron_claims.yaml:1: no baseline at {base} yet; it will be written at the end of this *"]
    )
    result.stdout.fnmatch_lines(["SKIPPED [[]2[]] *.py:*: no baseline at * yet; it will be written at the end of *"])
    for run in two_runs:
        summary = read_json(base / run.name / "summary.json")
        assert SUMMARY_KEYS <= set(summary) and summary["run"]["name"] == run.name
        assert summary["patching"] is not None  # complete, whatever the tests asked for
    assert not [p for p in base.rglob("*") if p.name.startswith(".")]  # no temp files left behind
    # Second session: compare with it.
    result = pytester.runpytest_inprocess(*args, "--neuron-baseline=baseline")
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines(
        [
            f"run {two_runs[0].name} *",
            f"  compared with the baseline {base}:",
            "  metric * baseline * now * Δ",
            "  projection.head.r * 0",
        ]
    )


def test_baseline_is_written_only_after_the_whole_session(pytester: pytest.Pytester, regression_run: Path) -> None:
    pytester.makepyfile("""
        from pathlib import Path

        def test_before(projection):
            assert not Path("baseline").exists()

        def test_after(projection):
            assert not Path("baseline").exists()
    """)
    result = pytester.runpytest_inprocess(
        f"--neuron-run={regression_run}", "--neuron-baseline=baseline", "--neuron-update-baseline"
    )
    result.assert_outcomes(passed=2)
    assert (pytester.path / "baseline" / regression_run.name / "summary.json").is_file()


def test_single_file_baseline(pytester: pytest.Pytester, regression_run: Path, hidden_run: Path) -> None:
    pytester.makepyfile(SUITE)
    result = pytester.runpytest_inprocess(
        f"--neuron-run={regression_run}", "--neuron-baseline=base.json", "--neuron-update-baseline"
    )
    result.assert_outcomes(skipped=1)
    assert read_json(pytester.path / "base.json")["run"]["name"] == regression_run.name
    result.stdout.fnmatch_lines([f"baseline updated: wrote {pytester.path / 'base.json'}"])
    pytester.runpytest_inprocess(f"--neuron-run={regression_run}", "--neuron-baseline=base.json").assert_outcomes(
        passed=1
    )
    # One file cannot hold two runs: nothing is written, and the session says so and fails.
    before = (pytester.path / "base.json").read_bytes()
    result = pytester.runpytest_inprocess(
        f"--neuron-run={regression_run}",
        f"--neuron-run={hidden_run}",
        "--neuron-baseline=base.json",
        "--neuron-update-baseline",
    )
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["ERROR baseline: * is a single summary file but this session has 2 runs*"])
    assert (pytester.path / "base.json").read_bytes() == before


def test_baseline_without_this_run_skips_with_reason(
    pytester: pytest.Pytester, two_runs: list[Path], classification_run: Path
) -> None:
    """Two baseline runs of another head type: neither the name, nor the neuron, nor a single summary pairs."""
    first, second = two_runs
    pytester.makepyfile(SUITE)
    pytester.runpytest_inprocess(
        f"--neuron-run={first}", f"--neuron-run={second}", "--neuron-baseline=baseline", "--neuron-update-baseline"
    )
    result = pytester.runpytest_inprocess(
        f"--neuron-run={first}", f"--neuron-run={classification_run}", "--neuron-baseline=baseline", "-rs"
    )
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines(
        [
            f"SKIPPED*baseline * has no summary for run '{classification_run.name}' (it holds: {second.name}, "
            f"{first.name}; none has its name or its neuron (*classification)); choose one with "
            "--neuron-baseline-run NAME*"
        ]
    )


def test_missing_baseline_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(SUITE)
    result = pytester.runpytest_inprocess("--neuron-baseline=nowhere")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--neuron-baseline: no such file or directory: *nowhere*--neuron-update-baseline*"])
    result = pytester.runpytest_inprocess("--neuron-update-baseline")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--neuron-update-baseline needs --neuron-baseline PATH*"])
