"""--neuron-report DIR: summary.json + PNGs per run, index.html and results.json, written once at the end."""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import FAST_PROJECTION, PATCHING_KEYS, PROJECTION_ENTRY_KEYS, RUN_KEYS, SUMMARY_KEYS, read_json

SUITE = f"""
import pytest

{FAST_PROJECTION}
def test_head_tracks(projection):
    \"\"\"The head direction tracks the neuron.\"\"\"
    assert projection.head.r > 0.5

{FAST_PROJECTION}
def test_impossible(projection):
    assert projection.head.r > 2

def test_plain():
    pass
"""
CLAIMS = 'projection.prediction.r: ">= 0.5"\npatching.r_squared: ">= 0"\n'


def test_report_is_off_by_default(pytester: pytest.Pytester, regression_run: Path) -> None:
    pytester.makepyfile(SUITE)
    result = pytester.runpytest_inprocess(f"--neuron-run={regression_run}")
    result.assert_outcomes(passed=2, failed=1)
    assert not list(pytester.path.rglob("index.html"))
    assert not list(pytester.path.rglob("summary.json"))
    assert "report written" not in result.stdout.str()


def test_report_files(pytester: pytest.Pytester, two_runs: list[Path]) -> None:
    pytester.makepyfile(SUITE)
    pytester.makefile(".yaml", neuron_claims=CLAIMS)
    args = [f"--neuron-run={run}" for run in two_runs]
    result = pytester.runpytest_inprocess(*args, "--neuron-report", "out")
    result.assert_outcomes(passed=7, failed=2)
    out = pytester.path / "out"
    result.stdout.fnmatch_lines(
        [
            f"neuronprobe: *report: {out}*",
            "*-- neuronprobe --*",
            f"report written: {out / 'index.html'} (2 run(s), 8 test record(s))",
        ]
    )
    for run in two_runs:
        summary = read_json(out / run.name / "summary.json")
        assert SUMMARY_KEYS <= set(summary)
        assert RUN_KEYS <= set(summary["run"]) and summary["run"]["name"] == run.name
        assert set(summary["projections"]) == {"prediction", "head", "input", "output", "neuron_dir", "live"}
        for entry in summary["projections"].values():
            assert PROJECTION_ENTRY_KEYS <= set(entry)
        # The report holds the analyses with the session's default options, complete.
        assert summary["projections"]["head"]["n"] == 12 and summary["projection_options"]["n_resamples"] == 1000
        assert PATCHING_KEYS <= set(summary["patching"])
        assert set(summary["weight_similarities"]) == {"head_input", "head_output", "input_output"}
        assert "NaN" not in (out / run.name / "summary.json").read_text()
        pngs = {p.name for p in (out / run.name).glob("*.png")}
        assert {"projection.png", "patching_scatter.png", "patching_curves.png"} <= pngs
    html = (out / "index.html").read_text(encoding="utf-8")
    for run in two_runs:
        assert run.name in html
        for text in (
            "projection.prediction.r &gt;= 0.5",
            "patching.r_squared &gt;= 0",
            "test_head_tracks[" + run.name + "]: The head direction tracks the neuron.",
            "test_impossible[" + run.name + "]",
        ):
            assert text in html, text
    assert "Provenance" in html and "head_sha256" in html
    results = read_json(out / "results.json")
    outcomes = {(t["nodeid"].split("::")[-1], t["run"]): t["outcome"] for t in results["tests"]}
    assert outcomes[(f"test_impossible[{two_runs[0].name}]", two_runs[0].name)] == "failed"
    assert outcomes[(f"test_head_tracks[{two_runs[1].name}]", two_runs[1].name)] == "passed"
    failed = next(t for t in results["tests"] if t["outcome"] == "failed")
    assert "projection.head.r = " in failed["message"] and "95% interval" in failed["message"]
    assert failed["values"]["projection.head.r"] == pytest.approx(
        read_json(out / failed["run"] / "summary.json")["projections"]["head"]["correlation"], abs=1e-6
    )


def test_report_lists_skipped_tests_without_a_run(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(SUITE)
    result = pytester.runpytest_inprocess("--neuron-report=out")
    result.assert_outcomes(passed=1, skipped=2)
    html = (pytester.path / "out" / "index.html").read_text(encoding="utf-8")
    assert "Claims without a run" in html and "no --neuron-run given" in html


def test_report_dir_must_not_be_a_file(pytester: pytest.Pytester) -> None:
    pytester.makefile(".txt", out="x")
    result = pytester.runpytest_inprocess("--neuron-report", "out.txt")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--neuron-report*expected a directory, got a file*"])


def test_report_dir_that_is_not_a_report_is_refused_before_any_test(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(SUITE)
    (pytester.path / "mine").mkdir()
    (pytester.path / "mine" / "notes.txt").write_text("keep me")
    result = pytester.runpytest_inprocess("--neuron-report", "mine")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*mine [[]--neuron-report[]]: exists and is not a neuronprobe report*"])
    assert [p.name for p in (pytester.path / "mine").iterdir()] == ["notes.txt"]


def test_report_replaces_an_earlier_report_whole(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(SUITE)
    assert pytester.runpytest_inprocess("--neuron-report=out").ret == 0
    (pytester.path / "out" / "stray.txt").write_text("from an earlier report")
    assert pytester.runpytest_inprocess("--neuron-report=out").ret == 0
    assert sorted(p.name for p in (pytester.path / "out").iterdir()) == ["index.html", "results.json"]
    assert not [p for p in pytester.path.iterdir() if p.name.startswith(".out.")]


def test_terminal_summary_table_per_run(pytester: pytest.Pytester, regression_run: Path) -> None:
    pytester.makepyfile("def test_x(projection, patching):\n    pass\n")
    result = pytester.runpytest_inprocess(f"--neuron-run={regression_run}")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        [
            "*-- neuronprobe --*",
            f"run {regression_run.name} (L1 N31, regression, test split, n=12)",
            "  metric * estimate * 95% interval * n",
            "  projection.prediction.r * [[]*, *[]] * 12",
            "  projection.head.r *",
            "  patching.slope *",
        ]
    )
