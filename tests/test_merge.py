"""`neuronprobe merge`: the reports of three shards (one run each) merge into the report of one session with
every run; conflicting shards and bad inputs are exit 2 with one line naming the file; the output is whole."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

# pytester's in-process runs drop every module first imported inside them; import the heavy ones here once.
import matplotlib  # noqa: F401
import pytest
from run_copies import copy_run

import pytest_neuronprobe.analyses.patching
import pytest_neuronprobe.analyses.projection
import pytest_neuronprobe.baseline
import pytest_neuronprobe.claims.loader
import pytest_neuronprobe.merge
import pytest_neuronprobe.report.figures
import pytest_neuronprobe.report.files
import pytest_neuronprobe.report.html  # noqa: F401
from pytest_neuronprobe.baseline import load_summaries
from pytest_neuronprobe.cli import main
from pytest_neuronprobe.merge import MERGED_FROM, summary_difference

SUITE = """
import pytest

@pytest.mark.projection(n_resamples=50, null_directions=10)
def test_head_tracks(projection):
    assert projection.head.r > 0.5

@pytest.mark.projection(n_resamples=50, null_directions=10)
def test_impossible(projection):
    assert projection.head.r > 2

@pytest.mark.skip(reason="not today")
def test_skipped(neuron_run):
    pass

def test_plain():
    pass
"""
CLAIMS = 'projection.prediction.r: ">= 0.5"\npatching.r_squared: ">= 2"\n'


@pytest.fixture
def three_runs(regression_run: Path, hidden_run: Path, tmp_path: Path) -> list[Path]:
    """Three runs: the linear head, the hidden-layer head, and a renamed copy of the linear one."""
    copy = copy_run(regression_run, tmp_path)
    renamed = copy.rename(tmp_path / f"copy-{regression_run.name}")
    return [regression_run, hidden_run, renamed]


def _read(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def _comparable_results(results: dict[str, Any]) -> dict[str, Any]:
    """results.json without times and paths: durations, the header's run paths, the merged-from line."""
    header = {k: v for k, v in (results["header"] or {}).items() if k not in ("runs", MERGED_FROM)}
    tests = [{k: v for k, v in t.items() if k not in ("duration", "order")} for t in results["tests"]]
    return {"header": header, "tests": tests}


def _session(pytester: pytest.Pytester, runs: list[Path], out: str, cache: Path) -> Path:
    args = [f"--neuron-run={run}" for run in runs]
    # one argument each: a separate existing path would move pytest's rootdir (and every node id)
    result = pytester.runpytest_inprocess(*args, f"--neuron-report={out}", f"--neuron-cache-dir={cache}")
    result.assert_outcomes(passed=2 * len(runs) + 1, failed=2 * len(runs), skipped=len(runs))
    return pytester.path / out


def _merge(*args: str | Path) -> int:
    return main(["merge", *map(str, args)])


