"""--neuron-history DIR (ini neuron_history): one JSON line per run appended to <DIR>/history.jsonl at the end
of each session (by the controller only under xdist), and `previous` / `best` in claims (skipped, with the
reason, while the history has no earlier entry for the run)."""

from __future__ import annotations

import json
import os
import subprocess
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from pytest_neuronprobe.baseline import NeuronIdentity
from pytest_neuronprobe.claims.metrics import HEADLINE_METRICS
from pytest_neuronprobe.history import (
    HistoryEntry,
    HistoryWarning,
    MetricPoint,
    append_history,
    read_history,
    reference_metrics,
)
from tests.run_copies import copy_run, model_dir

CLAIMS = """
options:
  judge: estimate
projection.head.r: [">= previous - 0.02", ">= best - 0.001"]
"""


def lines(directory: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (directory / "history.jsonl").read_text(encoding="utf-8").splitlines()]


def test_each_session_appends_one_line_per_run(pytester: pytest.Pytester, two_runs: list[Path]) -> None:
    pytester.makepyfile("def test_plain():\n    pass\n")
    args = [f"--neuron-run={run}" for run in two_runs]
    result = pytester.runpytest_inprocess(*args, "--neuron-history=hist")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([f"neuronprobe: history: {pytester.path / 'hist'}"])
    first = lines(pytester.path / "hist")
    assert [e["run"] for e in first] == [run.name for run in two_runs]
    for entry, run in zip(first, two_runs, strict=True):
        head = model_dir(run) / ("head.safetensors" if entry["run"] == two_runs[0].name else "head.pt")
        assert entry["stamp"] == datetime.fromtimestamp(head.stat().st_mtime, timezone.utc).isoformat("T", "seconds")
        assert datetime.fromisoformat(entry["time"]).tzinfo is not None
        assert entry["commit"] is None  # not a git checkout
        assert set(entry["metrics"]) == set(HEADLINE_METRICS)  # both analyses ran for the history
        head_r = entry["metrics"]["projection.head.r"]
        assert head_r["ci_low"] <= head_r["value"] <= head_r["ci_high"]
        assert entry["identity"]["layer"] == 1 and entry["identity"]["neuron"] == 31
    # The ini key; a second session appends, never rewrites.
    pytester.makeini("[pytest]\nneuron_history = hist\n")
    pytester.runpytest_inprocess(*args).assert_outcomes(passed=1)
    assert lines(pytester.path / "hist")[:2] == first and len(lines(pytester.path / "hist")) == 4


def test_the_git_commit_is_recorded(pytester: pytest.Pytester, regression_run: Path) -> None:
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"]
    try:
        subprocess.run(["git", "init", "-q"], cwd=pytester.path, check=True)
        subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", "x"], cwd=pytester.path, check=True)
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("git is not available")
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=pytester.path, capture_output=True, text=True).stdout
    pytester.makepyfile("def test_plain():\n    pass\n")
    pytester.runpytest_inprocess(f"--neuron-run={regression_run}", "--neuron-history=hist")
    assert lines(pytester.path / "hist")[0]["commit"] == head.strip()


def test_under_xdist_the_controller_appends_one_line_per_run(pytester: pytest.Pytester, two_runs: list[Path]) -> None:
    pytest.importorskip("xdist")
    pytester.makepyfile("""
        def test_one(projection):
            pass

        def test_two(patching):
            pass
    """)
    result = pytester.runpytest_subprocess(
        *[f"--neuron-run={run}" for run in two_runs], "--neuron-history=hist", "-n", "2"
    )
    result.assert_outcomes(passed=4)
    entries = lines(pytester.path / "hist")
    assert sorted(e["run"] for e in entries) == sorted(run.name for run in two_runs)
    assert all(set(e["metrics"]) == set(HEADLINE_METRICS) for e in entries)


def test_previous_and_best_in_claims(pytester: pytest.Pytester, regression_run: Path, tmp_path: Path) -> None:
    pytester.makefile(".yaml", neuron_claims=CLAIMS)
    run, hist = f"--neuron-run={regression_run}", "--neuron-history=hist"
    # No earlier entry: skipped with the reason, like a missing baseline.
    result = pytester.runpytest_inprocess(run, hist, "-rs")
    result.assert_outcomes(skipped=2)
    where = pytester.path / "hist" / "history.jsonl"
    result.stdout.fnmatch_lines(
        [
            f"SKIPPED [[]2[]] neuron_claims.yaml:3: no earlier entry for run '{regression_run.name}' "
            f"or its neuron in {where}"
        ]
    )
    # Now there is one (the same numbers): both hold.
    pytester.runpytest_inprocess(run, hist).assert_outcomes(passed=2)
    # An earlier entry with a far better head: `best` fails, `previous` (the latest entry) still holds.
    entry = HistoryEntry.from_json(lines(pytester.path / "hist")[0])
    better = {**entry.metrics, "projection.head.r": MetricPoint(value=0.9999, ci_low=0.999, ci_high=1.0)}
    old = lines(pytester.path / "hist")
    where.write_text("", encoding="utf-8")
    append_history(pytester.path / "hist", [HistoryEntry(**{**entry.__dict__, "metrics": better})])
    where.write_text(where.read_text(encoding="utf-8") + "".join(json.dumps(e) + "\n" for e in old), encoding="utf-8")
    result = pytester.runpytest_inprocess(run, hist)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*projection.head.r >= best - 0.001 failed: judged on the estimate*with best r=*"])
    # A new run of the same neuron (a new name) finds the earlier entries by its neuron.
    renamed = copy_run(regression_run, tmp_path)
    renamed = renamed.rename(renamed.with_name("a-new-name-neuron_l1_n31"))
    result = pytester.runpytest_inprocess(f"--neuron-run={renamed}", hist, "-rA")
    result.assert_outcomes(passed=1, failed=1)
    # Without --neuron-history the claims fail, saying what is missing.
    result = pytester.runpytest_inprocess(run)
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(["*>= previous - 0.02 failed: no history given (use --neuron-history DIR)*"])


