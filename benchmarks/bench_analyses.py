"""Analysis speed, measured side by side in one run (issue: projection and patching analyses).

Builds (once, cached under .neuronprobe/bench/) a GPT-2-small-shaped local model (12 layers, d_model 768,
random weights: speed does not depend on training) and a 500-text run (texts of 10-24 tokens; `--tokens`
sets another range), then times on one thread (the fastest of 3 runs for the floor, of 2 for the sweep):

- floor: one batched forward collecting the projection hooks;
- full:  the default projection analysis (1000 bootstrap resamples, 200 null directions) + the default
         8-factor scale patching sweep, run together by `analysis.analyze` (one shared clean pass);
         each alone is printed too;
- seed:  the seed notebooks' method (one text at a time, two full forwards per text per factor),
         timed on a subsample and extrapolated to 500 texts (labelled so).

- attribution: the default attribution sweep (first-order estimates for all 12 x 3,072 neurons, the top 20
         + the target verified exactly, 1000 bootstrap resamples) against the floor, and the naive way (one
         batched full forward over all texts per ablated neuron, timed on a few neurons and extrapolated);
         its peak extra memory: VmHWM (reset after loading) - VmRSS before, in a fresh subprocess.

Usage: python benchmarks/bench_analyses.py [--texts 500] [--tokens 10-24] [--seed-texts 12] [--threads 1]
       [--attribution-only]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pytest_neuronprobe.analyses.joint import analyze  # noqa: E402
from pytest_neuronprobe.analyses.options import PatchingOptions, ProjectionOptions  # noqa: E402
from pytest_neuronprobe.analyses.patching import analyze_patching  # noqa: E402
from pytest_neuronprobe.analyses.projection import analyze_projection  # noqa: E402
from pytest_neuronprobe.build.corpus import generate_corpus  # noqa: E402
from pytest_neuronprobe.build.lm import train_tokenizer  # noqa: E402
from pytest_neuronprobe.core.models import collect, load_model  # noqa: E402
from pytest_neuronprobe.core.probe import open_probe  # noqa: E402
from pytest_neuronprobe.core.runs import load_run  # noqa: E402

CACHE = ROOT / ".neuronprobe" / "bench"
LAYER, NEURON = 8, 481


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def gpt2_small(path: Path) -> Path:
    """A GPT-2-small-shaped model with a locally trained tokenizer, saved once."""
    if (path / "config.json").is_file():
        return path
    from transformers import GPT2Config, GPT2LMHeadModel

    log("building a GPT-2-small-shaped model (once) …")
    tok = train_tokenizer(generate_corpus(3000, seed=0), vocab_size=2048)
    # GPT-2 small's full vocabulary width: the seed method pays for the unembedding on every forward.
    config = GPT2Config(
        vocab_size=50257,
        n_positions=1024,
        n_embd=768,
        n_layer=12,
        n_head=12,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
    )
    torch.manual_seed(0)
    model = GPT2LMHeadModel(config)
    tmp = path.with_name(path.name + ".tmp")
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    tmp.rename(path)
    return path


def texts_of_tokens(tokenizer, n: int, lo: int = 10, hi: int = 24) -> list[str]:
    """`n` generated texts of `lo`..`hi` tokens (longer ones join generated sentences)."""
    out, pieces = [], []
    for text in generate_corpus(200 * n, seed=1):
        pieces.append(text)
        joined = " ".join(pieces)
        length = len(tokenizer(joined)["input_ids"])
        if length > hi:
            pieces = []
        elif length >= lo:
            out.append(joined)
            pieces = []
            if len(out) == n:
                return out
    raise SystemExit(f"not enough texts of {lo}-{hi} tokens")


def make_run(model_dir: Path, n: int, tokens: tuple[int, int] = (10, 24)) -> Path:
    length = "" if tokens == (10, 24) else f"-t{tokens[0]}-{tokens[1]}"
    run = CACHE / f"run{n}{length}-neuron_l{LAYER}_n{NEURON}"
    if (run / "datasets").is_dir():
        return run
    from safetensors.torch import save_file

    from pytest_neuronprobe.core.tokens import encode, positions

    model = load_model(str(model_dir), "compat", "cpu")
    texts = texts_of_tokens(model.tokenizer, n, *tokens)
    toks = encode(model, texts, prepend_bos=False)
    acts = collect(model, toks, positions(toks, "last"), [f"blocks.{LAYER}.mlp.hook_post"])
    tmp = run.with_name(run.name + ".tmp")
    (tmp / "datasets").mkdir(parents=True, exist_ok=True)
    name = f"neuron_l{LAYER}_n{NEURON}_bench"
    pd.DataFrame({"text": texts, "activation": acts[f"blocks.{LAYER}.mlp.hook_post"][:, NEURON].numpy()}).to_csv(
        tmp / "datasets" / f"{name}.csv", index=False
    )
    best = tmp / "models" / name / "best_model"
    best.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(0)
    save_file(
        {"output.weight": torch.randn(1, 768, generator=g) / 28, "output.bias": torch.zeros(1)},
        str(best / "head.safetensors"),
    )
    (best / "config.json").write_text(
        json.dumps(
            {"head_type": "regression", "base_model_name": "bench-gpt2-small", "base_model_path": str(model_dir)}
        )
    )
    tmp.rename(run)
    return run


def seed_method(probe, texts: list[str], factors: list[float]) -> tuple[float, float]:
    """The seeds' loops: per text one forward (projection); per text and factor, an activation read and a
    prediction, each a full forward (patching), plus the unpatched baseline pair. Returns seconds."""
    bridge, tok = probe.model.bridge, probe.model.tokenizer
    hook, feature, n = probe.neuron_hook, probe.feature_hook, probe.neuron
    hooks = [f"blocks.{LAYER}.hook_resid_pre", f"blocks.{LAYER}.hook_resid_post", probe.final_hook]
    start = time.perf_counter()
    with torch.no_grad():
        for text in texts:
            ids = torch.tensor([tok(text)["input_ids"]])
            bridge.run_with_hooks(ids, fwd_hooks=[(h, lambda a, hook: a) for h in hooks])
    projection_s = time.perf_counter() - start

    def keep(got: dict, key: str):
        def fn(a, hook):
            got[key] = a[0, -1].clone()
            return a

        return fn

    def activation(ids, fwd):
        if not fwd:
            _, cache = bridge.run_with_cache(ids)
            return float(cache[hook][0, -1, n])
        got: dict = {}
        bridge.run_with_hooks(ids, fwd_hooks=[*fwd, (hook, keep(got, "a"))])
        return float(got["a"][n])

    def prediction(ids, fwd):
        got: dict = {}
        bridge.run_with_hooks(ids, fwd_hooks=[*fwd, (feature, keep(got, "x"))])
        return float(probe.head.predict(got["x"][None])[0])

    start = time.perf_counter()
    with torch.no_grad():
        for text in texts:
            ids = torch.tensor([tok(text)["input_ids"]])
            activation(ids, [])
            prediction(ids, [])
        for f in factors:

            def patch(a, hook, f=f):
                a = a.clone()
                a[:, -1, n] = a[:, -1, n] * f
                return a

            for text in texts:
                ids = torch.tensor([tok(text)["input_ids"]])
                activation(ids, [(hook, patch)])
                prediction(ids, [(hook, patch)])
    return projection_s, time.perf_counter() - start


def naive_attribution(probe, texts: list[str], units: int) -> float:
    """Seconds per unit of the naive way: one batched full forward over all texts with one neuron mean-ablated."""
    hook = f"blocks.{LAYER}.mlp.hook_post"
    mean = probe.read(texts, [hook])[hook].mean(0)
    start = time.perf_counter()
    for n in range(units):

        def patch(act, rows, pos, n=n):
            act = act.clone()
            act[rows, pos, n] = mean[n]
            return act

        probe.head.predict(probe.read(texts, [probe.feature_hook], patch=(hook, patch))[probe.feature_hook])
    return (time.perf_counter() - start) / units


MEMORY = """
import json, resource, sys, torch
sys.path.insert(0, {root!r}); sys.path.insert(0, {bench!r})
torch.set_num_threads({threads})
from bench_analyses import CACHE, gpt2_small, make_run
from pytest_neuronprobe.analyses.attribution import analyze_attribution
from pytest_neuronprobe.core.probe import open_probe
from pytest_neuronprobe.core.runs import load_run
probe = open_probe(load_run(make_run(gpt2_small(CACHE / "gpt2-small-shaped"), {n}, {tokens})), "cpu")
probe.read(probe.run.analysed()["text"].tolist()[:8], [probe.neuron_hook])
def status(field):
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith(field + ":"))
open("/proc/self/clear_refs", "w").write("5")  # reset the high-water mark: loading peaks higher
before = status("VmRSS")
analyze_attribution(probe)
print(json.dumps({{"extra_mib": (status("VmHWM") - before) / 1024, "rss_before_mib": before / 1024}}))
"""


def attribution_memory(n: int, tokens: tuple[int, int], threads: int) -> dict:
    import subprocess

    code = MEMORY.format(root=str(ROOT), bench=str(ROOT / "benchmarks"), threads=threads, n=n, tokens=tokens)
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        log(proc.stderr[-3000:])
        raise SystemExit("attribution memory measurement failed")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def bench_attribution(probe, texts: list[str], floor: float, tokens: tuple[int, int], threads: int) -> None:
    from pytest_neuronprobe.analyses.attribution import analyze_attribution

    result, t_attr = timed(lambda: analyze_attribution(probe), 2)
    per_unit = naive_attribution(probe, texts, 3)
    naive = per_unit * result.n_units + floor
    memory = attribution_memory(len(texts), tokens, threads)
    print(
        f"attribution sweep ({result.n_units} units, {len(result.verified)} verified): "
        f"{t_attr:8.2f} s   = {t_attr / floor:.2f} x floor"
    )
    print(
        f"naive attribution (one full forward per unit, extrapolated from 3): {naive:8.0f} s "
        f"= {naive / floor:.0f} x floor, {naive / t_attr:.0f} x the sweep"
    )
    print(
        f"attribution peak extra memory: +{memory['extra_mib']:.0f} MiB over {memory['rss_before_mib']:.0f} MiB "
        "(VmHWM reset after loading - VmRSS before, fresh subprocess)"
    )
    print(f"sanity: {result!r}")


def timed(fn, repeats: int = 1):
    """(the result, the fastest of `repeats` wall-clock times): noise on a shared machine only adds time."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return out, best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=500)
    parser.add_argument("--seed-texts", type=int, default=12, help="subsample for the seed-method timing")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--tokens", default="10-24", help="text length range in tokens (default 10-24)")
    parser.add_argument("--attribution-only", action="store_true", help="the floor and the attribution sweep only")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model_dir = gpt2_small(CACHE / "gpt2-small-shaped")
    tokens = tuple(int(t) for t in args.tokens.split("-"))
    run = load_run(make_run(model_dir, args.texts, tokens))
    probe = open_probe(run, "cpu")
    texts = run.analysed()["text"].tolist()
    hooks = [
        probe.neuron_hook,
        probe.feature_hook,
        probe.final_hook,
        f"blocks.{LAYER}.hook_resid_mid",
        f"blocks.{LAYER}.hook_resid_post",
    ]
    probe.read(texts[:8], hooks)  # warm-up
    log(f"{len(texts)} texts, {args.threads} thread(s); timing …")
    _, floor = timed(lambda: probe.read(texts, hooks), 3)
    if args.attribution_only:
        print(
            f"texts: {len(texts)} of {args.tokens} tokens, threads: {args.threads}; "
            f"floor (one batched forward): {floor:8.2f} s"
        )
        bench_attribution(probe, texts, floor, tokens, args.threads)
        return
    _, t_proj = timed(lambda: analyze_projection(probe))
    _, t_patch = timed(lambda: analyze_patching(probe))
    (projection, patching), full = timed(lambda: analyze(probe, ProjectionOptions(), PatchingOptions()))
    sub = texts[: args.seed_texts]
    seed_proj, seed_patch = seed_method(probe, sub, list(patching.factors))
    scale = len(texts) / len(sub)
    seed_total = (seed_proj + seed_patch) * scale
    print(f"texts: {len(texts)}, threads: {args.threads}, model: GPT-2-small-shaped (12 x 768), local")
    print(f"floor (one batched forward, projection hooks): {floor:8.2f} s")
    print(f"projection analysis alone (default):           {t_proj:8.2f} s   = {t_proj / floor:.2f} x floor")
    print(f"patching sweep alone (8 factors, cached):      {t_patch:8.2f} s   = {t_patch / floor:.2f} x floor")
    print(f"full default analysis (both, one clean pass):  {full:8.2f} s   = {full / floor:.2f} x floor")
    print(
        f"seed method, extrapolated from {len(sub)} texts:    {seed_total:8.2f} s   "
        f"(projection {seed_proj * scale:.1f} s + patching {seed_patch * scale:.1f} s)"
    )
    print(f"speed-up over the seed method:                 {seed_total / full:8.1f} x")
    print(
        f"sanity: head r={projection.head.r:.3f}, patching slope={patching.slope:.4f}, "
        f"live check: {projection.self_check.message}"
    )
    bench_attribution(probe, texts, floor, tokens, args.threads)


if __name__ == "__main__":
    main()
