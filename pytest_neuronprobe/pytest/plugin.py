"""The pytest plugin: options, markers, fixtures and hooks. The logic lives in `session.py`.

Options (each mirrored by an ini key of the same name without the dashes, e.g. `neuron_run`;
the command line wins over the ini file, which wins over the default):

======================== ======================== ===================================================
option                   ini key                  meaning (default)
======================== ======================== ===================================================
--neuron-run PATH        neuron_run               run directory or glob; repeatable (none: run-
                                                  dependent tests are skipped, and counted)
--neuron-report DIR      neuron_report            write summary.json + PNGs per run and index.html
                                                  (off)
--neuron-baseline PATH   neuron_baseline          earlier summary.json or report dir (none)
--neuron-update-baseline neuron_update_baseline   write this session's summaries to the baseline
                                                  at the end (off)
--neuron-device DEV      neuron_device            cpu | cuda | mps | auto (cpu: the same numbers on
                                                  every machine; auto is opt-in)
--neuron-max-samples N   neuron_max_samples       analyse at most N texts per run (all)
--neuron-batch-size N    neuron_batch_size        texts per forward pass (32)
--neuron-require-run     neuron_require_run       no run given is an error, not a skip (off)
--neuron-judge J         neuron_judge             claims judged on the interval bound or the
                                                  estimate (bound)
--neuron-cache-dir DIR   neuron_cache_dir         on-disk cache of analysis results (pytest's cache
                                                  dir: .pytest_cache/d/neuronprobe)
--neuron-no-cache        neuron_no_cache          do not read or write the on-disk cache (off)
======================== ======================== ===================================================

Markers: `@pytest.mark.projection(**options)`, `@pytest.mark.patching(**options)` (the analysis
options; they win over the command line) and `@pytest.mark.neuron_run(path, ...)` (pins the run).
"""

from __future__ import annotations

import argparse
import contextlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

import pytest

from pytest_neuronprobe.pytest import session as S

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from pytest_neuronprobe.pytest.xdist import RunScopeScheduling
    from pytest_neuronprobe.core.heads import Head
    from pytest_neuronprobe.core.models import LoadedModel
    from pytest_neuronprobe.analyses.patching import PatchingResult
    from pytest_neuronprobe.analyses.projection import ProjectionResult
    from pytest_neuronprobe.core.runs import Run

SESSION_KEY = pytest.StashKey["S.NeuronSession"]()
RECORD_KEY = pytest.StashKey[dict]()
CURRENT_KEY = pytest.StashKey[Any]()
RUN_PARAM = "_neuronprobe_run"
WORKER_OUTPUT_KEY = "neuronprobe"
_TEXT_LIMIT = 4000


# ---------------------------------------------------------------------------------------------
# Options
# ---------------------------------------------------------------------------------------------


