"""Projection and patching analyses against a slow, independent one-text-at-a-time reference.

The reference boots its own bridge, tokenises each text alone with the HF tokenizer (no padding, so the
last token is simply index -1), computes heads from the raw state dict, directions by central finite
differences, and statistics with numpy/scipy directly.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.stats
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from pytest_neuronprobe.analyses.options import PatchingOptions, ProjectionOptions
from pytest_neuronprobe.analyses.patching import analyze_patching
from pytest_neuronprobe.analyses.projection import analyze_projection
from pytest_neuronprobe.build.corpus import generate_corpus
from pytest_neuronprobe.build.lm import build_lm, tiny_lm
from pytest_neuronprobe.core.probe import open_probe
from pytest_neuronprobe.core.runs import load_run

TOL = 1e-4
N_TEXTS = 24


class Reference:
    """A separately booted bridge and a one-text-at-a-time forward."""

    def __init__(self, lm_dir: Path, processing: str) -> None:
        from transformer_lens.model_bridge import TransformerBridge
        from transformers import AutoTokenizer

        self.bridge = TransformerBridge.boot_transformers(str(lm_dir), device="cpu")
        self.bridge.enable_compatibility_mode(disable_warnings=True, no_processing=processing == "raw")
        self.bridge.eval()
        for param in self.bridge.parameters():
            param.requires_grad_(False)
        self.tok = AutoTokenizer.from_pretrained(str(lm_dir))
        self.n_layers = self.bridge.cfg.n_layers

    def ids(self, text: str, prepend_bos: bool) -> torch.Tensor:
        ids = self.tok(text)["input_ids"]
        if prepend_bos:
            ids = [self.tok.bos_token_id, *ids]
        return torch.tensor([ids])

    def read(
        self,
        text: str,
        hooks: list[str],
        *,
        prepend_bos: bool = False,
        pos: int = -1,
        patch: tuple[str, int, callable] | None = None,
    ) -> dict[str, torch.Tensor]:
        got: dict[str, torch.Tensor] = {}

        def make(name):
            def fn(value, hook):
                if patch is not None and name == patch[0]:
                    value = value.clone()
                    value[0, pos, patch[1]] = patch[2](value[0, pos, patch[1]])
                if name in hooks:
                    got[name] = value[0, pos].detach().clone()
                return value

            return fn

        names = list(dict.fromkeys([*([patch[0]] if patch else []), *hooks]))
        with torch.no_grad():
            logits = self.bridge.run_with_hooks(self.ids(text, prepend_bos), fwd_hooks=[(n, make(n)) for n in names])
        got["logits"] = logits[0, pos].detach().clone()
        return got


def ref_predict(
    kind: str,
    state: dict,
    x: torch.Tensor,
    bin_edges=None,
    ref: Reference | None = None,
    digits=None,
    smooth: bool = False,
) -> torch.Tensor:
    """SPEC §2 written out directly, on a `[N, d]` batch in float64."""
    x = x.double()
    if kind == "token":
        logits = ref.bridge.unembed(ref.bridge.ln_final(x.float())).double()[:, digits]
        return (logits.softmax(-1) * torch.arange(10, dtype=torch.float64)).sum(-1)
    s = {k: v.double() for k, v in state.items()}
    h = F.gelu(x @ s["hidden.weight"].T + s["hidden.bias"]) if "hidden.weight" in s else x
    out = h @ s["output.weight"].T + s["output.bias"]
    if kind == "regression":
        return out[:, 0]
    if bin_edges is not None:
        e = torch.tensor(bin_edges, dtype=torch.float64)
        return (out.softmax(-1) * (e[:-1] + e[1:]) / 2).sum(-1)
    if smooth:  # the documented differentiable stand-in for argmax, used for the direction only
        return (out.softmax(-1) * torch.arange(out.shape[1], dtype=torch.float64)).sum(-1)
    return out.argmax(-1).double()


def fd_gradient(fn, x: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """Central finite differences of fn ([N, d] -> [N]) at each row of x."""
    x = x.double()
    grads = torch.empty_like(x)
    for j in range(x.shape[1]):
        e = torch.zeros_like(x)
        e[:, j] = eps
        grads[:, j] = (fn(x + e) - fn(x - e)) / (2 * eps)
    return grads


def write_run(
    root: Path,
    lm_dir: Path,
    *,
    layer: int,
    neuron: int,
    head_type: str,
    state: dict,
    ref: Reference,
    texts: list[str],
    extra: dict | None = None,
    split: list[str] | None = None,
) -> Path:
    """A run in the seed layout, its dataset made by the reference forward."""
    extra = extra or {}
    layer_type = extra.get("layer_type", "post")
    hook = {"post": f"blocks.{layer}.mlp.hook_post", "pre": f"blocks.{layer}.mlp.hook_pre"}.get(layer_type, layer_type)
    pos = extra.get("token_pos", "last")
    acts = [
        float(
            ref.read(t, [hook], prepend_bos=extra.get("prepend_bos", False), pos=-1 if pos == "last" else pos)[hook][
                neuron
            ]
        )
        for t in texts
    ]
    name = f"neuron_l{layer}_n{neuron}_t"
    (root / "datasets").mkdir(parents=True)
    frame = pd.DataFrame({"text": texts, "activation": acts})
    if split is not None:
        frame["split"] = split
    frame.to_csv(root / "datasets" / f"{name}.csv", index=False)
    best = root / "models" / name / "best_model"
    best.mkdir(parents=True)
    config = {
        "head_type": head_type,
        "base_model_name": "tiny",
        "base_model_path": str(lm_dir),
        "target_layer": layer,
        "target_neuron": neuron,
        **extra,
    }
    (best / "config.json").write_text(json.dumps(config))
    save_file({k: v.contiguous() for k, v in state.items()}, str(best / "head.safetensors"))
    return root


@pytest.fixture(scope="module")
def lms(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("lms")
    return {
        "tiny": tiny_lm(base / "tiny", seed=0),
        "three": build_lm(
            base / "three",
            n_layer=3,
            n_embd=48,
            n_head=4,
            vocab_size=300,
            train_steps=20,
            seed=1,
            texts=generate_corpus(300, seed=1),
        ),
    }


@pytest.fixture(scope="module")
def texts() -> list[str]:
    """Short texts (well inside the tiny models' 64-token context), distinct."""
    short = dict.fromkeys(" ".join(t.split()[:7]) for t in generate_corpus(4 * N_TEXTS, seed=7))
    return list(short)[:N_TEXTS]


def _heads(d: int, d_mlp: int, seed: int) -> dict[str, tuple[str, dict, dict]]:
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g) * 0.3  # noqa: E731
    return {
        "linear": ("regression", {"output.weight": r(1, d), "output.bias": r(1)}, {}),
        "hidden": (
            "regression",
            {"hidden.weight": r(16, d), "hidden.bias": r(16), "output.weight": r(1, 16), "output.bias": r(1)},
            {"head_config": {"hidden_dim": 16}},
        ),
        "bins": (
            "classification",
            {"output.weight": r(4, d), "output.bias": r(4)},
            {"bin_edges": [-1.0, 0.0, 0.5, 1.0, 3.0]},
        ),
        "argmax": ("classification", {"output.weight": r(3, d), "output.bias": r(3)}, {}),
        "token": ("token", {}, {}),
    }


