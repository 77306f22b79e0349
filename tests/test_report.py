"""Tests for the report artifacts (plots, summary.json, index.html) and atomic writes."""

from __future__ import annotations

import concurrent.futures
import html
import json
import math
import os
import re
import shutil
import subprocess
import tempfile
import warnings
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pytest

from pytest_neuronprobe.core.atomic import write_bytes_atomic, write_json_atomic, write_text_atomic
from pytest_neuronprobe.core.formatting import format_fixed, format_p_value
from pytest_neuronprobe.report.figures import PLOT_FILES
from pytest_neuronprobe.report.files import RunReport, TestRecord, safe_run_name, write_report, write_run_report
from pytest_neuronprobe.report.html import write_index_html
from pytest_neuronprobe.report.patching_plots import (
    plot_patching_curves,
    plot_patching_scatter,
    plot_per_input_slopes,
)
from pytest_neuronprobe.report.projection_plots import plot_correlation_heatmap, plot_null, plot_projection

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
FACTORS = [0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0]


def _stats(x: np.ndarray, y: np.ndarray) -> dict:
    r = float(np.corrcoef(x, y)[0, 1])
    rank = lambda a: np.argsort(np.argsort(a)).astype(float)  # noqa: E731
    rho = float(np.corrcoef(rank(x), rank(y))[0, 1])
    return {
        "correlation": r,
        "r_squared": r * r,
        "p_value": 1e-12 if abs(r) > 0.3 else 0.2,
        "spearman": rho,
        "ci_low": r - 0.03,
        "ci_high": min(1.0, r + 0.03),
        "n": int(x.size),
    }


def make_report(
    name: str = "gpt2_neuron_l8_n481", *, n: int = 300, n_patch: int = 45, mlp: bool = True, seed: int = 0
) -> RunReport:
    """A synthetic run: projections tracking the activation to known degrees, a slope-0.9 head."""
    rng = np.random.default_rng(seed)
    truth = np.maximum(rng.gamma(1.5, 0.6, n) - 0.4, -0.17)
    arrays = {
        "ground_truth": truth,
        "prediction": truth + rng.normal(0, 0.15, n),
        "head": 1.3 * truth + rng.normal(0, 0.3, n),
        "live": truth + rng.normal(0, 1e-3, n),
    }
    if mlp:
        arrays["input"] = 2.0 * truth + rng.normal(0, 0.8, n)
        arrays["output"] = 0.2 * truth + rng.normal(0, 0.5, n)
        arrays["neuron_dir"] = 0.5 * truth + rng.normal(0, 0.6, n)
    projections = {k: _stats(v, truth) for k, v in arrays.items() if k != "ground_truth"}
    if not mlp:
        for k in ("input", "output", "neuron_dir"):
            projections[k] = {"absent": "layer_type resid_post is not an MLP neuron"}

    base = truth[:n_patch]
    texts = [f"Example text number {i} with some words ${i}" for i in range(n_patch)]
    texts[0] = "日本語のテキスト and a very long sentence that goes on and on past forty characters"
    act = np.outer(base, np.array(FACTORS) - 1.0)
    pred = 0.9 * act + rng.normal(0, 0.05, act.shape)
    slope, intercept = np.polyfit(act.ravel(), pred.ravel(), 1)
    r2 = float(np.corrcoef(act.ravel(), pred.ravel())[0, 1] ** 2)
    per_input = []
    for i, text in enumerate(texts):
        s, _ = np.polyfit(act[i], pred[i], 1) if np.ptp(act[i]) > 0 else (None, None)
        r2_i = float(np.corrcoef(act[i], pred[i])[0, 1] ** 2) if s is not None else None
        per_input.append({"text": text, "slope": None if s is None else float(s), "r_squared": r2_i})
    summary = {
        "run": {
            "path": f"/runs/{name}",
            "name": name,
            "target_layer": 8,
            "target_neuron": 481,
            "head_type": "regression",
            "base_model": "gpt2",
            "split": "test",
        },
        "dataset_size": n,
        "weight_similarities": {"head_input": 0.41, "head_output": -0.05, "input_output": 0.12},
        "projections": projections,
        "patching": {
            "mode": "scale",
            "factors": FACTORS,
            "baseline_correlation": float(np.corrcoef(base, base + rng.normal(0, 0.1, n_patch))[0, 1]),
            "slope": float(slope),
            "intercept": float(intercept),
            "r_squared": r2,
            "avg_activation_changes": act.mean(0).tolist(),
            "avg_prediction_changes": pred.mean(0).tolist(),
            "per_input": per_input,
            "direct_slope": 0.25,
        },
        "null": {"n_directions": 1000, "empirical_p": 1 / 1001, "selectivity": 7.4},
        "direct_effect": {"slope": 0.25, "r_squared": 0.8},
        "provenance": {
            "pytest_neuronprobe": "0.1.0",
            "torch": "2.3.1",
            "git": {"commit": "abc123", "dirty": False},
            "seed": 0,
        },
    }
    return RunReport(
        name=name,
        summary=summary,
        projection_arrays=arrays,
        patching_arrays={
            "factors": np.array(FACTORS),
            "activation_change": act,
            "prediction_change": pred,
            "texts": texts,
        },
        null_values=np.abs(rng.normal(0, 1 / math.sqrt(n), 1000)),
        null_label="random directions in feature space",
    )


