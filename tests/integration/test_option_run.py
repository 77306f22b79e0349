"""--neuron-run PATH (repeatable, globs expanded) and its ini key neuron_run."""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import FAST_PROJECTION

TEST_FILE = f"""
import pytest

{FAST_PROJECTION}
def test_head(projection, neuron_run):
    assert projection.run_name == neuron_run.name

def test_plain():
    assert True
"""


def test_one_run_parametrizes_by_name(pytester: pytest.Pytester, regression_run: Path) -> None:
    pytester.makepyfile(TEST_FILE)
    result = pytester.runpytest_inprocess(f"--neuron-run={regression_run}", "-v")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(
        [
            f"neuronprobe: runs: {regression_run.name} ({regression_run})",
            f"*test_head[[]{regression_run.name}[]] PASSED*",
            "*test_plain PASSED*",
        ]
    )


def test_repeated_option_gives_one_test_per_run(pytester: pytest.Pytester, two_runs: list[Path]) -> None:
    pytester.makepyfile(TEST_FILE)
    args = [f"--neuron-run={run}" for run in two_runs]
    result = pytester.runpytest_inprocess(*args, "-v")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines([f"*test_head[[]{run.name}[]] PASSED*" for run in two_runs])


def test_glob_is_expanded_and_skips_files(pytester: pytest.Pytester, two_runs: list[Path]) -> None:
    parent = two_runs[0].parent
    assert all(run.parent == parent for run in two_runs)
    (pytester.path / "runs").mkdir()
    for run in two_runs:
        (pytester.path / "runs" / run.name).symlink_to(run, target_is_directory=True)
    (pytester.path / "runs" / "README.txt").write_text("not a run")
    pytester.makepyfile(TEST_FILE)
    result = pytester.runpytest_inprocess("--neuron-run", "runs/*", "-v")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines([f"*test_head[[]{run.name}[]] PASSED*" for run in sorted(two_runs)])


def test_same_run_twice_is_one_run(pytester: pytest.Pytester, regression_run: Path) -> None:
    pytester.makepyfile(TEST_FILE)
    result = pytester.runpytest_inprocess(f"--neuron-run={regression_run}", f"--neuron-run={regression_run}/", "-v")
    result.assert_outcomes(passed=2)


def test_missing_path_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(TEST_FILE)
    result = pytester.runpytest_inprocess("--neuron-run", "no/such/run")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--neuron-run*no such run directory: no/such/run*"])


def test_glob_matching_nothing_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(TEST_FILE)
    result = pytester.runpytest_inprocess("--neuron-run", "nothing_here_*")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*no run directory matches 'nothing_here_*'*"])


def test_not_a_run_directory_is_a_usage_error(pytester: pytest.Pytester) -> None:
    (pytester.path / "empty_dir").mkdir()
    pytester.makepyfile(TEST_FILE)
    result = pytester.runpytest_inprocess("--neuron-run", "empty_dir")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--neuron-run*empty_dir*no model directory found*"])


def test_ini_paths_are_relative_to_the_ini_file(pytester: pytest.Pytester, regression_run: Path) -> None:
    (pytester.path / "runs").mkdir()
    (pytester.path / "runs" / regression_run.name).symlink_to(regression_run, target_is_directory=True)
    sub = pytester.mkdir("sub")
    pytester.makeini("[pytest]\nneuron_run = runs/*\n")
    (sub / "test_in_sub.py").write_text(TEST_FILE)
    result = pytester.runpytest_inprocess("sub", "-v")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines([f"*test_head[[]{regression_run.name}[]] PASSED*"])


def test_tests_without_run_fixtures_are_not_parametrized(pytester: pytest.Pytester, two_runs: list[Path]) -> None:
    pytester.makepyfile("def test_a():\n    pass\n")
    args = [f"--neuron-run={run}" for run in two_runs]
    result = pytester.runpytest_inprocess(*args, "-v")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*test_a PASSED*"])