CASES = [
    # (lm, layer, neuron, head, extra config)
    ("tiny", 1, 5, "linear", {}),
    ("tiny", 0, 17, "hidden", {}),
    ("tiny", 1, 3, "bins", {"prepend_bos": True}),
    ("tiny", 1, 9, "argmax", {"processing": "raw"}),
    ("tiny", 1, 2, "token", {}),
    ("three", 1, 40, "linear", {"layer_type": "pre", "token_pos": 2}),
    ("three", 1, 11, "hidden", {"feature_layer": 1}),
    ("three", 2, 7, "token", {"prepend_bos": True, "processing": "raw"}),
]


@pytest.fixture(
    scope="module", params=CASES, ids=[f"{c[0]}-L{c[1]}N{c[2]}-{c[3]}-{'-'.join(c[4]) or 'default'}" for c in CASES]
)
def case(request, lms, texts, tmp_path_factory):
    lm_name, layer, neuron, head_name, extra = request.param
    lm_dir = lms[lm_name]
    ref = Reference(lm_dir, extra.get("processing", "compat"))
    d, d_mlp = ref.bridge.cfg.d_model, ref.bridge.cfg.d_mlp
    head_type, state, head_extra = _heads(d, d_mlp, seed=layer * 100 + neuron)[head_name]
    root = tmp_path_factory.mktemp("run") / f"{head_name}-neuron_l{layer}_n{neuron}"
    write_run(
        root,
        lm_dir,
        layer=layer,
        neuron=neuron,
        head_type=head_type,
        state=state,
        ref=ref,
        texts=texts,
        extra={**extra, **head_extra},
    )
    return {
        "root": root,
        "ref": ref,
        "state": state,
        "head_type": head_type,
        "extra": {**extra, **head_extra},
        "layer": layer,
        "neuron": neuron,
    }


