"""pytest-xdist (-n 2): the same outcomes as one process, and one uncorrupted report written by the controller."""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import FAST_PROJECTION, SUMMARY_KEYS, read_json

pytest.importorskip("xdist")

SUITE = f"""
import pytest

{FAST_PROJECTION}
def test_head(projection):
    assert projection.head.r > 0.5

{FAST_PROJECTION}
def test_impossible(projection):
    assert projection.head.r > 2

def test_slope(patching):
    assert patching.r_squared >= 0

def test_baseline(neuron_baseline):
    pass

def test_plain():
    pass
"""
CLAIMS = 'projection.prediction.r: ">= 0.5"\npatching.slope: ">= 100"\n'


def _summary_outcomes(result: pytest.RunResult) -> dict[str, int]:
    return {k: v for k, v in result.parseoutcomes().items() if k in ("passed", "failed", "skipped", "error", "errors")}


def test_xdist_same_outcomes_and_one_report(pytester: pytest.Pytester, two_runs: list[Path],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    pytester.makepyfile(SUITE)
    pytester.makefile(".yaml", neuron_claims=CLAIMS)
    args = [f"--neuron-run={run}" for run in two_runs]
    single = pytester.runpytest_inprocess(*args, "--neuron-report=single", "-p", "no:cacheprovider")
    parallel = pytester.runpytest_subprocess(*args, "--neuron-report=parallel", "--neuron-baseline=base",
                                             "--neuron-update-baseline", "-n", "2", "-p", "no:cacheprovider")
    expected = {"passed": 7, "failed": 4, "skipped": 2}
    single.assert_outcomes(**expected)
    parallel.assert_outcomes(**expected)
    assert _summary_outcomes(single) == _summary_outcomes(parallel)
    out = pytester.path / "parallel"
    parallel.stdout.fnmatch_lines([
        "*-- neuronprobe --*",
        f"run {two_runs[0].name} *",
        "  projection.head.r *",
        "2 test(s) skipped: no baseline for their run*",
        f"report written: {out / 'index.html'} (2 run(s), 12 test record(s))",
        "baseline updated: wrote *",
    ])
    # The records from both workers reached the controller, with the same outcomes as one process.
    one = {(t["nodeid"], t["outcome"]) for t in read_json(pytester.path / "single" / "results.json")["tests"]}
    two = {(t["nodeid"], t["outcome"]) for t in read_json(out / "results.json")["tests"]}
    assert one == two and len(two) == 12
    html = (out / "index.html").read_text(encoding="utf-8")
    for run in two_runs:
        summary = read_json(out / run.name / "summary.json")
        assert SUMMARY_KEYS <= set(summary) and summary["patching"] is not None
        assert (out / run.name / "projection.png").stat().st_size > 0
        assert (out / run.name / "patching_scatter.png").stat().st_size > 0
        assert read_json(pytester.path / "base" / run.name / "summary.json")["run"]["name"] == run.name
        for claim in ("projection.prediction.r &gt;= 0.5", "patching.slope &gt;= 100"):
            assert claim in html
        assert f"test_impossible[{run.name}]" in html
        # The numbers do not depend on how the work was split.
        single_summary = read_json(pytester.path / "single" / run.name / "summary.json")
        for name in ("prediction", "head", "live"):
            assert summary["projections"][name] == single_summary["projections"][name]
        assert summary["patching"]["slope"] == single_summary["patching"]["slope"]
    assert not [p for p in out.rglob("*") if p.name.startswith(".")]
