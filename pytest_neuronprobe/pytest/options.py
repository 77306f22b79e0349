"""The plugin's options: the one home of their names, defaults, parsers, help texts and precedence.

Each option has an ini key of the same name (`--neuron-run` / `neuron_run`); the command line
wins over the ini file, which wins over the default (and a marker keyword wins over all three
for the analysis options it names).
"""

from __future__ import annotations

import argparse
import glob
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, TypeVar

import pytest

from pytest_neuronprobe.analyses.options import DEFAULT_BATCH_SIZE, positive_int
from pytest_neuronprobe.claims.multiplicity import ERROR_CONTROLS
from pytest_neuronprobe.claims.verdicts import JUDGES
from pytest_neuronprobe.core.errors import NeuronProbeError, OptionError

T = TypeVar("T")

DEVICES = ("cpu", "cuda", "mps", "auto")
DEFAULT_DEVICE = "cpu"
DEFAULT_JUDGE = "bound"
REQUIRE_RUN_MESSAGE = (
    "--neuron-require-run is set but no run was given: pass --neuron-run PATH (or neuron_run in the ini file)"
)
_GLOB_CHARS = "*?["


@dataclass(frozen=True)
class Settings:
    """The options in effect, after precedence (command line > ini > default)."""

    runs: tuple[Path, ...] = ()
    report_dir: Path | None = None
    baseline: Path | None = None
    #: --neuron-baseline-run NAME|GLOB: the baseline run every run compares with; None: pair by the rules.
    baseline_run: str | None = None
    update_baseline: bool = False
    #: --neuron-history DIR: where each session appends one line per run (history.jsonl); None: off.
    history_dir: Path | None = None
    device: str = DEFAULT_DEVICE
    max_samples: int | None = None
    #: Texts per forward pass (memory is bounded by one batch, not by the dataset).
    batch_size: int = DEFAULT_BATCH_SIZE
    require_run: bool = False
    judge: str = DEFAULT_JUDGE
    #: --neuron-error-control: none, holm (family-wise error rate) or bh (false discovery rate) over the claims.
    error_control: str = "none"
    #: The on-disk result cache directory; None: no on-disk cache.
    cache_dir: Path | None = None
    #: Where each option's value came from ("command line", "ini", "default"), for the header.
    sources: Mapping[str, str] = field(default_factory=dict)


# -- value parsers: the same ones serve argparse `type=` and ini values ---------------------------


def parse_device(value: str) -> str:
    """`cpu`, `cuda`, `mps` or `auto` (case-insensitive); `cuda:1` style indices are accepted."""
    text = str(value).strip().lower()
    if text in DEVICES or (text.startswith("cuda:") and text[5:].isdigit()):
        return text
    raise OptionError(f"invalid device {value!r}: choose from {', '.join(DEVICES)}")


def parse_judge(value: str) -> str:
    """`bound` (judge a claim on the 95% interval's bound) or `estimate`."""
    text = str(value).strip().lower()
    if text in JUDGES:
        return text
    raise OptionError(f"invalid judge {value!r}: choose from {', '.join(JUDGES)}")


def parse_error_control(value: str) -> str:
    """`none`, `holm` or `bh`: how claims judged on an interval share the error rate."""
    if (text := str(value).strip().lower()) in ERROR_CONTROLS:
        return text
    raise OptionError(f"invalid error control {value!r}: choose from {', '.join(ERROR_CONTROLS)}")