def _reference_projection(case, texts):
    ref, layer, n, extra = case["ref"], case["layer"], case["neuron"], case["extra"]
    last = ref.n_layers - 1
    layer_type = extra.get("layer_type", "post")
    neuron_hook = f"blocks.{layer}.mlp.hook_{layer_type}"
    if case["head_type"] == "token":
        feature = f"blocks.{last}.hook_resid_post"
    else:
        feature = f"blocks.{extra.get('feature_layer', -1) % ref.n_layers}.hook_resid_post"
    hooks = [
        neuron_hook,
        feature,
        f"blocks.{layer}.hook_resid_mid",
        f"blocks.{layer}.hook_resid_post",
        f"blocks.{last}.hook_resid_post",
    ]
    pos = extra.get("token_pos", "last")
    rows = [
        ref.read(t, hooks, prepend_bos=extra.get("prepend_bos", False), pos=-1 if pos == "last" else pos) for t in texts
    ]
    stack = {h: torch.stack([r[h] for r in rows]).double() for h in hooks}
    digits = [ref.tok.encode(str(i), add_special_tokens=False)[0] for i in range(10)]

    def predict(x: torch.Tensor, smooth: bool = False) -> torch.Tensor:
        return ref_predict(case["head_type"], case["state"], x, extra.get("bin_edges"), ref, digits, smooth)

    x = stack[feature]
    grads = fd_gradient(lambda x: predict(x, smooth=True), x)
    direction = grads.mean(0)
    w_in = ref.bridge.blocks[layer].mlp.W_in[:, n].double()
    w_out = ref.bridge.blocks[layer].mlp.W_out[n].double()
    if case["head_type"] == "token":
        logits = torch.stack([r["logits"] for r in rows]).double()[:, digits]
        prediction = (logits.softmax(-1) * torch.arange(10, dtype=torch.float64)).sum(-1)
    else:
        prediction = predict(x)
    values = {
        "live": stack[neuron_hook][:, n],
        "prediction": prediction,
        "head": x @ direction,
        "input": stack[f"blocks.{layer}.hook_resid_mid"] @ w_in,
        "output": stack[f"blocks.{layer}.hook_resid_post"] @ w_out,
        "neuron_dir": stack[f"blocks.{last}.hook_resid_post"] @ (w_out / w_out.norm()),
    }
    return {k: v.numpy() for k, v in values.items()}, direction.numpy(), w_in.numpy(), w_out.numpy(), grads, stack


def _cos(a, b):
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def test_projection_matches_reference(case, texts):
    run = load_run(case["root"])
    probe = open_probe(run, "cpu")
    result = analyze_projection(probe, ProjectionOptions(n_resamples=200, seed=3, null_directions=20, batch_size=5))
    truth = run.analysed()["activation"].to_numpy()
    values, direction, w_in, w_out, _, _ = _reference_projection(case, texts)
    assert result.n == len(texts)
    assert result.self_check.ok, result.self_check.message
    if case["head_type"] == "regression" and "hidden.weight" not in case["state"]:
        np.testing.assert_allclose(result.direction, case["state"]["output.weight"][0].numpy(), atol=1e-6)
    np.testing.assert_allclose(result.direction, direction, atol=2e-4 * max(1, np.abs(direction).max()))
    for name in ("prediction", "head", "input", "output", "neuron_dir", "live"):
        got = getattr(result, name)
        np.testing.assert_allclose(result.arrays[name], values[name], atol=TOL * max(1, np.abs(values[name]).max()))
        if np.ptp(values[name]) == 0:
            assert not got.defined and "constant" in got.reason, name
            continue
        r, p = scipy.stats.pearsonr(values[name], truth)
        assert got.r == pytest.approx(r, abs=TOL), name
        assert got.r_squared == pytest.approx(r * r, abs=TOL), name
        assert got.p_value == pytest.approx(p, abs=TOL, rel=1e-3), name
        assert got.spearman == pytest.approx(scipy.stats.spearmanr(values[name], truth)[0], abs=TOL), name
        assert got.n == len(texts)
        assert got.ci_low - 1e-9 <= got.r <= got.ci_high + 1e-9
    sims = result.weights
    assert sims.head_input == pytest.approx(_cos(direction, w_in), abs=1e-3)
    assert sims.head_output == pytest.approx(_cos(direction, w_out), abs=1e-3)
    assert sims.input_output == pytest.approx(_cos(w_in, w_out), abs=1e-5)


