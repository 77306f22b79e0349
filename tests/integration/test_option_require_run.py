"""--neuron-require-run (ini neuron_require_run): without a run, run-dependent items are not skipped: they
and the session fail (non-zero exit). With a run (from the command line or the ini) nothing changes.
(Python tests without a run, and a run on the command line, are in test_fail_closed.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import FAST_PROJECTION

CLAIMS = 'projection.head.r: ">= 0.5"\npatching.r_squared: ">= 0"\n'
HOW_TO = "--neuron-require-run is set but no run was given: pass --neuron-run PATH (or neuron_run in the ini file)"
SUITE = f"""
import pytest

{FAST_PROJECTION}
def test_head(projection):
    assert projection.head.r > 0.5

def test_plain():
    pass
"""


@pytest.mark.parametrize("how", ["option", "ini"])
def test_claims_without_a_run_fail_instead_of_skipping(pytester: pytest.Pytester, how: str) -> None:
    pytester.makefile(".yaml", neuron_claims=CLAIMS)
    if how == "ini":
        pytester.makeini("[pytest]\nneuron_require_run = true\n")
        result = pytester.runpytest_inprocess("-rfs")
    else:
        result = pytester.runpytest_inprocess("--neuron-require-run", "-rfs")
    result.assert_outcomes(failed=2)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        [
            "neuronprobe: runs: none (run-dependent tests will be an error; pass --neuron-run PATH)",
            HOW_TO,
            HOW_TO,
            f"ERROR {HOW_TO}",
        ]
    )
    assert "skipped" not in result.stdout.str()


def test_without_the_option_the_same_claims_are_skipped(pytester: pytest.Pytester) -> None:
    pytester.makefile(".yaml", neuron_claims=CLAIMS)
    pytester.makeini("[pytest]\nneuron_require_run = false\n")
    result = pytester.runpytest_inprocess()
    result.assert_outcomes(skipped=2)
    assert result.ret == pytest.ExitCode.OK
    assert "--neuron-require-run is set" not in result.stdout.str()


def test_a_run_from_the_ini_satisfies_it(pytester: pytest.Pytester, regression_run: Path) -> None:
    pytester.makefile(".yaml", neuron_claims=CLAIMS)
    pytester.makepyfile(SUITE)
    pytester.makeini(f"[pytest]\nneuron_require_run = true\nneuron_run = {regression_run}\n")
    result = pytester.runpytest_inprocess()
    result.assert_outcomes(passed=4)
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines([f"neuronprobe: runs: {regression_run.name} ({regression_run})"])
    assert "--neuron-require-run is set" not in result.stdout.str()


def test_a_given_run_satisfies_it_even_if_no_run_test_is_selected(
    pytester: pytest.Pytester, regression_run: Path
) -> None:
    pytester.makepyfile(SUITE)
    result = pytester.runpytest_inprocess("--neuron-require-run", f"--neuron-run={regression_run}", "-k", "plain")
    result.assert_outcomes(passed=1, deselected=1)
    assert result.ret == pytest.ExitCode.OK
    # ...whereas with no run the session fails although the selected test passed
    result = pytester.runpytest_inprocess("--neuron-require-run", "-k", "plain")
    result.assert_outcomes(passed=1, deselected=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines([f"ERROR {HOW_TO}"])
