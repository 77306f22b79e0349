"""What one pytest session of pytest-neuronprobe holds, and what it writes at the end.

Pytest-free: the plugin (`plugin.py`) turns options, markers and fixtures into calls on a
:class:`NeuronSession`, which

- resolves the runs (`--neuron-run` paths and globs, runs pinned by markers) to unique labels;
- runs each analysis once per (run, device, analysis options) and shares the result with every
  test that asks (:meth:`NeuronSession.projection`, :meth:`NeuronSession.patching`);
- collects one :class:`TestRecord` per test that used a run, and the per-run summaries;
- on an xdist worker, packs all of that into a JSON-serialisable payload
  (:meth:`NeuronSession.worker_payload`); on the controller, merges the workers' payloads
  (:meth:`NeuronSession.merge_payload`);
- at the end, in the controller (or the single process) only, writes the report
  (`<dir>/<run>/summary.json`, PNGs, `index.html`, `results.json`) and the baseline
  (:meth:`NeuronSession.finish`), and says what it did (:meth:`NeuronSession.summary_lines`).

Heavy modules (torch, the analyses, matplotlib) are imported where they are first needed.
"""

from __future__ import annotations

import glob
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Sequence

from pytest_neuronprobe.core.errors import NeuronProbeError

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from pytest_neuronprobe.claims.verdicts import Claim, Metric
    from pytest_neuronprobe.analyses.patching import PatchingResult
    from pytest_neuronprobe.core.probe import Probe
    from pytest_neuronprobe.analyses.projection import ProjectionResult
    from pytest_neuronprobe.core.runs import Run

__all__ = [
    "DEVICES",
    "JUDGES",
    "PROJECTION_KEYWORDS",
    "PATCHING_KEYWORDS",
    "RUN_MARKER_KEYWORDS",
    "NO_RUN_REASON",
    "OptionError",
    "Settings",
    "RunEntry",
    "TestRecord",
    "RunResults",
    "FinishResult",
    "NeuronSession",
    "parse_device",
    "parse_positive_int",
    "parse_judge",
    "parse_bool",
    "validate_marker_options",
    "expand_run_patterns",
    "load_claims_with_default_judge",
    "claim_needs",
]

DEVICES = ("cpu", "cuda", "mps", "auto")
JUDGES = ("bound", "estimate")
SPLITS = ("auto", "all", "train", "val", "test")
PROJECTION_KEYWORDS = ("input_hook", "max_samples", "split", "n_resamples", "seed", "null_directions")
PATCHING_KEYWORDS = ("mode", "factors", "texts", "max_samples", "split", "n_resamples", "seed", "method")
RUN_MARKER_KEYWORDS = ("path",)
NO_RUN_REASON = ("no --neuron-run given (pass --neuron-run PATH or set neuron_run in the ini file; "
                 "--neuron-require-run makes this an error)")
REQUIRE_RUN_MESSAGE = ("--neuron-require-run is set but no run was given: pass --neuron-run PATH "
                       "(or neuron_run in the ini file)")
#: The summary keys the projection analysis fills (SPEC §5 plus extras); the patching one fills "patching".
PROJECTION_KEYS = ("dataset_size", "weight_similarities", "projections", "null", "self_check",
                   "projection_options")
#: How often a long analysis says how far it is (seconds).
PROGRESS_SECONDS = 5.0
#: Metrics shown per run in the terminal summary.
KEY_METRICS = ("projection.prediction.r", "projection.head.r", "projection.live.r",
               "projection.null.random.selectivity", "patching.slope", "patching.r_squared",
               "patching.direct_slope")
#: Metrics written as JUnit properties by the fixtures (name on the result object, metric name).
PROJECTION_PROPERTIES = ("prediction", "head", "live")
PATCHING_PROPERTIES = ("slope", "r_squared", "direct_slope")


class OptionError(ValueError):
    """A bad option value (command line, ini or marker keyword): the message says what is accepted."""


# ---------------------------------------------------------------------------------------------
# Value parsers: the same ones serve argparse `type=`, ini values and marker keywords.
# ---------------------------------------------------------------------------------------------


def parse_device(value: str) -> str:
    """`cpu`, `cuda`, `mps` or `auto` (case-insensitive); `cuda:1` style indices are accepted."""
    text = str(value).strip().lower()
    if text in DEVICES or (text.startswith("cuda:") and text[5:].isdigit()):
        return text
    raise OptionError(f"invalid device {value!r}: choose from {', '.join(DEVICES)}")


def parse_positive_int(value: Any) -> int:
    """A whole number >= 1 (given as an int or a string)."""
    if isinstance(value, bool):
        raise OptionError(f"expected a whole number >= 1, got {value!r}")
    try:
        number = int(str(value).strip()) if not isinstance(value, int) else value
    except ValueError:
        raise OptionError(f"expected a whole number >= 1, got {value!r}") from None
    if number < 1:
        raise OptionError(f"expected a whole number >= 1, got {value!r}")
    return number


def _non_negative_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise OptionError(f"expected a whole number >= 0, got {value!r}")
    return value


