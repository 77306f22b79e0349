"""Tests for the generated corpus and the local GPT-2 model builders."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch

from pytest_neuronprobe.build import lm
from pytest_neuronprobe.build.corpus import DIGITS, TEMPLATE_KINDS, generate_corpus
from pytest_neuronprobe.build.lm import ENDOFTEXT, STAMP_FILE, build_lm, corpus_loss, tiny_lm, train_tokenizer

SMALL = {"n_layer": 1, "n_embd": 32, "n_head": 4, "n_positions": 64, "vocab_size": 300}


def _weights_hash(path: Path) -> str:
    return hashlib.sha256((path / "model.safetensors").read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_lm(tmp_path_factory.mktemp("tiny") / "lm")


def test_corpus_is_deterministic_unique_and_varied() -> None:
    a = generate_corpus(600, seed=0)
    assert a == generate_corpus(600, seed=0)
    assert len(a) == len(set(a)) == 600
    assert generate_corpus(600, seed=1) != a
    assert generate_corpus(50, seed=0) == a[:50]
    lengths = [len(t.split()) for t in a]
    assert min(lengths) >= 4 and max(lengths) <= 26
    assert any(" plus " in t for t in a) and any("def " in t for t in a) and any("?" in t for t in a)
    assert sum(any(d in t for d in DIGITS) for t in a) > 200
    assert DIGITS == [str(i) for i in range(10)]
    assert len(TEMPLATE_KINDS) >= 8
    assert generate_corpus(0) == []


@pytest.mark.parametrize("vocab_size", [270, 512])
def test_tokenizer_no_bos_and_single_digit_tokens(vocab_size: int) -> None:
    texts = generate_corpus(1000, seed=0)
    tok = train_tokenizer(texts, vocab_size=vocab_size)
    eot = tok.convert_tokens_to_ids(ENDOFTEXT)
    assert len(tok) == vocab_size
    assert tok.bos_token == tok.eos_token == tok.pad_token == tok.unk_token == ENDOFTEXT
    assert tok.bos_token_id == eot
    ids = tok("hi")["input_ids"]
    assert eot not in ids
    assert tok.decode(ids) == "hi"
    for d in DIGITS:
        assert len(tok(d)["input_ids"]) == 1, d
        assert len(tok(" " + d)["input_ids"]) == 1, " " + d
    for text in texts[:200]:
        assert tok.decode(tok(text)["input_ids"]) == text
    again = train_tokenizer(texts, vocab_size=vocab_size)
    assert again.backend_tokenizer.to_str() == tok.backend_tokenizer.to_str()


def test_tokenizer_rejects_tiny_vocab() -> None:
    with pytest.raises(ValueError, match="vocab_size"):
        train_tokenizer(["one two three"], vocab_size=260)


def test_build_lm_is_deterministic(tmp_path: Path) -> None:
    texts = generate_corpus(200, seed=0)
    kw = dict(texts=texts, train_steps=5, batch_size=8, **SMALL)
    a = build_lm(tmp_path / "a", seed=3, **kw)
    b = build_lm(tmp_path / "b", seed=3, **kw)
    c = build_lm(tmp_path / "c", seed=4, **kw)
    assert _weights_hash(a) == _weights_hash(b)
    assert _weights_hash(a) != _weights_hash(c)
    assert (a / "tokenizer.json").read_bytes() == (b / "tokenizer.json").read_bytes()


def test_build_lm_config_and_stamp(tiny_dir: Path) -> None:
    config = json.loads((tiny_dir / "config.json").read_text())
    tok = json.loads((tiny_dir / "tokenizer.json").read_text())
    eot = tok["model"]["vocab"][ENDOFTEXT]
    assert config["activation_function"] == "gelu_new"
    assert config["bos_token_id"] == config["eos_token_id"] == config["pad_token_id"] == eot
    assert config["n_layer"] == 2 and config["n_embd"] == 32 and config["n_positions"] == 64
    assert config["vocab_size"] == len(tok["model"]["vocab"])
    stamp = json.loads((tiny_dir / STAMP_FILE).read_text())
    assert stamp["n_embd"] == 32 and stamp["seed"] == 0


def test_training_lowers_loss(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    texts = generate_corpus(400, seed=0)
    seen = set(texts)
    held_out = [t for t in generate_corpus(500, seed=1) if t not in seen][:100]
    untrained = build_lm(tmp_path / "untrained", texts=texts, train_steps=0, **SMALL)
    trained = build_lm(tmp_path / "trained", texts=texts, train_steps=60, batch_size=16, progress=True, **SMALL)
    err = capsys.readouterr().err
    assert "step 60/60" in err and "->" in err
    before, after = corpus_loss(untrained, held_out), corpus_loss(trained, held_out)
    assert before > 5.0
    assert after < before - 1.0, (before, after)
    stamp = json.loads((trained / STAMP_FILE).read_text())
    assert stamp["end_loss"] < stamp["start_loss"]


def test_saved_dir_boots_in_transformer_bridge(tiny_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from transformer_lens.model_bridge import TransformerBridge
    from transformers import AutoTokenizer, GPT2LMHeadModel

    tok = AutoTokenizer.from_pretrained(tiny_dir)
    ids = tok("there are 3 apples")["input_ids"]
    assert tok.convert_tokens_to_ids(ENDOFTEXT) not in ids

    bridge = TransformerBridge.boot_transformers(str(tiny_dir), device="cpu")
    bridge.enable_compatibility_mode(disable_warnings=True)
    tokens = torch.tensor([[tok.bos_token_id, *ids]])
    seen: list[torch.Tensor] = []

    def grab(act: torch.Tensor, hook: object) -> torch.Tensor:
        seen.append(act.detach().clone())
        return act

    logits = bridge.run_with_hooks(tokens, fwd_hooks=[("blocks.1.mlp.hook_post", grab)])
    assert len(seen) == 1 and seen[0].shape == (1, tokens.shape[1], 4 * 32)
    hf = GPT2LMHeadModel.from_pretrained(tiny_dir)
    with torch.no_grad():
        ref = hf(tokens).logits
    torch.testing.assert_close(logits.log_softmax(-1), ref.log_softmax(-1), atol=1e-4, rtol=1e-4)


def test_failed_save_leaves_no_out_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from transformers import GPT2LMHeadModel

    def boom(self: object, *args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(GPT2LMHeadModel, "save_pretrained", boom)
    out = tmp_path / "models" / "lm"
    with pytest.raises(KeyboardInterrupt):
        build_lm(out, texts=generate_corpus(100), **SMALL)
    assert not out.exists()
    assert list(out.parent.iterdir()) == []


def test_failed_rebuild_keeps_previous_and_rebuild_replaces(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from transformers import GPT2LMHeadModel

    out = tmp_path / "lm"
    texts = generate_corpus(100)
    build_lm(out, texts=texts, seed=0, **SMALL)
    first = _weights_hash(out)

    with monkeypatch.context() as m:
        m.setattr(GPT2LMHeadModel, "save_pretrained", lambda *a, **k: (_ for _ in ()).throw(OSError("disk")))
        with pytest.raises(OSError, match="disk"):
            build_lm(out, texts=texts, seed=1, **SMALL)
    assert _weights_hash(out) == first

    build_lm(out, texts=texts, seed=1, **SMALL)
    assert _weights_hash(out) != first
    assert [p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")] == ["lm"]


def test_cached_builds_reuse_and_rebuild(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    small_demo = {**SMALL, "train_steps": 2, "seed": 0, "batch_size": 4, "lr": 3e-3, "n_texts": 100}
    monkeypatch.setattr(lm, "DEMO_LM_PARAMS", small_demo)
    calls: list[Path] = []
    real_build = lm.build_lm

    def counting_build(out_dir: Path, **kwargs: object) -> Path:
        calls.append(Path(out_dir))
        return real_build(out_dir, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(lm, "build_lm", counting_build)
    path = lm.demo_lm(tmp_path / "demo")
    assert (path / "config.json").is_file() and len(calls) == 1
    assert lm.demo_lm(tmp_path / "demo") == path and len(calls) == 1

    monkeypatch.setattr(lm, "DEMO_LM_PARAMS", {**small_demo, "seed": 1})
    lm.demo_lm(tmp_path / "demo")
    assert len(calls) == 2

    (path / "model.safetensors").unlink()
    lm.demo_lm(tmp_path / "demo")
    assert len(calls) == 3

    tiny_a = lm.tiny_lm(tmp_path / "tiny", seed=0)
    tiny_lm(tmp_path / "tiny", seed=0)
    tiny_lm(tmp_path / "tiny", seed=5)
    assert len(calls) == 5 and tiny_a == tmp_path / "tiny"
