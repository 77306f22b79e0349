"""Tests for comparing summaries: loading, rows, tables, --fail conditions, exit codes."""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pytest_neuronprobe.baseline import load_summaries, load_summary
from pytest_neuronprobe.claims.metrics import CONTROL_PREFIXES, HEADLINE_METRICS
from pytest_neuronprobe.cli import add_compare_parser, compare_main
from pytest_neuronprobe.compare import (
    Row,
    check_fail,
    compare_summaries,
    diff_rows,
    format_table,
    parse_fail,
)
from pytest_neuronprobe.core.errors import NeuronProbeError

ABSENT = "absent: the neuron is not an MLP neuron (layer_type is not pre/post)"


def corr(r: float | None, n: int = 500, reason: str | None = None) -> dict[str, Any]:
    d: dict[str, Any] = {
        "correlation": r,
        "r_squared": None if r is None else r * r,
        "p_value": None if r is None else 1e-9,
        "spearman": r,
        "ci_low": None if r is None else r - 0.04,
        "ci_high": None if r is None else min(1.0, r + 0.04),
        "n": n,
    }
    if reason is not None:
        d["reason"] = reason
    return d


def make_summary(
    name: str = "gpt2_neuron_l8_n481",
    *,
    head: float = 0.8,
    slope: float | None = 0.95,
    mlp: bool = True,
    patching: bool = True,
) -> dict[str, Any]:
    """A SPEC §5 summary with hand-picked numbers."""
    return {
        "run": {
            "path": f"/runs/{name}",
            "name": name,
            "target_layer": 8,
            "target_neuron": 481,
            "head_type": "regression",
            "base_model": "gpt2",
            "split": "all",
        },
        "dataset_size": 500,
        "weight_similarities": {"head_input": 0.12, "head_output": 0.45, "input_output": -0.02},
        "projections": {
            "prediction": corr(0.93),
            "head": corr(head),
            "input": corr(0.61) if mlp else corr(None, reason=ABSENT),
            "output": corr(0.35) if mlp else corr(None, reason=ABSENT),
            "neuron_dir": corr(0.22) if mlp else corr(None, reason=ABSENT),
            "live": corr(1.0),
        },
        "null": {
            "random": {
                "observed": head,
                "p_value": 0.005,
                "percentile_95": 0.2,
                "selectivity": head - 0.2,
                "n_null": 200,
            },
            "neurons": None,
        },
        "patching": None
        if not patching
        else {
            "mode": "scale",
            "factors": [0, 0.5, 1.0],
            "n_texts": 40,
            "baseline_correlation": 0.8,
            "slope": slope,
            "intercept": 0.01,
            "r_squared": 0.9,
            "slope_ci_low": None if slope is None else slope - 0.05,
            "slope_ci_high": None if slope is None else slope + 0.05,
            "avg_activation_changes": [],
            "avg_prediction_changes": [],
            "per_input": [],
            "direct_slope": 0.5,
            "direct_fraction": 0.5,
        },
    }


def write_summary(directory: Path, summary: dict[str, Any]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "summary.json"
    path.write_text(json.dumps(summary), encoding="utf-8")
    return path


def run_main(args: list[str], capsys) -> tuple[int, str, str]:
    code = compare_main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


# ---------------------------------------------------------------------------------------------
# loading
# ---------------------------------------------------------------------------------------------


def test_load_single_file_run_directory_and_report_directory(tmp_path: Path) -> None:
    single = write_summary(tmp_path / "one", make_summary("a"))
    assert list(load_summaries(single)) == ["a"]
    assert list(load_summaries(tmp_path / "one")) == ["a"]  # a run's own report directory
    assert load_summary(single)["run"]["name"] == "a"
    write_summary(tmp_path / "report" / "run_b", make_summary("b"))
    write_summary(tmp_path / "report" / "run_a", make_summary("a"))
    both = load_summaries(tmp_path / "report")
    assert sorted(both) == ["a", "b"] and both["b"]["run"]["name"] == "b"
    with pytest.raises(NeuronProbeError, match="holds 2 runs"):
        load_summary(tmp_path / "report")


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ("{not json", "invalid JSON at line 1"),
        ("[1, 2]", "expected a JSON object"),
        ('{"a": 1}', "not a neuronprobe summary.json"),
        ('{"projections": {}, "run": {}}', "[run.name]"),
    ],
)
def test_invalid_summary_files(tmp_path: Path, content: str, fragment: str) -> None:
    path = tmp_path / "summary.json"
    path.write_text(content)
    with pytest.raises(NeuronProbeError) as info:
        load_summaries(path)
    assert str(path) in str(info.value) and fragment in str(info.value)


