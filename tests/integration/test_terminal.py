"""The terminal summary: which baseline each run was paired with and why, the comparability warning,
the Δ table with intervals and the rows of broken claims marked, claim counts, and `-q` / `-qq`."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.run_copies import copy_run

CLAIMS = """\
projection.head.r: ">= 2"
projection.prediction.r: ">= baseline - 0.05"
projection.live.r: ">= 0.9"
"""


def _make_baseline(pytester: pytest.Pytester, run: Path) -> Path:
    """A baseline of `run`, written by a session in this test (its baseline claim is not judged yet)."""
    pytester.makefile(".yaml", neuron_claims=CLAIMS)
    first = pytester.runpytest_inprocess(
        f"--neuron-run={run}", "--neuron-baseline=baseline", "--neuron-update-baseline"
    )
    first.stdout.fnmatch_lines(["baseline updated: wrote *"])
    return pytester.path / "baseline"


def _section(result: pytest.RunResult) -> list[str]:
    """The lines of the neuronprobe terminal summary section."""
    lines = result.outlines
    starts = [i for i, line in enumerate(lines) if "- neuronprobe -" in line]
    if not starts:
        return []
    out = []
    for line in lines[starts[-1] + 1 :]:
        if line.startswith("===") or line.startswith("---"):
            break
        out.append(line)
    return out


def test_delta_table_with_intervals_marks_broken_claims(pytester: pytest.Pytester, regression_run: Path) -> None:
    base = _make_baseline(pytester, regression_run)
    name = regression_run.name
    result = pytester.runpytest_inprocess(f"--neuron-run={regression_run}", "--neuron-baseline=baseline")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(
        [
            f"run {name} (L1 N31, regression, test split, n=12)",
            f"  paired with baseline run {name}: same run name",
            f"  compared with the baseline {base}:",
            "  metric * baseline * 95% interval * now * 95% interval * Δ",
            "  projection.prediction.r * [[]*, *[]] * [[]*, *[]] * 0",
            "  projection.head.r * [[]*, *[]] * [[]*, *[]] * 0  ✗ broke >= 2",
            "  claims: 2 passed, 1 failed (✗ marks the metric of a claim that did not hold)",
            "neuronprobe: analyses took * s (* of * from cache)",
        ]
    )
    section = _section(result)
    marked = [line for line in section if "✗" in line and line.startswith("  projection.")]
    assert len(marked) == 1 and marked[0].startswith("  projection.head.r "), section
    assert not [line for line in section if "WARNING" in line], section
    weights = next(line for line in section if line.startswith("  projection.weights.head_input "))
    assert "[" not in weights  # a metric without an interval shows none


def test_pairing_by_neuron_and_the_comparability_warning(
    pytester: pytest.Pytester, regression_run: Path, tmp_path: Path
) -> None:
    _make_baseline(pytester, regression_run)
    renamed = copy_run(regression_run, tmp_path).rename(tmp_path / "retrained-neuron_l1_n31")
    result = pytester.runpytest_inprocess(
        f"--neuron-run={renamed}", "--neuron-baseline=baseline", "--neuron-max-samples=5"
    )
    result.assert_outcomes(failed=3)  # 5 texts: the intervals are undefined
    result.stdout.fnmatch_lines(
        [
            "run retrained-neuron_l1_n31 (L1 N31, regression, test split, n=5)",
            f"  paired with baseline run {regression_run.name}: same neuron (*layer 1 neuron 31*)",
            "  WARNING: this run and its baseline were analysed differently, so the Δ compares unlike with like: "
            "*n: 12 vs 5*",
            "  compared with the baseline *",
            "  patching.slope * [[]*, *[]] * not run * not run",  # the baseline ran patching, this session not
            "  claims: 3 failed (✗ marks the metric of a claim that did not hold)",
        ]
    )


def test_quiet_keeps_one_line_per_run_and_the_cache_line(
    pytester: pytest.Pytester, regression_run: Path, hidden_run: Path
) -> None:
    _make_baseline(pytester, regression_run)
    args = [f"--neuron-run={regression_run}", f"--neuron-run={hidden_run}", "--neuron-baseline=baseline"]
    quiet = pytester.runpytest_inprocess(*args, "-q")
    quiet.assert_outcomes(passed=4, failed=2)
    section = _section(quiet)
    run_lines = [line for line in section if line.startswith("run ")]
    assert len(run_lines) == 2, section
    reg = next(line for line in run_lines if line.startswith(f"run {regression_run.name}: "))
    assert reg.startswith(f"run {regression_run.name}: 2 passed, 1 failed of 3 record(s); ")
    assert "head.r ✗" in reg and "prediction.r " in reg and " Δ" in reg and "[" in reg
    hid = next(line for line in run_lines if line.startswith(f"run {hidden_run.name}: "))
    assert ": 2 passed, 1 failed of 3 record(s); " in hid and "head.r ✗" in hid  # paired with the same neuron
    assert not [line for line in section if line.startswith("  ")], section  # no tables
    quiet.stdout.fnmatch_lines(["neuronprobe: analyses took * s (* of * from cache)"])
    silent = pytester.runpytest_inprocess(*args, "-qq")
    assert silent.ret == pytest.ExitCode.TESTS_FAILED  # -qq prints no outcome line to parse
    assert _section(silent) == [] and "analyses took" not in silent.stdout.str()


def _summary(name: str, head: float) -> dict[str, object]:
    corr = {"correlation": head, "ci_low": head - 0.05, "ci_high": head + 0.02, "n": 40}
    run = {"name": name, "target_layer": 3, "target_neuron": 7, "head_type": "regression", "split": "test"}
    return {"run": run, "dataset_size": 40, "projections": {"head": corr}, "patching": None}


def test_session_lines_accept_a_bare_summary_and_quiet_levels() -> None:
    """The view without the pytest layer: a bare baseline summary (the older SessionView) still compares;
    a BaselinePair says why; -qq keeps only errors."""
    from types import SimpleNamespace

    from pytest_neuronprobe.baseline import BaselinePair
    from pytest_neuronprobe.report.files import RunReport, TestRecord
    from pytest_neuronprobe.report.terminal import SessionView, session_lines

    runs = {"new": RunReport(name="new", summary=_summary("new", 0.7))}
    records = [
        TestRecord("c1", "new", "projection.head.r >= 0.8", "failed", kind="claim", metric="projection.head.r"),
        TestRecord("c2", "new", "projection.head.n == 40", "passed", kind="claim", metric="projection.head.n"),
        TestRecord("t1", "new", "test_x", "passed"),
    ]
    bare = SessionView(runs, baselines={"new": _summary("old", 0.8)}, baseline_path=Path("b"), records=records)
    lines = session_lines(bare)
    assert "  paired with baseline run old" in lines and "  compared with the baseline b:" in lines
    head = next(line for line in lines if line.startswith("  projection.head.r "))
    assert head.split() == [
        "projection.head.r", "0.8000", "[0.7500,", "0.8200]", "0.7000", "[0.6500,", "0.7200]", "-0.1000", "✗", "broke",
        ">=", "0.8",
    ]  # fmt: skip
    assert any(line.startswith("  projection.head.n ") and "✗" not in line for line in lines)  # a claimed metric
    assert "  claims: 1 passed, 1 failed (✗ marks the metric of a claim that did not hold)" in lines
    pair = BaselinePair("new", "old", "same neuron (x)", _summary("old", 0.8), differences=("n: 60 vs 40",))
    view = SessionView(runs, baselines={"new": pair}, baseline_path=Path("b"), records=records)
    lines = session_lines(view)
    assert "  paired with baseline run old: same neuron (x)" in lines
    assert any(line.startswith("  WARNING: ") and line.endswith(": n: 60 vs 40") for line in lines)
    (quiet,) = session_lines(view, -1)
    assert quiet.startswith("run new: 2 passed, 1 failed of 3 record(s); head.r ✗0.7 [0.65, 0.72] Δ-0.1")
    assert quiet.endswith("; WARNING: analysed differently from baseline old")
    done = SimpleNamespace(index_html=None, report_files={}, baseline_files=[], baseline_untouched=[], errors=["x"])
    view.finished = done
    assert session_lines(view, -2) == ["ERROR x"]
    assert session_lines(SessionView(runs, baselines={"new": None}, unpaired={"new": "why"}))[1] == (
        "  no baseline for this run: why"
    )


def test_a_strict_xfail_claim_that_held_is_not_marked_broken(pytester: pytest.Pytester, regression_run: Path) -> None:
    pytester.makefile(
        ".yaml",
        neuron_claims='dataset_size:\n  expect: ">= 1"\n  xfail: "expected to fail, but holds"\n'
        'projection.head.r: ">= 2"\n',
    )
    result = pytester.runpytest_inprocess(f"--neuron-run={regression_run}")
    result.assert_outcomes(failed=2)
    section = _section(result)
    assert [line.split()[0] for line in section if "✗ broke" in line] == ["projection.head.r"]
    result.stdout.fnmatch_lines(["*[[]XPASS(strict)[]] expected to fail, but holds*"])