def parse_bool(value: object) -> bool:
    """An ini-style boolean: true/false, yes/no, on/off, 1/0."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise OptionError(f"expected true or false, got {value!r}")


def _argparse_type(parse: Callable[[str], T]) -> Callable[[str], T]:
    """Wrap a parser so argparse reports its message as a usage error."""

    def convert(value: str) -> T:
        try:
            return parse(value)
        except OptionError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = parse.__name__.replace("parse_", "")
    return convert


def _run_path(value: str) -> str:
    """A run path or glob; a plain path must exist (globs are expanded at configure time)."""
    if not value.strip():
        raise argparse.ArgumentTypeError("expected a run directory or glob, got an empty string")
    if not any(ch in value for ch in _GLOB_CHARS) and not Path(value).expanduser().exists():
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


def parse_pattern(value: str) -> str:
    """A run name or glob (non-empty)."""
    text = str(value).strip()
    if not text:
        raise OptionError("expected a baseline run name or glob, got an empty string")
    return text


# -- registration ----------------------------------------------------------------------------------

_FLAG = {"action": "store_const", "const": True, "default": None}
#: (option, argparse keywords, help, ini help, ini type). Help ends with the default and the ini key.
OPTIONS: tuple[tuple[str, dict[str, object], str, str, Literal["string", "paths", "bool"] | None], ...] = (
    (
        "--neuron-run",
        {"action": "append", "metavar": "PATH", "type": _run_path},
        "probe-training run directory (or a glob such as 'runs/*'); repeatable. Tests using the run fixtures are "
        "parametrized per run (ids = run names). Default: none (those tests are skipped and counted).",
        "run directories or globs (relative to the ini file), separated by spaces",
        "paths",
    ),
    (
        "--neuron-report",
        {"metavar": "DIR", "type": _dir_path},
        "write <DIR>/<run>/summary.json and PNGs per run, and <DIR>/index.html, at the end of the session. "
        "Default: off.",
        "report directory (relative to the ini file); default off",
        None,
    ),
    (
        "--neuron-baseline",
        {"metavar": "PATH", "type": _any_path},
        "baseline: an earlier summary.json or a report directory (<dir>/<run>/summary.json); gives the "
        "neuron_baseline fixture and 'baseline' in claims. Default: none.",
        "baseline summary.json or report directory (relative to the ini file)",
        None,
    ),
    (
        "--neuron-baseline-run",
        {"metavar": "NAME|GLOB", "type": _argparse_type(parse_pattern)},
        "compare every run with the one baseline run of this name (or glob matching exactly one), instead of "
        "pairing by run name, then by neuron (base model, layer, neuron, layer type, head type), then a "
        "single-summary baseline. Default: pair by those rules.",
        "baseline run name or glob every run compares with",
        None,
    ),
    (
        "--neuron-update-baseline",
        _FLAG,
        "after the whole session, write every run's summary to --neuron-baseline (a directory: "
        "<dir>/<run>/summary.json; a .json file: that file, one run only). Default: off.",
        "write the baseline at the end of the session",
        "bool",
    ),
    (
        "--neuron-history",
        {"metavar": "DIR", "type": _dir_path},
        "append one JSON line per run (time, training date, git commit, headline metrics with intervals) to "
        "<DIR>/history.jsonl at the end of the session; gives 'previous' and 'best' in claims. Default: off.",
        "history directory (relative to the ini file); default off",
        None,
    ),
    (
        "--neuron-device",
        {"metavar": "{cpu,cuda,mps,auto}", "type": _argparse_type(parse_device)},
        "device for the model: cpu, cuda, mps or auto. Default: cpu, so the numbers are the same on every machine "
        "(GPU kernels round differently, which would move baselines); 'auto' (cuda, then mps, then cpu) is opt-in.",
        "cpu | cuda | mps | auto (default cpu)",
        None,
    ),
    (
        "--neuron-max-samples",
        {"metavar": "N", "type": _argparse_type(positive_int)},
        "analyse at most N texts per run (a seeded subsample). Default: all.",
        "analyse at most N texts per run (default all)",
        None,
    ),
    (
        "--neuron-batch-size",
        {"metavar": "N", "type": _argparse_type(positive_int)},
        "texts per forward pass; memory is bounded by one batch, not by the dataset (lower it for long texts or a "
        f"small GPU). Default: {DEFAULT_BATCH_SIZE}.",
        f"texts per forward pass (default {DEFAULT_BATCH_SIZE})",
        None,
    ),
    (
        "--neuron-require-run",
        _FLAG,
        "fail closed: without any run, tests needing one error and the exit code is non-zero (instead of "
        "skipping). Default: off.",
        "without a run, error instead of skip",
        "bool",
    ),
    (
        "--neuron-judge",
        {"metavar": "{bound,estimate}", "type": _argparse_type(parse_judge)},
        "how claims files judge metrics with an interval: 'bound' (the 95%% interval's bound must satisfy the "
        "claim) or 'estimate'; a judge set in the file wins. Default: bound.",
        "bound | estimate: how claims files judge (default bound)",
        None,
    ),
    (
        "--neuron-error-control",
        {"metavar": "{none,holm,bh}", "type": _argparse_type(parse_error_control)},
        "error rates across the claims files' interval-judged claims: 'holm' (family-wise) or 'bh' (false "
        "discovery rate); a claim passes if its bound does and its adjusted p <= 0.025. Default: none.",
        "none | holm | bh: error control across interval-judged claims (default none)",
        None,
    ),
    (
        "--neuron-cache-dir",
        {"metavar": "DIR", "type": _dir_path},
        "directory of the on-disk cache of finished analysis results (keyed by the content of the model, head, "
        "config and dataset files, the options, the device and the versions). Default: pytest's cache directory "
        "(.pytest_cache/d/neuronprobe).",
        "on-disk analysis cache directory (relative to the ini file)",
        None,
    ),
    (
        "--neuron-no-cache",
        _FLAG,
        "do not read or write the on-disk analysis cache. Default: off.",
        "do not use the on-disk analysis cache",
        "bool",
    ),
)


def dest(option: str) -> str:
    """`--neuron-run` -> `neuron_run` (the argparse dest and the ini key)."""
    return option.lstrip("-").replace("-", "_")


def add_options(parser: pytest.Parser) -> None:
    """Register the `neuronprobe` option group and the ini keys that mirror it."""
    group = parser.getgroup(
        "neuronprobe",
        "neuronprobe: probe-head analyses as assertions (precedence: marker keyword > command line > ini > default)",
    )
    for option, kwargs, help_text, ini_help, ini_type in OPTIONS:
        name = dest(option)
        group.addoption(option, dest=name, help=f"{help_text} ini: {name}", **{"default": None, **kwargs})
        parser.addini(name, ini_help, type=ini_type, default=None)


# -- resolution ------------------------------------------------------------------------------------


def expand_run_patterns(patterns: Sequence[str | os.PathLike[str]], base: Path) -> list[Path]:
    """Paths and globs (relative to `base`) to run directories, in the order given, without duplicates.

    A plain path must exist; a glob must match at least one directory (files it matches, such
    as a README beside the runs, are left out).
    """
    found: list[Path] = []
    for pattern in patterns:
        text = os.path.expanduser(os.fspath(pattern))
        full = text if os.path.isabs(text) else os.path.join(os.fspath(base), text)
        if any(ch in text for ch in _GLOB_CHARS):
            hits = [Path(p) for p in sorted(glob.glob(full)) if os.path.isdir(p)]
            if not hits:
                raise NeuronProbeError(f"no run directory matches {text!r} (looked in {base})", key="neuron_run")
        else:
            path = Path(full)
            if not path.exists():
                raise NeuronProbeError("no such run directory", path=path, key="neuron_run")
            if not path.is_dir():
                raise NeuronProbeError("expected a run directory, got a file", path=path, key="neuron_run")
            hits = [path]
        for hit in hits:
            resolved = hit.resolve()
            if resolved not in found:
                found.append(resolved)
    return found


class _Resolver:
    """One option's value by precedence (command line > ini > default), remembering where it came from."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.invocation = config.invocation_params.dir
        self.ini_base = config.inipath.parent if config.inipath is not None else self.invocation
        self.sources: dict[str, str] = {}

    def value(self, name: str, parse: Callable[[str], T], default: T) -> T:
        cli: T | None = self.config.getoption(name)
        if cli is not None:
            self.sources[name] = "command line"
            return cli
        raw = self.config.getini(name)
        if raw is not None and raw != "":
            self.sources[name] = "ini"
            try:
                return parse(raw)
            except OptionError as exc:
                raise pytest.UsageError(f"ini option {name}: {exc}") from None
        self.sources[name] = "default"
        return default

    def path(self, name: str) -> Path | None:
        cli = self.config.getoption(name)
        if cli is not None:
            self.sources[name] = "command line"
            return (self.invocation / Path(cli).expanduser()).resolve()
        raw = self.config.getini(name)
        if raw:
            self.sources[name] = "ini"
            return (self.ini_base / Path(str(raw)).expanduser()).resolve()
        self.sources[name] = "default"
        return None

    def runs(self) -> list[Path]:
        cli_runs = self.config.getoption("neuron_run")
        try:
            if cli_runs:
                self.sources["neuron_run"] = "command line"
                return expand_run_patterns(cli_runs, self.invocation)
            ini_runs = self.config.getini("neuron_run")
            if ini_runs:
                self.sources["neuron_run"] = "ini"
                return expand_run_patterns([str(p) for p in ini_runs], self.ini_base)
        except NeuronProbeError as exc:
            raise pytest.UsageError(f"--neuron-run: {exc}") from None
        self.sources["neuron_run"] = "default"
        return []

    def cache_dir(self) -> Path | None:
        no_cache = self.value("neuron_no_cache", parse_bool, False)
        cache_dir = self.path("neuron_cache_dir")
        if cache_dir is not None and cache_dir.is_file():
            raise pytest.UsageError(f"--neuron-cache-dir: expected a directory, got a file: {cache_dir}")
        if no_cache:
            return None
        if cache_dir is None and getattr(self.config, "cache", None) is not None:
            try:
                cache_dir = Path(self.config.cache.mkdir("neuronprobe"))
                self.sources["neuron_cache_dir"] = "default (pytest cache)"
            except OSError:
                return None
        return cache_dir