def test_missing_paths_and_duplicates(tmp_path: Path) -> None:
    with pytest.raises(NeuronProbeError, match="no such file or directory"):
        load_summaries(tmp_path / "nope.json")
    (tmp_path / "empty").mkdir()
    with pytest.raises(NeuronProbeError, match=r"<dir>/<run>/summary.json"):
        load_summaries(tmp_path / "empty")
    write_summary(tmp_path / "dup" / "x", make_summary("same"))
    write_summary(tmp_path / "dup" / "y", make_summary("same"))
    with pytest.raises(NeuronProbeError, match="run 'same' appears twice"):
        load_summaries(tmp_path / "dup")


# ---------------------------------------------------------------------------------------------
# rows and tables
# ---------------------------------------------------------------------------------------------


def test_diff_rows_headline_metrics() -> None:
    rows = diff_rows(make_summary(head=0.8), make_summary(head=0.75, mlp=False))
    by = {r.metric: r for r in rows}
    shown = [m for m in HEADLINE_METRICS if "neurons" not in m and not m.startswith(CONTROL_PREFIXES)]
    assert [r.metric for r in rows] == shown  # no control analysis in these summaries: no control rows
    assert by["projection.head.r"].delta == pytest.approx(-0.05)
    assert by["projection.input.r"] == Row("projection.input.r", 0.61, None, None)
    assert by["patching.slope"].delta == 0


def test_diff_rows_skip_analyses_absent_from_both() -> None:
    rows = diff_rows(make_summary(patching=False), make_summary(patching=False))
    assert not any(r.metric.startswith("patching.") for r in rows)
    rows = diff_rows(make_summary(patching=False), make_summary())
    assert Row("patching.slope", None, 0.95, None) in rows


def test_diff_rows_chosen_metrics_and_globs() -> None:
    rows = diff_rows(make_summary(), make_summary(), ["dataset_size", "projection.*.r", "dataset_size"])
    names = ("prediction", "head", "input", "output", "neuron_dir", "live")
    assert [r.metric for r in rows] == ["dataset_size"] + [f"projection.{p}.r" for p in names]
    with pytest.raises(NeuronProbeError, match=r"did you mean projection\.head\.r"):
        diff_rows(make_summary(), make_summary(), ["projection.haed.r"])
    with pytest.raises(NeuronProbeError, match="no metric matches"):
        diff_rows(make_summary(), make_summary(), ["nothing.*"])


def test_format_table() -> None:
    rows = [
        Row("projection.head.r", 0.8, 0.75, -0.05),
        Row("projection.input.r", 0.61, None, None),
        Row("patching.slope", 0.9, 0.93456, 0.03456),
        Row("dataset_size", 500, 510, 10),
        Row("projection.head.p_value", 1e-9, 2e-12, 2e-12 - 1e-9),
    ]
    text = format_table(rows, "run gpt2")
    lines = text.splitlines()
    assert lines[0] == "run gpt2"
    assert re.match(r"metric\s+baseline\s+now\s+Δ$", lines[1])
    assert set(lines[2]) <= {"-", " "}
    assert lines[3].split() == ["projection.head.r", "0.8000", "0.7500", "-0.0500"]
    assert lines[4].split() == ["projection.input.r", "0.6100", "undefined", "undefined"]
    assert lines[5].split() == ["patching.slope", "0.9000", "0.9346", "+0.0346"]
    assert lines[6].split() == ["dataset_size", "500", "510", "+10"]
    assert lines[7].split() == ["projection.head.p_value", "1.000e-09", "2.000e-12", "-9.980e-10"]
    # right-aligned numeric columns: every row ends its columns at the same offsets
    ends = {tuple(m.end() for m in re.finditer(r"\S+", line)) for line in lines[1:]}
    assert len({e[1:] for e in ends}) == 1
    assert "(no metrics)" in format_table([], "empty")


# ---------------------------------------------------------------------------------------------
# --fail conditions
# ---------------------------------------------------------------------------------------------