def assert_png(path: Path, min_bytes: int = 4000) -> None:
    data = Path(path).read_bytes()
    assert data[:8] == PNG_MAGIC, path
    assert len(data) > min_bytes, (path, len(data))
    image = mpimg.imread(path)
    assert image.ndim == 3 and image.shape[2] in (3, 4)
    assert image.shape[0] > 200 and image.shape[1] > 300, image.shape
    assert float(image[..., :3].std()) > 0.01, "blank image"


def screenshot_html(
    html_path: str | os.PathLike[str], png_path: str | os.PathLike[str], width: int = 1280, height: int = 2400
) -> bool:
    """Screenshot a local HTML file with headless Chromium; False if Chromium is missing or fails."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        return False
    target = Path(png_path).resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    target.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="neuronprobe-chromium-") as profile:
        cmd = [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            f"--window-size={width},{height}",
            "--hide-scrollbars",
            f"--screenshot={target}",
            Path(html_path).resolve().as_uri(),
        ]
        try:
            done = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60, check=False)
        except (OSError, subprocess.SubprocessError):
            return False
    return done.returncode == 0 and target.is_file() and target.stat().st_size > 0


def visible_text(document: str) -> str:
    return re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", document)


@pytest.fixture(scope="module")
def full_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[RunReport, dict[str, Path], Path]:
    """One realistic run rendered once (plots are the slow part of this module)."""
    out = tmp_path_factory.mktemp("full")
    report = make_report()
    return report, write_run_report(report, out), out


# ---------------------------------------------------------------- atomic writes


def test_atomic_writers_create_parents_and_leave_no_temp_files(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b"
    assert write_bytes_atomic(target / "x.bin", b"\x00\x01") == target / "x.bin"
    write_text_atomic(target / "x.txt", "héllo\n")
    write_json_atomic(target / "x.json", {"b": 1, "a": [1.5, None], "c": np.float32(0.5)})
    assert (target / "x.bin").read_bytes() == b"\x00\x01"
    assert (target / "x.txt").read_text(encoding="utf-8") == "héllo\n"
    text = (target / "x.json").read_text()
    assert json.loads(text) == {"b": 1, "a": [1.5, None], "c": 0.5}
    assert text.index('"b"') < text.index('"a"'), "keys must keep their order"
    assert sorted(p.name for p in target.iterdir()) == ["x.bin", "x.json", "x.txt"]


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), np.float32("nan"), np.array([1.0, np.nan])])
def test_json_nan_raises_and_keeps_existing_file(tmp_path: Path, bad: object) -> None:
    path = tmp_path / "summary.json"
    write_json_atomic(path, {"ok": 1})
    before = path.read_bytes()
    with pytest.raises(ValueError, match=r"projections\.head\.correlation"):
        write_json_atomic(path, {"projections": {"head": {"correlation": bad}}})
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]


def test_write_run_report_nan_summary_raises(tmp_path: Path) -> None:
    report = make_report()
    bad = RunReport(name=report.name, summary={**report.summary, "dataset_size": float("nan")})
    with pytest.raises(ValueError):
        write_run_report(bad, tmp_path)


# ---------------------------------------------------------------- plots


def test_write_run_report_writes_everything(full_run) -> None:
    report, paths, tmp_path = full_run
    assert set(paths) == {
        "summary",
        "projection",
        "correlation",
        "patching_curves",
        "patching_scatter",
        "per_input_slopes",
        "null",
    }
    run_dir = tmp_path / "gpt2_neuron_l8_n481"
    assert all(p.parent == run_dir and p.is_file() for p in paths.values())
    for key, path in paths.items():
        if key != "summary":
            assert_png(path, min_bytes=15000)
    raw = paths["summary"].read_text()
    assert "NaN" not in raw and "Infinity" not in raw
    assert json.loads(raw) == report.summary
    leftovers = [p.name for p in run_dir.iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []


@pytest.mark.parametrize(
    "func",
    [
        plot_projection,
        plot_correlation_heatmap,
        plot_patching_curves,
        plot_patching_scatter,
        plot_per_input_slopes,
        plot_null,
    ],
)
def test_each_plot_renders_empty_input(tmp_path: Path, func) -> None:
    empty = RunReport(name="empty", summary={})
    assert_png(func(empty, tmp_path / "a" / "b" / "empty.png"), min_bytes=2000)
    hollow = RunReport(
        name="hollow",
        summary={"patching": {"per_input": []}},
        projection_arrays={"ground_truth": np.array([]), "head": np.array([])},
        patching_arrays={
            "factors": np.array([]),
            "activation_change": np.zeros((0, 0)),
            "prediction_change": np.zeros((0, 0)),
            "texts": [],
        },
        null_values=np.array([]),
    )
    assert_png(func(hollow, tmp_path / "hollow.png"), min_bytes=2000)


def test_plots_emit_no_warnings_for_awkward_text(tmp_path: Path) -> None:
    report = make_report(name="run with $dollars$ and 日本", n=60, n_patch=10)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for func in (plot_per_input_slopes, plot_null):
            assert_png(func(report, tmp_path / f"{func.__name__}.png"))
    assert safe_run_name(report.name) == "run_with_dollars_and"


def test_non_mlp_run_with_undefined_numbers(tmp_path: Path) -> None:
    """Absent projections show their reason; undefined (None) numbers read "undefined", never nan."""
    report = make_report(name="undefined-run", mlp=False, n=60, n_patch=8)
    arrays = dict(report.projection_arrays)
    arrays["live"] = np.full_like(arrays["ground_truth"], 2.0)
    summary = json.loads(json.dumps(report.summary))
    summary["projections"]["live"] = {
        "correlation": None,
        "r_squared": None,
        "p_value": None,
        "spearman": None,
        "ci_low": None,
        "ci_high": None,
        "n": 60,
    }
    summary["patching"]["slope"] = None
    summary["patching"]["per_input"][3]["slope"] = None
    summary["null"]["selectivity"] = None
    undefined = RunReport(
        name=report.name,
        summary=summary,
        projection_arrays=arrays,
        patching_arrays=report.patching_arrays,
        null_values=report.null_values,
    )
    paths = {"summary": write_json_atomic(tmp_path / "summary.json", summary)}
    for key, _, _, _, plot in PLOT_FILES:
        if key != "patching_curves":
            paths[key] = plot(undefined, tmp_path / f"{key}.png")
            assert_png(paths[key])
    claims = [
        {
            "run": report.name,
            "nodeid": "t.py::x",
            "claim": "live r > 0.5",
            "outcome": "failed",
            "message": "r is undefined",
            "values": {"r": None, "x": float("nan")},
        }
    ]
    text = visible_text(write_index_html(tmp_path, [(undefined, paths)], claims, {}).read_text())
    assert "absent: layer_type resid_post is not an MLP neuron" in text
    assert text.count('<span class="undef">undefined</span>') >= 9
    assert not re.search(r"\bnan\b", text, re.IGNORECASE)
    assert format_fixed(None) == format_fixed(float("nan")) == format_p_value(None) == "undefined"


def test_plots_are_thread_safe(tmp_path: Path) -> None:
    reports = [make_report(name=f"run{i}", seed=i, n=60, n_patch=6) for i in range(2)]
    jobs = [(r, f) for r in reports for f in (plot_null, plot_patching_scatter)]
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        paths = list(pool.map(lambda job: job[1](job[0], tmp_path / job[0].name / job[1].__name__), jobs))
    for path in paths:
        assert_png(path)


# ---------------------------------------------------------------- index.html


def test_index_html_is_self_contained_and_complete(full_run) -> None:
    first, first_paths, tmp_path = full_run
    second = make_report(name="second<run>", seed=1, mlp=False, n=50, n_patch=5)
    second_dir = tmp_path / safe_run_name(second.name)
    second_paths = {
        "summary": write_json_atomic(second_dir / "summary.json", second.summary),
        "null": plot_null(second, second_dir / "null.png"),
    }
    runs = [(first, first_paths), (second, second_paths)]
    claims = [
        {
            "run": first.name,
            "nodeid": "tests/test_probe.py::test_head",
            "claim": "head r >= 0.8",
            "outcome": "passed",
            "message": "",
            "values": {"r": 0.93, "threshold": 0.8},
        },
        {
            "run": first.name,
            "nodeid": "tests/test_probe.py::test_slope",
            "claim": "patching slope in [0.8, 1.2]",
            "outcome": "failed",
            "message": "slope 0.61 < 0.8\n<script>alert(1)</script>",
            "values": {"slope": 0.61},
        },
        {
            "run": second.name,
            "nodeid": "tests/test_probe.py::test_input",
            "claim": "input r > 0.5",
            "outcome": "skipped",
            "message": "input projection absent",
            "values": {},
        },
        {
            "run": "elsewhere",
            "nodeid": "t.py::e",
            "claim": "orphan claim",
            "outcome": "error",
            "message": "boom",
            "values": {},
        },
    ]
    header = {"when": "2024-05-01T12:00:00", "device": "cpu", "command": ["pytest", "-q", "--neuronprobe"]}
    index = write_index_html(tmp_path, runs, claims, header)
    assert index == tmp_path / "index.html"
    document = index.read_text(encoding="utf-8")
    from pytest_neuronprobe.core.version import __version__

    assert __version__ in document
    assert "gpt2_neuron_l8_n481" in document and "second&lt;run&gt;" in document
    for claim in claims:
        assert html.escape(claim["claim"], quote=True) in document
        assert f'badge {claim["outcome"]}">{claim["outcome"]}' in document
    assert "<script>" not in document and "&lt;script&gt;" in document
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', document)
    assert len(images) == sum(len(p) - 1 for _, p in runs)
    assert "http://" not in document and "https://" not in document
    assert not re.search(r'(src|href)="(?!data:|#|[\w./-]+summary\.json")', document)
    assert "abc123" in document and "git.commit" in document  # provenance
    assert "pytest -q --neuronprobe" in document and "Claims without a run" in document


def test_write_report_writes_runs_index_and_results(tmp_path: Path) -> None:
    good = make_report(name="good", n=40, n_patch=4)
    broken = RunReport(
        name="broken", summary={"run": {"name": "broken"}, "error": "RuntimeError: boom"}, error="RuntimeError: boom"
    )
    records = [
        TestRecord(
            nodeid="t.py::a",
            run="good",
            claim="head r > 0.5",
            outcome="passed",
            values={"r": np.float64(0.9), "x": float("nan")},
            duration=0.123456,
            order=1,
        ),
        TestRecord(nodeid="t.py::b", run="broken", claim="", outcome="error", message="boom"),
    ]
    header = {"when": "2024-05-01T12:00:00", "device": "cpu"}
    files = write_report(tmp_path / "out", [good, broken], records, header)
    assert files.index_html == tmp_path / "out" / "index.html"
    assert set(files.run_files) == {"good"}
    assert files.run_files["good"] == {
        k: tmp_path / "out" / "good" / v
        for k, v in [("summary", "summary.json")] + [(p.key, p.filename) for p in PLOT_FILES]
    }
    assert not (tmp_path / "out" / "broken").exists()
    results = json.loads(files.results_json.read_text())
    assert results == {"header": header, "tests": [r.as_dict() for r in records]}
    assert results["tests"][0]["values"] == {"r": 0.9, "x": None} and results["tests"][0]["duration"] == 0.1235
    assert [TestRecord.from_dict(d) for d in results["tests"]][1] == records[1]
    document = files.index_html.read_text(encoding="utf-8")
    assert "RuntimeError: boom" in document and '<a href="#run-1">broken</a>' in document
    assert len(re.findall(r'src="data:image/png;base64,', document)) == len(PLOT_FILES)


def test_screenshot_html_without_chromium(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    page = tmp_path / "p.html"
    page.write_text("<html><body>x</body></html>")
    assert screenshot_html(page, tmp_path / "shot.png") is False


@pytest.mark.skipif(not (shutil.which("chromium") or shutil.which("chromium-browser")), reason="chromium not installed")
def test_screenshot_html_with_chromium(tmp_path: Path) -> None:
    page = tmp_path / "p.html"
    page.write_text("<html><body><h1>hello</h1></body></html>")
    assert screenshot_html(page, tmp_path / "shot.png", width=400, height=300) is True
    assert_png(tmp_path / "shot.png", min_bytes=500)


def test_safe_run_name() -> None:
    assert safe_run_name("a/b c:d") == "a_b_c_d"
    assert safe_run_name("../..") == "run"
    assert safe_run_name("neuron_l8_n481-x.y") == "neuron_l8_n481-x.y"