def test_patching_matches_reference(case, texts):
    run = load_run(case["root"])
    probe = open_probe(run, "cpu")
    factors = (0.0, 0.5, 1.0, 2.0)
    sub = texts[:10]
    result = analyze_patching(probe, PatchingOptions(factors=factors, texts=sub, n_resamples=100, seed=0, batch_size=3))
    full = analyze_patching(probe, PatchingOptions(factors=factors, texts=sub, n_resamples=100, seed=0, method="full"))
    ref, layer, n, extra = case["ref"], case["layer"], case["neuron"], case["extra"]
    neuron_hook = f"blocks.{layer}.mlp.hook_{extra.get('layer_type', 'post')}"
    feature = probe.feature_hook
    pos = extra.get("token_pos", "last")
    pos = -1 if pos == "last" else pos
    digits = [ref.tok.encode(str(i), add_special_tokens=False)[0] for i in range(10)]

    def predict(got):
        if case["head_type"] == "token":
            return float((got["logits"].double()[digits].softmax(-1) * torch.arange(10, dtype=torch.float64)).sum())
        return float(ref_predict(case["head_type"], case["state"], got[feature][None], extra.get("bin_edges"))[0])

    d_act, d_pred = np.zeros((len(sub), len(factors))), np.zeros((len(sub), len(factors)))
    for i, text in enumerate(sub):
        base = ref.read(text, [neuron_hook, feature], prepend_bos=extra.get("prepend_bos", False), pos=pos)
        a0, p0 = float(base[neuron_hook][n]), predict(base)
        for j, f in enumerate(factors):
            got = ref.read(
                text,
                [neuron_hook, feature],
                prepend_bos=extra.get("prepend_bos", False),
                pos=pos,
                patch=(neuron_hook, n, lambda v, f=f: v * f),
            )
            d_act[i, j] = float(got[neuron_hook][n]) - a0
            d_pred[i, j] = predict(got) - p0
    for res in (result, full):
        np.testing.assert_allclose(res.arrays["activation_change"], d_act, atol=TOL)
        np.testing.assert_allclose(res.arrays["prediction_change"], d_pred, atol=TOL)
    slope, intercept = np.polyfit(d_act.ravel(), d_pred.ravel(), 1)
    r2 = np.corrcoef(d_act.ravel(), d_pred.ravel())[0, 1] ** 2 if d_pred.std() > 1e-9 else None
    assert result.slope == pytest.approx(slope, abs=TOL)
    assert result.intercept == pytest.approx(intercept, abs=TOL)
    if r2 is not None:
        assert result.r_squared == pytest.approx(r2, abs=1e-3)
    np.testing.assert_allclose(result.avg_activation_changes, d_act.mean(0), atol=TOL)
    np.testing.assert_allclose(result.avg_prediction_changes, d_pred.mean(0), atol=TOL)
    for i, item in enumerate(result.per_input):
        if np.ptp(d_act[i]) > 1e-6:
            assert item.slope == pytest.approx(np.polyfit(d_act[i], d_pred[i], 1)[0], abs=1e-3)
    summary = result.as_dict()
    assert set(summary) >= {
        "mode",
        "factors",
        "baseline_correlation",
        "slope",
        "intercept",
        "r_squared",
        "avg_activation_changes",
        "avg_prediction_changes",
        "per_input",
    }
    json.dumps(summary, allow_nan=False)


@pytest.fixture(scope="module")
def tiny_ref(lms):
    return Reference(lms["tiny"], "compat")