def test_check_fail_outcomes() -> None:
    base, now = make_summary(head=0.8), make_summary(head=0.74, mlp=False)
    out = check_fail(parse_fail("projection.head.r < baseline - 0.05"), base, now)
    assert out.failed and "holds" in out.message and "baseline 0.8000" in out.message
    out = check_fail(parse_fail("projection.head.r < baseline - 0.1"), base, now)
    assert not out.failed and out.message.startswith("ok")
    out = check_fail(parse_fail("projection.input.r < 0.5"), base, now)
    assert out.failed and "undefined" in out.message and ABSENT in out.message
    out = check_fail(parse_fail("projection.input.r < baseline"), now, base)
    assert out.failed and "baseline projection.input.r is undefined" in out.message
    out = check_fail(parse_fail("patching.slope < 0.5"), base, make_summary(patching=False))
    assert out.failed and "patching analysis did not run" in out.message
    out = check_fail(parse_fail("projection.haed.r < 0.5"), base, now)
    assert out.failed and "did you mean projection.head.r" in out.message
    with pytest.raises(NeuronProbeError, match=r"\[--fail\].*METRIC OP RHS"):
        parse_fail("projection.head.r is lower")


# ---------------------------------------------------------------------------------------------
# compare_main: exit codes and output
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def two_reports(tmp_path: Path) -> tuple[Path, Path]:
    base, now = tmp_path / "base", tmp_path / "now"
    write_summary(base / "r1", make_summary("r1", head=0.80))
    write_summary(base / "r2", make_summary("r2", head=0.60))
    write_summary(base / "old", make_summary("old"))
    write_summary(now / "r1", make_summary("r1", head=0.70))
    write_summary(now / "r2", make_summary("r2", head=0.62))
    write_summary(now / "new", make_summary("new"))
    return base, now


def test_exit_0_without_regressions(tmp_path: Path, capsys) -> None:
    a = write_summary(tmp_path / "a", make_summary(head=0.8))
    b = write_summary(tmp_path / "b", make_summary(head=0.79))
    code, out, err = run_main([a, b, "--fail", "projection.head.r < baseline - 0.05"], capsys)
    assert code == 0 and err == ""
    assert "run gpt2_neuron_l8_n481" in out and "-0.0100" in out
    assert "all 1 --fail condition check(s) passed" in out
    code, out, _ = run_main([a, b], capsys)
    assert code == 0 and "--fail" not in out


def test_report_directories_with_two_runs(two_reports, capsys) -> None:
    base, now = two_reports
    code, out, err = run_main([base, now, "--fail", "projection.head.r < baseline - 0.05"], capsys)
    assert code == 1 and err == ""
    assert "run r1" in out and "run r2" in out
    assert re.search(
        r"FAILED\s+projection.head.r < baseline - 0.05: the regression condition holds "
        r"\(now 0.7000, baseline 0.8000, RHS 0.7500\)",
        out,
    )
    assert re.search(r"ok\s+projection.head.r < baseline - 0.05", out)  # r2 improved
    assert "only in the baseline (not compared): old" in out
    assert "only in the current summaries (not compared): new" in out
    assert "1 of 2 --fail condition check(s) failed" in out
    code, out, _ = run_main([base, now, "--run", "r2", "--fail", "projection.head.r < baseline - 0.05"], capsys)
    assert code == 0 and "run r1" not in out and "run r2" in out


def test_undefined_metric_fails_and_says_so(tmp_path: Path, capsys) -> None:
    a = write_summary(tmp_path / "a", make_summary(slope=0.9))
    b = write_summary(tmp_path / "b", make_summary(slope=None))
    code, out, _ = run_main([a, b, "--fail", "patching.slope < baseline * 0.5"], capsys)
    assert code == 1 and "patching.slope is undefined" in out and "counted as a regression" in out
    assert re.search(r"patching.slope\s+0.9000\s+undefined\s+undefined", out)


def test_metric_rows_option(tmp_path: Path, capsys) -> None:
    a = write_summary(tmp_path / "a", make_summary())
    code, out, _ = run_main([a, a, "--metric", "dataset_size", "--metric", "projection.head.*"], capsys)
    assert code == 0
    shown = [line.split()[0] for line in out.splitlines()[3:] if line.strip()]
    assert shown == ["dataset_size"] + [f"projection.head.{f}" for f in ("r", "r_squared", "p_value", "spearman", "n")]