def parse_judge(value: str) -> str:
    """`bound` (judge a claim on the 95% interval's bound) or `estimate`."""
    text = str(value).strip().lower()
    if text in JUDGES:
        return text
    raise OptionError(f"invalid judge {value!r}: choose from {', '.join(JUDGES)}")


def parse_bool(value: Any) -> bool:
    """An ini-style boolean: true/false, yes/no, on/off, 1/0."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise OptionError(f"expected true or false, got {value!r}")


def _choice(choices: Sequence[str]) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if not isinstance(value, str) or value not in choices:
            raise OptionError(f"expected one of {', '.join(choices)}, got {value!r}")
        return value

    return check


def _split(value: Any) -> str | None:
    if value is None:
        return None
    return _choice(SPLITS)(value)


def _optional_positive(value: Any) -> int | None:
    return None if value is None else parse_positive_int(value)


def _seed(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise OptionError(f"expected an integer seed, got {value!r}")
    return value


def _factors(value: Any) -> tuple[float, ...] | None:
    if value is None:
        return None
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise OptionError(f"expected a list of numbers, got {value!r}")
    items = list(value)
    if not items or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                            for v in items):
        raise OptionError(f"expected a non-empty list of finite numbers, got {value!r}")
    return tuple(float(v) for v in items)


def _texts(value: Any) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise OptionError(f"expected a list of strings, got {value!r}")
    items = list(value)
    if not items or not all(isinstance(v, str) and v for v in items):
        raise OptionError(f"expected a non-empty list of non-empty strings, got {value!r}")
    return tuple(items)


def _projection_validators() -> dict[str, Callable[[Any], Any]]:
    return {"input_hook": _choice(("resid_mid", "resid_pre")), "max_samples": _optional_positive,
            "split": _split, "n_resamples": _non_negative_int, "seed": _seed,
            "null_directions": _non_negative_int}


def _patching_validators() -> dict[str, Callable[[Any], Any]]:
    return {"mode": _choice(("scale", "set", "add")), "factors": _factors, "texts": _texts,
            "max_samples": _optional_positive, "split": _split, "n_resamples": _non_negative_int,
            "seed": _seed, "method": _choice(("cached", "full"))}


def validate_marker_options(marker: str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """Check the keywords of `@pytest.mark.projection(...)` / `@pytest.mark.patching(...)`.

    Returns the normalised options; raises :class:`OptionError` naming unknown keywords and
    listing the accepted ones, or saying which value is bad and what is expected.
    """
    validators = _projection_validators() if marker == "projection" else _patching_validators()
    accepted = ", ".join(validators)
    if args:
        raise OptionError(f"@pytest.mark.{marker} takes keyword arguments only ({accepted}); "
                          f"got positional {list(args)!r}")
    unknown = [k for k in kwargs if k not in validators]
    if unknown:
        raise OptionError(f"@pytest.mark.{marker} got unknown keyword(s) {', '.join(map(repr, unknown))}; "
                          f"accepted: {accepted}")
    out = {}
    for key, value in kwargs.items():
        try:
            out[key] = validators[key](value)
        except OptionError as exc:
            raise OptionError(f"@pytest.mark.{marker}({key}=...): {exc}") from None
    if marker == "patching" and out.get("mode") in ("set", "add") and out.get("factors") is None:
        raise OptionError(f"@pytest.mark.patching(mode={out['mode']!r}) needs factors=[...] "
                          "(the values to set or add)")
    return out


def _freeze(options: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
    return tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in options.items()))


# ---------------------------------------------------------------------------------------------
# Runs
# ---------------------------------------------------------------------------------------------

_GLOB_CHARS = "*?["


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


@dataclass(frozen=True)
class Settings:
    """The options in effect, after precedence (command line > ini > default)."""

    runs: tuple[Path, ...] = ()
    report_dir: Path | None = None
    baseline: Path | None = None
    update_baseline: bool = False
    device: str = "cpu"
    max_samples: int | None = None
    #: Texts per forward pass (memory is bounded by one batch, not by the dataset).
    batch_size: int = 32
    require_run: bool = False
    judge: str = "bound"
    #: The on-disk result cache directory (`cache.ResultCache`); None: no on-disk cache.
    cache_dir: Path | None = None
    #: Where each option's value came from ("command line", "ini", "default"), for the header.
    sources: Mapping[str, str] = field(default_factory=dict)


@dataclass
class RunEntry:
    """One run of the session: its unique label (the test id) and its loaded directory."""

    label: str
    path: Path
    run: Run


@dataclass
class TestRecord:
    """What the report says about one test (or claim) on one run."""

    nodeid: str
    run: str | None
    claim: str
    outcome: str
    message: str = ""
    values: dict[str, Any] = field(default_factory=dict)
    kind: str = "test"  # "test" or "claim"
    duration: float = 0.0
    order: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"nodeid": self.nodeid, "run": self.run, "claim": self.claim, "outcome": self.outcome,
                "message": self.message, "values": _jsonable(self.values), "kind": self.kind,
                "duration": round(self.duration, 4), "order": self.order}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TestRecord:
        return cls(nodeid=str(d["nodeid"]), run=d.get("run"), claim=str(d.get("claim", "")),
                   outcome=str(d.get("outcome", "")), message=str(d.get("message", "")),
                   values=dict(d.get("values") or {}), kind=str(d.get("kind", "test")),
                   duration=float(d.get("duration") or 0.0), order=int(d.get("order") or 0))


def _jsonable(obj: Any) -> Any:
    """Plain JSON types; non-finite floats and Undefined become None."""
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, int):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if hasattr(obj, "tolist"):  # numpy arrays and scalars
        return _jsonable(obj.tolist())
    try:
        f = float(obj)
    except (TypeError, ValueError):
        return str(obj)
    return f if math.isfinite(f) else None


@dataclass
class RunResults:
    """One run's summary (SPEC §5) with the arrays the report's plots need."""

    label: str
    summary: dict[str, Any]
    has_projection: bool = False
    has_patching: bool = False
    projection_arrays: dict[str, Any] | None = None
    patching_arrays: dict[str, Any] | None = None
    null_values: Any = None
    error: str | None = None

    def to_json(self, with_arrays: bool) -> dict[str, Any]:
        return {"label": self.label, "summary": _jsonable(self.summary), "has_projection": self.has_projection,
                "has_patching": self.has_patching, "error": self.error,
                "projection_arrays": _jsonable(self.projection_arrays) if with_arrays else None,
                "patching_arrays": _jsonable(self.patching_arrays) if with_arrays else None,
                "null_values": _jsonable(self.null_values) if with_arrays else None}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> RunResults:
        import numpy as np

        def arrays(a: Mapping[str, Any] | None) -> dict[str, Any] | None:
            if a is None:
                return None
            return {k: (v if k == "texts" else np.asarray(v, dtype=float)) for k, v in a.items()}

        return cls(label=str(d["label"]), summary=dict(d["summary"]), has_projection=bool(d["has_projection"]),
                   has_patching=bool(d["has_patching"]), error=d.get("error"),
                   projection_arrays=arrays(d.get("projection_arrays")),
                   patching_arrays=arrays(d.get("patching_arrays")),
                   null_values=None if d.get("null_values") is None else np.asarray(d["null_values"], dtype=float))

    def merged(self, other: RunResults | None) -> RunResults:
        """This run's results completed with the parts only `other` has."""
        if other is None:
            return self
        summary = dict(self.summary)
        out = RunResults(self.label, summary, self.has_projection, self.has_patching, self.projection_arrays,
                         self.patching_arrays, self.null_values, self.error or other.error)
        if not self.has_projection and other.has_projection:
            for key in PROJECTION_KEYS:
                if key in other.summary:
                    summary[key] = other.summary[key]
            if isinstance(other.summary.get("run"), Mapping) and isinstance(summary.get("run"), Mapping):
                summary["run"] = {**summary["run"], "split": other.summary["run"].get("split")}
            out.has_projection = True
            out.projection_arrays, out.null_values = other.projection_arrays, other.null_values
        if not self.has_patching and other.has_patching:
            summary["patching"] = other.summary.get("patching")
            out.has_patching = True
            out.patching_arrays = other.patching_arrays
        if "provenance" not in summary and "provenance" in other.summary:
            summary["provenance"] = other.summary["provenance"]
        return out