def test_head_reading_the_neuron_hook_gives_r_1_and_slope_1(lms, texts, tiny_ref, tmp_path):
    """Closed form: the head is the neuron itself (feature hook = the neuron's hook, weight 1)."""
    layer, n, d_mlp = 0, 21, tiny_ref.bridge.cfg.d_mlp
    w = torch.zeros(1, d_mlp)
    w[0, n] = 1.0
    root = write_run(
        tmp_path / "self-neuron_l0_n21",
        lms["tiny"],
        layer=layer,
        neuron=n,
        head_type="regression",
        state={"output.weight": w, "output.bias": torch.zeros(1)},
        ref=tiny_ref,
        texts=texts,
        extra={"feature_hook": f"blocks.{layer}.mlp.hook_post"},
    )
    probe = open_probe(load_run(root), "cpu")
    projection = analyze_projection(probe, ProjectionOptions(n_resamples=100))
    patching = analyze_patching(probe, PatchingOptions(n_resamples=100))
    assert projection.prediction.r == pytest.approx(1.0, abs=1e-6)
    assert projection.live.r == pytest.approx(1.0, abs=1e-6)
    assert patching.slope == pytest.approx(1.0, abs=1e-5)
    assert patching.intercept == pytest.approx(0.0, abs=1e-5)
    assert patching.r_squared == pytest.approx(1.0, abs=1e-6)


def test_head_orthogonal_to_the_neuron_output_has_zero_direct_slope(lms, texts, tiny_ref, tmp_path):
    layer, n = 0, 4
    w_out = tiny_ref.bridge.blocks[layer].mlp.W_out[n].detach()
    w = torch.randn(w_out.shape[0], generator=torch.Generator().manual_seed(0))
    w = w - (w @ w_out) / (w_out @ w_out) * w_out
    root = write_run(
        tmp_path / "orth-neuron_l0_n4",
        lms["tiny"],
        layer=layer,
        neuron=n,
        head_type="regression",
        state={"output.weight": w[None], "output.bias": torch.zeros(1)},
        ref=tiny_ref,
        texts=texts,
    )
    patching = analyze_patching(open_probe(load_run(root), "cpu"), PatchingOptions(n_resamples=0))
    assert patching.direct_slope == pytest.approx(0.0, abs=1e-5)


def test_last_layer_neuron_read_along_its_output_has_slope_1(lms, texts, tiny_ref, tmp_path):
    """Closed form: neuron in the last layer, linear head w = W_out[n] / |W_out[n]|²: direct = total = 1."""
    layer, n = tiny_ref.n_layers - 1, 8
    w_out = tiny_ref.bridge.blocks[layer].mlp.W_out[n].detach()
    root = write_run(
        tmp_path / "last-neuron_l1_n8",
        lms["tiny"],
        layer=layer,
        neuron=n,
        head_type="regression",
        state={"output.weight": (w_out / (w_out @ w_out))[None], "output.bias": torch.zeros(1)},
        ref=tiny_ref,
        texts=texts,
    )
    patching = analyze_patching(open_probe(load_run(root), "cpu"), PatchingOptions(n_resamples=100))
    assert patching.slope == pytest.approx(1.0, abs=1e-4)
    assert patching.direct_slope == pytest.approx(1.0, abs=1e-4)
    assert patching.fit.ci_low <= 1.0 + 1e-4 and patching.fit.ci_high >= 1.0 - 1e-4


def test_null_baseline_of_other_neurons_matches_loop(case, texts):
    run = load_run(case["root"])
    probe = open_probe(run, "cpu")
    if not probe.is_mlp_neuron:
        pytest.skip("not an MLP neuron")
    result = analyze_projection(probe, ProjectionOptions(n_resamples=0, null_directions=10))
    truth = run.analysed()["activation"].to_numpy()
    x = probe.read(texts, [probe.feature_hook])[probe.feature_hook].double().numpy()
    w_out = probe.model.W_out(probe.layer).double().numpy()
    null = np.array([abs(scipy.stats.pearsonr(x @ w_out[j], truth)[0]) for j in range(len(w_out)) if j != probe.neuron])
    observed = abs(result.head.r)
    nn = result.null.neurons
    assert nn.n_null == len(null)
    assert nn.percentile_95 == pytest.approx(np.percentile(null, 95), abs=1e-5)
    assert nn.p_value == pytest.approx((1 + (null >= observed - 1e-9).sum()) / (1 + len(null)), abs=1 / len(null))
    assert nn.selectivity == pytest.approx(observed - np.percentile(null, 95), abs=1e-5)
    # The random directions: the same seeded draws, projected and correlated one direction at a time.
    dirs = torch.randn(x.shape[1], 10, generator=torch.Generator().manual_seed(0), dtype=torch.float64).numpy()
    random = np.array([abs(scipy.stats.pearsonr(x @ dirs[:, k], truth)[0]) for k in range(10)])
    assert result.null.random.n_null == 10
    np.testing.assert_allclose(result.null.random_values, random, atol=1e-6)


