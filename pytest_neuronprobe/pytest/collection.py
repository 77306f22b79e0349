"""Collection: marker checks, one parametrization per run, and what the session will need."""

from __future__ import annotations

from pathlib import Path

import pytest

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
    "attribution(**options): options of the attribution sweep this test receives ({keywords})",
    "neuron_run(path, ...): run this test on these run directories/globs (relative to the test file) "
    "instead of --neuron-run",
)


def register_markers(config: pytest.Config) -> None:
    from pytest_neuronprobe.analyses.options import AttributionOptions, PatchingOptions, ProjectionOptions

    keywords = (ProjectionOptions.KEYWORDS, PatchingOptions.KEYWORDS, AttributionOptions.KEYWORDS, ())
    for line, names in zip(MARKERS, keywords, strict=True):
        config.addinivalue_line("markers", line.format(keywords=", ".join(names)))


def check_markers(definition: pytest.Function, state: NeuronSession) -> None:
    """Validate the analysis markers' keywords (an OptionError names the bad one and what is accepted)."""
    from pytest_neuronprobe.analyses.options import AttributionOptions, PatchingOptions, ProjectionOptions

    for name, accepted, resolve in (
        ("projection", ProjectionOptions.KEYWORDS, state.projection_options),
        ("patching", PatchingOptions.KEYWORDS, state.patching_options),
        ("attribution", AttributionOptions.KEYWORDS, state.attribution_options),
    ):
        marker = definition.get_closest_marker(name)
        if marker is None:
            continue
        if marker.args:
            raise OptionError(
                f"@pytest.mark.{name} takes keyword arguments only ({', '.join(accepted)}); "
                f"got positional {list(marker.args)!r}"
            )
        resolve(marker.kwargs)


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
    try:
        check_markers(definition, state)
        pinned = pinned_paths(definition)
    except OptionError as exc:
        raise pytest.Collector.CollectError(f"usage error in {definition.nodeid}: {exc}") from None
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
    needs = [item.needs for item in items if isinstance(item, ClaimItem)]
    wants_projection = "projection" in fixtures or any(n[0] for n in needs)
    wants_patching = "patching" in fixtures or any(n[1] for n in needs)
    settings = state.settings
    state.joint = bool(settings.report_dir or settings.update_baseline or (wants_projection and wants_patching))
