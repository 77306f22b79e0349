"""--neuron-no-cache (ini neuron_no_cache): the on-disk analysis cache is neither read nor written, even
where --neuron-cache-dir (ini neuron_cache_dir) names one; the numbers are the ones a cached run gives.
(Reading is checked in test_option_cache.py; here: nothing is written.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import FAST_PATCHING, FAST_PROJECTION

SUITE = f"""
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
    return sorted(directory.rglob("*.npz")) if directory.exists() else []


def _numbers(pytester: pytest.Pytester) -> tuple[str, str]:
    return (pytester.path / "proj.json").read_text(), (pytester.path / "patch.json").read_text()


def _nothing_from_cache(result: pytest.RunResult) -> None:
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["neuronprobe: analyses took * s (0 of 2 from cache)"])
    assert not [line for line in result.outlines if line.startswith("neuronprobe: p") and "from cache" in line]


def test_no_entry_is_written_to_the_cache_dir(pytester: pytest.Pytester, regression_run: Path) -> None:
    pytester.makepyfile(SUITE)
    cache = pytester.path / "c"
    args = [f"--neuron-run={regression_run}", f"--neuron-cache-dir={cache}", "--neuron-no-cache"]
    for _ in range(2):
        _nothing_from_cache(pytester.runpytest_inprocess(*args))
        assert _entries(cache) == []
    assert _entries(pytester.path / ".pytest_cache") == []
    # the same session with the cache writes both analyses
    pytester.runpytest_inprocess(*args[:-1]).assert_outcomes(passed=2)
    assert len(_entries(cache)) == 2


@pytest.mark.parametrize(
    "ini",
    ["neuron_no_cache = true", "neuron_no_cache = true\nneuron_cache_dir = ini-cache", "neuron_no_cache = false"],
    ids=["default dir", "ini dir", "cli over ini false"],
)
def test_ini_key(pytester: pytest.Pytester, regression_run: Path, ini: str) -> None:
    pytester.makepyfile(SUITE)
    pytester.makeini(f"[pytest]\n{ini}\n")
    args = [f"--neuron-run={regression_run}"]
    if ini.endswith("false"):
        args.append("--neuron-no-cache")
    for _ in range(2):
        _nothing_from_cache(pytester.runpytest_inprocess(*args))
    assert _entries(pytester.path / ".pytest_cache") == []
    assert _entries(pytester.path / "ini-cache") == []


def test_the_numbers_equal_a_cached_sessions(pytester: pytest.Pytester, regression_run: Path) -> None:
    pytester.makepyfile(SUITE)
    args = [f"--neuron-run={regression_run}", f"--neuron-cache-dir={pytester.path / 'c'}"]
    pytester.runpytest_inprocess(*args).assert_outcomes(passed=2)
    cached = pytester.runpytest_inprocess(*args)
    cached.stdout.fnmatch_lines(["neuronprobe: analyses took * s (2 of 2 from cache)"])
    from_cache = _numbers(pytester)
    _nothing_from_cache(pytester.runpytest_inprocess(*args, "--neuron-no-cache"))
    assert _numbers(pytester) == from_cache