@dataclass
class FinishResult:
    """What :meth:`NeuronSession.finish` wrote, and what went wrong."""

    index_html: Path | None = None
    report_files: dict[str, dict[str, Path]] = field(default_factory=dict)
    baseline_files: list[Path] = field(default_factory=list)
    baseline_untouched: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------
# Claims helpers
# ---------------------------------------------------------------------------------------------


def claim_needs(metrics: Iterable[str]) -> tuple[bool, bool]:
    """Which analyses (projection, patching) the named metrics need."""
    names = list(metrics)
    projection = any(m.startswith("projection.") or m == "dataset_size" for m in names)
    patching = any(m.startswith("patching.") for m in names)
    return projection, patching


def load_claims_with_default_judge(path: Path, judge: str) -> list[Claim]:
    """`claims.load_claims`, with `judge` for the claims whose file sets no judge for them.

    A judge written in the file (`options: {judge: ...}` or on a claim) wins over `--neuron-judge`.
    """
    import dataclasses

    import yaml

    from pytest_neuronprobe.claims.verdicts import load_claims

    claims = load_claims(path)
    if judge == "bound" or not claims:
        return claims
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except yaml.YAMLError:  # load_claims accepted it; be safe anyway
        return claims
    options = data.get("options") if isinstance(data, Mapping) else None
    if isinstance(options, Mapping) and "judge" in options:
        return claims
    explicit = {k for k, v in data.items() if isinstance(v, Mapping) and "judge" in v}
    return [c if c.metric in explicit else dataclasses.replace(c, judge=judge) for c in claims]


# ---------------------------------------------------------------------------------------------
# The session
# ---------------------------------------------------------------------------------------------


def _unique_label(name: str, path: Path, taken: Iterable[str]) -> str:
    used = set(taken)
    if name not in used:
        return name
    candidate = f"{path.parent.name}/{name}"
    i = 2
    while candidate in used:
        candidate = f"{path.parent.name}/{name}-{i}"
        i += 1
    return candidate