def _argparse_type(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """Wrap a session parser so argparse reports its message as a usage error."""

    def convert(value: str) -> Any:
        try:
            return parse(value)
        except S.OptionError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = parse.__name__.replace("parse_", "")
    return convert


def _run_path(value: str) -> str:
    """A run path or glob; a plain path must exist (globs are expanded at configure time)."""
    if not value.strip():
        raise argparse.ArgumentTypeError("expected a run directory or glob, got an empty string")
    if not any(ch in value for ch in "*?[") and not Path(value).expanduser().exists():
        raise argparse.ArgumentTypeError(f"no such run directory: {value}")
    return value


def _dir_path(value: str) -> str:
    if not value.strip():
        raise argparse.ArgumentTypeError("expected a directory, got an empty string")
    if Path(value).expanduser().is_file():
        raise argparse.ArgumentTypeError(f"expected a directory, got a file: {value}")
    return value


def _any_path(value: str) -> str:
    if not value.strip():
        raise argparse.ArgumentTypeError("expected a path, got an empty string")
    return value


def pytest_addoption(parser: pytest.Parser) -> None:
    """Register the `neuronprobe` option group and the ini keys that mirror it."""
    group = parser.getgroup("neuronprobe", "neuronprobe: probe-head analyses as assertions "
                                           "(precedence: marker keyword > command line > ini > default)")
    group.addoption("--neuron-run", action="append", dest="neuron_run", metavar="PATH", type=_run_path,
                    default=None,
                    help="probe-training run directory (or a glob such as 'runs/*'); repeatable. Tests using "
                         "the run fixtures are parametrized per run (ids = run names). "
                         "Default: none (those tests are skipped and counted). ini: neuron_run")
    group.addoption("--neuron-report", dest="neuron_report", metavar="DIR", type=_dir_path, default=None,
                    help="write <DIR>/<run>/summary.json and PNGs per run, and <DIR>/index.html, at the end "
                         "of the session. Default: off. ini: neuron_report")
    group.addoption("--neuron-baseline", dest="neuron_baseline", metavar="PATH", type=_any_path, default=None,
                    help="baseline: an earlier summary.json or a report directory (<dir>/<run>/summary.json); "
                         "gives the neuron_baseline fixture and 'baseline' in claims. Default: none. "
                         "ini: neuron_baseline")
    group.addoption("--neuron-update-baseline", dest="neuron_update_baseline", action="store_const",
                    const=True, default=None,
                    help="after the whole session, write every run's summary to --neuron-baseline "
                         "(a directory: <dir>/<run>/summary.json; a .json file: that file, one run only). "
                         "Default: off. ini: neuron_update_baseline")
    group.addoption("--neuron-device", dest="neuron_device", metavar="{cpu,cuda,mps,auto}",
                    type=_argparse_type(S.parse_device), default=None,
                    help="device for the model: cpu, cuda, mps or auto. Default: cpu, so the numbers are "
                         "the same on every machine (GPU kernels round differently, which would move "
                         "baselines); 'auto' (cuda, then mps, then cpu) is opt-in. ini: neuron_device")
    group.addoption("--neuron-max-samples", dest="neuron_max_samples", metavar="N",
                    type=_argparse_type(S.parse_positive_int), default=None,
                    help="analyse at most N texts per run (a seeded subsample). Default: all. "
                         "ini: neuron_max_samples")
    group.addoption("--neuron-batch-size", dest="neuron_batch_size", metavar="N",
                    type=_argparse_type(S.parse_positive_int), default=None,
                    help="texts per forward pass; memory is bounded by one batch, not by the dataset "
                         "(lower it for long texts or a small GPU). Default: 32. ini: neuron_batch_size")
    group.addoption("--neuron-require-run", dest="neuron_require_run", action="store_const", const=True,
                    default=None,
                    help="fail closed: without any run, tests needing one error and the exit code is "
                         "non-zero (instead of skipping). Default: off. ini: neuron_require_run")
    group.addoption("--neuron-judge", dest="neuron_judge", metavar="{bound,estimate}",
                    type=_argparse_type(S.parse_judge), default=None,
                    help="how claims files judge metrics with an interval: 'bound' (the 95%% interval's "
                         "bound must satisfy the claim) or 'estimate'; a judge set in the file wins. "
                         "Default: bound. ini: neuron_judge")
    group.addoption("--neuron-cache-dir", dest="neuron_cache_dir", metavar="DIR", type=_dir_path, default=None,
                    help="directory of the on-disk cache of finished analysis results (keyed by the content "
                         "of the model, head, config and dataset files, the options, the device and the "
                         "versions). Default: pytest's cache directory (.pytest_cache/d/neuronprobe). "
                         "ini: neuron_cache_dir")
    group.addoption("--neuron-no-cache", dest="neuron_no_cache", action="store_const", const=True, default=None,
                    help="do not read or write the on-disk analysis cache. Default: off. ini: neuron_no_cache")
    parser.addini("neuron_cache_dir", "on-disk analysis cache directory (relative to the ini file)", default=None)
    parser.addini("neuron_no_cache", "do not use the on-disk analysis cache", type="bool", default=None)
    parser.addini("neuron_run", "run directories or globs (relative to the ini file), separated by spaces",
                  type="paths", default=None)
    parser.addini("neuron_report", "report directory (relative to the ini file); default off", default=None)
    parser.addini("neuron_baseline", "baseline summary.json or report directory (relative to the ini file)",
                  default=None)
    parser.addini("neuron_update_baseline", "write the baseline at the end of the session", type="bool",
                  default=None)
    parser.addini("neuron_device", "cpu | cuda | mps | auto (default cpu)", default=None)
    parser.addini("neuron_max_samples", "analyse at most N texts per run (default all)", default=None)
    parser.addini("neuron_batch_size", "texts per forward pass (default 32)", default=None)
    parser.addini("neuron_require_run", "without a run, error instead of skip", type="bool", default=None)
    parser.addini("neuron_judge", "bound | estimate: how claims files judge (default bound)", default=None)


def _ini_base(config: pytest.Config) -> Path:
    return config.inipath.parent if config.inipath is not None else config.invocation_params.dir


def _setting(config: pytest.Config, name: str, parse: Callable[[Any], Any], default: Any,
             sources: dict[str, str]) -> Any:
    """One option's value by precedence: command line > ini > default; bad ini values are usage errors."""
    value = config.getoption(name)
    if value is not None:
        sources[name] = "command line"
        return value
    raw = config.getini(name)
    if raw is not None and raw != "":
        try:
            sources[name] = "ini"
            return parse(raw)
        except S.OptionError as exc:
            raise pytest.UsageError(f"ini option {name}: {exc}") from None
    sources[name] = "default"
    return default


def settings_from_config(config: pytest.Config) -> S.Settings:
    """Resolve every option (command line > ini > default) into :class:`session.Settings`."""
    sources: dict[str, str] = {}
    invocation = config.invocation_params.dir
    ini_base = _ini_base(config)
    cli_runs = config.getoption("neuron_run")
    try:
        if cli_runs:
            runs = S.expand_run_patterns(cli_runs, invocation)
            sources["neuron_run"] = "command line"
        elif config.getini("neuron_run"):
            runs = S.expand_run_patterns([str(p) for p in config.getini("neuron_run")], ini_base)
            sources["neuron_run"] = "ini"
        else:
            runs = []
            sources["neuron_run"] = "default"
    except S.NeuronProbeError as exc:
        raise pytest.UsageError(f"--neuron-run: {exc}") from None

    def path_setting(name: str) -> Path | None:
        cli = config.getoption(name)
        if cli is not None:
            sources[name] = "command line"
            return (invocation / Path(cli).expanduser()).resolve()
        raw = config.getini(name)
        if raw:
            sources[name] = "ini"
            return (ini_base / Path(str(raw)).expanduser()).resolve()
        sources[name] = "default"
        return None

    report = path_setting("neuron_report")
    baseline = path_setting("neuron_baseline")
    if report is not None and report.is_file():
        raise pytest.UsageError(f"--neuron-report: expected a directory, got a file: {report}")
    update = bool(_setting(config, "neuron_update_baseline", S.parse_bool, False, sources))
    if update and baseline is None:
        raise pytest.UsageError("--neuron-update-baseline needs --neuron-baseline PATH (where to write)")
    if baseline is not None and not update and not baseline.exists():
        raise pytest.UsageError(f"--neuron-baseline: no such file or directory: {baseline} "
                                "(create it with --neuron-update-baseline)")
    no_cache = bool(_setting(config, "neuron_no_cache", S.parse_bool, False, sources))
    cache_dir = path_setting("neuron_cache_dir")
    if cache_dir is not None and cache_dir.is_file():
        raise pytest.UsageError(f"--neuron-cache-dir: expected a directory, got a file: {cache_dir}")
    if no_cache:
        cache_dir = None
    elif cache_dir is None and getattr(config, "cache", None) is not None:
        try:
            cache_dir = Path(config.cache.mkdir("neuronprobe"))
            sources["neuron_cache_dir"] = "default (pytest cache)"
        except OSError:
            cache_dir = None
    return S.Settings(
        runs=tuple(runs),
        report_dir=report,
        baseline=baseline,
        update_baseline=update,
        device=_setting(config, "neuron_device", S.parse_device, "cpu", sources),
        max_samples=_setting(config, "neuron_max_samples", S.parse_positive_int, None, sources),
        batch_size=_setting(config, "neuron_batch_size", S.parse_positive_int, 32, sources),
        require_run=bool(_setting(config, "neuron_require_run", S.parse_bool, False, sources)),
        judge=_setting(config, "neuron_judge", S.parse_judge, "bound", sources),
        cache_dir=cache_dir,
        sources=sources,
    )


# ---------------------------------------------------------------------------------------------
# Configuration, header, xdist
# ---------------------------------------------------------------------------------------------


def _is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


class _XdistHooks:
    """Hooks that exist only with pytest-xdist (registered only when it is installed)."""

    def __init__(self, state: S.NeuronSession) -> None:
        self.state = state

    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        """Gather a finished worker's per-run summaries and test records (controller only)."""
        output = getattr(node, "workeroutput", None) or {}
        payload = output.get(WORKER_OUTPUT_KEY)
        if payload:
            self.state.merge_payload(json.loads(payload))

    def pytest_xdist_make_scheduler(self, config: pytest.Config, log: Any) -> RunScopeScheduling | None:
        """With `--dist load` (what `-n N` gives), keep each run's tests on one worker; any other
        mode, or no command-line run, is xdist's own choice."""
        if config.getvalue("dist") != "load" or not self.state.cli_labels:
            return None
        from pytest_neuronprobe.pytest.xdist import RunScopeScheduling

        return RunScopeScheduling(config, log, labels=self.state.cli_labels)


def pytest_configure(config: pytest.Config) -> None:
    """Register the markers, resolve the options and start the session state."""
    config.addinivalue_line(
        "markers",
        "projection(**options): options of the projection analysis this test receives "
        f"({', '.join(S.PROJECTION_KEYWORDS)}); wins over --neuron-max-samples")
    config.addinivalue_line(
        "markers",
        "patching(**options): options of the patching analysis this test receives "
        f"({', '.join(S.PATCHING_KEYWORDS)}); wins over --neuron-max-samples")
    config.addinivalue_line(
        "markers",
        "neuron_run(path, ...): run this test on these run directories/globs (relative to the test file) "
        "instead of --neuron-run")
    settings = settings_from_config(config)
    log = None
    if not _is_worker(config) and config.get_verbosity() >= 0:
        def log(line: str) -> None:
            reporter = config.pluginmanager.get_plugin("terminalreporter")
            capman = config.pluginmanager.get_plugin("capturemanager")
            if reporter is None:
                return
            with capman.global_and_fixture_disabled() if capman is not None else contextlib.nullcontext():
                reporter.write_line(line)
    try:
        state = S.NeuronSession(settings, log=log, base_dir=config.invocation_params.dir)
    except S.NeuronProbeError as exc:
        raise pytest.UsageError(f"--neuron-run: {exc}") from None
    config.stash[SESSION_KEY] = state
    if config.pluginmanager.hasplugin("xdist") and not _is_worker(config):
        config.pluginmanager.register(_XdistHooks(state), "neuronprobe-xdist")


def _state(config: pytest.Config) -> S.NeuronSession:
    return config.stash[SESSION_KEY]


def pytest_report_header(config: pytest.Config) -> list[str]:
    """Say which runs, device, report directory and baseline are in effect."""
    state = _state(config)
    s = state.settings
    src = s.sources
    if state.labels:
        runs = ", ".join(f"{label} ({state.entries[label].path})" for label in state.labels)
    else:
        runs = "none (run-dependent tests will be " + ("an error" if s.require_run else "skipped") + \
               "; pass --neuron-run PATH)"
    lines = [f"neuronprobe: runs: {runs}",
             f"neuronprobe: device: {s.device} ({src.get('neuron_device', 'default')}); "
             f"max samples: {s.max_samples or 'all'}; batch size: {s.batch_size}; judge: {s.judge}; "
             f"report: {s.report_dir if s.report_dir else 'off'}; "
             f"baseline: {s.baseline if s.baseline else 'none'}"
             + (" (will be updated)" if s.update_baseline else "")]
    return lines


# ---------------------------------------------------------------------------------------------
# Collection: per-run parametrization, marker validation, claims files
# ---------------------------------------------------------------------------------------------


def _marker_options(node: Any, name: str) -> dict[str, Any]:
    """The validated keywords of the closest `name` marker (empty without one)."""
    marker = node.get_closest_marker(name)
    if marker is None:
        return {}
    return S.validate_marker_options(name, marker.args, marker.kwargs)


def _pinned(definition: Any) -> list[str] | None:
    marker = definition.get_closest_marker("neuron_run")
    if marker is None:
        return None
    unknown = [k for k in marker.kwargs if k not in S.RUN_MARKER_KEYWORDS]
    if unknown:
        raise S.OptionError(f"@pytest.mark.neuron_run got unknown keyword(s) {', '.join(map(repr, unknown))}; "
                            f"accepted: a path (positional or path=...)")
    paths = [*marker.args, *([marker.kwargs["path"]] if "path" in marker.kwargs else [])]
    if not paths or not all(isinstance(p, (str, Path)) for p in paths):
        raise S.OptionError("@pytest.mark.neuron_run needs one or more run paths, e.g. "
                            "@pytest.mark.neuron_run('runs/neuron_l8_n481')")
    return [str(p) for p in paths]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Check the neuronprobe markers; parametrize every run-dependent test once per run (ids = run names)."""
    definition = metafunc.definition
    try:
        for name in ("projection", "patching"):
            _marker_options(definition, name)
        pinned = _pinned(definition)
    except S.OptionError as exc:
        raise pytest.Collector.CollectError(f"usage error in {definition.nodeid}: {exc}") from None
    if RUN_PARAM not in metafunc.fixturenames:
        return
    state = _state(metafunc.config)
    if pinned is not None:
        try:
            labels = state.pin(pinned, Path(definition.path).parent)
        except S.NeuronProbeError as exc:
            raise pytest.Collector.CollectError(f"@pytest.mark.neuron_run in {definition.nodeid}: {exc}") from None
    else:
        labels = list(state.cli_labels)
    if labels:
        metafunc.parametrize(RUN_PARAM, labels, indirect=True, ids=labels)


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    """Remember the collection order (the report lists tests so); decide whether analyses share a pass."""
    for i, item in enumerate(items):
        item.stash[RECORD_KEY] = {"order": i}
    state = _state(config)
    fixtures = {name for item in items for name in getattr(item, "fixturenames", ())}
    needs = [item.needs for item in items if isinstance(item, ClaimItem)]
    wants_projection = "projection" in fixtures or any(n[0] for n in needs)
    wants_patching = "patching" in fixtures or any(n[1] for n in needs)
    settings = state.settings
    state.joint = bool(settings.report_dir or settings.update_baseline or (wants_projection and wants_patching))


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    """Collect claims files (`neuron_claims*.yaml`, `neuron_claims*.yml`, `*.neuron.yaml`)."""
    from fnmatch import fnmatchcase

    from pytest_neuronprobe.claims.verdicts import CLAIM_FILE_PATTERNS

    if any(fnmatchcase(file_path.name, pattern) for pattern in CLAIM_FILE_PATTERNS):
        return ClaimsFile.from_parent(parent, path=file_path)
    return None


class ClaimFailed(Exception):
    """A claim's verdict was negative; the message is the verdict's."""


class ClaimsFile(pytest.File):
    """A YAML claims file: one item per claim per run."""

    def collect(self) -> Iterator[pytest.Item]:
        from pytest_neuronprobe.core.errors import NeuronProbeError

        state = _state(self.config)
        try:
            claims = S.load_claims_with_default_judge(self.path, state.settings.judge)
        except NeuronProbeError as exc:
            raise self.CollectError(f"claims file {self.path}: {exc}") from None
        needs = S.claim_needs(c.metric for c in claims)
        counts: dict[str, int] = {}
        for c in claims:
            counts[c.text] = counts.get(c.text, 0) + 1
        labels = state.cli_labels
        for claim in claims:
            base = claim.text if counts[claim.text] == 1 else f"{claim.text} (line {claim.line})"
            if not labels:
                yield ClaimItem.from_parent(self, name=base, claim=claim, label=None, needs=needs)
                continue
            for label in labels:
                if claim.applies_to(label) or claim.applies_to(state.run(label).name):
                    yield ClaimItem.from_parent(self, name=f"{base}[{label}]", claim=claim, label=label,
                                                needs=needs)


class ClaimItem(pytest.Item):
    """One claim of a claims file, judged on one run (and its baseline, when the claim uses one)."""

    def __init__(self, *, claim: Any, label: str | None, needs: tuple[bool, bool], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.claim = claim
        self.label = label
        self.needs = needs
        self.verdict: Any = None

    def runtest(self) -> None:
        from pytest_neuronprobe.claims.verdicts import Verdict, evaluate

        state = _state(self.config)
        if self.label is None:
            _no_run(state)
        projection, patching = self.needs
        metrics = state.metrics(self.label, projection=projection, patching=patching)
        baseline = None
        if self.claim.expr.uses_baseline and state.settings.baseline is not None:
            baseline = state.baseline_metrics(self.label)
            if baseline is None:  # a baseline was given but has nothing for this run: say why
                _, why = state.baseline_for(self.label)
                self.verdict = Verdict(False, f"{self.claim.text} failed: {why}", "estimate", {})
                raise ClaimFailed(self.verdict.message)
        self.verdict = verdict = evaluate(self.claim, metrics, baseline)
        self.user_properties.append(("neuron_run", self.label))
        self.user_properties.append(("claim", self.claim.text))
        for key, value in verdict.values.items():
            self.user_properties.append((f"{self.claim.metric}.{key}", _prop(value)))
        if not verdict.passed:
            raise ClaimFailed(verdict.message)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> Any:
        """The verdict message (or the bad-input message), without a Python traceback."""
        from pytest_neuronprobe.core.errors import NeuronProbeError

        if isinstance(excinfo.value, ClaimFailed):
            where = f" ({self.claim.where})" if self.claim.where else ""
            return f"{excinfo.value}{where}\nrun: {self.label}"
        if isinstance(excinfo.value, NeuronProbeError):
            return f"{self.claim.text} could not be judged on run {self.label}: {excinfo.value}"
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self) -> tuple[Path, int | None, str]:
        line = self.claim.line - 1 if self.claim.line else None
        return self.path, line, f"claim {self.claim.text!r} on run {self.label}"


def _prop(value: Any) -> Any:
    if value is None:
        return "undefined"
    if isinstance(value, float):
        return round(value, 6) if value == value else "undefined"
    try:
        f = float(value)
    except (TypeError, ValueError):
        return str(value)
    return round(f, 6) if f == f else "undefined"


# ---------------------------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------------------------


def _no_run(state: S.NeuronSession) -> None:
    __tracebackhide__ = True
    if state.settings.require_run:
        pytest.fail(S.REQUIRE_RUN_MESSAGE, pytrace=False)
    state.count("no_run")
    pytest.skip(S.NO_RUN_REASON)


@pytest.fixture
def _neuronprobe_run(request: pytest.FixtureRequest) -> str:
    """Internal: the label of the run this test instance uses (parametrized per run)."""
    state = _state(request.config)
    label = getattr(request, "param", None)
    if label is None:
        _no_run(state)
    request.node.user_properties.append(("neuron_run", label))
    return label


def _options(request: pytest.FixtureRequest, name: str) -> dict[str, Any]:
    return _marker_options(request.node, name)


@pytest.fixture
def neuron_run(_neuronprobe_run: str, request: pytest.FixtureRequest) -> Run:
    """The probe-training run under test (`runs.Run`: paths, config, layer, neuron, dataset).
    Tests using a run fixture run once per --neuron-run (ids = run names); without a run they
    are skipped and counted (an error with --neuron-require-run). Example:
        def test_reads_a_late_layer(neuron_run):
            assert neuron_run.layer >= 6, neuron_run
    """
    return _state(request.config).run(_neuronprobe_run)


@pytest.fixture
def probe_head(_neuronprobe_run: str, request: pytest.FixtureRequest) -> Head:
    """The run's trained prediction head (`heads.Head`: `.predict(x)`, `.direction(x)`, `.head_type`),
    in eval mode on the session's device. Example:
        def test_head_matches_the_config(probe_head, neuron_run):
            assert probe_head.head_type == neuron_run.head_type
    """
    return _state(request.config).probe(_neuronprobe_run).head


@pytest.fixture
def hooked_model(_neuronprobe_run: str, request: pytest.FixtureRequest) -> LoadedModel:
    """The run's base model (`models.LoadedModel`: `.bridge` is the TransformerLens bridge,
    `.tokenizer`, `.device`), loaded once per session and device. Example:
        def test_neuron_hook_exists(hooked_model, neuron_run):
            assert hooked_model.has_hook(f"blocks.{neuron_run.layer}.mlp.hook_post")
    """
    return _state(request.config).probe(_neuronprobe_run).model


@pytest.fixture
def neuron_dataset(_neuronprobe_run: str, request: pytest.FixtureRequest) -> pd.DataFrame:
    """The dataset rows the projection analysis reads (pandas DataFrame: text, activation, maybe
    split): the test split (else val, else all), subsampled by --neuron-max-samples or
    @pytest.mark.projection(max_samples=, split=, seed=). Example:
        def test_activations_vary(neuron_dataset):
            assert neuron_dataset["activation"].std() > 0
    """
    return _state(request.config).dataset(_neuronprobe_run, _options(request, "projection"))


@pytest.fixture
def projection(_neuronprobe_run: str, request: pytest.FixtureRequest) -> ProjectionResult:
    """The projection analysis (SPEC §3) of the run (`projection.ProjectionResult`): Pearson r of
    each projection (prediction, head, input, output, neuron_dir, live) with the ground truth,
    with a bootstrap 95% interval (`.r`, `.ci_low`, `.ci_high`, `.n`), weight cosines
    (`.weights`) and a null baseline (`.null.random.selectivity`). Computed once per session
    per (run, device, options), shared by every test that asks. Example:
        def test_head_tracks_neuron(projection):
            assert projection.head.ci_low > 0.8   # the whole interval, not just the estimate
            assert projection.live.r > 0.999      # the dataset matches this model
    Options: @pytest.mark.projection(max_samples=, split=, n_resamples=, seed=,
    null_directions=, input_hook=). An undefined number (e.g. a constant projection) compares
    False with everything: an assertion on it fails, with its reason.
    """
    state = _state(request.config)
    result = state.projection(_neuronprobe_run, _options(request, "projection"))
    for name in S.PROJECTION_PROPERTIES:
        corr = getattr(result, name)
        request.node.user_properties.append((f"projection.{name}.r", _prop(corr.r)))
        request.node.user_properties.append((f"projection.{name}.ci_low", _prop(corr.ci_low)))
    request.node.user_properties.append(("projection.n", result.n))
    return result


@pytest.fixture
def patching(_neuronprobe_run: str, request: pytest.FixtureRequest) -> PatchingResult:
    """The activation-patching analysis (SPEC §4) of the run (`patching.PatchingResult`): scale,
    set or add the neuron at the read position and fit the head's prediction change on the
    activation change (`.slope`, `.fit` with its 95% interval, `.r_squared`, `.direct_slope`,
    `.per_input`). Computed once per session per (run, device, options). Example:
        @pytest.mark.patching(factors=[0.0, 0.5, 1.0, 2.0], max_samples=100)
        def test_head_follows_the_neuron(patching):
            assert patching.slope == pytest.approx(1.0, abs=0.2)
    Options: @pytest.mark.patching(mode=, factors=, texts=, max_samples=, split=, n_resamples=,
    seed=, method=).
    """
    state = _state(request.config)
    result = state.patching(_neuronprobe_run, _options(request, "patching"))
    for name in S.PATCHING_PROPERTIES:
        request.node.user_properties.append((f"patching.{name}", _prop(getattr(result, name))))
    return result


@pytest.fixture
def neuron_baseline(_neuronprobe_run: str, request: pytest.FixtureRequest) -> dict[str, Any]:
    """The baseline summary.json dict of this run (from --neuron-baseline), to compare with;
    skipped, with the reason, when no baseline is given or it holds no summary for the run. Example:
        def test_head_no_worse(projection, neuron_baseline):
            before = neuron_baseline["projections"]["head"]["correlation"]
            assert projection.head.r >= before - 0.05
    """
    state = _state(request.config)
    summary, reason = state.baseline_for(_neuronprobe_run)
    if summary is None:
        state.count("no_baseline")
        pytest.skip(reason)
    return summary


# ---------------------------------------------------------------------------------------------
# Running: records for the report, assertion explanations
# ---------------------------------------------------------------------------------------------


def _run_label(item: pytest.Item) -> tuple[bool, str | None]:
    """(uses a run, which one) for any item."""
    if isinstance(item, ClaimItem):
        return True, item.label
    if RUN_PARAM not in getattr(item, "fixturenames", ()):
        return False, None
    callspec = getattr(item, "callspec", None)
    return True, callspec.params.get(RUN_PARAM) if callspec is not None else None


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Remember the running item, so assertion explanations can name its run."""
    item.config.stash[CURRENT_KEY] = item


