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
from pytest_neuronprobe.report.files import (
    RunReport,
    TestRecord,
    safe_run_name,
    write_index,
    write_report,
    write_run_report,
)
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
        "attribution": _attribution_section(n),
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


def _attribution_section(n: int) -> dict[str, object]:
    """An attribution sweep's summary section: three verified units (the target second), two layers."""
    units = [("L7.N12", 0.30, 0.31), ("L8.N481", 0.12, 0.11), ("L6.H3", 0.05, 0.07)]
    verified = [
        {
            "unit": u,
            "layer": int(u[1]),
            "kind": u.split(".")[1][0],
            "index": int(u.split(".")[1][1:]),
            "effect": e,
            "ci_low": e * 0.9,
            "ci_high": e * 1.1,
            "effect_signed": 0.0,
            "estimate": est,
            "direct": None,
            "direct_reason": "no direct path",
            "rank_estimate": i + 1,
        }
        for i, (u, e, est) in enumerate(units)
    ]
    layers = [
        {"layer": layer, "kind": "N", "n_units": 3072, "total_estimate": 1.0, "top": [[1, 0.1], [2, 0.05]]}
        for layer in (6, 7, 8)
    ]
    return {
        "ablation": "mean",
        "n_texts": n,
        "n_units": 9216,
        "spearman": 0.5,
        "trustworthy": False,
        "target": {"unit": "L8.N481", "rank": 2, "rank_estimate": 2, "share": 0.26, "effect": 0.12},
        "verified": verified,
        "layers": layers,
    }


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
        "attribution",
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
    for plot_file in PLOT_FILES:
        if plot_file.key != "patching_curves":
            paths[plot_file.key] = plot_file.plot(undefined, tmp_path / plot_file.filename)
            assert_png(paths[plot_file.key])
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
    text = visible_text(write_index_html(tmp_path, [(undefined, tmp_path)], claims, {}).read_text())
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
    index = write_index_html(tmp_path, [(r, p["summary"].parent) for r, p in runs], claims, header)
    assert index == tmp_path / "index.html"
    document = index.read_text(encoding="utf-8")
    from pytest_neuronprobe.core.version import __version__

    assert __version__ in document
    assert "gpt2_neuron_l8_n481" in document and "second&lt;run&gt;" in document
    for claim in claims:
        assert html.escape(claim["claim"], quote=True) in document
        assert f'badge {claim["outcome"]}">{claim["outcome"]}' in document
    assert "<script>alert" not in document and "&lt;script&gt;alert(1)" in document
    # the figures are the PNG files next to index.html, linked (relative), each one that exists
    images = re.findall(r'<img src="([^"]+)"', document)
    assert len(images) == sum(len(p) - 1 for _, p in runs)
    assert all((tmp_path / src).is_file() and not src.startswith(("/", "data:")) for src in images)
    assert "http://" not in document and "https://" not in document
    links = re.findall(r'(?:src|href)="([^"#][^"]*)"', document)
    assert all((tmp_path / link).is_file() for link in links), links
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
    assert {k: v for k, v in results.items() if k != "runs"} == {
        "header": header,
        "tests": [r.as_dict() for r in records],
    }
    assert set(results["runs"]) == {"good", "broken"} and results["runs"]["good"]["folder"] == "good"
    assert results["tests"][0]["values"] == {"r": 0.9, "x": None} and results["tests"][0]["duration"] == 0.1235
    assert [TestRecord.from_dict(d) for d in results["tests"]][1] == records[1]
    document = files.index_html.read_text(encoding="utf-8")
    assert "RuntimeError: boom" in document and '<a href="#run-1">broken</a>' in document
    assert len(re.findall(r'<img src="good/', document)) == len(PLOT_FILES)


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


# ---------------------------------------------------------------- the overview (issue #11)


def _record(run: str, claim: str, outcome: str, *, metric: str = "", values: dict | None = None, kind: str = "claim"):
    nodeid = f"claims.yaml::{claim}[{run}]" if kind == "claim" else f"t.py::{claim}[{run}]"
    text = claim if kind == "claim" else f"{claim}[{run}]: What it checks."
    return TestRecord(
        nodeid, run, text, outcome, message=f"{claim} {outcome}", values=values or {}, kind=kind, metric=metric
    )