def test_kv_cache_that_is_not_honoured_falls_back_to_full_passes(case, texts, monkeypatch):
    """A library pair that ignores the KV cache (transformers 5.24 with TransformerLens 4.3 did) is caught."""
    from transformers import DynamicCache

    from pytest_neuronprobe.analyses import patching

    probe = open_probe(load_run(case["root"]), "cpu")
    options = dict(factors=(0.0, 1.0, 2.0), texts=texts[:6], n_resamples=0)
    full = analyze_patching(probe, PatchingOptions(method="full", **options))
    monkeypatch.setattr(patching, "_fork_cache", lambda cache: DynamicCache())
    monkeypatch.setattr(patching, "_CACHE_WARNED", [])
    with pytest.warns(RuntimeWarning, match="does not honour the cache"):
        cached = analyze_patching(probe, PatchingOptions(**options))
    for key in ("activation_change", "prediction_change"):
        np.testing.assert_allclose(cached.arrays[key], full.arrays[key], atol=1e-6)


def test_split_rule_and_max_samples(lms, texts, tiny_ref, tmp_path):
    split = ["train"] * 12 + ["val"] * 6 + ["test"] * 6
    w = torch.randn(1, tiny_ref.bridge.cfg.d_model, generator=torch.Generator().manual_seed(1))
    root = write_run(
        tmp_path / "split-neuron_l1_n1",
        lms["tiny"],
        layer=1,
        neuron=1,
        head_type="regression",
        state={"output.weight": w, "output.bias": torch.zeros(1)},
        ref=tiny_ref,
        texts=texts,
        split=split,
    )
    probe = open_probe(load_run(root), "cpu")
    result = analyze_projection(probe, ProjectionOptions(n_resamples=0, null_directions=0))
    assert (result.split, result.n) == ("test", 6)
    cheap = {"n_resamples": 0, "null_directions": 0}
    assert analyze_projection(probe, ProjectionOptions(split="val", **cheap)).n == 6
    assert analyze_projection(probe, ProjectionOptions(split="all", max_samples=10, **cheap)).n == 10
    a = analyze_projection(probe, ProjectionOptions(split="all", max_samples=10, seed=5, **cheap))
    b = analyze_projection(probe, ProjectionOptions(split="all", max_samples=10, seed=5, **cheap))
    np.testing.assert_array_equal(a.arrays["ground_truth"], b.arrays["ground_truth"])


def test_live_mismatch_is_loud(lms, texts, tiny_ref, tmp_path):
    w = torch.randn(1, tiny_ref.bridge.cfg.d_model, generator=torch.Generator().manual_seed(2))
    root = write_run(
        tmp_path / "bad-neuron_l1_n1",
        lms["tiny"],
        layer=1,
        neuron=1,
        head_type="regression",
        state={"output.weight": w, "output.bias": torch.zeros(1)},
        ref=tiny_ref,
        texts=texts,
    )
    csv = next((root / "datasets").glob("*.csv"))
    frame = pd.read_csv(csv)
    frame["activation"] = frame["activation"] + 1.0
    frame.to_csv(csv, index=False)
    with pytest.warns(UserWarning, match="live activations do not match"):
        result = analyze_projection(
            open_probe(load_run(root), "cpu"), ProjectionOptions(n_resamples=0, null_directions=0)
        )
    assert not result.self_check.ok
    assert "live activations do not match" in repr(result)


def test_joint_analysis_equals_separate_analyses(case):
    from pytest_neuronprobe.analyses.joint import analyze

    probe = open_probe(load_run(case["root"]), "cpu")
    options = {"n_resamples": 50, "seed": 1}
    joint_proj, joint_patch = analyze(
        probe, ProjectionOptions(**options, null_directions=5), PatchingOptions(**options)
    )
    proj = analyze_projection(probe, ProjectionOptions(null_directions=5, **options))
    patch = analyze_patching(probe, PatchingOptions(**options))
    assert joint_proj.as_dict()["projections"] == proj.as_dict()["projections"]
    for key in ("activation_change", "prediction_change", "direct_per_text"):
        np.testing.assert_allclose(joint_patch.arrays[key], patch.arrays[key], atol=1e-6)
