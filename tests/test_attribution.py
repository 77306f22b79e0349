"""The attribution sweep against known answers (constructed heads) and against values computed another way."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from pytest_neuronprobe.analyses import attribution as attribution_module
from pytest_neuronprobe.analyses.attribution import analyze_attribution, unit_sites
from pytest_neuronprobe.analyses.options import AttributionOptions, PatchingOptions
from pytest_neuronprobe.analyses.patching import analyze_patching
from pytest_neuronprobe.core.errors import OptionError
from pytest_neuronprobe.core.models import batches
from pytest_neuronprobe.core.probe import Probe, open_probe
from pytest_neuronprobe.core.runs import load_run
from tests.conftest import TINY_LAYER
from tests.run_copies import config_path, copy_run, model_dir

FAST = {"n_resamples": 200}
L = TINY_LAYER


def _with_head(run: Path, tmp: Path, feature_hook: str, weight: torch.Tensor) -> Probe:
    """A copy of `run` whose head is the linear map `weight` on `feature_hook` (bias 0)."""
    dest = copy_run(run, tmp)
    head = model_dir(dest) / "head.safetensors"
    for old in model_dir(dest).glob("head.*"):
        old.unlink()
    save_file({"output.weight": weight[None].float().contiguous(), "output.bias": torch.zeros(1)}, str(head))
    config = json.loads(config_path(dest).read_text())
    config["feature_hook"] = feature_hook
    config_path(dest).write_text(json.dumps(config))
    return open_probe(load_run(dest), "cpu")


def _texts(probe: Probe) -> list[str]:
    return list(probe.run.analysed()["text"])


def _post(probe: Probe, layer: int = L) -> torch.Tensor:
    """The layer's MLP activations at each text's read position, read by the plain batched reader."""
    return probe.read(_texts(probe), [f"blocks.{layer}.mlp.hook_post"])[f"blocks.{layer}.mlp.hook_post"].double()


@pytest.fixture(scope="module")
def reads_neuron_m(regression_run: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Probe, int]:
    """A head on blocks.L.hook_mlp_out reading neuron M's output direction W_out[M] / |W_out[M]|², M the
    layer's most variable neuron: its prediction moves one-for-one with a_M."""
    probe = open_probe(load_run(regression_run), "cpu")
    m = int(_post(probe).std(0).argmax())
    w_out = probe.model.W_out(L)[m]
    probe = _with_head(
        regression_run, tmp_path_factory.mktemp("m"), f"blocks.{L}.hook_mlp_out", w_out / w_out.dot(w_out)
    )
    return probe, m


def test_a_head_reading_a_neurons_write_ranks_it_first_with_its_exact_effect(reads_neuron_m):
    probe, m = reads_neuron_m
    result = analyze_attribution(probe, AttributionOptions(k=5, **FAST))
    a = _post(probe)[:, m].numpy()
    assert result.top[0] == f"L{L}.N{m}"
    top = result.verified[0]
    assert top.effect == pytest.approx(np.abs(a - a.mean()).mean(), abs=1e-5)
    assert top.effect_signed == pytest.approx(0.0, abs=1e-5)  # a linear path cancels under mean ablation
    assert top.ablated_to == pytest.approx(a.mean(), abs=1e-6)
    assert top.ci_low <= top.effect <= top.ci_high
    assert top.direct == pytest.approx(top.effect, abs=1e-5)  # the direct path is the whole path


def test_zero_ablation_moves_the_prediction_by_the_activation_itself(reads_neuron_m):
    probe, m = reads_neuron_m
    result = analyze_attribution(probe, AttributionOptions(k=3, ablation="zero", n_resamples=0))
    unit = result.unit(f"L{L}.N{m}")
    assert unit is not None
    assert unit.effect == pytest.approx(np.abs(_post(probe)[:, m].numpy()).mean(), abs=1e-5)
    assert unit.ablated_to == 0.0
    assert np.isnan(float(unit.ci_low))  # no resamples: no interval, and it says why
    assert unit.as_dict()["ci_low_reason"]


