"""pytest-xdist (-n 2): the same outcomes as one process, one uncorrupted report written by the controller,
and each run's tests kept on one worker (other --dist modes respected)."""

from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace

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
#: An inner conftest recording which worker ran each item (claims items too) into where/<worker>.txt.
WHERE = """
import os
from pathlib import Path

def pytest_runtest_setup(item):
    where = Path(__file__).parent / "where"
    where.mkdir(exist_ok=True)
    with open(where / (os.environ.get("PYTEST_XDIST_WORKER", "main") + ".txt"), "a", encoding="utf-8") as f:
        f.write(item.nodeid + "\\n")
"""


def _workers(path: Path) -> dict[str, str]:
    """nodeid -> the xdist worker that ran it, from the WHERE conftest's files (each item ran once)."""
    where: dict[str, str] = {}
    for f in sorted((path / "where").glob("gw*.txt")):
        for nodeid in f.read_text(encoding="utf-8").splitlines():
            assert nodeid not in where, f"{nodeid} ran twice"
            where[nodeid] = f.stem
    return where


def _workers_of(where: dict[str, str], label: str) -> set[str]:
    return {worker for nodeid, worker in where.items() if nodeid.endswith(f"[{label}]")}


def _summary_outcomes(result: pytest.RunResult) -> dict[str, int]:
    return {k: v for k, v in result.parseoutcomes().items() if k in ("passed", "failed", "skipped", "error", "errors")}


def test_xdist_same_outcomes_and_one_report(
    pytester: pytest.Pytester, two_runs: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)  # this suite may itself run under xdist
    pytester.makepyfile(SUITE)
    pytester.makefile(".yaml", neuron_claims=CLAIMS)
    pytester.makeconftest(WHERE)
    args = [f"--neuron-run={run}" for run in two_runs]
    single = pytester.runpytest_inprocess(*args, "--neuron-report=single", "-p", "no:cacheprovider")
    parallel = pytester.runpytest_subprocess(
        *args,
        "--neuron-report=parallel",
        "--neuron-baseline=base",
        "--neuron-update-baseline",
        "-n",
        "2",
        "-v",
        "-p",
        "no:cacheprovider",
    )
    expected = {"passed": 7, "failed": 4, "skipped": 2}
    single.assert_outcomes(**expected)
    parallel.assert_outcomes(**expected)
    assert _summary_outcomes(single) == _summary_outcomes(parallel)
    # Spread by run: every test and claim of one run on one worker, the two runs on different workers.
    parallel.stdout.fnmatch_lines(["scheduling tests via RunScopeScheduling"])
    where = _workers(pytester.path)
    assert len(where) == 13
    first, second = (_workers_of(where, run.name) for run in two_runs)
    assert len(first) == len(second) == 1 and first != second, where
    out = pytester.path / "parallel"
    parallel.stdout.fnmatch_lines(
        [
            "*-- neuronprobe --*",
            f"run {two_runs[0].name} *",
            "  projection.head.r *",
            "2 test(s) skipped: no baseline for their run*",
            f"report written: {out / 'index.html'} (2 run(s), 12 test record(s))",
            "baseline updated: wrote *",
        ]
    )
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


CHEAP = """
import pytest

def test_a(neuron_run):
    pass

def test_b(neuron_run):
    pass

@pytest.mark.neuron_run({first!r})
def test_pinned_to_a_command_line_run(neuron_run):
    pass

@pytest.mark.neuron_run({second!r})
def test_pinned_to_another_run(neuron_run):
    assert neuron_run.name == {second_name!r}

def test_plain():
    pass
"""


def test_xdist_pinned_runs_and_other_dist_modes(pytester: pytest.Pytester, two_runs: list[Path]) -> None:
    """A run pinned by a marker still works (its own scope, unless it is a command-line run), and
    `--dist loadfile` is xdist's own scheduling (the whole file on one worker)."""
    first, second = two_runs
    pytester.makepyfile(CHEAP.format(first=str(first), second=str(second), second_name=second.name))
    pytester.makeconftest(WHERE)
    args = [f"--neuron-run={first}", "-n", "2", "-v", "-p", "no:cacheprovider"]
    by_run = pytester.runpytest_subprocess(*args)
    by_run.assert_outcomes(passed=5)
    by_run.stdout.fnmatch_lines(["scheduling tests via RunScopeScheduling"])
    where = _workers(pytester.path)
    assert len(where) == 5 and len(_workers_of(where, first.name)) == 1, where
    shutil.rmtree(pytester.path / "where")
    by_file = pytester.runpytest_subprocess(*args, "--dist", "loadfile")
    by_file.assert_outcomes(passed=5)
    by_file.stdout.fnmatch_lines(["scheduling tests via LoadFileScheduling"])
    assert len(set(_workers(pytester.path).values())) == 1


# ---------------------------------------------------------------------------------------------
# The scheduler alone (no subprocesses)
# ---------------------------------------------------------------------------------------------


