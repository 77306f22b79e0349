"""The fixtures: the run, its head, model and dataset, the two analyses and the baseline.

Every fixture that needs a run is parametrized once per run (ids = run labels); without a run it
is skipped and counted, or, with --neuron-require-run, an error.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, NoReturn

import pytest

from pytest_neuronprobe.core.errors import NeuronProbeError
from pytest_neuronprobe.pytest.options import REQUIRE_RUN_MESSAGE
from pytest_neuronprobe.pytest.stash import session_of
from pytest_neuronprobe.report.terminal import NO_RUN_REASON

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from pytest_neuronprobe.analyses.attribution_fit import AttributionResult
    from pytest_neuronprobe.analyses.control import ControlResult
    from pytest_neuronprobe.analyses.patching_fit import PatchingResult
    from pytest_neuronprobe.analyses.projection import ProjectionResult
    from pytest_neuronprobe.core.heads import Head
    from pytest_neuronprobe.core.models import LoadedModel
    from pytest_neuronprobe.core.runs import Run
    from pytest_neuronprobe.pytest.session import NeuronSession

#: Numbers written as JUnit properties by the analysis fixtures (names on the result objects).
PROJECTION_PROPERTIES = ("prediction", "head", "live")
PATCHING_PROPERTIES = ("slope", "r_squared", "direct_slope")


def no_run(state: NeuronSession) -> NoReturn:
    """Skip (and count) a test that needs a run when none was given; an error with --neuron-require-run."""
    __tracebackhide__ = True
    if state.settings.require_run:
        pytest.fail(REQUIRE_RUN_MESSAGE, pytrace=False)
    state.counters.no_run += 1
    pytest.skip(NO_RUN_REASON)


def prop(value: object) -> object:
    """A JUnit property value: numbers rounded to 6 places, undefined numbers spelled out."""
    if value is None:
        return "undefined"
    try:
        f = value if isinstance(value, float) else float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return str(value)
    return "undefined" if math.isnan(f) else round(f, 6)


def marker_keywords(node: pytest.Item, name: str) -> dict[str, object]:
    """The keywords of the closest `projection`/`patching` marker (empty without one; checked at collection)."""
    marker = node.get_closest_marker(name)
    return {} if marker is None else dict(marker.kwargs)


@pytest.fixture
def _neuronprobe_run(request: pytest.FixtureRequest) -> str:
    """Internal: the label of the run this test instance uses (parametrized per run)."""
    state = session_of(request.config)
    label: str | None = getattr(request, "param", None)
    if label is None:
        no_run(state)
    request.node.user_properties.append(("neuron_run", label))
    return label


@pytest.fixture
def neuron_run(_neuronprobe_run: str, request: pytest.FixtureRequest) -> Run:
    """The probe-training run under test (`Run`: paths, config, layer, neuron, dataset).
    Tests using a run fixture run once per --neuron-run (ids = run names); without a run they
    are skipped and counted (an error with --neuron-require-run). Example:
        def test_reads_a_late_layer(neuron_run):
            assert neuron_run.layer >= 6, neuron_run
    """
    return session_of(request.config).run(_neuronprobe_run)


@pytest.fixture
def probe_head(_neuronprobe_run: str, request: pytest.FixtureRequest) -> Head:
    """The run's trained prediction head (`Head`: `.predict(x)`, `.direction(x)`, `.head_type`),
    in eval mode on the session's device. Example:
        def test_head_matches_the_config(probe_head, neuron_run):
            assert probe_head.head_type == neuron_run.head_type
    """
    return session_of(request.config).probe(_neuronprobe_run).head


@pytest.fixture
def hooked_model(_neuronprobe_run: str, request: pytest.FixtureRequest) -> LoadedModel:
    """The run's base model (`LoadedModel`: `.bridge` is the TransformerLens bridge,
    `.tokenizer`, `.device`), loaded once per session and device. Example:
        def test_neuron_hook_exists(hooked_model, neuron_run):
            assert hooked_model.has_hook(f"blocks.{neuron_run.layer}.mlp.hook_post")
    """
    return session_of(request.config).probe(_neuronprobe_run).model


@pytest.fixture
def neuron_dataset(_neuronprobe_run: str, request: pytest.FixtureRequest) -> pd.DataFrame:
    """The dataset rows the projection analysis reads (pandas DataFrame: text, activation, maybe
    split): the test split (else val, else all), subsampled by --neuron-max-samples or
    @pytest.mark.projection(max_samples=, split=, seed=). Example:
        def test_activations_vary(neuron_dataset):
            assert neuron_dataset["activation"].std() > 0
    """
    state = session_of(request.config)
    return state.dataset(_neuronprobe_run, state.projection_options(marker_keywords(request.node, "projection")))


@pytest.fixture
def projection(_neuronprobe_run: str, request: pytest.FixtureRequest) -> ProjectionResult:
    """The projection analysis (SPEC §3) of the run (`ProjectionResult`): Pearson r of
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
    state = session_of(request.config)
    result = state.projection(_neuronprobe_run, state.projection_options(marker_keywords(request.node, "projection")))
    for name in PROJECTION_PROPERTIES:
        corr = getattr(result, name)
        request.node.user_properties.append((f"projection.{name}.r", prop(corr.r)))
        request.node.user_properties.append((f"projection.{name}.ci_low", prop(corr.ci_low)))
    request.node.user_properties.append(("projection.n", result.n))
    return result


