"""`make_run`, the demo runs' building blocks and the `neuronprobe` command line."""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from pytest_neuronprobe.build.make_run import make_run
from pytest_neuronprobe.cli import main
from pytest_neuronprobe.core.errors import NeuronProbeError
from pytest_neuronprobe.core.heads import load_state_dict
from pytest_neuronprobe.core.models import collect, load_model
from pytest_neuronprobe.core.probe import open_probe
from pytest_neuronprobe.core.runs import load_run
from pytest_neuronprobe.core.tokens import encode, positions

REPO = Path(__file__).resolve().parents[1]
STEM_RE = re.compile(r"^neuron_l(\d+)_n(\d+)_s0$")


def _model_dir(run_dir: Path) -> Path:
    (stem,) = [p.name for p in (run_dir / "models").iterdir()]
    return run_dir / "models" / stem / "best_model"


def _config(run_dir: Path) -> dict:
    return json.loads((_model_dir(run_dir) / "config.json").read_text())


def _copy(run_dir: Path, dest: Path) -> Path:
    shutil.copytree(run_dir, dest)
    return dest


# --------------------------------------------------------------------------------------------- #
# Layout and config


@pytest.mark.parametrize("fixture", ["regression_run", "hidden_run", "classification_run", "token_run"])
def test_seed_layout_is_exact(fixture: str, request: pytest.FixtureRequest) -> None:
    run_dir: Path = request.getfixturevalue(fixture)
    cfg = _config(run_dir)
    layer, neuron = cfg["target_layer"], cfg["target_neuron"]
    stem = f"neuron_l{layer}_n{neuron}_s0"
    assert sorted(p.name for p in run_dir.iterdir()) == [
        "datasets",
        "introspection_summary.json",
        "models",
        "neuronprobe_build.json",
    ]
    assert [p.name for p in (run_dir / "datasets").iterdir()] == [f"{stem}.csv"]
    assert [p.name for p in (run_dir / "models").iterdir()] == [stem]
    assert [p.name for p in (run_dir / "models" / stem).iterdir()] == ["best_model"]
    best = _model_dir(run_dir)
    head = "head.pt" if fixture == "hidden_run" else "head.safetensors"
    assert sorted(p.name for p in best.iterdir()) == sorted(["config.json", head, "base_model"])
    assert (best / "base_model" / "config.json").is_file()
    data = pd.read_csv(run_dir / "datasets" / f"{stem}.csv", keep_default_na=False)
    assert list(data.columns) == ["text", "activation", "split"]
    assert set(data["split"]) == {"train", "test"}
    assert (data["split"] == "test").sum() == round(0.2 * len(data))
    summary = json.loads((run_dir / "introspection_summary.json").read_text())
    assert (summary["target_layer"], summary["target_neuron"]) == (layer, neuron)
    default_name = f"{cfg['head_type']}-neuron_l{layer}_n{neuron}-seed0"
    if fixture in ("regression_run", "classification_run", "token_run"):
        assert run_dir.name == default_name


@pytest.mark.parametrize("fixture", ["regression_run", "hidden_run", "classification_run", "token_run"])
def test_config_keys(fixture: str, request: pytest.FixtureRequest, tiny_lm_dir: Path) -> None:
    run_dir: Path = request.getfixturevalue(fixture)
    cfg = _config(run_dir)
    for key in (
        "head_type",
        "base_model_name",
        "target_layer",
        "target_neuron",
        "layer_type",
        "head_config",
        "feature_layer",
        "token_pos",
        "prepend_bos",
        "processing",
        "base_model_path",
    ):
        assert key in cfg, key
    assert cfg["base_model_name"] == str(tiny_lm_dir)
    assert cfg["base_model_path"] == "base_model"
    assert cfg["layer_type"] == "post" and cfg["token_pos"] == "last" and cfg["feature_layer"] == -1
    assert cfg["prepend_bos"] is False and cfg["processing"] == "compat"
    assert cfg["head_config"]["dropout"] == 0.0
    if fixture == "classification_run":
        edges = cfg["bin_edges"]
        assert len(edges) == 6 and all(b > a for a, b in itertools.pairwise(edges))
        train = load_run(run_dir).data.query("split == 'train'")["activation"]
        assert edges[0] == pytest.approx(train.min()) and edges[-1] == pytest.approx(train.max())
    else:
        assert "bin_edges" not in cfg
    if fixture == "token_run":
        assert cfg["head_type"] == "token"
        tok = load_model(str(tiny_lm_dir)).tokenizer
        assert cfg["head_config"]["digit_tokens"] == [tok.encode(str(d))[0] for d in range(10)]
    if fixture == "hidden_run":
        assert cfg["head_config"]["hidden_dim"] == 16


