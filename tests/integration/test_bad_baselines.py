"""A --neuron-baseline that cannot be read (truncated, binary, UTF-16, over-deep, huge numbers, not a
summary, a directory of such) is a usage error at configure time naming the file and why: exit 4, one
line, no traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .conftest import read_json

SUITE = """
def test_nothing():
    pass
"""

_SUMMARY = '{"run": {"name": "r"}, "projections": {"head": {"correlation": %s}}}'

BAD: dict[str, tuple[bytes, str]] = {
    "truncated": (b'{"run": {"name": "r"}, "projections": {', "invalid JSON at line 1"),
    "binary": (bytes(range(256)) * 4, "not UTF-8 text"),
    "utf16": ((_SUMMARY % "0.5").encode("utf-16"), "not UTF-8 text"),
    "deep": (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    "huge_int": ((_SUMMARY % ("1" + "0" * 5000)).encode(), "too large to read"),
    "big_int": ((_SUMMARY % ("1" + "0" * 400)).encode(), "too large to read"),
    "float_overflow": ((_SUMMARY % "1e999").encode(), "overflows to infinity"),
    "not_object": (b"[1, 2, 3]", "expected a JSON object"),
    "not_summary": (b'{"hello": "world"}', "not a neuronprobe summary.json"),
    "bad_number": ((_SUMMARY % '"high"').encode(), "expected a number or null"),
}


def _check(result: pytest.RunResult, path: Path, why: str) -> None:
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    out = result.stdout.str() + result.stderr.str()
    assert "Traceback" not in out
    assert "INTERNALERROR" not in out
    lines = [line for line in result.stderr.lines if "--neuron-baseline:" in line]
    assert len(lines) == 1, out
    assert str(path) in lines[0] and why in lines[0], lines[0]


@pytest.mark.parametrize("kind", sorted(BAD))
def test_bad_baseline_file_is_a_usage_error(pytester: pytest.Pytester, kind: str) -> None:
    pytester.makepyfile(SUITE)
    content, why = BAD[kind]
    path = pytester.path / f"{kind}.json"
    path.write_bytes(content)
    result = pytester.runpytest_inprocess(f"--neuron-baseline={path}")
    _check(result, path, why)


@pytest.mark.parametrize("kind", ["truncated", "huge_int", "binary"])
def test_bad_baseline_with_a_run_is_a_usage_error(pytester: pytest.Pytester, regression_run: Path, kind: str) -> None:
    pytester.makepyfile(SUITE)
    content, why = BAD[kind]
    path = pytester.path / f"{kind}.json"
    path.write_bytes(content)
    result = pytester.runpytest_inprocess(f"--neuron-run={regression_run}", f"--neuron-baseline={path}")
    _check(result, path, why)


def test_directory_with_an_unreadable_summary_names_that_file(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(SUITE)
    base = pytester.path / "base"
    (base / "good").mkdir(parents=True)
    (base / "good" / "summary.json").write_text(_SUMMARY % "0.5", encoding="utf-8")
    (base / "bad").mkdir()
    bad = base / "bad" / "summary.json"
    bad.write_bytes(BAD["huge_int"][0])
    result = pytester.runpytest_inprocess(f"--neuron-baseline={base}")
    _check(result, bad, "too large to read")


def test_readable_baseline_still_runs(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(SUITE)
    path = pytester.path / "ok.json"
    path.write_text(_SUMMARY % "0.5", encoding="utf-8")
    result = pytester.runpytest_inprocess(f"--neuron-baseline={path}")
    result.assert_outcomes(passed=1)
    assert json.loads(path.read_text(encoding="utf-8")) == read_json(path)