def _config(dist: str = "load") -> SimpleNamespace:
    values = {"dist": dist, "tx": ["2*popen"]}
    return SimpleNamespace(getvalue=values.__getitem__, option=SimpleNamespace(loadscopereorder=True))


LABELS = [
    "regression-linear-neuron_l2_n3-seed1",
    "regression-linear-neuron_l2_n3-seed10",
    "b/regression-linear-neuron_l2_n3-seed1",
    "run-a",
    "run",
    "läuft",
]


@pytest.mark.parametrize(
    ("nodeid", "scope"),
    [
        ("t/test_x.py::test_head[regression-linear-neuron_l2_n3-seed1]", "regression-linear-neuron_l2_n3-seed1"),
        ("t/test_x.py::test_head[regression-linear-neuron_l2_n3-seed10]", "regression-linear-neuron_l2_n3-seed10"),
        ("t/test_x.py::test_head[b/regression-linear-neuron_l2_n3-seed1]", "b/regression-linear-neuron_l2_n3-seed1"),
        ("t/test_x.py::TestC::test_y[run-a-0.5]", "run-a"),
        ("t/test_x.py::test_y[0.5-run-a]", "run-a"),
        ("t/test_x.py::test_y[0.5-run-a-3]", "run-a"),
        ("t/test_x.py::test_y[0.5-run-1]", "run"),
        ("t/test_x.py::test_u[l\\xe4uft]", "läuft"),
        ("t/neuron_claims.yaml::projection.head.r >= 0.8[run-a]", "run-a"),
        ("t/neuron_claims.yaml::patching.slope in [0.8, 1.2] (line 3)[run]", "run"),
        # No run: each test is its own scope.
        ("t/test_x.py::test_plain", "t/test_x.py::test_plain"),
        ("t/test_x.py::test_p[1-2]", "t/test_x.py::test_p[1-2]"),
        ("t/test_x.py::test_p[running]", "t/test_x.py::test_p[running]"),
        ("t/test_x.py::test_p[xrun-a]", "t/test_x.py::test_p[xrun-a]"),
        ("t/neuron_claims.yaml::projection.head.r >= 0.8", "t/neuron_claims.yaml::projection.head.r >= 0.8"),
        ("t/pkg/mod.py::pkg.mod.func", "t/pkg/mod.py::pkg.mod.func"),
    ],
)
def test_split_scope_is_the_run(nodeid: str, scope: str) -> None:
    from pytest_neuronprobe.pytest.xdist import RunScopeScheduling

    assert RunScopeScheduling(_config(), labels=LABELS)._split_scope(nodeid) == scope


class _Node:
    """A stand-in for xdist's WorkerController: records the items it is sent."""

    def __init__(self, name: str) -> None:
        self.gateway = SimpleNamespace(id=name)
        self.shutting_down = False
        self.sent: list[int] = []

    def send_runtest_some(self, indices: list[int]) -> None:
        self.sent.extend(indices)

    def shutdown(self) -> None:
        self.shutting_down = True


def test_scheduler_keeps_each_run_on_one_worker() -> None:
    from pytest_neuronprobe.pytest.xdist import RunScopeScheduling

    runs = [f"r-{i}" for i in range(4)]
    ids = [f"t/test_{f}.py::test_{t}[{run}]" for f in "ab" for t in range(3) for run in runs]
    ids += [f"t/test_a.py::test_plain{i}" for i in range(5)]
    sched = RunScopeScheduling(_config(), labels=runs)
    nodes = [_Node("gw0"), _Node("gw1")]
    for node in nodes:
        sched.add_node(node)
    for node in nodes:
        sched.add_node_collection(node, ids)
    sched.schedule()
    done: dict[int, int] = {}
    while sched.has_pending:  # each worker finishes what it was sent, in order
        for k, node in enumerate(nodes):
            if node.sent:
                index = node.sent.pop(0)
                done[index] = k
                sched.mark_test_complete(node, index)
    assert sorted(done) == list(range(len(ids)))
    for run in runs:
        assert len({done[i] for i, nodeid in enumerate(ids) if nodeid.endswith(f"[{run}]")}) == 1
    assert set(done.values()) == {0, 1}


@pytest.mark.parametrize(
    ("dist", "labels", "ours"),
    [
        ("load", ["r-1"], True),
        ("load", [], False),
        ("loadfile", ["r-1"], False),
        ("loadscope", ["r-1"], False),
        ("loadgroup", ["r-1"], False),
        ("each", ["r-1"], False),
        ("worksteal", ["r-1"], False),
    ],
)
def test_make_scheduler_only_for_plain_load(dist: str, labels: list[str], ours: bool) -> None:
    from pytest_neuronprobe.pytest.xdist import RunScopeScheduling, XdistHooks

    hooks = XdistHooks(SimpleNamespace(cli_labels=labels))  # type: ignore[arg-type]
    sched = hooks.pytest_xdist_make_scheduler(_config(dist), None)
    assert isinstance(sched, RunScopeScheduling) if ours else sched is None
