"""The on-disk analysis cache (issue #5): keys, invalidation, corrupt entries, concurrent writers,
`neuronprobe cache clear`, and the model loader's in-process cache key."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pytest_neuronprobe.analyses import cache as C
from pytest_neuronprobe.analyses.joint import JointOptions
from pytest_neuronprobe.analyses.options import PatchingOptions, ProjectionOptions
from pytest_neuronprobe.core.digests import tree_digest
from pytest_neuronprobe.pytest import session as S

#: Cheap analyses on the tiny runs.
PROJ = {"n_resamples": 20, "null_directions": 5}
PATCH = {"n_resamples": 20, "factors": [0.0, 1.0, 2.0]}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _copy_run(run: Path, dst: Path) -> Path:
    shutil.copytree(run, dst, symlinks=True)
    return dst


def _session(run: Path, cache_dir: Path | None) -> S.NeuronSession:
    return S.NeuronSession(S.Settings(runs=(run,), cache_dir=cache_dir))


def _analyse(
    run: Path, cache_dir: Path | None, proj: dict | None = None, patch: dict | None = None
) -> tuple[Any, Any, S.NeuronSession]:
    s = _session(run, cache_dir)
    label = s.labels[0]
    p = s.projection(label, s.projection_options(dict(PROJ, **(proj or {}))))
    q = s.patching(label, s.patching_options(dict(PATCH, **(patch or {}))))
    return p, q, s


def _cached(s: S.NeuronSession) -> int:
    return s.counters.analyses_cached


def _same(a: Any, b: Any) -> None:
    """Two results have identical numbers (the summary dicts and every array)."""
    assert json.dumps(a.as_dict(), sort_keys=True, default=str) == json.dumps(b.as_dict(), sort_keys=True, default=str)
    assert a.arrays.keys() == b.arrays.keys()
    for k in a.arrays:
        x, y = a.arrays[k], b.arrays[k]
        if isinstance(x, np.ndarray):
            assert x.dtype == y.dtype and np.array_equal(x, y, equal_nan=True), k
        else:
            assert x == y, k


def _entries(cache_dir: Path) -> list[Path]:
    return sorted(cache_dir.rglob("*.npz"))


@pytest.fixture
def run_copy(regression_run: Path, tmp_path: Path) -> Path:
    return _copy_run(regression_run, tmp_path / "runs" / regression_run.name)


def test_unchanged_inputs_are_served_from_cache_with_identical_numbers(run_copy: Path, tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    p1, q1, s1 = _analyse(run_copy, cache_dir)
    assert _cached(s1) == 0 and s1.counters.analyses == 2
    assert len(_entries(cache_dir)) == 2
    p2, q2, s2 = _analyse(run_copy, cache_dir)
    assert _cached(s2) == 2
    _same(p1, p2)
    _same(q1, q2)
    np.testing.assert_array_equal(p1.direction, p2.direction)
    assert p2.head.r == p1.head.r and p2.head.ci_low == p1.head.ci_low
    assert q2.slope == q1.slope and q2.factors == q1.factors
    assert [x.as_dict() for x in q2.per_input] == [x.as_dict() for x in q1.per_input]
    from pytest_neuronprobe.pytest.finish import summary_lines

    lines = " ".join(summary_lines(s2, 0))
    assert "analyses took" in lines and "(2 of 2 from cache)" in lines


def test_both_default_analyses_are_cached_as_one_entry(run_copy: Path, tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    results = []
    for _ in range(2):
        s = _session(run_copy, cache_dir)
        s.joint = True
        label = s.labels[0]
        results.append((s.projection(label), s.patching(label), s))
    (p1, q1, s1), (p2, q2, s2) = results
    assert _cached(s1) == 0 and _cached(s2) == 1 and s2.counters.analyses == 1
    _same(p1, p2)
    _same(q1, q2)
    assert len(_entries(cache_dir)) == 1


def _flip_last_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01
    path.write_bytes(bytes(data))


def _one(run: Path, pattern: str) -> Path:
    hits = sorted(run.rglob(pattern))
    assert hits, pattern
    return hits[0]


@pytest.mark.parametrize("change", ["head", "config", "dataset", "option"])
def test_one_changed_byte_or_option_recomputes(change: str, run_copy: Path, tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    _, _, s1 = _analyse(run_copy, cache_dir)
    assert _cached(s1) == 0
    extra: dict[str, Any] = {}
    if change == "head":
        _flip_last_byte(_one(run_copy, "head.safetensors"))
    elif change == "config":
        config = next(p for p in run_copy.rglob("config.json") if p.parent.name == "best_model")
        config.write_bytes(config.read_bytes() + b" ")
    elif change == "dataset":
        csv = _one(run_copy / "datasets", "*.csv")
        csv.write_bytes(csv.read_bytes() + b"\n")
    else:
        extra = {"seed": 1}
    _, _, s2 = _analyse(run_copy, cache_dir, proj=extra, patch=extra)
    assert _cached(s2) == 0, change
    assert len(_entries(cache_dir)) == 4
    _, _, s3 = _analyse(run_copy, cache_dir, proj=extra, patch=extra)
    assert _cached(s3) == 2


def test_changed_base_model_file_changes_the_key(tiny_lm_dir: Path, regression_run: Path, tmp_path: Path) -> None:
    from pytest_neuronprobe.core.runs import load_run

    run = load_run(regression_run)
    key = C.analysis_key(run, ProjectionOptions(**PROJ), "cpu")
    assert key == C.analysis_key(run, ProjectionOptions(**dict(reversed(list(PROJ.items())))), "cpu")
    assert key != C.analysis_key(run, ProjectionOptions(**PROJ), "cuda")
    assert key != C.analysis_key(run, ProjectionOptions(**PROJ, seed=1), "cpu")
    assert key != C.analysis_key(run, PatchingOptions(n_resamples=PROJ["n_resamples"]), "cpu")
    joint = JointOptions(ProjectionOptions(**PROJ), PatchingOptions())
    assert C.analysis_key(run, joint, "cpu") not in (key, C.analysis_key(run, PatchingOptions(), "cpu"))
    lm = tmp_path / "lm"
    shutil.copytree(tiny_lm_dir, lm)
    before = tree_digest(lm)
    cfg = lm / "config.json"
    cfg.write_bytes(cfg.read_bytes() + b" ")
    assert tree_digest(lm) != before


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty", "other-key"])
def test_corrupt_entry_is_recomputed_and_repaired(damage: str, run_copy: Path, tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    p1, q1, _ = _analyse(run_copy, cache_dir)
    entries = _entries(cache_dir)
    assert len(entries) == 2
    data = [e.read_bytes() for e in entries]
    for i, entry in enumerate(entries):
        if damage == "garbage":
            entry.write_bytes(b"not an npz file" * 10)
        elif damage == "truncated":
            entry.write_bytes(data[i][: len(data[i]) // 2])
        elif damage == "empty":
            entry.write_bytes(b"")
        else:  # a valid entry, but written for the other key
            entry.write_bytes(data[1 - i])
    p2, q2, s2 = _analyse(run_copy, cache_dir)
    assert _cached(s2) == 0
    _same(p1, p2)
    _same(q1, q2)
    p3, _, s3 = _analyse(run_copy, cache_dir)
    assert _cached(s3) == 2
    _same(p1, p3)


def test_no_cache_dir_reads_and_writes_nothing(run_copy: Path, tmp_path: Path) -> None:
    _, _, s = _analyse(run_copy, None)
    assert s.cache is None and s.counters.analyses == 2 and _cached(s) == 0
    assert not list(tmp_path.rglob("*.npz"))


def _value() -> dict[str, Any]:
    from pytest_neuronprobe.analyses.stats import Correlation, Undefined

    return {
        "x": np.arange(200_000, dtype=np.float64),
        "c": Correlation(r=0.5, r_squared=0.25, p_value=0.01, spearman=0.4, n=10, ci_low=0.1, ci_high=0.8),
        "u": Undefined("constant"),
        "t": (1, 2.5, float("nan"), np.float32(1.5)),
        "s": ["a", "b"],
    }


def _check_value(v: Any) -> None:
    np.testing.assert_array_equal(v["x"], np.arange(200_000, dtype=np.float64))
    assert v["c"].r == 0.5 and v["c"].ci_high == 0.8 and v["c"].n == 10
    assert repr(v["u"]) == "undefined(constant)"
    assert v["t"][:2] == (1, 2.5) and np.isnan(v["t"][2]) and v["t"][3] == np.float32(1.5)
    assert type(v["t"][3]) is np.float32 and v["s"] == ["a", "b"]


def test_encoding_round_trips_exactly_and_refuses_what_it_cannot_store(tmp_path: Path) -> None:
    cache = C.ResultCache(tmp_path)
    key = "ab" + "0" * 62
    assert cache.put(key, _value())
    _check_value(cache.get(key))
    assert not cache.put("cd" + "0" * 62, {"f": object()})
    assert not cache.put("cd" + "0" * 62, {"o": np.array([object()], dtype=object)})
    assert not cache.put("cd" + "0" * 62, {1: 2})
    assert cache.get("cd" + "0" * 62) is None
    # never unpickled: an object array inside an entry makes it unreadable, hence a miss
    import io

    buf = io.BytesIO()
    np.savez(buf, __meta__=np.frombuffer(b"{}", dtype=np.uint8), a0=np.array([object()], dtype=object))
    path = cache.path("ef" + "0" * 62)
    path.parent.mkdir(parents=True)
    path.write_bytes(buf.getvalue())
    assert cache.get("ef" + "0" * 62) is None


def test_concurrent_thread_writers_leave_a_valid_entry(tmp_path: Path) -> None:
    cache = C.ResultCache(tmp_path)
    key = "12" + "3" * 62
    value = _value()
    errors: list[BaseException] = []
    seen: list[Any] = []

    def write() -> None:
        try:
            for _ in range(5):
                assert C.ResultCache(tmp_path).put(key, value)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    def read() -> None:
        for _ in range(20):
            got = C.ResultCache(tmp_path).get(key)
            if got is not None:
                seen.append(got)

    threads = [threading.Thread(target=write) for _ in range(6)] + [threading.Thread(target=read) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for v in seen:
        _check_value(v)
    _check_value(cache.get(key))
    assert [p.name for p in tmp_path.rglob("*") if p.is_file()] == [f"{key}.npz"]


WRITER = """
import sys
import numpy as np
sys.path.insert(0, {tests!r})
from test_cache import _value, _check_value
from pytest_neuronprobe.analyses.cache import ResultCache
c = ResultCache({dir!r})
for i in range(15):
    assert c.put({key!r}, _value())
    got = c.get({key!r})
    assert got is not None
    _check_value(got)
