"""--neuron-judge {bound,estimate} (ini neuron_judge): how claims files judge a metric with an interval.
`bound` judges `>=` on the interval's lower bound and `<=` on its upper bound; `estimate` the estimate
alone. A claim's own `judge:` wins over the file's `options: judge:`, which wins over the option.
Python assertions compare the estimate whatever the judge. (The `>=` flip through the option, the ini key
and a file judge is in test_claims_files.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest

VALUES = """
def test_values(projection):
    print(f"VALUES {projection.head.ci_low!r} {projection.head.r!r} {projection.head.ci_high!r}")
"""


def _between(pytester: pytest.Pytester, run: Path) -> tuple[float, float]:
    """(a number between head r's lower bound and r, one between r and its upper bound)."""
    probe = pytester.makepyfile(test_values=VALUES)
    result = pytester.runpytest_inprocess(f"--neuron-run={run}", "-s", str(probe))
    result.assert_outcomes(passed=1)
    line = next(line for line in result.outlines if line.startswith("VALUES "))
    low, r, high = (float(v) for v in line.split()[1:])
    assert low < r < high, line  # else no threshold separates the judges
    probe.unlink()
    return (low + r) / 2, (r + high) / 2


@pytest.mark.parametrize("how", ["option", "ini"])
def test_upper_bound_claim_fails_on_the_bound_and_passes_on_the_estimate(
    pytester: pytest.Pytester, regression_run: Path, how: str
) -> None:
    _, above = _between(pytester, regression_run)
    pytester.makefile(".yaml", neuron_claims=f'projection.head.r: "<= {above!r}"\n')
    bound = pytester.runpytest_inprocess(f"--neuron-run={regression_run}")
    bound.assert_outcomes(failed=1)
    bound.stdout.fnmatch_lines(
        [f"*projection.head.r <= {above!r} failed: judged on the 95% interval's upper bound ci_high=* (estimate r=*"]
    )
    if how == "ini":
        pytester.makeini("[pytest]\nneuron_judge = estimate\n")
        estimate = pytester.runpytest_inprocess(f"--neuron-run={regression_run}")
    else:
        estimate = pytester.runpytest_inprocess(f"--neuron-run={regression_run}", "--neuron-judge=estimate")
    estimate.assert_outcomes(passed=1)
    estimate.stdout.fnmatch_lines(["neuronprobe: device: *; judge: estimate; *"])


def test_a_failing_claim_says_it_was_judged_on_the_estimate(pytester: pytest.Pytester, regression_run: Path) -> None:
    pytester.makefile(".yaml", neuron_claims='projection.head.r: ">= 2"\n')
    result = pytester.runpytest_inprocess(f"--neuron-run={regression_run}", "--neuron-judge=estimate")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*projection.head.r >= 2 failed: judged on the estimate r=*"])
    assert "interval's lower bound" not in result.stdout.str()


def test_a_claims_own_judge_wins_over_the_file_and_the_option(pytester: pytest.Pytester, regression_run: Path) -> None:
    below, above = _between(pytester, regression_run)
    # the file says estimate, the claim says bound: judged on the bound, whatever the option says
    pytester.makefile(
        ".yaml",
        neuron_claims=f"""\
options:
  judge: estimate
projection.head.r:
  expect: ">= {below!r}"
  judge: bound
projection.prediction.r: ">= -1"
""",
    )
    for judge in ("bound", "estimate"):
        result = pytester.runpytest_inprocess(f"--neuron-run={regression_run}", f"--neuron-judge={judge}")
        result.assert_outcomes(passed=1, failed=1)
        result.stdout.fnmatch_lines(
            [f"*projection.head.r >= {below!r} failed: judged on the 95% interval's lower bound ci_low=*"]
        )
    # the claim says estimate: it passes under the (default) bound judge, under which it fails without its judge
    claim = f'projection.head.r:\n  expect: "<= {above!r}"\n'
    pytester.makefile(".yaml", neuron_claims=claim + "  judge: estimate\n")
    pytester.runpytest_inprocess(f"--neuron-run={regression_run}").assert_outcomes(passed=1)
    pytester.makefile(".yaml", neuron_claims=claim)
    pytester.runpytest_inprocess(f"--neuron-run={regression_run}").assert_outcomes(failed=1)


def test_python_assertions_are_not_judged_on_the_bound(pytester: pytest.Pytester, regression_run: Path) -> None:
    below, above = _between(pytester, regression_run)
    pytester.makepyfile(f"""
        def test_estimate(projection):
            assert projection.head.r >= {below!r}
            assert projection.head.r <= {above!r}
    """)
    pytester.makefile(".yaml", neuron_claims=f'projection.head.r: ">= {below!r}"\n')
    result = pytester.runpytest_inprocess(f"--neuron-run={regression_run}", "--neuron-judge=bound", "-rA")
    result.assert_outcomes(passed=1, failed=1)  # the same threshold: the claim fails, the assertion passes
    result.stdout.fnmatch_lines(
        [
            "PASSED test_python_assertions_are_not_judged_on_the_bound.py::test_estimate*",
            "FAILED neuron_claims.yaml::projection.head.r >= *",
        ]
    )