def _summary_only(report: RunReport, name: str, **changes: float) -> RunReport:
    summary = json.loads(json.dumps(report.summary))
    summary["run"]["name"] = name
    for key, value in changes.items():
        section, field = key.split("__")
        summary[section][field] = value
    return RunReport(name=name, summary=summary)


def test_short_labels() -> None:
    from pytest_neuronprobe.report.overview import short_labels

    seeds = [f"regression-linear-neuron_l2_n3-seed{i}" for i in range(3)]
    assert short_labels(seeds) == {n: f"seed{i}" for i, n in enumerate(seeds)}
    kinds = ["classification-5bins-neuron_l2_n3-seed0", "token-ft1-neuron_l2_n3-seed0"]
    assert list(short_labels(kinds).values()) == ["classification-5bins", "token-ft1"]
    assert short_labels(["x" * 60])["x" * 60].count("…") == 1 and len(short_labels(["x" * 60])["x" * 60]) == 24
    assert short_labels(["same"]) == {"same": "same"}


def test_matrix_puts_failing_claims_and_runs_first(tmp_path: Path) -> None:
    base = make_report(n=40, n_patch=4)
    runs = [_summary_only(base, f"run-{c}") for c in "abc"]
    records = [
        _record("run-a", "projection.head.r >= 0.5", "passed", metric="projection.head.r"),
        _record("run-b", "projection.head.r >= 0.5", "passed", metric="projection.head.r"),
        _record("run-c", "projection.head.r >= 0.5", "passed", metric="projection.head.r"),
        _record("run-a", "patching.slope > 0", "passed", metric="patching.slope"),
        _record("run-b", "patching.slope > 0", "passed", metric="patching.slope"),
        _record("run-c", "patching.slope > 0", "failed", metric="patching.slope"),
        _record("run-a", "test_plain", "skipped", kind="test"),
    ]
    document = write_index(tmp_path, runs, records, {}).read_text(encoding="utf-8")
    matrix = document[document.index('id="matrix"') : document.index("</table>", document.index('id="matrix"'))]
    rows = re.findall(r'<th class="claim"[^>]*>([^<]+)</th>', matrix)
    assert rows == ["patching.slope &gt; 0", "test_plain", "projection.head.r &gt;= 0.5"]
    columns = re.findall(r'<th class="run[^"]*" title="([^"]+)">', matrix)
    assert columns == ["run-c", "run-a", "run-b"]  # the failing run first, then as given
    first_row = matrix.split("<tr>")[2]
    assert re.findall(r'<td class="cell (\w+)"', first_row) == ["failed", "passed", "passed"]
    assert 'title="run-c: failed — patching.slope &gt; 0 failed"' in first_row
    assert 'class="cell none"' in matrix  # test_plain did not run on run-b / run-c
    assert document.index('id="matrix"') < document.index('id="metrics"') < document.index('id="trends"')
    assert document.index('id="trends"') < document.index('<details class="run" id="run-0">')


def _pair(label: str, summary: dict, differences: tuple[str, ...] = ()):
    from pytest_neuronprobe.baseline import BaselinePair

    return BaselinePair(label, "old-run", "same neuron (gpt2 L8 N481)", summary, differences)


def test_headline_table_shows_delta_against_the_baseline(tmp_path: Path) -> None:
    base = make_report(n=40, n_patch=4)
    now = _summary_only(base, "now", patching__slope=0.5)
    other = _summary_only(base, "other")
    old = json.loads(json.dumps(base.summary))
    old["patching"]["slope"] = 0.9
    old["projections"]["head"].update(correlation=0.5, ci_low=0.45, ci_high=0.55)
    baselines = {"now": _pair("now", old, ("split: all vs test", "n: 60 vs 40")), "other": None}
    records = [_record("now", "patching.slope >= baseline - 0.1", "failed", metric="patching.slope")]
    document = write_index(tmp_path, [now, other], records, {}, baselines=baselines).read_text(encoding="utf-8")
    table = document[document.index('id="metrics"') : document.index("</table>", document.index('id="metrics"'))]
    now_row, other_row = table.split("<tr>")[2:4]
    assert "old-run" in now_row and "same neuron (gpt2 L8 N481)" in now_row
    assert "⚠ analysed differently: split: all vs test; n: 60 vs 40" in now_row
    head_r = now.summary["projections"]["head"]["correlation"]
    assert f'<small class="up">▲ {head_r - 0.5:+.4f}</small>' in now_row  # 0.5 is outside the current interval
    assert '<td class="num broken"' in now_row and "breaks: patching.slope &gt;= baseline - 0.1" in now_row
    assert "▼ -0.4000" in now_row
    assert '<td class="muted">none</td>' in other_row and "Δ" not in other_row
    plain = write_index(tmp_path, [now], [], {}).read_text(encoding="utf-8")
    assert "no baseline given (--neuron-baseline): no Δ" in plain and "<th>baseline</th>" not in plain


