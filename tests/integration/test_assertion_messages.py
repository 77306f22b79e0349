"""Failed assertions on analysis numbers show the metric, estimate, interval, n and run;
helpers hide their own frames; other assertions keep pytest's explanations."""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import FAST_PATCHING, FAST_PROJECTION


def test_failed_projection_assertion_shows_interval_n_and_run(pytester: pytest.Pytester, regression_run: Path) -> None:
    pytester.makepyfile(f"""
        import pytest

        {FAST_PROJECTION}
        def test_direct(projection):
            assert projection.head.r > 2

        {FAST_PROJECTION}
        def test_via_a_variable(projection):
            low = projection.prediction.ci_low
            assert low >= 2

        {FAST_PROJECTION}
        def test_selectivity(projection):
            assert projection.null.random.selectivity > 5
    """)
    result = pytester.runpytest_inprocess(f"--neuron-run={regression_run}")
    result.assert_outcomes(failed=3)
    name = regression_run.name
    result.stdout.fnmatch_lines(
        [
            "E       *assert 0.* > 2",
            f"E         projection.head.r = 0.*, 95% interval [[]0.*, *[]], n = 12 (run {name}, test split)",
            "E       *assert 0.* >= 2",
            f"E         projection.prediction.ci_low = 0.* (r = 0.*, 95% interval [[]*[]], n = 12; run {name}, "
            "test split)",
            "E       *assert 0.* > 5",
            "E         projection.null.random.selectivity = * (|r| of the head * vs the null's 95th percentile * "
            "over 10 *",
        ]
    )


def test_failed_patching_assertion_keeps_approx_and_adds_the_fit(
    pytester: pytest.Pytester, regression_run: Path
) -> None:
    pytester.makepyfile(f"""
        import pytest

        {FAST_PATCHING}
        def test_slope(patching):
            assert patching.slope == pytest.approx(5.0, abs=0.1)
    """)
    result = pytester.runpytest_inprocess(f"--neuron-run={regression_run}")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "E       *assert 0.* == 5.0 ± 0.1",
            f"E         patching.slope = *, 95% interval [[]*[]], R² = *, n = 36 points (run {regression_run.name}, "
            "scale x3, 12 texts)",
        ]
    )


def test_undefined_operand_explains_itself(pytester: pytest.Pytester, regression_run: Path) -> None:
    pytester.makepyfile("""
        from pytest_neuronprobe.analyses.stats import Undefined

        def test_undefined(neuron_run):
            value = Undefined("constant input")
            assert value >= 0
    """)
    result = pytester.runpytest_inprocess(f"--neuron-run={regression_run}")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "E       *assert undefined(constant input) >= 0",
            "E         undefined: constant input; an undefined number compares False with everything, so this "
            f"assertion fails instead of passing silently (run {regression_run.name})",
        ]
    )


def test_assert_claim_helper_hides_its_frame(pytester: pytest.Pytester, regression_run: Path) -> None:
    pytester.makepyfile(f"""
        import pytest
        from pytest_neuronprobe import assert_claim

        {FAST_PROJECTION}
        def test_claim(projection):
            assert_claim("projection.head.r >= 0.5", projection)
            assert_claim("projection.head.r >= 2", projection)
    """)
    result = pytester.runpytest_inprocess(f"--neuron-run={regression_run}")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            '>       assert_claim("projection.head.r >= 2", projection)',
            "E       AssertionError: projection.head.r >= 2 failed: judged on the 95% interval's lower bound "
            f"ci_low=* (estimate r=*, interval [[]*[]], n=12) (run {regression_run.name})",
        ]
    )
    assert "assertion.py" not in result.stdout.str()


def test_other_assertions_keep_pytest_explanations(pytester: pytest.Pytester, regression_run: Path) -> None:
    pytester.makepyfile("""
        def test_lists(neuron_run):
            assert [1, 2, 3] == [1, 2, 4]

        def test_numbers_unrelated_to_the_analysis(neuron_run):
            assert neuron_run.layer > 5
    """)
    result = pytester.runpytest_inprocess(f"--neuron-run={regression_run}")
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(
        [
            "E         At index 2 diff: 3 != 4",
            "E        +  where 1 = Run(*)*.layer",
        ]
    )
