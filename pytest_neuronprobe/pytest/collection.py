"""Collection: marker checks, one parametrization per run, and what the session will need."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_neuronprobe.claims.metrics import needs_control
from pytest_neuronprobe.core.errors import NeuronProbeError, OptionError
from pytest_neuronprobe.pytest.items import ClaimItem
from pytest_neuronprobe.pytest.session import NeuronSession
from pytest_neuronprobe.pytest.stash import RECORD_KEY, RUN_PARAM, ItemOutcome, session_of

RUN_MARKER_KEYWORDS = ("path",)
MARKERS = (
    "projection(**options): options of the projection analysis this test receives ({keywords}); "
    "wins over --neuron-max-samples",
    "patching(**options): options of the patching analysis this test receives ({keywords}); "
    "wins over --neuron-max-samples",
    "projection_control(**options): options of the control task this test's `projection_control` receives "
    "({keywords}); which texts and the seed come from @pytest.mark.projection",
    "attribution(**options): options of the attribution sweep this test receives ({keywords})",
    "neuron_run(path, ...): run this test on these run directories/globs (relative to the test file) "
    "instead of --neuron-run",
)


def register_markers(config: pytest.Config) -> None:
    from pytest_neuronprobe.analyses.options import (
        AttributionOptions,
        ControlOptions,
        PatchingOptions,
        ProjectionOptions,
    )

    keywords = (
        ProjectionOptions.KEYWORDS,
        PatchingOptions.KEYWORDS,
        ControlOptions.KEYWORDS,
        AttributionOptions.KEYWORDS,
        (),
    )
    for line, names in zip(MARKERS, keywords, strict=True):
        config.addinivalue_line("markers", line.format(keywords=", ".join(names)))


def check_markers(definition: pytest.Function, state: NeuronSession) -> list[str]:
    """Every problem with the analysis markers' keywords (each names the bad one and what is accepted)."""
    from pytest_neuronprobe.analyses.options import (
        AttributionOptions,
        ControlOptions,
        PatchingOptions,
        ProjectionOptions,
    )

    problems = []
    for name, accepted, resolve in (
        ("projection", ProjectionOptions.KEYWORDS, state.projection_options),
        ("patching", PatchingOptions.KEYWORDS, state.patching_options),
        ("projection_control", ControlOptions.KEYWORDS, lambda kw: state.control_options(None, kw)),
        ("attribution", AttributionOptions.KEYWORDS, state.attribution_options),
    ):
        marker = definition.get_closest_marker(name)
        if marker is None:
            continue
        if marker.args:
            problems.append(
                f"@pytest.mark.{name} takes keyword arguments only ({', '.join(accepted)}); "
                f"got positional {list(marker.args)!r}"
            )
            continue
        try:
            resolve(marker.kwargs)
        except OptionError as exc:
            problems.append(str(exc))
    return problems


class MarkerError(pytest.Collector.CollectError):
    """A test's neuronprobe markers are wrong: reported for that test alone (see :func:`bad_markers`)."""


class BadMarkers(pytest.Collector):
    """Stands in for a test whose markers are wrong, so its module's other tests are still collected (and
    their errors reported in the same session) while the session stops before any test runs."""

    def __init__(self, *, message: str, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.message = message

    def collect(self) -> list[pytest.Item | pytest.Collector]:
        raise self.CollectError(self.message)


def bad_markers(collector: pytest.Collector, name: str, error: MarkerError) -> BadMarkers:
    """The node that reports test ``name``'s marker problems in place of the test."""
    return BadMarkers.from_parent(collector, name=name, message=str(error))


def pinned_paths(definition: pytest.Function) -> list[str] | None:
    """The run paths of `@pytest.mark.neuron_run(...)`, or None without that marker."""
    marker = definition.get_closest_marker("neuron_run")
    if marker is None:
        return None
    unknown = [k for k in marker.kwargs if k not in RUN_MARKER_KEYWORDS]
    if unknown:
        raise OptionError(
            f"@pytest.mark.neuron_run got unknown keyword(s) {', '.join(map(repr, unknown))}; "
            f"accepted: a path (positional or path=...)"
        )
    paths = [*marker.args, *([marker.kwargs["path"]] if "path" in marker.kwargs else [])]
    if not paths or not all(isinstance(p, (str, Path)) for p in paths):
        raise OptionError(
            "@pytest.mark.neuron_run needs one or more run paths, e.g. @pytest.mark.neuron_run('runs/neuron_l8_n481')"
        )
    return [str(p) for p in paths]


def parametrize(metafunc: pytest.Metafunc) -> None:
    """Check the neuronprobe markers; parametrize a run-dependent test once per run (ids = run labels)."""
    definition = metafunc.definition
    state = session_of(metafunc.config)
    problems = check_markers(definition, state)
    try:
        pinned = pinned_paths(definition)
    except OptionError as exc:
        problems.append(str(exc))
    if problems:
        raise MarkerError("\n".join(f"usage error in {definition.nodeid}: {p}" for p in problems))
    if RUN_PARAM not in metafunc.fixturenames:
        return
    if pinned is not None:
        try:
            labels = state.pin(pinned, Path(definition.path).parent)
        except NeuronProbeError as exc:
            raise pytest.Collector.CollectError(f"@pytest.mark.neuron_run in {definition.nodeid}: {exc}") from None
    else:
        labels = list(state.cli_labels)
    if labels:
        metafunc.parametrize(RUN_PARAM, labels, indirect=True, ids=labels)


def plan(items: list[pytest.Item], state: NeuronSession) -> None:
    """Remember the collection order (the report lists tests so); decide whether analyses share a pass."""
    for i, item in enumerate(items):
        item.stash[RECORD_KEY] = ItemOutcome(order=i)
    fixtures = {name for item in items for name in getattr(item, "fixturenames", ())}
    claim_items = [item for item in items if isinstance(item, ClaimItem)]
    needs = [item.needs for item in claim_items]
    wants_projection = "projection" in fixtures or any(n[0] for n in needs)
    wants_patching = "patching" in fixtures or any(n[1] for n in needs)
    settings = state.settings
    # the report shows the control task, the history records every headline metric, claims may need it
    wanted = bool(settings.report_dir or settings.history_dir)
    state.control_wanted = wanted or any(needs_control([item.claim.metric]) for item in claim_items)
    state.joint = bool(settings.report_dir or settings.update_baseline or (wants_projection and wants_patching))
