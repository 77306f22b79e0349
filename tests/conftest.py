"""Session fixtures shared by the test suite: a tiny LM and one tiny run per head kind.

Everything is built once per session under `tmp_path_factory`, deterministically (seed 0).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

#: Texts per tiny run (built-in corpus, the ones that fit the tiny LM's context).
TINY_N_TEXTS = 60
#: The tiny LM has 2 layers: the linear/hidden/classification runs read layer 1, the token run
#: reads layer 0 (it fine-tunes block 1, which must not change its own neuron).
TINY_LAYER = 1
TINY_TOKEN_LAYER = 0


@pytest.fixture(scope="session")
def tiny_lm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A very small GPT-2-architecture model directory (2 layers, d_model 32, vocab 300)."""
    from pytest_neuronprobe.build.lm import tiny_lm

    return tiny_lm(tmp_path_factory.mktemp("tiny_lm") / "model", seed=0)


@pytest.fixture(scope="session")
def tiny_runs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The directory the session's tiny runs are written into (do not modify the runs in it)."""
    return tmp_path_factory.mktemp("tiny_runs")


def _tiny_run(out: Path, lm: Path, **options) -> Path:
    from pytest_neuronprobe.build.make_run import make_run

    options.setdefault("layer", TINY_LAYER)
    return make_run(out, base_model=lm, n_texts=TINY_N_TEXTS, seed=0, **options)


@pytest.fixture(scope="session")
def regression_run(tiny_runs_dir: Path, tiny_lm_dir: Path) -> Path:
    """A regression run with a linear (closed-form least-squares) head, safetensors."""
    return _tiny_run(tiny_runs_dir, tiny_lm_dir, head_type="regression")


@pytest.fixture(scope="session")
def hidden_run(tiny_runs_dir: Path, tiny_lm_dir: Path) -> Path:
    """A regression run with a hidden layer (hidden_dim 16), stored as head.pt."""
    return _tiny_run(
        tiny_runs_dir,
        tiny_lm_dir,
        head_type="regression",
        hidden_dim=16,
        head_format="pt",
        name="regression-hidden16-neuron_l{layer}_n{neuron}-seed{seed}",
        train_steps=200,
    )


@pytest.fixture(scope="session")
def classification_run(tiny_runs_dir: Path, tiny_lm_dir: Path) -> Path:
    """A 5-bin classification run (linear softmax head, bin_edges in config.json)."""
    return _tiny_run(tiny_runs_dir, tiny_lm_dir, head_type="classification", n_bins=5, train_steps=200)


@pytest.fixture(scope="session")
def token_run(tiny_runs_dir: Path, tiny_lm_dir: Path) -> Path:
    """A token run: block 1 + ln_f fine-tuned, saved in best_model/base_model/; target on layer 0."""
    return _tiny_run(
        tiny_runs_dir, tiny_lm_dir, head_type="token", layer=TINY_TOKEN_LAYER, finetune_layers=1, train_steps=60
    )


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """One torch intra-op thread for a module: tiny models and fits run far faster so (and do not fight other
    processes for the cores). Byte-identical builds need the same thread count: float sums depend on it."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