def test_claim_rows_show_the_values_used(tmp_path: Path) -> None:
    base = make_report(n=40, n_patch=4)
    run = _summary_only(base, "r", patching__slope=None)
    run.summary["patching"]["reason"] = "the activation never changed"
    fixture_numbers = {"projection.head.r": 0.9, "projection.head.ci_low": 0.8}
    records = [
        _record(
            "r",
            "dataset_size >= 100",
            "failed",
            metric="dataset_size",
            values={
                "dataset_size.estimate": 40.0,
                "dataset_size.ci_low": "undefined",
                "dataset_size.ci_high": "undefined",
                "dataset_size.threshold": 100.0,
                "projection.head.r": 0.9,
            },
        ),
        _record(
            "r",
            "patching.slope > 0",
            "failed",
            metric="patching.slope",
            values={
                "patching.slope.estimate": "undefined",
                "patching.slope.ci_low": "undefined",
                "patching.slope.ci_high": "undefined",
                "patching.slope.threshold": 0.0,
            },
        ),
        _record("r", "test_passes", "passed", kind="test", values=fixture_numbers),
        _record("r", "test_fails", "failed", kind="test", values=fixture_numbers),
    ]
    document = write_index(tmp_path, [run], records, {}).read_text(encoding="utf-8")
    rows = {
        m.group(1): m.group(0)
        for m in re.finditer(
            r'<tr><td><span class="badge[^>]*>\w+</span></td><td class="claim" title="([^"]*)".*?</tr>', document
        )
    }
    size = rows["dataset_size &gt;= 100"]
    assert "estimate = 40" in size and "threshold = 100" in size
    assert "ci_low" not in size and "ci_high" not in size and "projection.head.r" not in size
    slope = rows["patching.slope &gt; 0"]
    assert 'estimate = <span class="undef">undefined (the activation never changed)</span>' in slope
    assert "ci_low = " in slope  # the slope has an interval: its undefined bounds are shown
    passing = rows["test_passes[r]: What it checks."]
    assert "<code>test_passes</code><br>What it checks." in passing and "projection.head.r" not in passing
    failing = rows["test_fails[r]: What it checks."]
    assert "the run's standard numbers:" in failing and "projection.head.r = 0.9" in failing
    assert "td.test { min-width:200px" in document  # the test column never wraps one character per line
    assert '<ul class="chips" id="runs"><li class=bad title="r — /runs/gpt2_neuron_l8_n481">' in document


def test_trend_orders_runs_by_training_date_with_the_history(tmp_path: Path) -> None:
    from pytest_neuronprobe.history import HistoryEntry, MetricPoint
    from pytest_neuronprobe.report.trend import trend_points

    base = make_report(n=40, n_patch=4)
    runs = [_summary_only(base, "late"), _summary_only(base, "early")]
    runs[0].summary["provenance"]["head_mtime"] = "2024-03-01T00:00:00+00:00"
    runs[1].summary["provenance"]["head_mtime"] = "2024-01-01T00:00:00+00:00"
    point = MetricPoint(value=0.3, ci_low=0.2, ci_high=0.4)
    history = [
        HistoryEntry(
            "2024-02-03T00:00:00+00:00",
            "middle",
            "middle",
            "2024-02-01T00:00:00+00:00",
            None,
            {"projection.head.r": point},
        ),
        HistoryEntry(
            "2024-01-02T00:00:00+00:00",
            "early",
            "early",
            "2024-01-01T00:00:00+00:00",
            None,
            {"projection.head.r": point},
        ),
    ]
    points = trend_points(runs, history, "projection.head.r")
    assert [(p.run, p.current) for p in points] == [("early", True), ("middle", False), ("late", True)]
    document = write_index(tmp_path, runs, [], {}, history=history).read_text(encoding="utf-8")
    svg = re.search(r'<svg class="trend" data-metric="projection.head.r".*?</svg>', document, re.S).group(0)
    assert [m for m in re.findall(r'<circle class="(\w+)"', svg)] == ["current", "past", "current"]
    assert "middle\nprojection.head.r = 0.3 [0.200, 0.400]\ntrained 2024-02-01" in html.unescape(svg)
    assert len(re.findall(r'<svg class="trend"', document)) == 6  # every headline metric but null.random's (none)


