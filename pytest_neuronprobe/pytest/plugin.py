"""The pytest plugin: hooks only, each delegating in a few lines.

Options live in `options.py`, collection in `collection.py` and `items.py` (claims files), the
fixtures in `fixtures.py`, the per-session state in `session.py`, outcome records in `outcomes.py`,
the end of the session in `finish.py` and pytest-xdist in `xdist.py`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest

from pytest_neuronprobe.core.errors import NeuronProbeError
from pytest_neuronprobe.pytest import collection, finish, outcomes
from pytest_neuronprobe.pytest.fixtures import (
    _neuronprobe_run,
    attribution,
    hooked_model,
    neuron_baseline,
    neuron_dataset,
    neuron_run,
    patching,
    probe_head,
    projection,
    projection_control,
)
from pytest_neuronprobe.pytest.items import collect_file
from pytest_neuronprobe.pytest.options import REQUIRE_RUN_MESSAGE, add_options, settings_from_config
from pytest_neuronprobe.pytest.session import NeuronSession
from pytest_neuronprobe.pytest.stash import CURRENT_KEY, SESSION_KEY, is_worker, session_of

__all__ = [
    "_neuronprobe_run",
    "attribution",
    "hooked_model",
    "neuron_baseline",
    "neuron_dataset",
    "neuron_run",
    "patching",
    "probe_head",
    "projection",
    "projection_control",
]


def pytest_addoption(parser: pytest.Parser) -> None:
    """Register the `neuronprobe` option group and the ini keys that mirror it."""
    add_options(parser)


def pytest_configure(config: pytest.Config) -> None:
    """Register the markers, resolve the options and start the session state."""
    collection.register_markers(config)
    settings = settings_from_config(config)
    try:
        state = NeuronSession(settings, log=_terminal_log(config), base_dir=config.invocation_params.dir)
    except NeuronProbeError as exc:
        raise pytest.UsageError(f"--neuron-run: {exc}") from None
    try:
        state.check_pairing()
        state.pairing  # noqa: B018  (read the baseline now, even when the runs come from markers)
    except NeuronProbeError as exc:
        raise pytest.UsageError(f"--neuron-baseline: {exc}") from None
    config.stash[SESSION_KEY] = state
    if config.pluginmanager.hasplugin("xdist") and not is_worker(config):
        from pytest_neuronprobe.pytest.xdist import XdistHooks

        config.pluginmanager.register(XdistHooks(state), "neuronprobe-xdist")


def _terminal_log(config: pytest.Config) -> Any:
    """A function writing one progress line to the terminal, or None (workers, `-q`)."""
    if is_worker(config) or config.get_verbosity() < 0:
        return None

    def log(line: str) -> None:
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        capman = config.pluginmanager.get_plugin("capturemanager")
        if reporter is None:
            return
        with capman.global_and_fixture_disabled() if capman is not None else contextlib.nullcontext():
            reporter.write_line(line)

    return log


def pytest_report_header(config: pytest.Config) -> list[str]:
    """Say which runs, device, report directory and baseline are in effect."""
    state = session_of(config)
    s = state.settings
    if state.labels:
        runs = ", ".join(f"{label} ({state.entries[label].path})" for label in state.labels)
    else:
        runs = (
            "none (run-dependent tests will be "
            + ("an error" if s.require_run else "skipped")
            + "; pass --neuron-run PATH)"
        )
    lines = [
        f"neuronprobe: runs: {runs}",
        f"neuronprobe: device: {s.device} ({s.sources.get('neuron_device', 'default')}); "
        f"max samples: {s.max_samples or 'all'}; batch size: {s.batch_size}; judge: {s.judge}; "
        f"report: {s.report_dir if s.report_dir else 'off'}; "
        f"baseline: {s.baseline if s.baseline else 'none'}" + (" (will be updated)" if s.update_baseline else ""),
    ]
    extra = [f"baseline run: {s.baseline_run}"] if s.baseline_run else []
    extra += [f"history: {s.history_dir}"] if s.history_dir else []
    return lines + ([f"neuronprobe: {'; '.join(extra)}"] if extra else [])


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Check the neuronprobe markers; parametrize every run-dependent test once per run (ids = run names)."""
    collection.parametrize(metafunc)


@pytest.hookimpl(wrapper=True)
def pytest_pycollect_makeitem(
    collector: pytest.Module | pytest.Class, name: str, obj: object
) -> Generator[None, Any, Any]:
    """A test whose neuronprobe markers are wrong is one collection error of its own: the module's other tests
    are still collected, so a session reports every marker error at once (and runs no test)."""
    try:
        return (yield)
    except collection.MarkerError as exc:
        return collection.bad_markers(collector, name, exc)


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    """Remember the collection order (the report lists tests so); decide whether analyses share a pass."""
    collection.plan(items, session_of(config))


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    """Collect claims files (`neuron_claims*.yaml`, `neuron_claims*.yml`, `*.neuron.yaml`)."""
    return collect_file(file_path, parent)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Remember the running item, so assertion explanations can name its run."""
    item.config.stash[CURRENT_KEY] = item


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
    """Record which run each run-dependent test used and its outcome (for index.html)."""
    report = yield
    outcomes.record(item, call, report)
    return report


def pytest_assertrepr_compare(config: pytest.Config, op: str, left: Any, right: Any) -> list[str] | None:
    """Explain comparisons of analysis numbers: the metric, its interval, n and the run (or why it is
    undefined); other comparisons keep pytest's own explanation."""
    return outcomes.explain(config, op, left, right)


@pytest.hookimpl(wrapper=True)
def pytest_runtestloop(session: pytest.Session) -> Generator[None, object, object]:
    """After the tests: compute what the report or baseline needs that no test asked for, here,
    where the runs' models are already loaded."""
    result = yield
    if not session.config.option.collectonly:
        finish.complete(session_of(session.config), worker=is_worker(session.config))
    return result


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Workers hand their results to the controller; the controller (or lone process) writes the
    report and the baseline, once."""
    config, state = session.config, session_of(session.config)
    if is_worker(config):
        from pytest_neuronprobe.pytest.xdist import WORKER_OUTPUT_KEY, worker_payload

        config.workeroutput[WORKER_OUTPUT_KEY] = worker_payload(state)  # type: ignore[attr-defined]
        return
    result = finish.finish(state)
    writes = state.settings.report_dir or state.settings.update_baseline or state.settings.history_dir
    failed = bool(result.errors and writes)
    no_run = state.settings.require_run and not state.all_labels()
    if (failed or no_run) and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    """Key metrics per run (and the comparison with the baseline), skips, files written."""
    if is_worker(config):
        return
    state = session_of(config)
    lines = finish.summary_lines(state, config.get_verbosity())
    if state.settings.require_run and not state.all_labels():
        lines.append(f"ERROR {REQUIRE_RUN_MESSAGE}")
    if not lines:
        return
    terminalreporter.write_sep("-", "neuronprobe")
    for line in lines:
        terminalreporter.write_line(line, red=line.startswith("ERROR"), yellow=" skipped: " in line)