def test_differently_named_single_runs_are_compared(tmp_path: Path, capsys) -> None:
    a = write_summary(tmp_path / "a", make_summary("first"))
    b = write_summary(tmp_path / "b", make_summary("second"))
    code, out, _ = run_main([a, b], capsys)
    assert code == 0 and "run second (baseline run first)" in out


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        (["--fail", "projection.head.r <> 0.5"], "cannot parse claim 'projection.head.r <> 0.5'"),
        (["--metric", "projection.haed.r"], "did you mean projection.head.r"),
        (["--run", "nope"], "run 'nope' is not in the baseline or current summaries"),
    ],
)
def test_exit_2_on_bad_input(two_reports, capsys, extra, fragment) -> None:
    base, now = two_reports
    code, out, err = run_main([base, now, *extra], capsys)
    assert code == 2 and out == ""
    assert err.startswith("neuronprobe: error: ") and fragment in err


def test_exit_2_on_bad_files_and_usage(tmp_path: Path, capsys) -> None:
    a = write_summary(tmp_path / "a", make_summary())
    code, _, err = run_main([a, tmp_path / "missing"], capsys)
    assert code == 2 and err.startswith("neuronprobe: error: ") and "no such file" in err
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    code, _, err = run_main([bad, a], capsys)
    assert code == 2 and "invalid JSON" in err
    write_summary(tmp_path / "x" / "p", make_summary("p"))
    write_summary(tmp_path / "x" / "q", make_summary("q"))
    write_summary(tmp_path / "y" / "s", make_summary("s"))
    write_summary(tmp_path / "y" / "t", make_summary("t"))
    code, _, err = run_main([tmp_path / "x", tmp_path / "y"], capsys)
    assert code == 2 and "no run appears in both" in err
    code, _, err = run_main([a], capsys)  # argparse usage error
    assert code == 2 and "usage: neuronprobe compare" in err


def test_add_compare_parser_wires_into_a_cli(tmp_path: Path, capsys) -> None:
    a = write_summary(tmp_path / "a", make_summary(head=0.8))
    b = write_summary(tmp_path / "b", make_summary(head=0.5))
    parser = argparse.ArgumentParser(prog="neuronprobe")
    sub = parser.add_subparsers(dest="command")
    add_compare_parser(sub)
    args = parser.parse_args(["compare", str(a), str(b), "--fail", "projection.head.r < 0.6"])
    assert args.func(args) == 1
    assert "FAILED  projection.head.r < 0.6" in capsys.readouterr().out


def test_compare_summaries_api() -> None:
    text, code = compare_summaries(
        {"r": make_summary("r")},
        {"r": make_summary("r", head=0.9)},
        metrics=["projection.head.r"],
        fail=["projection.head.r > baseline"],
    )
    assert code == 1 and "+0.1000" in text