def _describe(item: pytest.Item) -> str:
    if isinstance(item, ClaimItem):
        return item.claim.text
    doc = getattr(getattr(item, "obj", None), "__doc__", None)
    first = doc.strip().splitlines()[0] if doc and doc.strip() else ""
    return f"{item.name}: {first}" if first else item.name


def _message(report: pytest.TestReport, call: pytest.CallInfo[None], item: pytest.Item) -> str:
    if report.skipped and isinstance(report.longrepr, tuple):
        return str(report.longrepr[2]).removeprefix("Skipped: ")
    if isinstance(item, ClaimItem) and item.verdict is not None:
        return item.verdict.message
    if call.excinfo is not None:
        text = call.excinfo.exconly()
        return text if len(text) <= _TEXT_LIMIT else text[:_TEXT_LIMIT] + " …"
    return ""


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[Any]:
    """Record which run each run-dependent test used and its outcome (for index.html)."""
    report = yield
    uses, label = _run_label(item)
    if not uses:
        return report
    rec = item.stash.setdefault(RECORD_KEY, {"order": 0})
    if report.when == "setup":
        rec["outcome"] = "error" if report.failed else ("skipped" if report.skipped else "passed")
        rec["message"] = _message(report, call, item) if not report.passed else ""
    elif report.when == "call":
        if hasattr(report, "wasxfail"):
            rec["outcome"] = "xfailed" if report.skipped else "xpassed"
        else:
            rec["outcome"] = report.outcome
        rec["message"] = _message(report, call, item)
        rec["duration"] = report.duration
    elif report.when == "teardown":
        if report.failed:
            rec["outcome"] = "error"
            rec["message"] = (rec.get("message", "") + "\nteardown: " + _message(report, call, item)).strip()
        values = {k: v for k, v in item.user_properties if k not in ("neuron_run", "claim")}
        _state(item.config).record(S.TestRecord(
            nodeid=item.nodeid, run=label, claim=_describe(item), outcome=rec.get("outcome", "passed"),
            message=rec.get("message", ""), values=values, kind="claim" if isinstance(item, ClaimItem) else "test",
            duration=float(rec.get("duration", 0.0)), order=int(rec.get("order", 0))))
        item.config.stash[CURRENT_KEY] = None
    return report