class NeuronSession:
    """The per-session state: runs, the analysis cache, test records, and the end-of-session writing."""

    def __init__(self, settings: Settings, *, log: Callable[[str], None] | None = None,
                 base_dir: Path | None = None) -> None:
        self.settings = settings
        self.log = log
        self.base_dir = base_dir or Path.cwd()
        self.entries: dict[str, RunEntry] = {}
        self._by_path: dict[Path, str] = {}
        self.cli_labels: list[str] = []
        self._probes: dict[tuple[Path, str], Probe] = {}
        self._projections: dict[tuple[Path, str, tuple], ProjectionResult] = {}
        self._patchings: dict[tuple[Path, str, tuple], PatchingResult] = {}
        self._metrics: dict[tuple[str, bool, bool], dict[str, Metric]] = {}
        self._baselines: dict[str, dict[str, Any]] | None = None
        self._baseline_error: str | None = None
        self.records: list[TestRecord] = []
        self.counters: dict[str, int] = {"no_run": 0, "no_baseline": 0}
        self.remote: dict[str, RunResults] = {}
        self.remote_paths: dict[str, str] = {}
        self.finished: FinishResult | None = None
        # Set when the session will need both default analyses of a run: then one clean pass serves both.
        self.joint = False
        self.final: dict[str, RunResults] = {}
        self.cache = None
        if settings.cache_dir is not None:
            from pytest_neuronprobe.analyses.cache import ResultCache

            self.cache = ResultCache(settings.cache_dir)
        for path in settings.runs:
            self.cli_labels.append(self.add_run(path))

    # -- runs ---------------------------------------------------------------------------------

    @property
    def labels(self) -> list[str]:
        """Every run of the session (command-line runs first, then runs pinned by markers)."""
        return list(self.entries)

    def add_run(self, path: str | os.PathLike[str]) -> str:
        """Load a run directory (once per resolved path) and return its label."""
        from pytest_neuronprobe.core.runs import load_run

        resolved = Path(path).expanduser().resolve()
        if resolved in self._by_path:
            return self._by_path[resolved]
        run = load_run(resolved)
        label = _unique_label(run.name, run.path, self.entries)
        self.entries[label] = RunEntry(label, resolved, run)
        self._by_path[resolved] = label
        return label

    def pin(self, patterns: Sequence[str], base: Path) -> list[str]:
        """Runs named by `@pytest.mark.neuron_run(...)`: paths/globs relative to the test file's directory
        (then to the invocation directory)."""
        labels: list[str] = []
        for pattern in patterns:
            try:
                paths = expand_run_patterns([pattern], base)
            except NeuronProbeError:
                if os.path.isabs(os.path.expanduser(pattern)) or base == self.base_dir:
                    raise
                paths = expand_run_patterns([pattern], self.base_dir)
            for p in paths:
                label = self.add_run(p)
                if label not in labels:
                    labels.append(label)
        return labels

    def entry(self, label: str) -> RunEntry:
        if label not in self.entries and label in self.remote_paths:
            self.add_run(self.remote_paths[label])
        return self.entries[label]

    def run(self, label: str) -> Run:
        return self.entry(label).run

    def probe(self, label: str) -> Probe:
        """The run's model and head on the session's device (loaded once)."""
        from pytest_neuronprobe.core.probe import open_probe

        entry = self.entry(label)
        key = (entry.path, self.settings.device)
        if key not in self._probes:
            start = time.perf_counter()
            probe = open_probe(entry.run, self.settings.device)
            self._probes[key] = probe
            own = str(entry.run.base_model)
            shared = "" if probe.model.source == own else f" (the same files as {probe.model.source}: loaded once)"
            self._say(f"loaded {label}: {own}{shared} ({entry.run.config.processing}) on {probe.device}", start)
        return self._probes[key]

    def _say(self, what: str, start: float | None = None) -> None:
        if self.log is not None:
            took = f" … {time.perf_counter() - start:.1f} s" if start is not None else ""
            self.log(f"neuronprobe: {what}{took}")

    # -- analyses -----------------------------------------------------------------------------

    def projection_options(self, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The analyze_projection options in effect: marker keywords > session (max_samples) > defaults."""
        options: dict[str, Any] = {"input_hook": "resid_mid", "max_samples": self.settings.max_samples,
                                   "split": None, "n_resamples": 1000, "seed": 0, "null_directions": 200,
                                   "batch_size": self.settings.batch_size}
        options.update(overrides or {})
        if options["split"] == "auto":
            options["split"] = None
        return options

    def patching_options(self, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The analyze_patching options in effect: marker keywords > session (max_samples) > defaults."""
        options: dict[str, Any] = {"mode": "scale", "factors": None, "texts": None,
                                   "max_samples": self.settings.max_samples, "split": None, "n_resamples": 1000,
                                   "seed": 0, "method": "cached", "batch_size": self.settings.batch_size}
        options.update(overrides or {})
        if options["split"] == "auto":
            options["split"] = None
        if options["factors"] is None and options["mode"] == "scale":
            from pytest_neuronprobe.analyses.patching import DEFAULT_FACTORS  # the same analysis with or without the defaults spelled out

            options["factors"] = tuple(float(f) for f in DEFAULT_FACTORS["scale"])
        return options

    def projection(self, label: str, overrides: Mapping[str, Any] | None = None) -> ProjectionResult:
        """The projection analysis of this run with these options, computed once per session."""
        from pytest_neuronprobe.analyses.projection import analyze_projection

        options = self.projection_options(overrides)
        entry = self.entry(label)
        key = (entry.path, self.settings.device, _freeze(options))
        if key not in self._projections and self.joint and overrides in (None, {}):
            self._both(label)
        if key not in self._projections:
            result, cached, took = self._cached(label, "projection", options,
                                                lambda probe, progress: analyze_projection(probe, progress=progress,
                                                                                           **options))
            self._projections[key] = result
            self._say(f"projection of {label} ({result.n} texts, {result.split} split, "
                      f"{options['n_resamples']} resamples)" + (" from cache" if cached else ""),
                      time.perf_counter() - took)
        return self._projections[key]

    def patching(self, label: str, overrides: Mapping[str, Any] | None = None) -> PatchingResult:
        """The patching analysis of this run with these options, computed once per session."""
        from pytest_neuronprobe.analyses.patching import analyze_patching

        options = self.patching_options(overrides)
        entry = self.entry(label)
        key = (entry.path, self.settings.device, _freeze(options))
        if key not in self._patchings and self.joint and overrides in (None, {}):
            self._both(label)
        if key not in self._patchings:
            kwargs = dict(options)
            for k in ("factors", "texts"):
                if kwargs[k] is not None:
                    kwargs[k] = list(kwargs[k])
            result, cached, took = self._cached(label, "patching", options,
                                                lambda probe, progress: analyze_patching(probe, progress=progress,
                                                                                         **kwargs))
            self._patchings[key] = result
            self._say(f"patching of {label} ({result.n_texts} texts x {len(result.factors)} "
                      f"{result.mode} factors)" + (" from cache" if cached else ""), time.perf_counter() - took)
        return self._patchings[key]

    def _both(self, label: str) -> None:
        """Both default-option analyses of a run in one shared clean forward pass (analysis.analyze)."""
        from pytest_neuronprobe.analyses.joint import analyze

        entry = self.entry(label)
        pkey = (entry.path, self.settings.device, _freeze(self.projection_options()))
        tkey = (entry.path, self.settings.device, _freeze(self.patching_options()))
        if pkey in self._projections or tkey in self._patchings:
            return
        patching = dict(self.patching_options())
        patching["factors"] = list(patching["factors"])
        both, cached, took = self._cached(
            label, "projection+patching", {"projection": self.projection_options(), "patching": patching},
            lambda probe, progress: analyze(probe, projection=self.projection_options(), patching=patching,
                                            progress=progress))
        proj, patch = both
        self._projections[pkey], self._patchings[tkey] = proj, patch
        self._say(f"projection + patching of {label} ({proj.n} texts, {proj.split} split; "
                  f"{len(patch.factors)} {patch.mode} factors)" + (" from cache" if cached else ""),
                  time.perf_counter() - took)

    def _cached(self, label: str, kind: str, options: Mapping[str, Any],
                compute: Callable[[Probe, Callable[[int], None] | None], Any]) -> tuple[Any, bool, float]:
        """(`compute(probe)` or its result from the on-disk cache (key: `cache.analysis_key`), whether it came
        from the cache, seconds taken): counted and timed for the terminal summary; loading the model
        (on a miss) is not counted."""
        start = time.perf_counter()
        key = None
        if self.cache is not None:
            from pytest_neuronprobe.analyses.cache import analysis_key
            from pytest_neuronprobe.core.models import resolve_device

            try:
                # the resolved device: `auto` means cuda on one machine and cpu on another
                key = analysis_key(self.entry(label).run, kind, options, str(resolve_device(self.settings.device)))
            except (OSError, NeuronProbeError):  # no key: the analysis itself says what is wrong
                key = None
        value = self.cache.get(key) if key is not None and self.cache is not None else None
        cached = value is not None and (not isinstance(value, tuple) or all(v is not None for v in value))
        if not cached:
            loading = time.perf_counter()
            probe = self.probe(label)  # loading the model (said on its own line) is not analysis time
            start += time.perf_counter() - loading
            value = compute(probe, self._progress(label, kind, options))
            if key is not None and self.cache is not None:
                self.cache.put(key, tuple(value) if isinstance(value, (tuple, list)) else value)
        self.count("analyses")
        if cached:
            self.count("analyses_cached")
        took = time.perf_counter() - start
        self.counters["analysis_ms"] = self.counters.get("analysis_ms", 0) + int(round(took * 1000))
        return value, cached, took

    def _progress(self, label: str, kind: str, options: Mapping[str, Any]) -> Callable[[int], None] | None:
        """A callback counting analysed texts that says how far it is every PROGRESS_SECONDS (none when quiet)."""
        if self.log is None:
            return None
        opts = options.get("projection", options)
        texts = opts.get("texts")
        total = len(texts) if texts else len(self.dataset(label, {k: opts[k] for k in ("max_samples", "split", "seed")}))
        start = last = time.perf_counter()
        done = 0

        def step(n: int) -> None:
            nonlocal done, last
            done += n
            now = time.perf_counter()
            if now - last >= PROGRESS_SECONDS and done < total:
                last = now
                self._say(f"{kind} of {label}: {done}/{total} texts ({done / total:.0%}, {now - start:.0f} s)")

        return step

    def dataset(self, label: str, overrides: Mapping[str, Any] | None = None) -> pd.DataFrame:
        """The dataset rows the projection analysis with these options reads (no model needed)."""
        from pytest_neuronprobe.analyses.projection import analysed_rows

        options = self.projection_options(overrides)
        run = self.run(label)
        # analysed_rows only reads `.run` of its probe argument.
        data, _ = analysed_rows(SimpleNamespace(run=run), max_samples=options["max_samples"],  # type: ignore[arg-type]
                                seed=options["seed"], split=options["split"])
        return data.copy()

    def _canonical(self, label: str) -> tuple[ProjectionResult | None, PatchingResult | None]:
        """The analyses with the session's default options, where they were computed."""
        entry = self.entries.get(label)
        if entry is None:
            return None, None
        pkey = (entry.path, self.settings.device, _freeze(self.projection_options()))
        tkey = (entry.path, self.settings.device, _freeze(self.patching_options()))
        return self._projections.get(pkey), self._patchings.get(tkey)

    def build_summary(self, label: str, *, projection: bool, patching: bool) -> dict[str, Any]:
        """summary.json of this run with the default-option analyses asked for (computed if needed)."""
        from pytest_neuronprobe.report.summary import build_summary

        proj = self.projection(label) if projection else None
        patch = self.patching(label) if patching else None
        summary = build_summary(self.probe(label), proj, patch)
        summary["run"]["name"] = label
        return summary

    def metrics(self, label: str, *, projection: bool, patching: bool) -> dict[str, Metric]:
        """Flattened metrics (claims.flatten) of this run's summary with the analyses asked for."""
        from pytest_neuronprobe.claims.verdicts import flatten

        key = (label, projection, patching)
        if key not in self._metrics:
            if not projection and not patching:
                self._metrics[key] = flatten({"run": {"name": label}})
            else:
                self._metrics[key] = flatten(self.build_summary(label, projection=projection, patching=patching))
        return self._metrics[key]

    # -- baselines ----------------------------------------------------------------------------

    def baselines(self) -> dict[str, dict[str, Any]] | None:
        """The baseline summaries by run name; None without --neuron-baseline (or before one exists)."""
        path = self.settings.baseline
        if path is None:
            return None
        if self._baselines is None:
            from pytest_neuronprobe.compare import load_summaries

            if not path.exists():
                self._baselines = {}
                self._baseline_error = (f"no baseline at {path} yet" + (
                    "; it will be written at the end of this session" if self.settings.update_baseline
                    else "; create it with --neuron-update-baseline"))
            else:
                self._baselines = load_summaries(path)
        return self._baselines

    def baseline_for(self, label: str) -> tuple[dict[str, Any] | None, str]:
        """This run's baseline summary, or None with the reason why there is none."""
        path = self.settings.baseline
        if path is None:
            return None, "no --neuron-baseline given"
        summaries = self.baselines() or {}
        if not summaries:
            return None, self._baseline_error or f"baseline {path} holds no summaries"
        if label in summaries:
            return summaries[label], ""
        name = self.run(label).name if label in self.entries else label
        if name in summaries:
            return summaries[name], ""
        if path.is_file() and len(summaries) == 1 and len(self.entries) == 1:
            return next(iter(summaries.values())), ""
        return None, (f"baseline {path} has no summary for run {label!r} (it holds: {', '.join(summaries)}); "
                      "record one with --neuron-update-baseline")

    def baseline_metrics(self, label: str) -> dict[str, Metric] | None:
        """Flattened baseline metrics for claims; None when there is no baseline for this run."""
        from pytest_neuronprobe.claims.verdicts import flatten

        summary, _ = self.baseline_for(label)
        return None if summary is None else flatten(summary)

    # -- records ------------------------------------------------------------------------------

    def record(self, rec: TestRecord) -> None:
        self.records.append(rec)

    def count(self, what: str) -> None:
        self.counters[what] = self.counters.get(what, 0) + 1

    # -- xdist --------------------------------------------------------------------------------

    def local_results(self, label: str) -> RunResults | None:
        """This process's default-option results for a run (None when none were computed here)."""
        from pytest_neuronprobe.report.summary import build_summary

        proj, patch = self._canonical(label)
        if proj is None and patch is None:
            return None
        summary = build_summary(self.probe(label), proj, patch)
        summary["run"]["name"] = label
        return RunResults(
            label=label, summary=summary, has_projection=proj is not None, has_patching=patch is not None,
            projection_arrays=dict(proj.arrays) if proj is not None else None,
            patching_arrays=dict(patch.arrays) if patch is not None else None,
            null_values=_null_values(proj) if proj is not None else None)

    def worker_payload(self) -> dict[str, Any]:
        """What a worker sends to the controller: JSON-serialisable summaries, records and counters."""
        with_arrays = self.settings.report_dir is not None
        runs = {}
        for label in self.labels:
            try:
                results = self.local_results(label)
            except Exception as exc:  # noqa: BLE001 - reported by the controller, never lost
                results = RunResults(label, {"run": {"name": label}}, error=f"{type(exc).__name__}: {exc}")
            if results is not None:
                runs[label] = results.to_json(with_arrays)
        return {"version": 1, "paths": {label: str(e.path) for label, e in self.entries.items()},
                "runs": runs, "records": [r.as_dict() for r in self.records], "counters": dict(self.counters)}

    def merge_payload(self, payload: Mapping[str, Any]) -> None:
        """Fold one worker's payload into this (controller) session."""
        for label, path in (payload.get("paths") or {}).items():
            self.remote_paths.setdefault(label, path)
        for label, data in (payload.get("runs") or {}).items():
            results = RunResults.from_json(data)
            self.remote[label] = results.merged(self.remote.get(label)) if label in self.remote else results
        self.records.extend(TestRecord.from_dict(r) for r in payload.get("records") or [])
        for key, value in (payload.get("counters") or {}).items():
            self.counters[key] = self.counters.get(key, 0) + int(value)

    # -- the end ------------------------------------------------------------------------------

    def all_labels(self) -> list[str]:
        return list(dict.fromkeys([*self.labels, *self.remote_paths, *self.remote]))

    def results(self, label: str, *, complete: bool) -> RunResults | None:
        """Local and worker results merged; with `complete`, missing analyses are computed here."""
        remote = self.remote.get(label)
        local = self.local_results(label) if label in self.entries else None
        merged = local.merged(remote) if local is not None else remote
        if complete and (merged is None or not (merged.has_projection and merged.has_patching)):
            if remote is not None and (remote.has_projection or remote.has_patching) and local is None:
                self.entry(label)  # load the run here so the missing part can be computed
            if merged is None or not merged.has_projection:
                self.projection(label)
            if merged is None or not merged.has_patching:
                self.patching(label)
            local = self.local_results(label)
            merged = local.merged(remote) if local is not None else remote
        return merged

    def finish(self) -> FinishResult:
        """Write the report and the baseline (controller or single process only); never raises."""
        out = FinishResult()
        want = self.settings.report_dir is not None or self.settings.update_baseline
        for label in self.all_labels():
            try:
                results = self.results(label, complete=want)
            except Exception as exc:  # noqa: BLE001 - a broken run must not stop the others' report
                out.errors.append(f"{label}: {type(exc).__name__}: {exc}")
                results = RunResults(label, {"run": {"name": label}}, error=f"{type(exc).__name__}: {exc}")
            if results is not None:
                self.final[label] = results
        if self.settings.report_dir is not None:
            try:
                self._write_report(self.settings.report_dir, out)
            except Exception as exc:  # noqa: BLE001
                out.errors.append(f"report: {type(exc).__name__}: {exc}")
        if self.settings.update_baseline and self.settings.baseline is not None:
            try:
                self._write_baseline(self.settings.baseline, out)
            except Exception as exc:  # noqa: BLE001
                out.errors.append(f"baseline: {type(exc).__name__}: {exc}")
        self.finished = out
        return out

    def sorted_records(self) -> list[TestRecord]:
        return sorted(self.records, key=lambda r: (r.order, r.nodeid))

    def _write_report(self, out_dir: Path, out: FinishResult) -> None:
        from pytest_neuronprobe.core.atomic import write_json_atomic
        from pytest_neuronprobe.report.html import RunReport, write_index_html, write_run_report

        out_dir.mkdir(parents=True, exist_ok=True)
        runs = []
        for label, results in self.final.items():
            summary = dict(results.summary)
            if results.error:
                summary["error"] = results.error
            report = RunReport(name=label, summary=summary, projection_arrays=results.projection_arrays,
                               patching_arrays=results.patching_arrays, null_values=results.null_values)
            if results.error:
                runs.append((report, {}))
                continue
            paths = write_run_report(report, out_dir)
            out.report_files[label] = paths
            runs.append((report, paths))
        records = [r.as_dict() for r in self.sorted_records()]
        header = {
            "runs": ", ".join(f"{label} ({self._path_of(label)})" for label in self.final) or "none",
            "device": self.settings.device,
            "baseline": str(self.settings.baseline) if self.settings.baseline else "none",
            "judge": self.settings.judge,
            "max samples": self.settings.max_samples if self.settings.max_samples else "all",
            "batch size": self.settings.batch_size,
        }
        out.index_html = write_index_html(out_dir, runs, records, header)
        write_json_atomic(out_dir / "results.json", {"header": header, "tests": records})

    def _path_of(self, label: str) -> str:
        if label in self.entries:
            return str(self.entries[label].path)
        return self.remote_paths.get(label, "?")

    def _write_baseline(self, path: Path, out: FinishResult) -> None:
        from pytest_neuronprobe.core.atomic import write_json_atomic
        from pytest_neuronprobe.report.html import safe_run_name

        good = {label: r for label, r in self.final.items() if r.error is None and r.has_projection and r.has_patching}
        if not good:
            out.errors.append("baseline: nothing to write (no run was analysed completely)")
            return
        single_file = path.is_file() or (not path.exists() and path.suffix == ".json")
        if single_file:
            if len(good) != 1:
                out.errors.append(f"baseline: {path} is a single summary file but this session has {len(good)} "
                                  "runs; pass a directory to --neuron-baseline to keep one summary per run")
                return
            (label, results), = good.items()
            out.baseline_files.append(write_json_atomic(path, _jsonable(results.summary)))
            return
        for label, results in good.items():
            out.baseline_files.append(write_json_atomic(path / safe_run_name(label) / "summary.json",
                                                        _jsonable(results.summary)))
        try:
            from pytest_neuronprobe.compare import load_summaries

            out.baseline_untouched = [n for n in load_summaries(path) if n not in good]
        except NeuronProbeError:
            pass

    # -- terminal -----------------------------------------------------------------------------

    def summary_lines(self, verbosity: int = 0) -> list[str]:
        """The terminal summary: key metrics per run, the baseline comparison, skips, files written."""
        from pytest_neuronprobe.claims.verdicts import flatten
        from pytest_neuronprobe.compare import diff_rows, format_table

        lines: list[str] = []
        if verbosity >= -1:
            for label, results in self.final.items():
                if results.error:
                    lines.append(f"run {label}: ERROR {results.error}")
                    continue
                metrics = flatten(results.summary)
                run = results.summary.get("run") or {}
                lines.append(f"run {label} (L{run.get('target_layer')} N{run.get('target_neuron')}, "
                             f"{run.get('head_type')}, {run.get('split')} split, n={results.summary.get('dataset_size')})")
                if verbosity < 0:
                    continue
                base, _ = self.baseline_for(label) if self.settings.baseline is not None else (None, "")
                if base is not None:
                    table = format_table(diff_rows(base, results.summary, _present(KEY_METRICS, metrics, base)),
                                         f"compared with the baseline {self.settings.baseline}:")
                    lines += ["  " + line for line in table.splitlines()]
                else:
                    lines += ["  " + line for line in _metric_table(metrics)]
        if self.counters.get("no_run"):
            n = self.counters["no_run"]
            lines.append(f"{n} test(s) skipped: {NO_RUN_REASON}")
        if self.counters.get("no_baseline"):
            hint = "see the skip reasons" if self.settings.baseline else "pass --neuron-baseline PATH"
            lines.append(f"{self.counters['no_baseline']} test(s) skipped: no baseline for their run ({hint})")
        if self.counters.get("analyses") and verbosity >= 0:
            secs = self.counters.get("analysis_ms", 0) / 1000
            lines.append(f"neuronprobe: analyses took {secs:.2f} s ({self.counters.get('analyses_cached', 0)} of "
                         f"{self.counters['analyses']} from cache)")
        done = self.finished
        if done is not None:
            if done.index_html is not None:
                lines.append(f"report written: {done.index_html} ({len(done.report_files)} run(s), "
                             f"{len(self.records)} test record(s))")
            if done.baseline_files:
                lines.append("baseline updated: wrote " + ", ".join(map(str, done.baseline_files)))
                if done.baseline_untouched:
                    lines.append("baseline also holds run(s) not in this session, left unchanged: "
                                 + ", ".join(done.baseline_untouched))
            for err in done.errors:
                lines.append(f"ERROR {err}")
        return lines


def _present(names: Sequence[str], *metric_sets: Mapping[str, Any]) -> list[str]:
    return [n for n in names if any(n in m for m in metric_sets)]


def _metric_table(metrics: Mapping[str, Metric]) -> list[str]:
    from pytest_neuronprobe.claims.verdicts import _fmt

    rows = [("metric", "estimate", "95% interval", "n")]
    for name in KEY_METRICS:
        m = metrics.get(name)
        if m is None:
            continue
        ci = f"[{_fmt(m.ci_low)}, {_fmt(m.ci_high)}]" if m.has_interval else ""
        prefix = name.rsplit(".", 1)[0]
        n_metric = metrics.get(f"{prefix}.n") or (metrics.get("patching.n_texts") if name.startswith("patching.")
                                                 else None)
        n = _fmt(n_metric.value) if n_metric is not None and n_metric.value is not None else ""
        rows.append((name, _fmt(m.value) if m.value is not None else f"undefined ({m.reason})", ci, n))
    if len(rows) == 1:
        return ["(no metrics)"]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    return ["  ".join([r[0].ljust(widths[0]), r[1].rjust(widths[1]), r[2].ljust(widths[2]), r[3].rjust(widths[3])]
                      ).rstrip() for r in rows]


def _null_values(proj: ProjectionResult) -> Any:
    """The null distribution's |r| values, when the projection result keeps them."""
    for key in ("null_random", "null_values", "null"):
        if key in proj.arrays:
            return proj.arrays[key]
    return None