print("ok")
"""


def test_concurrent_process_writers_leave_a_valid_entry(tmp_path: Path) -> None:
    key = "fe" + "d" * 62
    code = WRITER.format(tests=str(Path(__file__).parent), dir=str(tmp_path / "c"), key=key)
    procs = [
        subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0 and out.strip() == "ok", err
    _check_value(C.ResultCache(tmp_path / "c").get(key))
    assert [p.name for p in (tmp_path / "c").rglob("*") if p.is_file()] == [f"{key}.npz"]


def test_cache_clear_command_removes_entries_only(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from pytest_neuronprobe.cli import main

    cache = C.ResultCache(tmp_path / "c")
    for k in ("aa", "ab", "ff"):
        assert cache.put(k + "1" * 62, {"x": np.arange(3.0)})
    keep = tmp_path / "c" / "README.txt"
    keep.write_text("keep me")
    other = tmp_path / "c" / "zz"
    other.mkdir()
    (other / "keep.npz").write_bytes(b"x")
    assert main(["cache", "clear", "--dir", str(tmp_path / "c")]) == 0
    assert "removed 3 cached analysis result(s)" in capsys.readouterr().out
    assert not list((tmp_path / "c").glob("??/*" + "1" * 62 + ".npz"))
    assert keep.read_text() == "keep me" and (other / "keep.npz").exists()
    assert cache.get("aa" + "1" * 62) is None
    assert main(["cache", "clear", "--dir", str(tmp_path / "missing")]) == 0
    assert "removed 0" in capsys.readouterr().out
    assert main(["cache", "clear", "--dir", str(keep)]) == 2


def test_cache_clear_defaults_to_pytest_cache_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from pytest_neuronprobe.cli import main

    monkeypatch.chdir(tmp_path)
    cache = C.ResultCache(tmp_path / ".pytest_cache" / "d" / "neuronprobe")
    assert cache.put("ab" + "2" * 62, {"x": np.arange(3.0)})
    assert main(["cache", "clear"]) == 0
    assert "removed 1" in capsys.readouterr().out
    assert cache.get("ab" + "2" * 62) is None


def test_load_model_rebuilt_in_place_is_reloaded(tiny_lm_dir: Path, tmp_path: Path) -> None:
    from pytest_neuronprobe.core.models import load_model

    lm = tmp_path / "lm"
    shutil.copytree(tiny_lm_dir, lm)
    first = load_model(str(lm))
    assert load_model(str(lm)) is first
    cfg = lm / "config.json"
    cfg.write_text(cfg.read_text(encoding="utf-8") + "\n", encoding="utf-8")  # one byte more, same model
    second = load_model(str(lm))
    assert second is not first
    assert load_model(str(lm)) is second


def test_copies_of_one_base_model_are_loaded_once(tiny_lm_dir: Path, tmp_path: Path) -> None:
    """Runs that each carry a copy of the same base model (by content) share one loaded model."""
    from pytest_neuronprobe.core.models import load_model

    copies = [shutil.copytree(tiny_lm_dir, tmp_path / f"copy{i}") for i in range(2)]
    first = load_model(str(copies[0]))
    assert load_model(str(copies[1])) is first
    assert load_model(str(copies[0]), processing="raw") is not first
    weights = next(p for p in copies[1].iterdir() if p.suffix == ".safetensors")
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1  # one bit of one weight
    weights.write_bytes(bytes(data))
    assert load_model(str(copies[1])) is not first
    assert load_model(str(copies[0])) is first


def test_runs_sharing_a_model_by_content_each_name_their_own(regression_run: Path, tmp_path: Path) -> None:
    """Two copies of a run, each with its own base_model/ copy: one loaded model, each summary names its copy."""
    from pytest_neuronprobe.report.summary import provenance

    runs = [_copy_run(regression_run, tmp_path / name / regression_run.name) for name in ("a", "b")]
    lines: list[str] = []
    s = S.NeuronSession(S.Settings(runs=tuple(runs)), log=lines.append)
    probes = [s.probe(label) for label in s.labels]
    assert probes[0].model is probes[1].model
    assert "(the same files as" in lines[-1] and "loaded once" in lines[-1]
    records = [provenance(p) for p in probes]
    for run, record in zip(runs, records, strict=True):
        assert Path(record["model_source"]).is_relative_to(run)
    assert records[0]["model_sha256"] == records[1]["model_sha256"] is not None


def test_a_copy_of_a_run_is_served_from_cache_under_its_own_name(run_copy: Path, tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    p1, q1, _ = _analyse(run_copy, cache_dir)
    copy = _copy_run(run_copy, tmp_path / "elsewhere" / "the-copy")
    p2, q2, s2 = _analyse(copy, cache_dir)
    assert _cached(s2) == 2  # byte-identical inputs: no recomputation (issue #13: no run identity in entries)
    assert p1.run_name == q1.run_name == run_copy.name
    assert p2.run_name == q2.run_name == "the-copy"
    assert "the-copy" in repr(p2) and "the-copy" in repr(q2)
    assert run_copy.name not in repr(p2) and run_copy.name not in repr(q2)
    assert all(run_copy.name.encode() not in e.read_bytes() for e in _entries(cache_dir))


def _meta(entry: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    with np.load(entry, allow_pickle=False) as npz:
        meta = json.loads(bytes(npz["__meta__"]).decode("utf-8"))
        rest = {n: npz[n] for n in npz.files if n != "__meta__"}
    return meta, rest


def _field(tree: Any, name: str) -> list[Any]:
    """The [name, value] pair of dataclass field `name` in an encoded tree."""
    return next(pair for pair in tree["v"] if pair[0] == name)  # type: ignore[no-any-return]


def test_an_edited_number_is_a_miss_judged_on_the_real_number(run_copy: Path, tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    s1 = _session(run_copy, cache_dir)
    p1 = s1.projection(s1.labels[0], s1.projection_options(PROJ))
    (entry,) = _entries(cache_dir)
    meta, rest = _meta(entry)
    r = _field(_field(meta["value"], "head")[1], "r")
    real, r[1] = r[1], -0.5
    assert isinstance(real, float) and real != -0.5  # a claim `head.r > 0` flips; key and old checksum kept
    edited = json.dumps(meta, separators=(",", ":")).encode("utf-8")
    np.savez(entry, __meta__=np.frombuffer(edited, dtype=np.uint8), **rest)
    assert C.decode(json.loads(edited)["value"], rest).head.r == -0.5  # type: ignore[attr-defined]  # what trusting it would give
    s2 = _session(run_copy, cache_dir)
    with pytest.warns(UserWarning, match=f"ignoring entry {entry}.*checksum") as record:
        p2 = s2.projection(s2.labels[0], s2.projection_options(PROJ))
    assert len([w for w in record if "neuronprobe cache" in str(w.message)]) == 1
    assert _cached(s2) == 0 and p2.head.r == real and p2.head.r == p1.head.r
    s3 = _session(run_copy, cache_dir)  # rewritten by the recomputed result
    assert s3.projection(s3.labels[0], s3.projection_options(PROJ)).head.r == real and _cached(s3) == 1


def test_a_wrong_type_entry_is_recomputed_and_rewritten(run_copy: Path, tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    s1 = _session(run_copy, cache_dir)
    p1 = s1.projection(s1.labels[0], s1.projection_options(PROJ))
    key = _entries(cache_dir)[0].stem
    assert C.ResultCache(cache_dir).put(key, {"head": 1.0})  # valid checksum and key, wrong type
    s2 = _session(run_copy, cache_dir)
    with pytest.warns(UserWarning, match="not the expected result") as record:
        p2 = s2.projection(s2.labels[0], s2.projection_options(PROJ))
        assert C.ResultCache(cache_dir).get(key) is not None  # rewritten already
        assert s2.cache is not None and s2.cache.put(key, {"head": 1.0})
        assert s2.cache.get(key, C.expected_shape(ProjectionOptions())) is None
    assert len([w for w in record if "neuronprobe cache" in str(w.message)]) == 1 and _cached(s2) == 0
    _same(p1, p2)


def test_an_unwritable_cache_dir_warns_once(run_copy: Path, tmp_path: Path) -> None:
    (cache_dir := tmp_path / "not-a-dir").write_text("a file where the cache directory should be\n")
    with pytest.warns(UserWarning, match="cannot write to") as record:
        _, _, s = _analyse(run_copy, cache_dir)
    assert len([w for w in record if "neuronprobe cache" in str(w.message)]) == 1
    assert s.counters.analyses == 2 and _cached(s) == 0