def test_on_a_linear_path_every_estimate_is_the_exact_effect(reads_neuron_m):
    """Layer L's neurons reach hook_mlp_out of layer L linearly: first order is exact for each of them."""
    probe, _ = reads_neuron_m
    result = analyze_attribution(probe, AttributionOptions(k=8, n_resamples=0))
    own_layer = [v for v in result.verified if v.layer == L]
    assert own_layer
    for v in own_layer:
        assert v.estimate == pytest.approx(v.effect, abs=1e-5), v
        assert v.estimate_signed == pytest.approx(v.effect_signed, abs=1e-5), v
    assert result.trustworthy


def test_a_head_reading_the_targets_own_hook_ranks_the_target_first(regression_run, tmp_path):
    base = load_run(regression_run)
    hook = f"blocks.{L}.mlp.hook_post"
    probe = _with_head(regression_run, tmp_path, hook, torch.eye(open_probe(base, "cpu").model.d_mlp)[base.neuron])
    result = analyze_attribution(probe, AttributionOptions(k=4, n_resamples=0))
    a = _post(probe)[:, base.neuron].numpy()
    assert result.top[0] == result.target == f"L{L}.N{base.neuron}"
    assert result.target_rank == 1.0 and result.target_rank_estimate == 1.0
    assert result.verified[0].effect == pytest.approx(np.abs(a - a.mean()).mean(), abs=1e-5)
    # other neurons of the same layer do not touch the target's own value
    assert all(
        v.effect == pytest.approx(0.0, abs=1e-7) for v in result.verified if v.layer == L and v.unit != result.target
    )


def test_heads_are_units_too_and_exact_on_their_linear_path(regression_run, tmp_path):
    """A head on blocks.L.hook_attn_out: layer L's attention heads write into it linearly (z @ W_O)."""
    probe0 = open_probe(load_run(regression_run), "cpu")
    g = torch.Generator().manual_seed(0)
    probe = _with_head(
        regression_run, tmp_path, f"blocks.{L}.hook_attn_out", torch.randn(probe0.model.d_model, generator=g)
    )
    result = analyze_attribution(probe, AttributionOptions(k=6, heads=True, n_resamples=0))
    heads = [v for v in result.verified if v.kind == "H"]
    assert heads and all(v.layer == L for v in heads[:1])
    for v in heads:
        if v.layer == L:
            assert v.estimate == pytest.approx(v.effect, abs=1e-5), v
            assert v.direct == pytest.approx(v.effect, abs=1e-5), v
    n_heads = int(probe.model.bridge.cfg.n_heads)
    assert result.n_units == n_heads * (L + 1) + probe.model.d_mlp * L  # layer L's MLP is computed after attn_out


def test_the_exact_effect_equals_patchings_set_mode_on_that_unit(hidden_run):
    """The trained hidden-layer head (non-linear): ablating the target to its mean = patching `set` to it."""
    probe = open_probe(load_run(hidden_run), "cpu")
    result = analyze_attribution(probe, AttributionOptions(k=3, n_resamples=0))
    target = result.unit(str(result.target))
    assert target is not None
    patched = analyze_patching(probe, PatchingOptions(mode="set", factors=[float(target.ablated_to)], n_resamples=0))
    change = patched.arrays["patched_prediction"][:, 0] - patched.arrays["prediction"]
    assert target.effect == pytest.approx(np.abs(change).mean(), abs=1e-5)
    assert target.effect_signed == pytest.approx(change.mean(), abs=1e-5)


def test_exact_effects_equal_full_forward_passes_one_unit_at_a_time(hidden_run):
    """The single-token verification against the slow way: one full patched forward pass per unit."""
    probe = open_probe(load_run(hidden_run), "cpu")
    result = analyze_attribution(probe, AttributionOptions(k=4, heads=True, n_resamples=0))
    texts = _texts(probe)
    clean = probe.head.predict(probe.read(texts, [probe.feature_hook])[probe.feature_hook]).double()
    for v in result.verified:
        hook = f"blocks.{v.layer}.{'attn.hook_z' if v.kind == 'H' else 'mlp.hook_post'}"
        mean = probe.read(texts, [hook])[hook].mean(0)[v.index]

        def patch(act, rows, pos, index=v.index, mean=mean):
            act = act.clone()
            act[rows, pos, index] = mean
            return act

        x = probe.read(texts, [probe.feature_hook], patch=(hook, patch))[probe.feature_hook]
        change = probe.head.predict(x).double() - clean
        assert v.effect == pytest.approx(float(change.abs().mean()), abs=1e-5), v


