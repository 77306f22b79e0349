"""Run folders are unique in a session: names that collide after sanitising (``good x`` / ``good_x``,
``...`` / ``___``, names equal in their first 120 characters) get a digest of the run's path, and
results.json maps every label to its folder; plain names keep their folder as they are."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from pytest_neuronprobe.report.files import run_folder_name, run_folders
from tests.run_copies import copy_run

from .conftest import FAST_PATCHING, FAST_PROJECTION, read_json

SUITE = f"""
import pytest

{FAST_PROJECTION}
{FAST_PATCHING}
def test_runs(projection, patching):
    assert projection.head.n > 0
"""


def _named_copy(src: Path, parent: Path, name: str) -> Path:
    parent.mkdir(parents=True, exist_ok=True)
    return copy_run(src, parent).rename(parent / name)


def test_plain_names_keep_their_folder_and_changed_names_get_a_digest(tmp_path: Path) -> None:
    assert run_folder_name("good_x", tmp_path / "a") == "good_x"
    digest = hashlib.sha256(str((tmp_path / "b").resolve()).encode()).hexdigest()[:8]
    assert run_folder_name("good x", tmp_path / "b") == f"good_x-{digest}"
    long_a, long_b = "a" * 120 + "1", "a" * 120 + "2"
    folders = run_folders(
        [("...", tmp_path / "1"), ("___", tmp_path / "2"), (long_a, tmp_path / "3"), (long_b, tmp_path / "4")]
    )
    assert len(set(folders.values())) == 4
    assert all(f.startswith("run-") for f in (folders["..."], folders["___"]))
    # Stable: the same run gets the same folder again.
    assert run_folders([("...", tmp_path / "1")]) == {"...": folders["..."]}


def test_a_plain_name_equal_to_another_runs_folder_still_gets_its_own(tmp_path: Path) -> None:
    taken = run_folder_name("good x", tmp_path / "b")
    folders = run_folders([("good x", tmp_path / "b"), (taken, tmp_path / "c")])
    assert len(set(folders.values())) == 2


def test_colliding_names_get_two_folders_and_both_baselines_survive(
    pytester: pytest.Pytester, regression_run: Path, tmp_path: Path
) -> None:
    a = _named_copy(regression_run, tmp_path / "one", "good x")
    b = _named_copy(regression_run, tmp_path / "two", "good_x")
    pytester.makepyfile(SUITE)
    result = pytester.runpytest_inprocess(
        f"--neuron-run={a}", f"--neuron-run={b}", "--neuron-report=report",
        "--neuron-baseline=baseline", "--neuron-update-baseline",
    )  # fmt: skip
    result.assert_outcomes(passed=2)
    results = read_json(pytester.path / "report" / "results.json")
    runs = results["runs"]
    assert set(runs) == {"good x", "good_x"}
    assert runs["good_x"]["folder"] == "good_x"
    assert runs["good x"]["folder"] == run_folder_name("good x", a.resolve())
    assert runs["good x"]["path"] == str(a.resolve())
    for label, entry in runs.items():
        summary = read_json(pytester.path / "report" / entry["folder"] / "summary.json")
        assert summary["run"]["name"] == label
        kept = read_json(pytester.path / "baseline" / entry["folder"] / "summary.json")
        assert kept["run"]["name"] == label
    assert len(list((pytester.path / "baseline").glob("*/summary.json"))) == 2
    # The baseline reads back with both runs, each paired with its own summary.
    again = pytester.runpytest_inprocess(f"--neuron-run={a}", f"--neuron-run={b}", "--neuron-baseline=baseline")
    again.assert_outcomes(passed=2)
    assert "appears twice" not in again.stdout.str()