def check_baseline_target(path: Path) -> None:
    """Refuse, in one line, a --neuron-update-baseline target where no baseline lives: only a directory
    (or a path to create one at) or a ``.json`` file that is absent or already a summary may be written."""
    where = "--neuron-update-baseline: refusing to write the baseline to"
    if path.is_dir():
        return
    if path.exists() and not path.is_file():
        raise pytest.UsageError(f"{where} {path}: not a regular file or directory")
    if path.suffix.lower() == ".json":
        from pytest_neuronprobe.baseline import is_summary_file

        if path.is_file() and not is_summary_file(path):
            raise pytest.UsageError(
                f'{where} {path}: it exists and is not a neuronprobe summary (no "projections" or "patching")'
            )
        return
    if path.exists():
        raise pytest.UsageError(
            f"{where} {path}: an existing file that is not a .json summary (pass a directory or a .json path)"
        )


def settings_from_config(config: pytest.Config) -> Settings:
    """Resolve every option (command line > ini > default) into :class:`Settings`; bad values are usage errors."""
    resolve = _Resolver(config)
    runs = resolve.runs()
    report = resolve.path("neuron_report")
    baseline = resolve.path("neuron_baseline")
    if report is not None:
        from pytest_neuronprobe.report.files import check_report_dir

        try:
            check_report_dir(report)
        except NeuronProbeError as exc:
            raise pytest.UsageError(str(exc)) from None
    update = resolve.value("neuron_update_baseline", parse_bool, False)
    if update and baseline is None:
        raise pytest.UsageError("--neuron-update-baseline needs --neuron-baseline PATH (where to write)")
    if update and baseline is not None:
        check_baseline_target(baseline)
    if baseline is not None and not update and not baseline.exists():
        raise pytest.UsageError(
            f"--neuron-baseline: no such file or directory: {baseline} (create it with --neuron-update-baseline)"
        )
    baseline_run = resolve.value("neuron_baseline_run", parse_pattern, None)
    if baseline_run is not None and baseline is None:
        raise pytest.UsageError("--neuron-baseline-run needs --neuron-baseline PATH (the baseline to choose from)")
    history = resolve.path("neuron_history")
    if history is not None and history.is_file():
        raise pytest.UsageError(f"--neuron-history: expected a directory, got a file: {history}")
    cache_dir = resolve.cache_dir()
    return Settings(
        runs=tuple(runs),
        report_dir=report,
        baseline=baseline,
        baseline_run=baseline_run,
        update_baseline=update,
        history_dir=history,
        device=resolve.value("neuron_device", parse_device, DEFAULT_DEVICE),
        max_samples=resolve.value("neuron_max_samples", positive_int, None),
        batch_size=resolve.value("neuron_batch_size", positive_int, DEFAULT_BATCH_SIZE),
        require_run=resolve.value("neuron_require_run", parse_bool, False),
        judge=resolve.value("neuron_judge", parse_judge, DEFAULT_JUDGE),
        error_control=resolve.value("neuron_error_control", parse_error_control, "none"),
        cache_dir=cache_dir,
        sources=resolve.sources,
    )