def test_bad_history_lines_are_skipped_with_a_warning(tmp_path: Path) -> None:
    good = HistoryEntry(
        "2024-01-01T00:00:00+00:00",
        "r",
        "r",
        None,
        None,
        {"patching.slope": MetricPoint(value=1.0, ci_low=None, ci_high=None)},
    )
    append_history(tmp_path, [good])
    with open(tmp_path / "history.jsonl", "a", encoding="utf-8") as f:
        f.write('{not json\n[1, 2]\n{"time": "t"}\n')
    append_history(tmp_path, [good])
    with pytest.warns(HistoryWarning) as caught:
        entries = read_history(tmp_path)
    assert entries == [good, good]
    messages = [str(w.message) for w in caught]
    assert [m.split(": ", 1)[0] for m in messages] == [f"{tmp_path / 'history.jsonl'}:{n}" for n in (2, 3, 4)]
    assert "[run]: expected 'time' and 'run'" in messages[2]
    assert read_history(tmp_path / "nowhere") == []


def test_concurrent_appends_never_interleave(tmp_path: Path) -> None:
    entry = HistoryEntry("t", "r" * 5000, "r", None, None, {})

    def write() -> None:
        for _ in range(50):
            append_history(tmp_path, [entry])

    threads = [threading.Thread(target=write) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert read_history(tmp_path) == [entry] * 200
    assert os.path.getsize(tmp_path / "history.jsonl") == 200 * (
        len(json.dumps(entry.to_json(), separators=(",", ":"))) + 1
    )


def test_previous_is_the_latest_entry_and_best_the_best_value() -> None:
    ident = NeuronIdentity(base_model="m", layer=1, neuron=2, hook="h", head_type="regression")
    other = NeuronIdentity(base_model="m", layer=1, neuron=3, hook="h", head_type="regression")

    def entry(run: str, value: float, identity: NeuronIdentity) -> HistoryEntry:
        return HistoryEntry(
            "t", run, run, None, None, {"m.r": MetricPoint(value=value, ci_low=None, ci_high=None)}, identity
        )

    entries = [entry("a", 0.5, ident), entry("b", 0.9, ident), entry("a", 0.7, ident), entry("c", 0.99, other)]
    previous, _ = reference_metrics("previous", entries, "a", ident)
    assert previous is not None and previous["m.r"].value == 0.7  # the same run name first
    previous, _ = reference_metrics("previous", entries, "new", ident)
    assert previous is not None and previous["m.r"].value == 0.7  # else the same neuron, the latest
    best, _ = reference_metrics("best", entries, "a", ident)
    assert best is not None and best["m.r"].value == 0.9  # run a or its neuron; not the other neuron's 0.99
    lowest, _ = reference_metrics("best", entries, "a", ident, lowest=True)
    assert lowest is not None and lowest["m.r"].value == 0.5  # for '<=' claims
    none, why = reference_metrics("previous", entries, "z", None, where="H")
    assert none is None and why == "no earlier entry for run 'z' or its neuron in H"


def test_previous_and_best_parse_like_baseline() -> None:
    from pytest_neuronprobe.claims.expressions import parse_expr
    from pytest_neuronprobe.core.errors import NeuronProbeError

    expr = parse_expr(">= previous - 0.02")
    assert expr.ref == "previous" and not expr.uses_baseline and str(expr) == ">= previous - 0.02"
    assert expr.range(0.9).low == pytest.approx(0.88)
    assert parse_expr("best +- 0.1").range(0.5).high == pytest.approx(0.6)
    assert parse_expr("between best and 1").ref == "best"
    with pytest.raises(NeuronProbeError, match="one reference value, not both 'previous' and 'baseline'"):
        parse_expr("between previous and baseline")
    with pytest.raises(NeuronProbeError, match="a number after 'previous -'"):
        parse_expr(">= previous -")