def test_head_shapes(regression_run: Path, hidden_run: Path, classification_run: Path, token_run: Path) -> None:
    d = 32
    lin = load_state_dict(load_run(regression_run).head_path)
    assert {k: list(v.shape) for k, v in lin.items()} == {"output.weight": [1, d], "output.bias": [1]}
    hid = load_state_dict(load_run(hidden_run).head_path)
    assert {k: list(v.shape) for k, v in hid.items()} == {
        "hidden.weight": [16, d],
        "hidden.bias": [16],
        "output.weight": [1, 16],
        "output.bias": [1],
    }
    cls = load_state_dict(load_run(classification_run).head_path)
    assert {k: list(v.shape) for k, v in cls.items()} == {"output.weight": [5, d], "output.bias": [5]}
    from safetensors.torch import load_file

    assert load_file(str(load_run(token_run).head_path)) == {}


# --------------------------------------------------------------------------------------------- #
# Loading after a move


def test_run_loads_after_move_from_elsewhere(
    regression_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    moved_root = tmp_path / "somewhere" / "else"
    moved_root.mkdir(parents=True)
    src = _copy(regression_run, tmp_path / "staging" / regression_run.name)
    moved = Path(shutil.move(str(src), str(moved_root / "renamed-run")))
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    run = load_run(os.path.relpath(moved, elsewhere))
    assert run.path == moved.resolve()
    assert run.base_model_is_local and Path(run.base_model).is_relative_to(moved.resolve())
    assert run.split == "test"
    probe = open_probe(run, "cpu")
    texts = run.analysed()["text"].tolist()
    values = probe.read(texts, [probe.neuron_hook, probe.feature_hook])
    np.testing.assert_allclose(probe.neuron_values(values).numpy(), run.analysed()["activation"].to_numpy(), atol=1e-5)


def test_token_run_has_its_own_finetuned_model(token_run: Path, tiny_lm_dir: Path) -> None:
    from safetensors.torch import load_file

    run = load_run(token_run)
    base = _model_dir(token_run) / "base_model"
    assert run.base_model == str(base.resolve())
    tuned, original = load_file(str(base / "model.safetensors")), load_file(str(tiny_lm_dir / "model.safetensors"))
    assert tuned.keys() == original.keys()
    changed = {k for k in tuned if not torch.equal(tuned[k], original[k])}
    assert changed and all(k.startswith(("transformer.h.1.", "transformer.ln_f.")) for k in changed)
    probe = open_probe(run, "cpu")
    assert probe.head.head_type == "token"
    texts = run.data["text"].tolist()
    values = probe.read(texts, [probe.feature_hook, probe.neuron_hook])
    pred = probe.head.predict(values[probe.feature_hook]).numpy()
    assert np.all((pred >= 0) & (pred <= 9))
    # Layer 0 is below the fine-tuned block: the live neuron is the dataset's.
    np.testing.assert_allclose(probe.neuron_values(values).numpy(), run.data["activation"].to_numpy(), atol=1e-5)
    train = (run.data["split"] == "train").to_numpy()
    assert np.corrcoef(pred[train], run.data["activation"].to_numpy()[train])[0, 1] > 0.3


# --------------------------------------------------------------------------------------------- #
# Heads against independent computations


def _features(run_dir: Path, rows: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """The final residual at each text's last token, read here with the core, and the activations."""
    run = load_run(run_dir)
    data = run.data[run.data["split"] == rows]
    model = load_model(run.base_model)
    toks = encode(model, data["text"].tolist(), prepend_bos=False)
    hook = f"blocks.{model.n_layers - 1}.hook_resid_post"
    x = collect(model, toks, positions(toks, "last"), [hook], batch_size=7)[hook]
    return x.double().numpy(), data["activation"].to_numpy()


def test_linear_head_is_least_squares(regression_run: Path) -> None:
    x, y = _features(regression_run)
    design = np.hstack([x, np.ones((len(x), 1))])
    # Under `compat` processing every residual vector sums to zero (centred writing weights), so the
    # design has one singular value at float32 rounding level (~1e-7 of the largest): rcond=1e-6 treats
    # it as the zero it is, and lstsq returns the minimum-norm solution, as the builder's tiny ridge does.
    coef, *_ = np.linalg.lstsq(design, y, rcond=1e-6)
    state = load_state_dict(load_run(regression_run).head_path)
    w, b = state["output.weight"][0].double().numpy(), float(state["output.bias"][0])
    np.testing.assert_allclose(design @ np.append(w, b), design @ coef, atol=1e-4)
    np.testing.assert_allclose(w, coef[:-1], atol=1e-4)
    assert b == pytest.approx(coef[-1], abs=1e-4)


@pytest.mark.parametrize("fixture", ["regression_run", "hidden_run", "classification_run"])
def test_head_predictions_track_activations(fixture: str, request: pytest.FixtureRequest) -> None:
    run_dir: Path = request.getfixturevalue(fixture)
    probe = open_probe(load_run(run_dir), "cpu")
    data = probe.run.data[probe.run.data["split"] == "train"]
    x = probe.read(data["text"].tolist(), [probe.feature_hook])[probe.feature_hook]
    pred = probe.head.predict(x).numpy()
    assert np.corrcoef(pred, data["activation"].to_numpy())[0, 1] > 0.5


def test_introspection_summary_metrics(regression_run: Path) -> None:
    summary = json.loads((regression_run / "introspection_summary.json").read_text())
    x, y = _features(regression_run, "test")
    state = load_state_dict(load_run(regression_run).head_path)
    pred = x @ state["output.weight"][0].double().numpy() + float(state["output.bias"][0])
    assert summary["pearson_r"]["test"] == pytest.approx(np.corrcoef(pred, y)[0, 1], abs=1e-4)
    assert summary["n_test"] == len(y)


# --------------------------------------------------------------------------------------------- #
# Determinism, reuse, atomicity


def _bytes(run_dir: Path) -> dict[str, bytes]:
    return {str(p.relative_to(run_dir)): p.read_bytes() for p in sorted(run_dir.rglob("*")) if p.is_file()}


@pytest.mark.parametrize(
    "options",
    [
        {"head_type": "regression"},
        {"head_type": "classification", "hidden_dim": 8, "train_steps": 50},
        {"head_type": "regression", "hidden_dim": 8, "train_steps": 50, "head_format": "pt"},
    ],
    ids=["linear", "classification-hidden", "hidden-pt"],
)
def test_same_seed_same_bytes(options: dict, tiny_lm_dir: Path, tmp_path: Path) -> None:
    a = make_run(tmp_path / "a", base_model=tiny_lm_dir, layer=1, n_texts=40, **options)
    b = make_run(tmp_path / "b", base_model=tiny_lm_dir, layer=1, n_texts=40, **options)
    assert a.name == b.name
    first, second = _bytes(a), _bytes(b)
    assert first.keys() == second.keys()
    for key in first:
        assert first[key] == second[key], key
    c = make_run(tmp_path / "c", base_model=tiny_lm_dir, layer=1, n_texts=40, seed=1, **options)
    assert any((c / "datasets").glob("*_s1.csv"))
    split_a = pd.read_csv(next((a / "datasets").glob("*.csv")))["split"]
    split_c = pd.read_csv(next((c / "datasets").glob("*.csv")))["split"]
    assert not split_a.equals(split_c)


def test_token_run_is_deterministic(token_run: Path, tiny_lm_dir: Path, tmp_path: Path) -> None:
    # built twice here, under the same torch thread count: the session's token_run may have been built under
    # another (a module's one-thread fixture), and float sums depend on it
    kwargs = dict(base_model=tiny_lm_dir, layer=0, head_type="token", n_texts=60, train_steps=60)
    first, again = make_run(tmp_path / "a", **kwargs), make_run(tmp_path / "b", **kwargs)
    assert again.name == first.name == token_run.name
    assert _bytes(again) == _bytes(first)


def test_reuse_keeps_an_identical_request(tiny_lm_dir: Path, tmp_path: Path) -> None:
    kwargs = dict(base_model=tiny_lm_dir, layer=1, neuron=3, n_texts=30)
    first = make_run(tmp_path, **kwargs)
    marker = first / "datasets" / "marker"
    marker.write_text("kept")
    assert make_run(tmp_path, reuse=True, **kwargs) == first
    assert marker.exists()
    # A different request is rebuilt; without reuse the run is replaced as a whole.
    assert make_run(tmp_path, reuse=True, **{**kwargs, "n_texts": 31}) == first
    assert not marker.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_refuses_to_replace_a_non_run(tiny_lm_dir: Path, tmp_path: Path) -> None:
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "notes.txt").write_text("mine")
    with pytest.raises(NeuronProbeError, match="not a run directory"):
        make_run(tmp_path, base_model=tiny_lm_dir, layer=1, n_texts=20, name="precious")
    assert (precious / "notes.txt").read_text() == "mine"


def test_auto_neuron_is_most_variable_on_train(regression_run: Path) -> None:
    run = load_run(regression_run)
    model = load_model(run.base_model)
    train = run.data[run.data["split"] == "train"]
    toks = encode(model, train["text"].tolist(), prepend_bos=False)
    hook = f"blocks.{run.layer}.mlp.hook_post"
    acts = collect(model, toks, positions(toks, "last"), [hook])[hook].double()
    assert int(acts.var(0).argmax()) == run.neuron


def test_explicit_options_are_recorded(tiny_lm_dir: Path, tmp_path: Path) -> None:
    texts = [
        "the cat sat on the mat",
        "one two three four",
        "x = 3 + 4",
        "I loved the movie",
        "the dog ran home",
        "5 6 7 8 9",
        "why was it so dull?",
        "Alice said hello",
    ]
    path = make_run(
        tmp_path,
        base_model=tiny_lm_dir,
        layer=0,
        neuron=3,
        texts=texts,
        layer_type="pre",
        token_pos=1,
        prepend_bos=True,
        processing="raw",
        feature_layer=0,
        test_fraction=0.25,
        seed=4,
        name="custom",
    )
    assert path == tmp_path / "custom"
    run = load_run(path)
    cfg = run.config
    assert (
        run.layer,
        run.neuron,
        cfg.layer_type,
        cfg.token_pos,
        cfg.prepend_bos,
        cfg.processing,
        cfg.feature_layer,
    ) == (0, 3, "pre", 1, True, "raw", 0)
    assert run.data["text"].tolist() == texts
    assert (run.data["split"] == "test").sum() == 2
    probe = open_probe(run, "cpu")
    assert probe.feature_hook == "blocks.0.hook_resid_post"
    values = probe.read(texts, [probe.neuron_hook])
    np.testing.assert_allclose(probe.neuron_values(values).numpy(), run.data["activation"].to_numpy(), atol=1e-5)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"layer": 5}, "out of range"),
        ({"layer": 1, "neuron": 10_000}, "out of range"),
        ({"layer": 1, "head_type": "ranking"}, "head_type"),
        ({"layer": 1, "head_format": "npz"}, "head_format"),
        ({"layer": 1, "layer_type": "nonsense"}, "not a TransformerLens hook"),
        ({"layer": 1, "test_fraction": 1.0}, "test_fraction"),
        ({"layer": 1, "texts": ["a", "b"]}, "at least 4"),
        ({"layer": 1, "head_type": "token", "feature_layer": 0}, "token head"),
        ({"layer": 1, "name": "../escape"}, "plain directory name"),
        ({"layer": 1, "neuron": 2, "name": "neuron_l1_n5"}, "would not load"),
    ],
)
def test_bad_arguments(kwargs: dict, match: str, tiny_lm_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(NeuronProbeError, match=match):
        make_run(tmp_path, base_model=tiny_lm_dir, n_texts=20, **kwargs)
    assert not list(tmp_path.iterdir())


# --------------------------------------------------------------------------------------------- #
# Command line


def test_cli_make_run_in_process(tiny_lm_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    texts = tmp_path / "texts.csv"
    pd.DataFrame({"text": [f"the number {i} is here" for i in range(12)] + ["NA", "null"]}).to_csv(texts, index=False)
    code = main(
        [
            "make-run",
            "--base-model",
            str(tiny_lm_dir),
            "--layer",
            "1",
            "--neuron",
            "auto",
            "--texts",
            str(texts),
            "--head-type",
            "classification",
            "--n-bins",
            "3",
            "--out",
            str(tmp_path / "out"),
            "--name",
            "cli-{head_type}-neuron_l{layer}_n{neuron}",
            "--head-format",
            "pt",
            "-q",
        ]
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    assert err == ""
    path = Path(out.strip())
    run = load_run(path)
    assert path.name == f"cli-classification-neuron_l1_n{run.neuron}"
    assert run.head_path.name == "head.pt" and run.config.bin_edges is not None and len(run.config.bin_edges) == 4
    assert run.data["text"].tolist()[-2:] == ["NA", "null"]


def test_cli_make_run_subprocess(tiny_lm_dir: Path, tmp_path: Path) -> None:
    texts = tmp_path / "texts.txt"
    texts.write_text(
        "\n".join(f"{name} has {i} apples" for i, name in enumerate(["Ann", "Bob", "Cy", "Di"] * 3)) + "\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest_neuronprobe.cli",
            "make-run",
            "--base-model",
            str(tiny_lm_dir),
            "--layer",
            "0",
            "--neuron",
            "7",
            "--texts",
            str(texts),
            "--out",
            str(tmp_path / "out"),
            "--seed",
            "2",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    path = Path(proc.stdout.strip().splitlines()[-1])
    assert path == tmp_path / "out" / "regression-neuron_l0_n7-seed2"
    assert "[neuronprobe]" in proc.stderr  # progress goes to stderr
    assert load_run(path).neuron == 7


@pytest.mark.parametrize(
    "argv, message",
    [
        (["make-run", "--layer", "1"], "--base-model"),
        (["make-run", "--base-model", "x", "--layer", "1", "--neuron", "many"], "'auto'"),
        (["make-run", "--base-model", "x", "--layer", "1", "--head-type", "ranking"], "invalid choice"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_cli_usage_errors_exit_2(argv: list[str], message: str, capsys: pytest.CaptureFixture) -> None:
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_cli_input_errors_exit_2(tiny_lm_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code = main(["make-run", "--base-model", str(tiny_lm_dir), "--layer", "9", "--out", str(tmp_path), "-q"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("neuronprobe: error: ") and "layer 9 is out of range" in err
    assert (
        main(
            [
                "make-run",
                "--base-model",
                str(tiny_lm_dir),
                "--layer",
                "0",
                "--texts",
                str(tmp_path / "missing.txt"),
                "--out",
                str(tmp_path),
                "-q",
            ]
        )
        == 2
    )
    assert "texts file not found" in capsys.readouterr().err


def test_cli_subprocess_bad_argument_exits_2(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest_neuronprobe.cli",
            "make-run",
            "--base-model",
            str(tmp_path / "no-such-model"),
            "--layer",
            "0",
            "-q",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("neuronprobe: error: ")
    assert "Traceback" not in proc.stderr


def test_cli_help_lists_subcommands(capsys: pytest.CaptureFixture) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "make-run" in out and "demo" in out


@pytest.mark.parametrize(
    "extra, fragments",
    [
        (["--out", "{file}"], ["--out must be a directory", "[out]"]),
        (["--texts", "/dev/null"], ["/dev/null", "expected a regular texts file"]),
        (["--texts", "{dir}"], ["expected a regular texts file"]),
        (["--texts", "{empty}"], ["empty.txt", "texts file is empty"]),
        (["--name", "{layer.__class__.__mro__}"], ["[name]", "{layer.__class__.__mro__} is not allowed"]),
        (["--name", "{0}"], ["[name]", "{0} is not allowed"]),
        (["--name", "{head_type[0]}"], ["[name]", "{head_type[0]} is not allowed"]),
        (["--name", "{seed!r}"], ["[name]", "{seed!r} is not allowed"]),
        (["--name", "{nope}-{layer}"], ["[name]", "{nope} is not allowed"]),
        (["--name", "run-{layer"], ["[name]", "bad name template"]),
    ],
    ids=[
        "out_is_file",
        "texts_dev_null",
        "texts_dir",
        "texts_empty",
        "name_attr",
        "name_index0",
        "name_item",
        "name_conversion",
        "name_unknown",
        "name_unclosed",
    ],
)
def test_cli_make_run_refuses_bad_paths_and_names(
    extra: list[str], fragments: list[str], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    (tmp_path / "file").write_text("x")
    (tmp_path / "empty.txt").write_bytes(b"")
    (tmp_path / "dir").mkdir()
    subs = {"{file}": str(tmp_path / "file"), "{dir}": str(tmp_path / "dir"), "{empty}": str(tmp_path / "empty.txt")}
    extra = [subs.get(a, a) for a in extra]
    argv = ["make-run", "--base-model", str(tmp_path / "no-model"), "--layer", "0", "-q"]
    if "--out" not in extra:
        argv += ["--out", str(tmp_path / "out")]
    assert main(argv + extra) == 2
    err = capsys.readouterr().err
    assert err.startswith("neuronprobe: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    missing = [f for f in fragments if f not in err]
    assert not missing, f"{missing} not in: {err}"
    assert not (tmp_path / "out").exists()
