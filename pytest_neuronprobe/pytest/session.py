"""What one pytest session holds: its runs, one memo of analyses, and what its tests recorded.

The fixtures and hooks call a :class:`NeuronSession`; it resolves runs to unique labels, runs
each analysis once per (run, device, options) (the options object is the memo key and part of
the on-disk cache key) and keeps the test records and counters the end of the session reports.
Heavy modules (torch, the analyses) are imported where they are first needed.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from pytest_neuronprobe.core.errors import NeuronProbeError
from pytest_neuronprobe.pytest.options import Settings, expand_run_patterns
from pytest_neuronprobe.pytest.pairing import SessionBaselines
from pytest_neuronprobe.pytest.records import Counters, FinishResult, RunResults
from pytest_neuronprobe.pytest.runs import RunEntry, unique_label

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from pytest_neuronprobe.analyses.attribution_fit import AttributionResult
    from pytest_neuronprobe.analyses.cache import ResultCache
    from pytest_neuronprobe.analyses.control import ControlResult
    from pytest_neuronprobe.analyses.options import (
        AttributionOptions,
        ControlOptions,
        PatchingOptions,
        Progress,
        ProjectionOptions,
    )
    from pytest_neuronprobe.analyses.patching_fit import PatchingResult
    from pytest_neuronprobe.analyses.projection import ProjectionResult
    from pytest_neuronprobe.baseline import BaselinePair, Pairing
    from pytest_neuronprobe.claims.metrics import Metric
    from pytest_neuronprobe.core.probe import Probe
    from pytest_neuronprobe.core.runs import Run
    from pytest_neuronprobe.history import HistoryEntry
    from pytest_neuronprobe.report.files import TestRecord


R = TypeVar("R")
OptionsT = TypeVar("OptionsT", bound="ProjectionOptions | PatchingOptions | ControlOptions | AttributionOptions")
#: How often a long analysis says how far it is (seconds).
PROGRESS_SECONDS = 5.0


@dataclass
class NeuronSession(SessionBaselines):
    """The per-session state: runs, the analysis memo, test records and counters."""

    settings: Settings
    log: Callable[[str], None] | None = None
    base_dir: Path = field(default_factory=Path.cwd)
    entries: dict[str, RunEntry] = field(default_factory=dict)
    cli_labels: list[str] = field(default_factory=list)
    records: list[TestRecord] = field(default_factory=list)
    counters: Counters = field(default_factory=Counters)
    #: Results gathered from xdist workers, and the run paths they reported (controller only).
    remote: dict[str, RunResults] = field(default_factory=dict)
    remote_paths: dict[str, str] = field(default_factory=dict)
    #: Set when the session needs both default analyses of a run: then one clean pass serves both.
    joint: bool = False
    control_wanted: bool = False  #: claims, the report or the history need the control analysis (summaries carry it)
    #: Each run's results as this process froze them (finish.complete), all runs' (finish.finish), what was written.
    done: dict[str, RunResults] = field(default_factory=dict)
    final: dict[str, RunResults] = field(default_factory=dict)
    finished: FinishResult | None = None
    #: Each gathered run's baseline pair (finish.pairs; None without a baseline), and why a run has none.
    pairs: dict[str, BaselinePair | None] | None = None
    unpaired: dict[str, str] = field(default_factory=dict)
    _by_path: dict[Path, str] = field(default_factory=dict)
    _probes: dict[tuple[Path, str], Probe] = field(default_factory=dict)
    _results: dict[tuple[Path, str, object], object] = field(default_factory=dict)
    _metrics: dict[tuple[str, object, object, bool], dict[str, Metric]] = field(default_factory=dict)
    _summaries: dict[tuple[str, object, object, bool], dict[str, object]] = field(default_factory=dict)
    _pairing: Pairing | None = None
    _pairs: dict[str, tuple[BaselinePair | None, str]] = field(default_factory=dict)
    #: The history entries written before this session (read once, when a claim first needs them).
    _history: list[HistoryEntry] | None = None
    #: The on-disk result cache (None: --neuron-no-cache).
    cache: ResultCache | None = None

    def __post_init__(self) -> None:
        if self.settings.cache_dir is not None:
            from pytest_neuronprobe.analyses.cache import ResultCache

            self.cache = ResultCache(self.settings.cache_dir)
        for path in self.settings.runs:
            self.cli_labels.append(self.add_run(path))

    # -- runs ---------------------------------------------------------------------------------------

    @property
    def labels(self) -> list[str]:
        """Every run of the session (command-line runs first, then runs pinned by markers)."""
        return list(self.entries)

    def all_labels(self) -> list[str]:
        """This process's runs and those the workers reported."""
        return list(dict.fromkeys([*self.entries, *self.remote_paths, *self.remote]))

    def add_run(self, path: str | os.PathLike[str]) -> str:
        """Load a run directory (once per resolved path) and return its label."""
        from pytest_neuronprobe.core.runs import load_run

        resolved = Path(path).expanduser().resolve()
        if resolved in self._by_path:
            return self._by_path[resolved]
        run = load_run(resolved)
        label = unique_label(run.name, run.path, self.entries)
        self.entries[label] = RunEntry(label, resolved, run)
        self._by_path[resolved] = label
        return label

    def pin(self, patterns: Sequence[str], base: Path) -> list[str]:
        """Runs named by `@pytest.mark.neuron_run(...)`: paths/globs relative to the test file's
        directory (then to the invocation directory)."""
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

    def run(self, label: str) -> Run:
        return self.entries[label].run

    def probe(self, label: str) -> Probe:
        """The run's model and head on the session's device (loaded once)."""
        from pytest_neuronprobe.core.probe import open_probe

        entry = self.entries[label]
        key = (entry.path, self.settings.device)
        if key not in self._probes:
            start = time.perf_counter()
            probe = open_probe(entry.run, self.settings.device)
            self._probes[key] = probe
            own = str(entry.run.base_model)
            shared = "" if probe.model.source == own else f" (the same files as {probe.model.source}: loaded once)"
            if entry.run.base_model_outside is not None:
                shared += f" (base_model_path {entry.run.base_model_outside!r} is outside the run directory)"
            self.say(f"loaded {label}: {own}{shared} ({entry.run.config.processing}) on {probe.device}", start)
        return self._probes[key]

    def touched(self, label: str) -> bool:
        """Whether this process analysed the run or loaded its model."""
        path = self.entries[label].path
        return any(key[0] == path for key in (*self._results, *self._probes))

    def say(self, what: str, start: float | None = None) -> None:
        if self.log is not None:
            took = f" … {time.perf_counter() - start:.1f} s" if start is not None else ""
            self.log(f"neuronprobe: {what}{took}")

    # -- analyses -----------------------------------------------------------------------------------

    def projection_options(self, keywords: Mapping[str, object] | None = None) -> ProjectionOptions:
        """The projection options in effect: marker keywords > session (max samples, batch size) > defaults."""
        from pytest_neuronprobe.analyses.options import ProjectionOptions

        base = ProjectionOptions(max_samples=self.settings.max_samples, batch_size=self.settings.batch_size)
        return ProjectionOptions.from_keywords(base, keywords or {}, where="@pytest.mark.projection")

    def patching_options(self, keywords: Mapping[str, object] | None = None) -> PatchingOptions:
        """The patching options in effect: marker keywords > session (max samples, batch size) > defaults."""
        from pytest_neuronprobe.analyses.options import PatchingOptions

        base = PatchingOptions(max_samples=self.settings.max_samples, batch_size=self.settings.batch_size)
        return PatchingOptions.from_keywords(base, keywords or {}, where="@pytest.mark.patching")

    def attribution_options(self, keywords: Mapping[str, object] | None = None) -> AttributionOptions:
        """The attribution options in effect: marker keywords > session (max samples, batch size) > defaults."""
        from pytest_neuronprobe.analyses.options import AttributionOptions

        base = AttributionOptions(max_samples=self.settings.max_samples, batch_size=self.settings.batch_size)
        return AttributionOptions.from_keywords(base, keywords or {}, where="@pytest.mark.attribution")

    def attribution(self, label: str, options: AttributionOptions | None = None) -> AttributionResult:
        """The attribution sweep of this run with these options (default: the session's), once per session."""
        from pytest_neuronprobe.analyses.attribution import analyze_attribution

        options = options or self.attribution_options()
        return self._analysis(  # type: ignore[return-value]  # analyze_attribution returns an AttributionResult
            label,
            options,
            analyze_attribution,
            lambda r: f"attribution of {label} ({r.n_units} units, {r.n_texts} texts)",
        )

    def projection(self, label: str, options: ProjectionOptions | None = None) -> ProjectionResult:
        """The projection analysis of this run with these options (default: the session's), once per session."""
        from pytest_neuronprobe.analyses.projection import ProjectionResult, analyze_projection

        options = options or self.projection_options()
        if self.joint and options == self.projection_options():
            self._both(label)
        result = self._analysis(
            label,
            options,
            analyze_projection,
            lambda r: f"projection of {label} ({r.n} texts, {r.split} split, {options.n_resamples} resamples)",
        )
        assert isinstance(result, ProjectionResult)
        return result

    def patching(self, label: str, options: PatchingOptions | None = None) -> PatchingResult:
        """The patching analysis of this run with these options (default: the session's), once per session."""
        from pytest_neuronprobe.analyses.patching import analyze_patching
        from pytest_neuronprobe.analyses.patching_fit import PatchingResult

        options = options or self.patching_options()
        if self.joint and options == self.patching_options():
            self._both(label)
        result = self._analysis(
            label,
            options,
            analyze_patching,
            lambda r: f"patching of {label} ({r.n_texts} texts x {len(r.factors)} {r.mode} factors)",
        )
        assert isinstance(result, PatchingResult)
        return result

    def control_options(
        self, projection: Mapping[str, object] | None = None, keywords: Mapping[str, object] | None = None
    ) -> ControlOptions:
        """The control options in effect: the projection's (marker keywords), then projection_control's keywords."""
        from pytest_neuronprobe.analyses.options import ControlOptions

        base = ControlOptions(projection=self.projection_options(projection))
        return ControlOptions.from_keywords(base, keywords or {}, where="@pytest.mark.projection_control")

    def control(self, label: str, options: ControlOptions | None = None) -> ControlResult:
        """The control task and input probe of this run with these options (default: the session's), once."""
        from pytest_neuronprobe.analyses.control import ControlResult, analyze_control

        options = options or self.control_options()
        result = self._analysis(
            label, options, analyze_control, lambda r: f"control task of {label} ({r.control.n_train} texts)"
        )
        assert isinstance(result, ControlResult)
        return result

    def _key(self, label: str, options: object) -> tuple[Path, str, object]:
        return self.entries[label].path, self.settings.device, options

    def _analysis(
        self,
        label: str,
        options: OptionsT,
        compute: Callable[[Probe, OptionsT, Progress | None], R],
        describe: Callable[[R], str],
    ) -> object:
        key = self._key(label, options)
        if key not in self._results:
            kind = options.kind
            result, cached, start = self._compute(
                label, options, lambda probe: compute(probe, options, self.progress(label, kind))
            )
            self._results[key] = result
            self.say(describe(result) + (" from cache" if cached else ""), start)
        return self._results[key]

    def _both(self, label: str) -> None:
        """Both default analyses of a run in one shared clean forward pass (`analyses.joint.analyze`)."""
        from pytest_neuronprobe.analyses.joint import JointOptions, analyze

        joint = JointOptions(self.projection_options(), self.patching_options())
        pkey, tkey = self._key(label, joint.projection), self._key(label, joint.patching)
        if pkey in self._results or tkey in self._results:
            return
        (proj, patch), cached, start = self._compute(
            label,
            joint,
            lambda probe: analyze(
                probe, joint.projection, joint.patching, progress=self.progress(label, "projection + patching")
            ),
        )
        assert proj is not None and patch is not None
        self._results[pkey], self._results[tkey] = proj, patch
        self.say(
            f"projection + patching of {label} ({proj.n} texts, {proj.split} split; "
            f"{len(patch.factors)} {patch.mode} factors)" + (" from cache" if cached else ""),
            start,
        )

    def _compute(self, label: str, options: object, compute: Callable[[Probe], R]) -> tuple[R, bool, float]:
        """(`compute(probe)` or its result from the on-disk cache, whether it came from the cache, the
        start time): counted and timed for the terminal summary; loading the model is not counted."""
        start = time.perf_counter()
        key = self._cache_key(label, options)
        value: object = None
        if key is not None and self.cache is not None:
            from pytest_neuronprobe.analyses.cache import expected_shape, with_run_name

            value = self.cache.get(key, expected_shape(options))
            if value is not None:  # entries carry no run identity: name the result after this session's run
                value = with_run_name(value, self.run(label).name)
        cached = value is not None
        if not cached:
            loading = time.perf_counter()
            probe = self.probe(label)  # loading the model (said on its own line) is not analysis time
            start += time.perf_counter() - loading
            value = compute(probe)
            if key is not None and self.cache is not None:
                self.cache.put(key, tuple(value) if isinstance(value, (tuple, list)) else value)
        self.counters.analysed(cached=cached, seconds=time.perf_counter() - start)
        return value, cached, start  # type: ignore[return-value]  # the cache holds what compute returned

    def _cache_key(self, label: str, options: object) -> str | None:
        if self.cache is None:
            return None
        from pytest_neuronprobe.analyses.cache import analysis_key
        from pytest_neuronprobe.core.models import resolve_device

        try:
            # the resolved device: `auto` means cuda on one machine and cpu on another
            return analysis_key(self.run(label), options, str(resolve_device(self.settings.device)))  # type: ignore[arg-type]
        except (OSError, NeuronProbeError):  # no key: the analysis itself says what is wrong
            return None

    def progress(self, label: str, kind: str) -> Progress | None:
        """A callback that says how far an analysis is every PROGRESS_SECONDS (none when quiet)."""
        if self.log is None:
            return None
        start = last = time.perf_counter()

        def step(done: int, total: int) -> None:
            nonlocal last
            now = time.perf_counter()
            if now - last >= PROGRESS_SECONDS and done < total:
                last = now
                self.say(f"{kind} of {label}: {done}/{total} texts ({done / total:.0%}, {now - start:.0f} s)")

        return step

    def dataset(self, label: str, options: ProjectionOptions | None = None) -> pd.DataFrame:
        """The dataset rows the projection analysis with these options reads (no model needed)."""
        from pytest_neuronprobe.analyses.rows import analysed_rows

        options = options or self.projection_options()
        data, _ = analysed_rows(
            self.run(label), max_samples=options.max_samples, seed=options.seed, split=options.split
        )
        frame: pd.DataFrame = data.copy()
        return frame

    def results(self, label: str) -> RunResults | None:
        """This process's default-option results of a run, with its summary (None when none were computed)."""
        from pytest_neuronprobe.report.summary import build_summary

        if label not in self.entries:
            return None
        pkey, tkey = self._key(label, self.projection_options()), self._key(label, self.patching_options())
        proj, patch = self._results.get(pkey), self._results.get(tkey)
        attr = self._results.get(self._key(label, self.attribution_options()))  # only when a test or claim asked
        if proj is None and patch is None and attr is None:
            return None
        control = self._results.get(self._key(label, self.control_options()))
        summary = build_summary(self.probe(label), proj, patch, control=control, attribution=attr)  # type: ignore[arg-type]
        return RunResults.of(label, summary, proj, patch)  # type: ignore[arg-type]

    def _summary_key(
        self, label: str, projection: bool, patching: bool, attribution: bool, options: Mapping[str, object] | None
    ) -> tuple[str, ProjectionOptions | None, PatchingOptions | None, bool]:
        from pytest_neuronprobe.analyses.options import split_keywords

        proj_kw, patch_kw = split_keywords(options or {}, where="options")
        return (
            label,
            self.projection_options(proj_kw) if projection else None,
            self.patching_options(patch_kw) if patching else None,
            attribution,
        )

    def summary(
        self,
        label: str,
        *,
        projection: bool,
        patching: bool,
        attribution: bool = False,
        options: Mapping[str, object] | None = None,
    ) -> dict[str, object]:
        """This run's summary with the analyses asked for, with the session's options or these (a claims file's
        ``options:``, checked when it was read); built once per session per options."""
        from pytest_neuronprobe.report.summary import build_summary

        key = self._summary_key(label, projection, patching, attribution, options)
        if key not in self._summaries:
            _, proj, patch, _ = key
            summary: dict[str, object] = {"run": {"name": label}}
            if proj or patch or attribution:
                summary = build_summary(
                    self.probe(label),
                    self.projection(label, proj) if proj else None,
                    self.patching(label, patch) if patch else None,
                    control=self.control(label) if proj and self.control_wanted else None,
                    attribution=self.attribution(label) if attribution else None,
                )
                summary["run"]["name"] = label  # type: ignore[index]
            self._summaries[key] = summary
        return self._summaries[key]

    def metrics(
        self,
        label: str,
        *,
        projection: bool,
        patching: bool,
        attribution: bool = False,
        options: Mapping[str, object] | None = None,
    ) -> dict[str, Metric]:
        """Flattened metrics of :meth:`summary`."""
        from pytest_neuronprobe.claims.metrics import flatten

        key = self._summary_key(label, projection, patching, attribution, options)
        if key not in self._metrics:
            summary = self.summary(
                label, projection=projection, patching=patching, attribution=attribution, options=options
            )
            self._metrics[key] = flatten(summary)
        return self._metrics[key]

    def record(self, rec: TestRecord) -> None:
        self.records.append(rec)