def test_compare_main_runs_outside_pytest(tmp_path: Path) -> None:
    a = write_summary(tmp_path / "a", make_summary(head=0.8))
    b = write_summary(tmp_path / "b", make_summary(head=0.7))
    code = (
        "import sys; from pytest_neuronprobe.cli import compare_main; "
        f"sys.exit(compare_main([{str(a)!r}, {str(b)!r}, '--fail', 'projection.head.r < baseline - 0.05']))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 1, proc.stderr
    assert "FAILED  projection.head.r < baseline - 0.05" in proc.stdout


def test_compare_is_a_neuronprobe_subcommand(tmp_path, capsys):
    from pytest_neuronprobe.cli import main

    assert main(["compare", str(tmp_path / "missing.json"), str(tmp_path / "missing.json")]) == 2
    assert "neuronprobe: error:" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# --expect: the claims language
# ---------------------------------------------------------------------------------------------


def test_expect_holds_fails_and_judges_like_claims(tmp_path: Path, capsys) -> None:
    a = write_summary(tmp_path / "a", make_summary(head=0.8))
    b = write_summary(tmp_path / "b", make_summary(head=0.79))
    code, out, err = run_main([a, b, "--expect", "projection.head.r >= baseline - 0.05"], capsys)
    # judged on the interval's lower bound by default: ci_low 0.75 >= 0.75
    assert code == 0 and err == ""
    assert re.search(
        r"^ok\s+projection.head.r >= baseline - 0.05 passed: judged on the 95% interval's lower", out, re.M
    )
    assert "all 1 --expect check(s) held" in out
    # ci_low 0.75 < 0.76: fails on the bound, holds on the estimate
    expect = ["--expect", "projection.head.r >= baseline - 0.04"]
    code, out, _ = run_main([a, b, *expect], capsys)
    assert code == 1 and "FAILED  projection.head.r >= baseline - 0.04 failed: judged on" in out
    assert "ci_low=0.75" in out and "1 of 1 --expect check(s) failed" in out
    code, out, _ = run_main([a, b, *expect, "--judge", "estimate"], capsys)
    assert code == 0 and "judged on the estimate r=0.79" in out


def test_expect_repeatable_with_fail_and_several_runs(two_reports, capsys) -> None:
    base, now = two_reports
    args = [base, now, "--expect", "projection.head.r >= baseline - 0.05", "--expect", "dataset_size == 500"]
    code, out, _ = run_main([*args, "--fail", "patching.slope < 0.5"], capsys)
    assert code == 1  # r1 dropped from 0.80 to 0.70
    assert "1 of 4 --expect check(s) failed" in out and "all 2 --fail condition check(s) passed" in out
    assert out.count("ok      dataset_size == 500 passed") == 2
    code, out, _ = run_main([*args, "--run", "r2"], capsys)
    assert code == 0 and "all 2 --expect check(s) held" in out


def test_expect_on_an_undefined_metric_is_a_regression(tmp_path: Path, capsys) -> None:
    a = write_summary(tmp_path / "a", make_summary(slope=0.9))
    b = write_summary(tmp_path / "b", make_summary(slope=None))
    code, out, _ = run_main([a, b, "--expect", "patching.slope >= baseline * 0.8"], capsys)
    assert code == 1 and "patching.slope is undefined" in out
    c = write_summary(tmp_path / "c", make_summary(patching=False))
    code, out, _ = run_main([a, c, "--expect", "patching.slope >= 0.5"], capsys)
    assert code == 1 and "the patching analysis did not run" in out


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        (["--expect", "projection.haed.r >= 0.5"], "unknown metric 'projection.haed.r'"),
        (["--fail", "projection.haed.r < 0.5"], "unknown metric 'projection.haed.r'"),
        (["--expect", "projection.head.r >> 0.5"], "cannot parse claim"),
        (["--expect", "projection.head.r >= previous - 0.02"], "only pytest --neuron-history knows"),
        (["--expect", "baseline.comparable == 1"], "judged only by the pytest plugin"),
        (["--judge", "loose"], "invalid choice: 'loose'"),
    ],
)
def test_expect_bad_input_exits_2_with_one_line(two_reports, capsys, extra, fragment) -> None:
    base, now = two_reports
    code, out, err = run_main([base, now, *extra], capsys)
    assert code == 2 and out == ""
    assert fragment in err and "Traceback" not in err
    if "--judge" not in extra:
        assert err.startswith("neuronprobe: error: ") and err.count("\n") == 1
    if "haed" in fragment:
        assert "did you mean projection.head.r" in err


def _bad_files(directory: Path) -> dict[str, Path]:
    good = json.dumps(make_summary())
    files = {
        "binary": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe",
        "utf16": good.encode("utf-16"),
        "deep": ("[" * 200_000 + "]" * 200_000).encode(),
        "long_int": good.replace('"dataset_size": 500', '"dataset_size": ' + "9" * 5000).encode(),
        "big_int": good.replace('"dataset_size": 500', '"dataset_size": ' + "9" * 400).encode(),
        "bad_number": good.replace('"dataset_size": 500', '"dataset_size": "many"').encode(),
        "truncated": good[:100].encode(),
    }
    out = {}
    for name, data in files.items():
        (directory / name).mkdir(parents=True)
        out[name] = directory / name / "summary.json"
        out[name].write_bytes(data)
    return out


@pytest.mark.parametrize(
    ("which", "fragment"),
    [
        ("binary", "not UTF-8 text"),
        ("utf16", "not UTF-8 text"),
        ("deep", "nested too deeply"),
        ("long_int", "too large to read"),
        ("big_int", "too large to read"),
        ("bad_number", "expected a number or null"),
        ("truncated", "invalid JSON"),
    ],
)
def test_bad_files_exit_2_with_one_line_naming_the_file(tmp_path: Path, capsys, which, fragment) -> None:
    good = write_summary(tmp_path / "good", make_summary())
    bad = _bad_files(tmp_path / "bad")[which]
    for args in ([good, bad], [bad, good], [good, bad.parent]):
        code, out, err = run_main([*args, "--expect", "projection.head.r >= 0.5"], capsys)
        assert code == 2 and out == "", err
        assert err.startswith("neuronprobe: error: ") and err.count("\n") == 1, err
        assert str(bad.parent) in err and fragment in err


def test_bad_summaries_through_the_api_are_neuronprobe_errors() -> None:
    summary = make_summary("x")
    summary["dataset_size"] = 10**400
    with pytest.raises(NeuronProbeError, match="current run 'x'"):
        compare_summaries({"x": make_summary("x")}, {"x": summary})