def pytest_assertrepr_compare(config: pytest.Config, op: str, left: Any, right: Any) -> list[str] | None:
    """Explain comparisons of analysis numbers: name the metric, its interval, n and the run.

    An operand that is one of the current test's analysis numbers (e.g. `projection.head.r`,
    even via a local variable) is described as `projection.head.r = 0.412, 95% interval [...],
    n = 500 (run ...)`; an undefined operand says why it is undefined and that it fails every
    comparison. Other comparisons keep pytest's own explanation.
    """
    from pytest_neuronprobe.pytest.assertion import describe_operand, results_of

    item = config.stash.get(CURRENT_KEY, None)
    label = _run_label(item)[1] if item is not None else None
    results = results_of(getattr(item, "funcargs", None) or {})
    lines = [d for d in (describe_operand(x, results, label) for x in (left, right)) if d]
    if not lines:
        return None
    return [f"{_short_repr(left)} {op} {_short_repr(right)}", *lines]


def _short_repr(x: Any) -> str:
    text = repr(x)
    return text if len(text) <= 200 else text[:200] + " …"


# ---------------------------------------------------------------------------------------------
# The end
# ---------------------------------------------------------------------------------------------


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Workers hand their results to the controller; the controller (or lone process) writes the
    report and the baseline, once."""
    config = session.config
    state = _state(config)
    if _is_worker(config):
        config.workeroutput[WORKER_OUTPUT_KEY] = json.dumps(state.worker_payload())  # type: ignore[attr-defined]
        return
    result = state.finish()
    if (result.errors and (state.settings.report_dir or state.settings.update_baseline)
            and session.exitstatus == pytest.ExitCode.OK):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    if state.settings.require_run and not state.all_labels() and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    """Key metrics per run (and the comparison with the baseline), skips, files written."""
    if _is_worker(config):
        return
    state = _state(config)
    lines = state.summary_lines(config.get_verbosity())
    if state.settings.require_run and not state.all_labels():
        lines.append(f"ERROR {S.REQUIRE_RUN_MESSAGE}")
    if not lines:
        return
    terminalreporter.write_sep("-", "neuronprobe")
    for line in lines:
        red = line.startswith("ERROR")
        terminalreporter.write_line(line, red=red, yellow=" skipped: " in line)