@pytest.mark.parametrize(
    ("values", "bounds"),
    [
        ([0.9921, 0.9923, 0.9922], (0.988, 0.994)),  # close values: ticks 0.9886 / 0.991 / 0.9934
        ([1.0, 1.0 - 3e-15, 1.0], (1.0, 1.0)),  # equal up to rounding: a padded range, not three "1"s
    ],
)
def test_trend_tick_labels_are_distinct(values: list[float], bounds: tuple[float, float]) -> None:
    from pytest_neuronprobe.report.trend import TrendPoint, trend_svg

    points = [TrendPoint(f"r{i}", None, "", v, *bounds, True) for i, v in enumerate(values)]
    ticks = re.findall(r'<text [^>]*text-anchor="end"[^>]*>([^<]*)</text>', trend_svg(points, "live r"))[:3]
    assert len(set(ticks)) == 3, ticks


def test_figures_are_cached_by_their_input(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pytest_neuronprobe.report import figure_cache

    rendered: list[str] = []
    real = figure_cache.render_plans

    def counting(plans, workers=None):
        rendered.extend(f"{p.report.name}/{f.key}" for p in plans for f in p.todo)
        return real(plans, workers)

    monkeypatch.setattr(figure_cache, "render_plans", counting)
    runs = [make_report(name=f"run{i}", seed=i, n=40, n_patch=4) for i in range(2)]
    write_report(tmp_path, runs)
    assert len(rendered) == 2 * len(PLOT_FILES)
    mtimes = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*.png")}
    rendered.clear()
    files = write_report(tmp_path, runs, header={"when": "later"})
    assert rendered == [] and {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*.png")} == mtimes
    assert set(files.run_files["run0"]) == {"summary", *(p.key for p in PLOT_FILES)}
    changed = _summary_only(runs[1], "run1", patching__slope=0.1)
    changed = RunReport(**{**runs[1].__dict__, "summary": changed.summary})
    changed.summary["provenance"]["created"] = "another session"  # provenance is not drawn
    write_report(tmp_path, [runs[0], changed])
    assert sorted(rendered) == ["run1/patching_curves", "run1/patching_scatter", "run1/per_input_slopes"]
    (tmp_path / "run0" / "null.png").unlink()
    rendered.clear()
    write_report(tmp_path, [runs[0], changed])
    assert rendered == ["run0/null"]


def test_index_html_stays_small_for_eight_runs(full_run, tmp_path: Path) -> None:
    report, paths, _ = full_run
    runs = []
    for i in range(8):
        name = f"regression-linear-neuron_l8_n481-seed{i}"
        shutil.copytree(paths["summary"].parent, tmp_path / name)
        runs.append(_summary_only(report, name))
    records = [_record(r.name, f"claim {j}", "passed") for r in runs for j in range(20)]
    index = write_index(tmp_path, runs, records, {})
    assert index.stat().st_size <= 2_000_000 / 8, index.stat().st_size  # the 2 MB target, with room
    assert len(re.findall(r'<img src="regression-linear', index.read_text())) == 8 * len(PLOT_FILES)


def test_figures_render_the_same_in_worker_processes(tmp_path: Path) -> None:
    from pytest_neuronprobe.report.figure_cache import CACHE_FILE, plan_figures, render_plans

    runs = [make_report(name=f"run{i}", seed=i, n=40, n_patch=4) for i in range(2)]
    done = {}
    for workers in (1, 2):
        plans = [plan_figures(r, tmp_path / str(workers) / r.name) for r in runs]
        assert render_plans(plans, workers) == 2 * len(PLOT_FILES)
        done[workers] = {
            p.relative_to(tmp_path / str(workers)): p.read_bytes()
            for p in (tmp_path / str(workers)).rglob("*")
            if p.is_file()
        }
    assert done[1] == done[2] and len(done[2]) == 2 * (len(PLOT_FILES) + 1)
    assert all(p.name in (CACHE_FILE, *(f.filename for f in PLOT_FILES)) for p in done[2])