def test_three_shards_merge_into_the_one_session_report(
    pytester: pytest.Pytester, three_runs: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytester.makepyfile(test_suite=SUITE)
    pytester.makefile(".yaml", neuron_claims=CLAIMS)
    cache = tmp_path / "cache"
    whole = _session(pytester, three_runs, "whole", cache)
    shards = [_session(pytester, [run], f"report-{i}", cache) for i, run in enumerate(three_runs)]
    capsys.readouterr()

    out = pytester.path / "merged"
    assert _merge(*shards, "--out", out) == 0
    assert capsys.readouterr().out.strip() == (
        f"neuronprobe: merged 3 report(s): 3 run(s), 15 test record(s) -> {out / 'index.html'}"
    )
    one, merged = _read(whole / "results.json"), _read(out / "results.json")
    assert _comparable_results(merged) == _comparable_results(one)
    assert [t["order"] for t in merged["tests"]] == list(range(15))
    assert merged["header"][MERGED_FROM] == ", ".join(map(str, shards))
    for run in three_runs:
        assert f"{run.name} ({run})" in merged["header"]["runs"]
        a, b = _read(whole / run.name / "summary.json"), _read(out / run.name / "summary.json")
        assert summary_difference(a, b) is None and a["projections"] == b["projections"]
        assert {p.name for p in (out / run.name).iterdir()} == {p.name for p in (whole / run.name).iterdir()}
    html = (out / "index.html").read_text(encoding="utf-8")
    assert all(run.name in html for run in three_runs)
    # Built in a temporary directory and renamed: every link is relative to the report and resolves.
    assert ".tmp-" not in html and "no baseline given (--neuron-baseline): no Δ" in html
    links = [link for link in re.findall(r'(?:src|href)="([^"#][^"]*)"', html) if not link.startswith("data:")]
    assert all((out / link).is_file() for link in links), links
    assert not [p.name for p in pytester.path.iterdir() if p.name.startswith(".merged")]  # no temp dirs left

    # Again into the same --out (an earlier report: replaced), a shard given twice (its records kept once),
    # with a baseline directory receiving every run's summary, and Δ columns against the one-session report.
    baselines = pytester.path / "baselines"
    assert _merge(shards[0], *shards, "--out", out, "--baseline", baselines, "--against", whole) == 0
    assert f"wrote 3 summary file(s) to {baselines}" in capsys.readouterr().out
    assert _comparable_results(_read(out / "results.json")) == _comparable_results(one)
    assert "Δ = now - baseline" in (out / "index.html").read_text(encoding="utf-8")
    written = load_summaries(baselines)
    assert set(written) == {run.name for run in three_runs}
    for run in three_runs:
        assert written[run.name] == _read(out / run.name / "summary.json")


# ----------------------------------------------------------------------------------------------------- #
# Conflicts and bad inputs: hand-written shards (the merge refuses them before writing anything).


def _summary(name: str, r: float = 0.9) -> dict[str, Any]:
    return {
        "run": {"name": name, "path": f"/runs/{name}", "target_layer": 1, "target_neuron": 3},
        "dataset_size": 12,
        "projections": {"head": {"correlation": r, "ci_low": r - 0.1, "ci_high": r + 0.05, "n": 12}},
        "patching": {"slope": 1.0},
        "provenance": {"created": "2026-01-01T00:00:00+00:00", "head_path": f"/runs/{name}/head.pt"},
    }


def _shard(
    root: Path, runs: dict[str, dict[str, Any]], outcomes: dict[str, str] | None = None, name: str = "shard"
) -> Path:
    root = root / name
    root.mkdir(parents=True)
    tests = [
        {
            "nodeid": f"test_x.py::test_a[{run}]",
            "run": run,
            "claim": "test_a",
            "outcome": (outcomes or {}).get(run, "passed"),
        }
        for run in runs
    ]
    (root / "results.json").write_text(json.dumps({"header": {"runs": ", ".join(runs)}, "tests": tests}))
    for run, summary in runs.items():
        (root / run).mkdir()
        (root / run / "summary.json").write_text(json.dumps(summary))
    return root


def _error_line(capsys: pytest.CaptureFixture[str]) -> str:
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in captured.err, captured.err
    assert lines[0].startswith("neuronprobe: error: ")
    return lines[0]


def test_the_same_run_with_different_numbers_in_two_shards_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = _shard(tmp_path, {"run-a": _summary("run-a")}, name="a")
    moved = _summary("run-a")
    moved["run"]["path"], moved["provenance"]["created"] = "/elsewhere/run-a", "2026-02-02T00:00:00+00:00"
    same = _shard(tmp_path, {"run-a": moved}, name="same")
    b = _shard(tmp_path, {"run-a": _summary("run-a", r=0.8)}, name="b")
    out = tmp_path / "out"

    assert _merge(a, b, "--out", out) == 2
    line = _error_line(capsys)
    assert str(a / "run-a" / "summary.json") in line and str(b / "run-a" / "summary.json") in line
    assert "projections.head.correlation: 0.9 vs 0.8" in line
    assert not out.exists()
    # Only where and when they were analysed differ: the same numbers, merged once.
    assert summary_difference(_summary("run-a"), moved) is None
    assert _merge(a, same, "--out", out) == 0
    assert [t["nodeid"] for t in json.loads((out / "results.json").read_text())["tests"]] == [
        "test_x.py::test_a[run-a]"
    ]
    assert json.loads((out / "run-a" / "summary.json").read_text()) == _summary("run-a")


def test_the_same_test_with_different_outcomes_in_two_shards_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = _shard(tmp_path, {"run-a": _summary("run-a")}, name="a")
    b = _shard(tmp_path, {"run-a": _summary("run-a")}, {"run-a": "failed"}, name="b")
    assert _merge(a, b, "--out", tmp_path / "out") == 2
    line = _error_line(capsys)
    assert "'test_x.py::test_a[run-a]' has different outcomes" in line
    assert str(a / "results.json") in line and str(b / "results.json") in line
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("missing", "{shard}: no such directory"),
        ("file", "{shard}: not a directory"),
        ("no_results", "{shard}/results.json: no results.json"),
        ("invalid_results", "{shard}/results.json: invalid JSON"),
        ("not_a_report", "{shard}/results.json: expected a JSON object"),
        ("bad_record", "{shard}/results.json [tests[0]]: expected a test record"),
        ("invalid_summary", "{shard}/run-a/summary.json: invalid JSON"),
        ("not_a_summary", "{shard}/run-a/summary.json: not a neuronprobe summary.json"),
        ("out_not_a_report", "{out} [--out]: exists and is not a neuronprobe report"),
        ("out_a_file", "{out} [--out]: expected a report directory, got a file"),
        ("baseline_a_file", "{baseline}: --baseline must be a directory"),
        ("against_missing", "{against}: --against: no such file or directory"),
        ("against_invalid", "{against}/run-c/summary.json: invalid JSON"),
    ],
)
def test_bad_input_is_exit_2_with_one_line_naming_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str, expected: str
) -> None:
    good = _shard(tmp_path, {"run-b": _summary("run-b")}, name="good")
    shard = tmp_path / "shard"
    out, baseline, against = tmp_path / "out", tmp_path / "baseline", tmp_path / "against"
    if case == "file":
        shard.write_text("")
    elif case != "missing":
        _shard(tmp_path, {"run-a": _summary("run-a")})
    results, summary = shard / "results.json", shard / "run-a" / "summary.json"
    edits = {
        "no_results": lambda: results.unlink(),
        "invalid_results": lambda: results.write_text('{"tests": ['),
        "not_a_report": lambda: results.write_text("[]"),
        "bad_record": lambda: results.write_text('{"tests": [{"run": "run-a"}]}'),
        "invalid_summary": lambda: summary.write_text("{"),
        "not_a_summary": lambda: summary.write_text('{"run": {"name": "run-a"}}'),
        "out_not_a_report": lambda: (out.mkdir(), (out / "notes.txt").write_text("mine")),
        "out_a_file": lambda: out.write_text("mine"),
        "baseline_a_file": lambda: baseline.write_text("mine"),
        "against_invalid": lambda: (
            _shard(tmp_path, {"run-c": _summary("run-c")}, name="against"),
            (against / "run-c" / "summary.json").write_text("{"),
        ),
    }
    if case in edits:
        edits[case]()
    against_args = ["--against", against] if case.startswith("against") else []
    assert _merge(good, shard, "--out", out, "--baseline", baseline, *against_args) == 2
    line = _error_line(capsys)
    assert expected.format(shard=shard, out=out, baseline=baseline, against=against) in line
    assert not baseline.is_dir() and (out.read_text() == "mine" if out.is_file() else not (out / "index.html").exists())
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_a_run_that_failed_in_its_shard_is_listed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = _shard(tmp_path, {"run-a": _summary("run-a")}, name="a")
    b = _shard(tmp_path, {"run-x": _summary("run-x")}, {"run-x": "error"}, name="b")
    shutil.rmtree(b / "run-x")  # its session wrote no files for it
    out = tmp_path / "out"
    assert _merge(a, b, "--out", out) == 0
    assert "2 run(s), 2 test record(s)" in capsys.readouterr().out
    tests = json.loads((out / "results.json").read_text())["tests"]
    assert [(t["run"], t["outcome"]) for t in tests] == [("run-a", "passed"), ("run-x", "error")]
    assert sorted(p.name for p in out.iterdir()) == ["index.html", "results.json", "run-a"]
    assert "run-x" in (out / "index.html").read_text(encoding="utf-8")
