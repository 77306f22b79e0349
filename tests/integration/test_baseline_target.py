"""--neuron-update-baseline writes only where a baseline lives: a directory (created if missing) or a
.json path that is absent or already a summary; anything else is refused at configure time, in one line,
before any analysis runs, and left as it was."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

SUITE = """
def test_never_runs(projection):
    raise AssertionError("analysis ran")
"""


def _refused(pytester: pytest.Pytester, run: Path, target: str) -> pytest.RunResult:
    pytester.makepyfile(SUITE)
    result = pytester.runpytest_inprocess(
        f"--neuron-run={run}", f"--neuron-baseline={target}", "--neuron-update-baseline"
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    lines = [line for line in result.stderr.lines if "refusing to write the baseline" in line]
    assert len(lines) == 1, result.stderr.str()
    assert "analysis ran" not in result.stdout.str()
    return result


def test_a_python_file_is_refused_and_left_byte_identical(pytester: pytest.Pytester, regression_run: Path) -> None:
    target = pytester.path / "conftest_like.py"
    content = b"# my code\nVALUE = 1\n"
    target.write_bytes(content)
    _refused(pytester, regression_run, "conftest_like.py")
    assert target.read_bytes() == content


def test_a_json_that_is_not_a_summary_is_refused(pytester: pytest.Pytester, regression_run: Path) -> None:
    target = pytester.path / "package.json"
    content = json.dumps({"name": "web"}).encode()
    target.write_bytes(content)
    _refused(pytester, regression_run, "package.json")
    assert target.read_bytes() == content


def test_an_existing_file_without_json_suffix_is_refused(pytester: pytest.Pytester, regression_run: Path) -> None:
    target = pytester.path / "notes"
    target.write_text("keep me\n")
    _refused(pytester, regression_run, "notes")
    assert target.read_text() == "keep me\n"


@pytest.mark.parametrize("target", ["new_dir", "new_dir/deeper", "new.json"])
def test_absent_directories_and_json_paths_are_accepted(pytester: pytest.Pytester, target: str) -> None:
    from pytest_neuronprobe.pytest.options import check_baseline_target

    check_baseline_target(pytester.path / target)


def test_an_existing_summary_json_is_accepted(pytester: pytest.Pytester) -> None:
    from pytest_neuronprobe.pytest.options import check_baseline_target

    target = pytester.path / "summary.json"
    target.write_text(json.dumps({"run": {"name": "r"}, "projections": {}}))
    check_baseline_target(target)
    check_baseline_target(pytester.path)
