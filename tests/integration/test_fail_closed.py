"""Fail closed: no run means explicit, counted skips (or errors with --neuron-require-run);
a claim on an undefined number fails, never passes."""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import FAST_PROJECTION

RUN_TESTS = f"""
import pytest

{FAST_PROJECTION}
def test_head(projection):
    assert projection.head.r > 0.5

def test_run(neuron_run):
    assert neuron_run.layer >= 0

def test_plain():
    assert True
"""


def test_without_a_run_tests_are_skipped_with_a_reason_and_counted(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(RUN_TESTS)
    result = pytester.runpytest_inprocess("-rs")
    result.assert_outcomes(passed=1, skipped=2)
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(
        [
            "neuronprobe: runs: none (run-dependent tests will be skipped; pass --neuron-run PATH)",
            "*-- neuronprobe --*",
            "2 test(s) skipped: no --neuron-run given (pass --neuron-run PATH*",
            "SKIPPED [[]1[]] *no --neuron-run given*",
            "SKIPPED [[]1[]] *no --neuron-run given*",
        ]
    )


@pytest.mark.parametrize("how", ["option", "ini"])
def test_require_run_turns_skips_into_errors(pytester: pytest.Pytester, how: str) -> None:
    pytester.makepyfile(RUN_TESTS)
    if how == "ini":
        pytester.makeini("[pytest]\nneuron_require_run = true\n")
        result = pytester.runpytest_inprocess()
    else:
        result = pytester.runpytest_inprocess("--neuron-require-run")
    result.assert_outcomes(passed=1, errors=2)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        [
            "neuronprobe: runs: none (run-dependent tests will be an error; pass --neuron-run PATH)",
            "*--neuron-require-run is set but no run was given*",
        ]
    )


def test_require_run_fails_the_session_even_without_run_tests(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_plain():\n    pass\n")
    result = pytester.runpytest_inprocess("--neuron-require-run")
    result.assert_outcomes(passed=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["ERROR --neuron-require-run is set but no run was given*"])


def test_require_run_is_satisfied_by_a_run(pytester: pytest.Pytester, regression_run: Path) -> None:
    pytester.makepyfile(RUN_TESTS)
    result = pytester.runpytest_inprocess("--neuron-require-run", f"--neuron-run={regression_run}")
    result.assert_outcomes(passed=3)
    assert result.ret == pytest.ExitCode.OK


def test_claims_files_without_a_run_are_skipped(pytester: pytest.Pytester) -> None:
    pytester.makefile(".yaml", neuron_claims='projection.head.r: ">= 0.5"\n')
    result = pytester.runpytest_inprocess("-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["1 test(s) skipped: no --neuron-run given*", "SKIPPED*no --neuron-run given*"])


def test_claim_on_an_undefined_number_fails(pytester: pytest.Pytester, constant_run: Path) -> None:
    pytester.makefile(".yaml", neuron_claims='projection.head.r: ">= -1"\nprojection.head.p_value: "<= 1"\n')
    result = pytester.runpytest_inprocess(f"--neuron-run={constant_run}", "-W", "ignore")
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(
        [
            "*projection.head.r >= -1 failed: projection.head.r is undefined: *",
            "*projection.head.p_value <= 1 failed: projection.head.p_value is undefined: *",
        ]
    )


def test_python_assertion_on_an_undefined_number_fails_and_says_why(
    pytester: pytest.Pytester, constant_run: Path
) -> None:
    pytester.makepyfile(f"""
        import pytest

        {FAST_PROJECTION}
        def test_head_lower(projection):
            assert projection.head.r > -1

        {FAST_PROJECTION}
        def test_head_upper(projection):
            assert projection.head.r <= 1

        {FAST_PROJECTION}
        def test_not_equal_is_not_a_loophole(projection):
            assert projection.head.r == pytest.approx(0.0, abs=10)
    """)
    result = pytester.runpytest_inprocess(f"--neuron-run={constant_run}", "-W", "ignore")
    result.assert_outcomes(failed=3)
    result.stdout.fnmatch_lines(
        [
            "*projection.head.r = undefined (*), 95% interval [[]undefined*",
            "*an undefined number compares False with everything, so this assertion fails instead of passing*",
        ]
    )
