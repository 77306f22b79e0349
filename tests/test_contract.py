"""The model contract (core/contract.py): it holds on the models the project builds, and each way TransformerLens
has broken it is an error naming the identity and the hook."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from pytest_neuronprobe.core import contract
from pytest_neuronprobe.core.errors import NeuronProbeError
from pytest_neuronprobe.core.models import LoadedModel, load_model


@pytest.fixture(scope="module", params=["compat", "raw"])
def own_model(
    request: pytest.FixtureRequest, tiny_lm_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> LoadedModel:
    """A model booted for this module alone (its files differ from the shared tiny LM's by one file), so that
    breaking its hooks cannot reach other tests."""
    copy = tmp_path_factory.mktemp("contract") / "model"
    shutil.copytree(tiny_lm_dir, copy)
    (copy / "README.md").write_text("a copy for tests/test_contract.py\n")
    return load_model(str(copy), request.param)


@pytest.fixture
def model(own_model: LoadedModel) -> Iterator[LoadedModel]:
    yield own_model
    own_model.bridge.reset_hooks(including_permanent=True)


def _break(model: LoadedModel, hook: str, change: Callable[[torch.Tensor], torch.Tensor]) -> None:
    model.bridge.hook_dict[hook].add_hook(lambda value, hook: change(value), dir="fwd", is_permanent=True)


def test_the_contract_holds_on_the_project_models(model: LoadedModel) -> None:
    contract.verify_contract(model)


def test_it_is_checked_once_per_model(model: LoadedModel, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[LoadedModel] = []
    monkeypatch.setattr(contract, "verify_contract", calls.append)
    monkeypatch.setattr(contract, "_CHECKED", {})
    contract.check_contract(model)
    contract.check_contract(model)
    assert calls == [model]


@pytest.mark.parametrize(
    ("hook", "change", "identity"),
    [
        # hook_mlp_out holding residual-added states (what the analyses would read as the MLP's write)
        ("blocks.1.hook_mlp_out", lambda v: v + 0.5, "blocks.1.mlp.hook_post @ W_out + b_out = blocks.1.hook_mlp_out"),
        # an alias firing after layer norm: the residual stream it reports is not the one summed
        ("blocks.0.hook_resid_mid", lambda v: v / (v.norm(dim=-1, keepdim=True) + 1e-6), "blocks.0.hook_resid_pre + "),
        ("blocks.1.hook_resid_post", lambda v: v * 1.01, "blocks.1.hook_resid_mid + blocks.1.hook_mlp_out"),
    ],
)
def test_a_broken_identity_is_an_error_naming_it_and_the_hook(
    model: LoadedModel, hook: str, change: Callable[[torch.Tensor], torch.Tensor], identity: str
) -> None:
    _break(model, hook, change)
    with pytest.raises(NeuronProbeError, match="model contract broken") as info:
        contract.verify_contract(model)
    assert identity in str(info.value) and info.value.path == model.source


def test_hook_post_of_the_wrong_width_is_an_error(model: LoadedModel, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(model.bridge.cfg, "d_mlp", model.d_mlp + 1)  # the hook and the config disagree
    with pytest.raises(NeuronProbeError, match=r"blocks.0.mlp.hook_post has \d+ columns, expected d_mlp"):
        contract.verify_contract(model)


def test_positions_that_ignore_the_attention_mask_are_an_error(
    model: LoadedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    def padded_width(tokens, token_pos, **kwargs):  # the last column of the padded batch, for every text
        return np.full(len(tokens), max(len(t) for t in tokens) - 1)

    monkeypatch.setattr(contract, "positions", padded_width)
    with pytest.raises(NeuronProbeError, match="the read at the last real token of a right-padded text"):
        contract.verify_contract(model)


def test_bridge_logits_that_differ_from_the_hugging_face_model_are_an_error(
    model: LoadedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    if model.processing != "raw":
        pytest.skip("only raw processing keeps the checkpoint's weights, so its logits")
    real = model.bridge.run_with_hooks

    def drifting(*args, **kwargs):  # the bridge's output drifts from the checkpoint's (called directly)
        out = real(*args, **kwargs)
        return out + 1e-2 * out.abs().max()

    monkeypatch.setattr(model.bridge, "run_with_hooks", drifting)
    with pytest.raises(NeuronProbeError, match=r"bridge logits = the Hugging Face model's logits") as info:
        contract.verify_contract(model)
    assert info.value.key == "logits"
