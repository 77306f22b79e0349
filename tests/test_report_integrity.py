"""A report is whole or absent: killed at any moment, the report directory holds the old report or the new one,
and a later write removes what the killed one left."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from test_report import make_report

from pytest_neuronprobe.core.atomic import atomic_dir, remove_leftovers
from pytest_neuronprobe.core.errors import NeuronProbeError
from pytest_neuronprobe.report.figure_cache import plan_figures
from pytest_neuronprobe.report.files import RunReport, write_report

TESTS = Path(__file__).resolve().parent
NAMES = ("run_a", "run_b")

#: Writes the report of version `sys.argv[2]` into `sys.argv[1]`, saying "ready" just before it starts.
CHILD = textwrap.dedent("""
    import sys
    sys.path.insert(0, {tests!r})
    from test_report_integrity import version
    from pytest_neuronprobe.core.atomic import terminate_as_interrupt
    from pytest_neuronprobe.report.files import write_report

    runs = version(int(sys.argv[2]))
    print("ready", flush=True)
    with terminate_as_interrupt():
        write_report(sys.argv[1], runs, header={{"version": int(sys.argv[2])}})
    print("done", flush=True)
""").format(tests=str(TESTS))


def version(v: int) -> list[RunReport]:
    """The runs of report version `v`: their numbers (so their figures) differ from version to version."""
    runs = []
    for i, name in enumerate(NAMES):
        report = make_report(name=name, seed=10 * v + i, n=60, n_patch=6)
        report.summary["provenance"]["version"] = v  # type: ignore[index]
        runs.append(report)
    return runs


def report_version(out: Path) -> int:
    """The one version every file of the report belongs to (fails on a mixed report)."""
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    v = results["header"]["version"]
    assert f"version <b>{v}</b>" in (out / "index.html").read_text(encoding="utf-8"), "index.html of another version"
    for report in version(v):
        folder = out / results["runs"][report.name]["folder"]
        summary = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
        assert summary["provenance"]["version"] == v, folder
        assert plan_figures(report, folder).todo == [], f"{folder}: figures of another version"
    return int(v)


def leftovers(out: Path) -> list[str]:
    return sorted(p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}."))


def test_a_report_replaces_the_whole_directory(tmp_path: Path) -> None:
    out = tmp_path / "report"
    write_report(out, version(1), header={"version": 1})
    (out / "run_a" / "stale.png").write_bytes(b"from an older report")
    files = write_report(out, version(2)[:1], header={"version": 2})
    assert sorted(p.name for p in out.iterdir()) == ["index.html", "results.json", "run_a"]
    assert not (out / "run_a" / "stale.png").exists()
    assert files.index_html == out / "index.html" and all(p.is_file() for p in files.run_files["run_a"].values())
    assert leftovers(out) == []


def test_an_unchanged_figure_is_reused_not_redrawn(tmp_path: Path) -> None:
    out = tmp_path / "report"
    write_report(out, version(1), header={"version": 1})
    before = {p.relative_to(out): p.stat().st_mtime_ns for p in out.rglob("*.png")}
    write_report(out, version(1), header={"version": 1, "again": True})
    assert {p.relative_to(out): p.stat().st_mtime_ns for p in out.rglob("*.png")} == before


@pytest.mark.parametrize("content", ["notes.txt", "sub/"])
def test_a_directory_that_is_not_a_report_is_never_replaced(tmp_path: Path, content: str) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    if content.endswith("/"):
        (out / content).mkdir()
    else:
        (out / content).write_text("keep me")
    with pytest.raises(NeuronProbeError, match=r"is not a neuronprobe report \(no results.json\)"):
        write_report(out, version(1))
    assert sorted(p.name for p in out.iterdir()) == [content.rstrip("/")]


def _kill_while_writing(out: Path, sig: signal.Signals, delay: float) -> str:
    """Start writing version 2 over version 1 in a child process; send `sig` `delay` s after it starts."""
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(out), "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "NEURONPROBE_REPORT_WORKERS": "1"},
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "ready"
    try:
        child.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        child.send_signal(sig)
    _, err = child.communicate(timeout=60)
    assert "Traceback" not in err or "KeyboardInterrupt" in err, err
    return err


@pytest.mark.parametrize("delay", [0.0, 0.3, 1.0])
def test_sigterm_at_any_moment_leaves_the_old_report_or_the_new_one(tmp_path: Path, delay: float) -> None:
    out = tmp_path / "report"
    write_report(out, version(1), header={"version": 1})
    _kill_while_writing(out, signal.SIGTERM, delay)
    assert report_version(out) in (1, 2)
    assert leftovers(out) == [], "SIGTERM must clean up its temp directory"


@pytest.mark.parametrize("delay", [0.3])
def test_after_sigkill_a_later_write_removes_the_leftovers(tmp_path: Path, delay: float) -> None:
    out = tmp_path / "report"
    write_report(out, version(1), header={"version": 1})
    _kill_while_writing(out, signal.SIGKILL, delay)
    assert report_version(out) in (1, 2)
    write_report(out, version(3), header={"version": 3})
    assert report_version(out) == 3
    assert leftovers(out) == []


def test_a_report_lost_between_the_two_renames_is_put_back(tmp_path: Path) -> None:
    out = tmp_path / "report"
    write_report(out, version(1), header={"version": 1})
    dead = 2**22 + 12345  # above the default pid_max: no live process has it
    old = tmp_path / f".report.old-{dead}-abc123"
    old.mkdir()
    os.replace(out, old / "d")  # as if killed right after the first rename
    (tmp_path / f".report.tmp-{dead}-def456").mkdir()
    assert len(remove_leftovers(out)) == 2
    assert report_version(out) == 1 and leftovers(out) == []


def test_leftovers_of_a_live_process_are_left_alone(tmp_path: Path) -> None:
    out = tmp_path / "report"
    mine = tmp_path / f".report.tmp-{os.getpid()}-xyz"
    mine.mkdir()
    with atomic_dir(out) as tmp:
        (tmp / "f").write_text("x")
    assert mine.is_dir() and (out / "f").read_text() == "x"
