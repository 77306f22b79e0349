"""The on-disk analysis cache through the plugin: --neuron-cache-dir (ini neuron_cache_dir),
--neuron-no-cache (ini neuron_no_cache), the default in pytest's cache directory, "from cache"."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .conftest import FAST_PATCHING, FAST_PROJECTION

TEST_FILE = f"""
import json, pathlib
import pytest

{FAST_PROJECTION}
def test_projection(projection):
    pathlib.Path("proj.json").write_text(json.dumps(projection.as_dict(), default=str, sort_keys=True))

{FAST_PATCHING}
def test_patching(patching):
    pathlib.Path("patch.json").write_text(json.dumps(patching.as_dict(), default=str, sort_keys=True))
"""


def _entries(directory: Path) -> list[Path]:
    return sorted(directory.rglob("*.npz"))


def _numbers(pytester: pytest.Pytester) -> tuple[str, str]:
    return (pytester.path / "proj.json").read_text(), (pytester.path / "patch.json").read_text()


def test_cache_dir_option_second_session_from_cache(pytester: pytest.Pytester, regression_run: Path) -> None:
    pytester.makepyfile(TEST_FILE)
    cache = pytester.path / "mycache"
    args = [f"--neuron-run={regression_run}", f"--neuron-cache-dir={cache}"]
    first = pytester.runpytest_inprocess(*args)
    first.assert_outcomes(passed=2)
    assert not [line for line in first.outlines if "from cache" in line and line.startswith("neuronprobe: p")]
    first.stdout.fnmatch_lines(["neuronprobe: analyses took * s (0 of 2 from cache)"])
    assert len(_entries(cache)) == 2
    numbers = _numbers(pytester)
    second = pytester.runpytest_inprocess(*args)
    second.assert_outcomes(passed=2)
    second.stdout.fnmatch_lines(
        [
            f"neuronprobe: projection of {regression_run.name} (*) from cache … * s",
            f"neuronprobe: patching of {regression_run.name} (*) from cache … * s",
        ]
    )
    second.stdout.fnmatch_lines(["neuronprobe: analyses took * s (2 of 2 from cache)"])
    assert _numbers(pytester) == numbers
    # a changed option is another analysis
    pytester.makepyfile(TEST_FILE.replace("n_resamples=50", "n_resamples=40"))
    third = pytester.runpytest_inprocess(*args)
    third.stdout.fnmatch_lines(["neuronprobe: analyses took * s (0 of 2 from cache)"])
    assert len(_entries(cache)) == 4


def test_default_is_pytest_cache_dir_and_report_is_the_same(pytester: pytest.Pytester, regression_run: Path) -> None:
    pytester.makepyfile(TEST_FILE)
    args = [f"--neuron-run={regression_run}", "--neuron-report=rep"]
    pytester.runpytest_inprocess(*args).assert_outcomes(passed=2)
    assert len(_entries(pytester.path / ".pytest_cache" / "d" / "neuronprobe")) >= 2
    summary = json.loads((pytester.path / "rep" / regression_run.name / "summary.json").read_text())
    second = pytester.runpytest_inprocess(*args)
    second.assert_outcomes(passed=2)
    second.stdout.fnmatch_lines(["neuronprobe: analyses took * s (* of * from cache)"])
    assert "(0 of" not in "\n".join(second.outlines)
    again = json.loads((pytester.path / "rep" / regression_run.name / "summary.json").read_text())
    summary.pop("provenance", None), again.pop("provenance", None)
    assert again == summary


def test_no_cache_option_and_ini(pytester: pytest.Pytester, regression_run: Path) -> None:
    pytester.makepyfile(TEST_FILE)
    cache = pytester.path / "c"
    args = [f"--neuron-run={regression_run}", f"--neuron-cache-dir={cache}"]
    pytester.runpytest_inprocess(*args).assert_outcomes(passed=2)
    assert len(_entries(cache)) == 2
    off = pytester.runpytest_inprocess(*args, "--neuron-no-cache")
    off.assert_outcomes(passed=2)
    assert not [line for line in off.outlines if "from cache" in line and "(0 of" not in line]
    pytester.makeini("[pytest]\nneuron_no_cache = true\n")
    off_ini = pytester.runpytest_inprocess(*args)
    off_ini.assert_outcomes(passed=2)
    assert not [line for line in off_ini.outlines if "from cache" in line and "(0 of" not in line]
    assert not (pytester.path / ".pytest_cache" / "d" / "neuronprobe").exists() or not _entries(
        pytester.path / ".pytest_cache" / "d" / "neuronprobe"
    )


def test_ini_cache_dir_is_relative_to_the_ini_file(pytester: pytest.Pytester, regression_run: Path) -> None:
    pytester.makepyfile(TEST_FILE)
    pytester.makeini("[pytest]\nneuron_cache_dir = ini-cache\n")
    pytester.runpytest_inprocess(f"--neuron-run={regression_run}").assert_outcomes(passed=2)
    assert len(_entries(pytester.path / "ini-cache")) == 2


def test_cache_dir_that_is_a_file_is_a_usage_error(pytester: pytest.Pytester, regression_run: Path) -> None:
    pytester.makepyfile(TEST_FILE)
    (pytester.path / "afile").write_text("x")
    result = pytester.runpytest_inprocess(f"--neuron-run={regression_run}", "--neuron-cache-dir=afile")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--neuron-cache-dir*expected a directory*"])