@pytest.fixture
def patching(_neuronprobe_run: str, request: pytest.FixtureRequest) -> PatchingResult:
    """The activation-patching analysis (SPEC §4) of the run (`PatchingResult`): scale,
    set or add the neuron at the read position and fit the head's prediction change on the
    activation change (`.slope`, `.fit` with its 95% interval, `.r_squared`, `.direct_slope`,
    `.per_input`). Computed once per session per (run, device, options). Example:
        @pytest.mark.patching(factors=[0.0, 0.5, 1.0, 2.0], max_samples=100)
        def test_head_follows_the_neuron(patching):
            assert patching.slope == pytest.approx(1.0, abs=0.2)
    Options: @pytest.mark.patching(mode=, factors=, texts=, max_samples=, split=, n_resamples=,
    seed=, method=).
    """
    state = session_of(request.config)
    result = state.patching(_neuronprobe_run, state.patching_options(marker_keywords(request.node, "patching")))
    for name in PATCHING_PROPERTIES:
        request.node.user_properties.append((f"patching.{name}", prop(getattr(result, name))))
    return result


@pytest.fixture
def projection_control(_neuronprobe_run: str, request: pytest.FixtureRequest) -> ControlResult:
    """Baselines for the head's r (`ControlResult`): `.control` is the control task (Hewitt & Liang
    2019: heads of the head's type and size retrained on the train rows with shuffled targets; `.r` is
    their mean r on the analysed rows, `.r_sd`/`.r_min`/`.r_max` the spread over shuffles, `.selectivity`
    the head's prediction r minus `.r`), `.input_probe` a linear probe fitted on the neuron's own input
    hook (a `Correlation`). Computed once per session per (run, device, options). Example:
        @pytest.mark.projection_control(shuffles=10)
        def test_head_beats_its_control(projection_control):
            assert projection_control.control.selectivity > 0.5
    Options: the texts and seed of @pytest.mark.projection(...), and
    @pytest.mark.projection_control(shuffles=, steps=).
    """
    state = session_of(request.config)
    options = state.control_options(
        marker_keywords(request.node, "projection"), marker_keywords(request.node, "projection_control")
    )
    result = state.control(_neuronprobe_run, options)
    request.node.user_properties.append(("projection.control.r", prop(result.control.r)))
    request.node.user_properties.append(("projection.control.selectivity", prop(result.control.selectivity)))
    request.node.user_properties.append(("projection.input_probe.r", prop(result.input_probe.r)))
    return result


@pytest.fixture
def attribution(_neuronprobe_run: str, request: pytest.FixtureRequest) -> AttributionResult:
    """The attribution sweep of the run (`AttributionResult`): which units (MLP neurons `L2.N470`, with
    heads=True attention heads `L3.H5`) the head's prediction depends on at the read position. Every unit's
    effect is estimated to first order; the top k (default 20) and the target are verified by exact patching
    (`.verified`, largest exact effect first, each with a 95% interval), and `.target_rank`,
    `.target_share`, `.spearman`, `.trustworthy` say where the target ranks and whether the estimates hold.
    Computed only when a test or claim asks, once per session per (run, device, options). Example:
        @pytest.mark.attribution(k=10)
        def test_head_reads_its_neuron(attribution):
            assert attribution.top[0] == attribution.target, attribution
    Options: @pytest.mark.attribution(k=, ablation="mean"|"zero", heads=, max_samples=, split=,
    n_resamples=, seed=).
    """
    state = session_of(request.config)
    options = state.attribution_options(marker_keywords(request.node, "attribution"))
    result = state.attribution(_neuronprobe_run, options)
    request.node.user_properties.append(("attribution.top[0]", result.top[0] if result.top else "none"))
    request.node.user_properties.append(("attribution.target.rank", prop(result.target_rank)))
    return result


@pytest.fixture
def neuron_baseline(_neuronprobe_run: str, request: pytest.FixtureRequest) -> dict[str, object]:
    """The baseline summary.json dict of this run (from --neuron-baseline), to compare with;
    the baseline's summary this run pairs with (its name, else its neuron, else a single-summary baseline;
    --neuron-baseline-run forces one); skipped, with the reason, when no baseline is given or none pairs
    with the run (also while --neuron-update-baseline writes the first one). Example:
        def test_head_no_worse(projection, neuron_baseline):
            before = neuron_baseline["projections"]["head"]["correlation"]
            assert projection.head.r >= before - 0.05
    """
    state = session_of(request.config)
    try:
        summary, reason = state.baseline_for(_neuronprobe_run)
    except NeuronProbeError as exc:  # an ambiguous pairing of a run pinned by a marker
        pytest.fail(str(exc), pytrace=False)
    if summary is None:
        state.counters.no_baseline += 1
        pytest.skip(reason)
    return summary


FIXTURES = (
    _neuronprobe_run,
    neuron_run,
    probe_head,
    hooked_model,
    neuron_dataset,
    projection,
    patching,
    projection_control,
    attribution,
    neuron_baseline,
)