@pytest.mark.parametrize(
    ("constant", "value"),
    [
        ("HOLD_BYTES", 0),  # take the means in a pass of their own instead of holding per-text numbers
        ("MAX_BATCH_TOKENS", 40),  # batches of a few texts, as long texts get
    ],
)
def test_how_the_sweep_is_batched_or_held_changes_no_number(reads_neuron_m, monkeypatch, constant, value):
    probe, _ = reads_neuron_m
    default = analyze_attribution(probe, AttributionOptions(k=4, n_resamples=0))
    monkeypatch.setattr(attribution_module, constant, value)
    other = analyze_attribution(probe, AttributionOptions(k=4, n_resamples=0))
    np.testing.assert_allclose(other.arrays["estimate"], default.arrays["estimate"], rtol=1e-5, atol=1e-7)
    assert [u.unit for u in other.verified] == [u.unit for u in default.verified]
    np.testing.assert_allclose([u.effect for u in other.verified], [u.effect for u in default.verified], atol=1e-6)


def test_batches_end_at_their_token_budget():
    lengths = [10, 3, 3, 10, 3, 30]
    toks = [[1] * n for n in lengths]
    got = [
        [lengths[i] for i in b.rows]
        for b in batches(toks, np.zeros(6), batch_size=32, pad_id=0, device=torch.device("cpu"), max_tokens=20)
    ]
    assert got == [[3, 3, 3], [10, 10], [30]]  # 4 x 10 > 20; a text longer than the budget is a batch of one


def test_units_are_the_layers_the_feature_can_see(regression_run, tmp_path):
    probe = open_probe(load_run(regression_run), "cpu")
    assert [(s.layer, s.kind) for s in unit_sites(probe, heads=False)] == [(layer, "N") for layer in range(L + 1)]
    early = _with_head(regression_run, tmp_path, "blocks.0.hook_resid_mid", torch.ones(probe.model.d_model))
    assert unit_sites(early, heads=False) == []
    assert [(s.layer, s.kind) for s in unit_sites(early, heads=True)] == [(0, "H")]


def test_a_target_the_feature_cannot_see_has_undefined_ranks_saying_why(regression_run, tmp_path):
    probe0 = open_probe(load_run(regression_run), "cpu")
    probe = _with_head(regression_run, tmp_path, f"blocks.{L}.hook_resid_mid", torch.ones(probe0.model.d_model))
    with pytest.warns(RuntimeWarning, match="do not rank the verified units"):
        result = analyze_attribution(probe, AttributionOptions(k=2, n_resamples=0))
    assert not result.trustworthy
    assert result.target_rank != 1 and "cannot reach" in repr(result.target_rank)
    section = result.as_dict()["target"]
    assert section["rank"] is None and "cannot reach" in section["rank_reason"]


def test_the_repr_names_the_top_units_the_target_and_the_trust(reads_neuron_m):
    probe, m = reads_neuron_m
    text = repr(analyze_attribution(probe, AttributionOptions(k=2, n_resamples=0)))
    assert f"top: L{L}.N{m} " in text and f"target L{L}.N{probe.neuron} rank" in text and "spearman" in text


def test_bad_options_name_the_option():
    with pytest.raises(OptionError, match="attribution option ablation"):
        AttributionOptions(ablation="resample")
    with pytest.raises(OptionError, match="k="):
        AttributionOptions.from_keywords(AttributionOptions(), {"k": 0}, where="@pytest.mark.attribution")
    with pytest.raises(OptionError, match="unknown keyword"):
        AttributionOptions.from_keywords(AttributionOptions(), {"topk": 3}, where="@pytest.mark.attribution")


# ----------------------------------------------------------------------------- the direct path (item 3)


def test_a_head_on_hook_mlp_out_has_a_direct_path_equal_to_the_measured_slope(regression_run, tmp_path):
    """The neuron writes W_out[n] into its layer's hook_mlp_out linearly: direct slope = measured slope, R² = 1."""
    probe0 = open_probe(load_run(regression_run), "cpu")
    g = torch.Generator().manual_seed(1)
    probe = _with_head(
        regression_run, tmp_path, f"blocks.{L}.hook_mlp_out", torch.randn(probe0.model.d_model, generator=g)
    )
    result = analyze_patching(probe, PatchingOptions(n_resamples=0))
    expected = float(probe.model.W_out(L)[probe.neuron].double() @ probe.head.output_weight[0].double())
    assert result.slope == pytest.approx(expected, rel=1e-4)
    assert result.direct_slope == pytest.approx(expected, rel=1e-4)
    assert result.r_squared == pytest.approx(1.0, abs=1e-6)


def test_no_direct_path_is_undefined_with_its_reason_in_the_summary(regression_run, tmp_path):
    from pytest_neuronprobe.report.summary import build_summary

    probe0 = open_probe(load_run(regression_run), "cpu")
    early = _with_head(regression_run, tmp_path, "blocks.0.hook_mlp_out", torch.ones(probe0.model.d_model))
    assert analyze_patching(early, PatchingOptions(n_resamples=0)).direct_slope == 0.0  # computed before the neuron
    later = _with_head(regression_run, tmp_path / "later", "ln_final.hook_normalized", torch.ones(probe0.model.d_model))
    patching = analyze_patching(later, PatchingOptions(n_resamples=0))
    summary = build_summary(later, None, patching)
    section = summary["patching"]
    assert section["direct_slope"] is None and "no direct path" in section["direct_slope_reason"]
    assert section["direct_fraction"] is None and section["direct_fraction_reason"]


def test_every_null_number_in_a_summary_has_its_reason(hidden_run):
    from pytest_neuronprobe.analyses.joint import analyze
    from pytest_neuronprobe.analyses.options import ProjectionOptions
    from pytest_neuronprobe.report.summary import build_summary

    probe = open_probe(load_run(hidden_run), "cpu")
    projection, patching = analyze(
        probe, ProjectionOptions(n_resamples=0, null_directions=5), PatchingOptions(n_resamples=0)
    )
    attribution = analyze_attribution(probe, AttributionOptions(k=2, n_resamples=0))
    summary = build_summary(probe, projection, patching, attribution=attribution)
    nulls = []

    def walk(node, path):
        if isinstance(node, dict):
            for key, value in node.items():
                if value is None and not key.endswith("_reason") and f"{key}_reason" not in node:
                    nulls.append(f"{path}.{key}")
                if not key.endswith("options"):  # option values (max_samples None = all texts), not numbers
                    walk(value, f"{path}.{key}")
        elif isinstance(node, list):
            for i, item in enumerate(node):
                walk(item, f"{path}[{i}]")

    walk({k: v for k, v in summary.items() if k not in ("provenance", "run", "projection_options")}, "summary")
    assert nulls == []
    assert summary["attribution"]["verified"][0]["ci_low_reason"]  # n_resamples=0: no interval, and why


# ----------------------------------------------------------------------------- claims on unit names


def test_claims_compare_unit_names_and_fail_on_numbers():
    from pytest_neuronprobe.claims.metrics import Metric
    from pytest_neuronprobe.claims.verdicts import evaluate, parse_claim

    metrics = {
        "attribution.top[0]": Metric("attribution.top[0]", 0.31, 0.28, 0.34, has_interval=True, text="L2.N470"),
        "attribution.spearman": Metric("attribution.spearman", 0.9),
    }
    assert evaluate(parse_claim("attribution.top[0] == L2.N470"), metrics).passed
    failed = evaluate(parse_claim("attribution.top[0] == L2.N47"), metrics)
    assert not failed.passed and "attribution.top[0] is L2.N470 (value 0.31)" in failed.message
    assert evaluate(parse_claim("attribution.top[0] >= 0.3"), metrics).passed is False  # judged on ci_low 0.28
    assert not evaluate(parse_claim("attribution.spearman == L1.H2"), metrics).passed
    missing = evaluate(parse_claim("attribution.top[3] == L1.H2"), metrics)
    assert "verified fewer units" in missing.message
