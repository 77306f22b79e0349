"""Baseline pairing (--neuron-baseline PATH, forced by --neuron-baseline-run NAME|GLOB / ini neuron_baseline_run):
exact run name, else the same neuron when exactly one baseline summary has it, else a single-summary
baseline; ambiguity and a forced pattern matching none or several runs are usage errors listing the
candidates; `baseline.comparable` in claims; the session creating a baseline skips its baseline claims."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pytest_neuronprobe.baseline import BaselinePair, NeuronIdentity, differences
from pytest_neuronprobe.core.runs import load_run

#: An inner test printing which baseline run each run was paired with and why (the session's pairing, which
#: finish.py hands to the terminal and the report), through the fixture (that needs no analysis).
SUITE = """
from pytest_neuronprobe.pytest.stash import session_of

def test_paired(request, neuron_run, neuron_baseline, _neuronprobe_run):
    pair, _ = session_of(request.config).baseline_pair(_neuronprobe_run)
    assert pair.summary is neuron_baseline
    print(f"PAIRED {neuron_run.name} -> {neuron_baseline['run']['name']} ({pair.reason})")
"""


def fake_summary(name: str, run: Path, **run_fields: Any) -> dict[str, Any]:
    """A minimal baseline summary.json naming `run`'s neuron (fields overridable), as a report writes it."""
    ident = NeuronIdentity.of_run(load_run(run))
    fields = {
        "name": name,
        "target_layer": ident.layer,
        "target_neuron": ident.neuron,
        "head_type": ident.head_type,
        "base_model": ident.base_model,
        "split": "test",
    }
    fields.update(run_fields)
    digest = fields.pop("model_sha256", None)
    provenance = {"neuron_hook": ident.hook, **({"model_sha256": digest} if digest else {})}
    return {"run": fields, "dataset_size": 12, "projections": {}, "patching": None, "provenance": provenance}


def write_baseline(root: Path, *summaries: dict[str, Any]) -> Path:
    for summary in summaries:
        target = root / summary["run"]["name"] / "summary.json"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(summary), encoding="utf-8")
    return root


def run_paired(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    pytester.makepyfile(SUITE)
    return pytester.runpytest_inprocess("-s", "-rs", *args)


def test_same_run_name_wins(pytester: pytest.Pytester, regression_run: Path) -> None:
    base = write_baseline(
        pytester.path / "baseline",
        fake_summary(regression_run.name, regression_run),
        fake_summary("another-run-of-the-neuron", regression_run),
    )
    result = run_paired(pytester, f"--neuron-run={regression_run}", f"--neuron-baseline={base}")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([f"*PAIRED {regression_run.name} -> {regression_run.name} (same run name)*"])


def test_same_neuron_pairs_a_new_run_name(pytester: pytest.Pytester, regression_run: Path) -> None:
    base = write_baseline(
        pytester.path / "baseline",
        fake_summary("last-good-run", regression_run),
        fake_summary("other-neuron", regression_run, target_neuron=7),
        fake_summary("other-head", regression_run, head_type="classification"),
    )
    result = run_paired(pytester, f"--neuron-run={regression_run}", f"--neuron-baseline={base}")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        [
            f"*PAIRED {regression_run.name} -> last-good-run "
            "(same neuron (* layer 1 neuron 31 *mlp.hook_post regression))*"
        ]
    )


def test_same_neuron_by_model_digest(pytester: pytest.Pytester, regression_run: Path) -> None:
    """With a digest on both sides the digest decides, whatever the base model is called."""
    digest = NeuronIdentity.of_run(load_run(regression_run), digest=True).model_sha256
    assert digest
    base = write_baseline(
        pytester.path / "baseline",
        fake_summary("renamed-model", regression_run, base_model="some/other-name", model_sha256=digest),
        fake_summary("same-name-other-bytes", regression_run, model_sha256="0" * 64),
    )
    result = run_paired(pytester, f"--neuron-run={regression_run}", f"--neuron-baseline={base}")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([f"*PAIRED {regression_run.name} -> renamed-model (same neuron (* layer 1 neuron 31 *"])


def test_ambiguous_pairing_is_a_usage_error(pytester: pytest.Pytester, regression_run: Path) -> None:
    base = write_baseline(
        pytester.path / "baseline",
        fake_summary("try-1", regression_run),
        fake_summary("try-2", regression_run),
    )
    result = run_paired(pytester, f"--neuron-run={regression_run}", f"--neuron-baseline={base}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            f"*--neuron-baseline: run '{regression_run.name}' pairs ambiguously: 2 runs of baseline {base} probe "
            "the same neuron (*): try-1, try-2; choose one with --neuron-baseline-run NAME|GLOB*"
        ]
    )


def test_a_single_summary_pairs_with_every_run(pytester: pytest.Pytester, two_runs: list[Path]) -> None:
    first, second = two_runs
    single = pytester.path / "base.json"
    single.write_text(json.dumps(fake_summary("unrelated", first, target_neuron=3)), encoding="utf-8")
    result = run_paired(pytester, f"--neuron-run={first}", f"--neuron-run={second}", f"--neuron-baseline={single}")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(
        [
            f"*PAIRED {first.name} -> unrelated (the baseline's only summary)*",
            f"*PAIRED {second.name} -> unrelated (the baseline's only summary)*",
        ]
    )


def test_no_pairing_says_why_and_how_to_choose(pytester: pytest.Pytester, regression_run: Path) -> None:
    base = write_baseline(
        pytester.path / "baseline",
        fake_summary("neuron-3", regression_run, target_neuron=3),
        fake_summary("neuron-4", regression_run, target_neuron=4),
    )
    pytester.makefile(".yaml", neuron_claims='projection.head.r: ">= baseline - 0.05"\n')
    result = run_paired(pytester, f"--neuron-run={regression_run}", f"--neuron-baseline={base}")
    result.assert_outcomes(skipped=1, failed=1)  # the fixture skips, the claim fails (no --neuron-update-baseline)
    message = (
        f"baseline {base} has no summary for run '{regression_run.name}' (it holds: neuron-3, neuron-4; none has "
        "its name or its neuron (* layer 1 neuron 31 *)); choose one with --neuron-baseline-run NAME"
    )
    result.stdout.fnmatch_lines([f"*projection.head.r >= baseline - 0.05 failed: {message}*"])
    result.stdout.fnmatch_lines([f"SKIPPED*{message}"])


def test_forced_baseline_run(pytester: pytest.Pytester, regression_run: Path) -> None:
    base = write_baseline(
        pytester.path / "baseline",
        fake_summary(regression_run.name, regression_run),
        fake_summary("release-2", regression_run, target_neuron=9),
        fake_summary("candidate-3", regression_run),
    )
    args = [f"--neuron-run={regression_run}", f"--neuron-baseline={base}"]
    result = run_paired(pytester, *args, "--neuron-baseline-run=release-*")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([f"*PAIRED {regression_run.name} -> release-2 (--neuron-baseline-run release-*)*"])
    result.stdout.fnmatch_lines(["neuronprobe: baseline run: release-**"])
    # The ini key, relative to nothing: a name.
    pytester.makeini("[pytest]\nneuron_baseline_run = candidate-3\n")
    result = run_paired(pytester, *args)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([f"*PAIRED {regression_run.name} -> candidate-3*"])
    # The command line wins over the ini key.
    run_paired(pytester, *args, "--neuron-baseline-run", "release-2").stdout.fnmatch_lines(["*-> release-2*"])


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("nothing-*", "matches none of the runs of baseline * (it holds: other, run-a, run-b)"),
        ("run-*", "matches 2 runs of baseline *: run-a, run-b; name one (it holds: other, run-a, run-b)"),
    ],
)
def test_forced_pattern_matching_none_or_several_is_a_usage_error(
    pytester: pytest.Pytester, regression_run: Path, pattern: str, expected: str
) -> None:
    base = write_baseline(
        pytester.path / "baseline",
        fake_summary("run-a", regression_run),
        fake_summary("run-b", regression_run),
        fake_summary("other", regression_run),
    )
    result = run_paired(
        pytester, f"--neuron-run={regression_run}", f"--neuron-baseline={base}", "--neuron-baseline-run", pattern
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*--neuron-baseline: --neuron-baseline-run '{pattern}' {expected}*"])


def test_forced_run_needs_a_baseline(pytester: pytest.Pytester) -> None:
    result = run_paired(pytester, "--neuron-baseline-run=x")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--neuron-baseline-run needs --neuron-baseline PATH*"])


def test_differences_name_each_way_a_pair_was_analysed_differently() -> None:
    def summary(split: str, n: int, resamples: int, processing: str, digest: str, version: str) -> dict[str, Any]:
        return {
            "run": {"name": "r", "split": split},
            "dataset_size": n,
            "projection_options": {"n_resamples": resamples, "batch_size": n},
            "patching": {"options": {"mode": "scale"}},
            "provenance": {"processing": processing, "model_sha256": digest, "pytest_neuronprobe": version},
        }

    base = summary("all", 60, 1000, "compat", "a" * 64, "0.1.0")
    assert differences(base, base) == ()
    now = summary("test", 24, 50, "raw", "b" * 64, "0.2.0")
    assert differences(base, now) == (
        "split: all vs test",
        "n: 60 vs 24",
        "projection options: n_resamples 1000 vs 50",  # batch_size does not change the numbers
        "processing: compat vs raw",
        f"base-model digest: {'a' * 12}… vs {'b' * 12}…",
        "pytest-neuronprobe: 0.1.0 vs 0.2.0",
    )
    # What one side does not record is not compared.
    assert differences({"run": {"split": "all"}}, {"dataset_size": 3}) == ()
    pair = BaselinePair("r", "r", "same run name", base).compared_with(now)
    assert not pair.comparable and pair.differences[0] == "split: all vs test"


COMPARABLE = 'baseline.comparable: "== 1"\nprojection.head.r: ">= baseline - 0.5"\n'


def test_baseline_comparable_in_claims(pytester: pytest.Pytester, regression_run: Path) -> None:
    pytester.makefile(".yaml", neuron_claims=COMPARABLE)
    run, base = f"--neuron-run={regression_run}", "--neuron-baseline=baseline"
    # Creating the baseline: the baseline claims are skipped (not failed), comparability too.
    result = pytester.runpytest_inprocess(run, base, "--neuron-update-baseline", "--neuron-max-samples=8", "-rs")
    result.assert_outcomes(skipped=2)
    result.stdout.fnmatch_lines(
        [f"SKIPPED [[]1[]] neuron_claims.yaml:{line}: no baseline at * yet; it will be written*" for line in (1, 2)]
    )
    # Analysed alike: comparable.
    pytester.runpytest_inprocess(run, base, "--neuron-max-samples=8").assert_outcomes(passed=2)
    # Another n: the pair is not comparable, and the claim says how.
    result = pytester.runpytest_inprocess(run, base)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*baseline.comparable == 1 failed: judged on the estimate comparable=0*(baseline "
            f"{regression_run.name} was analysed differently: n: 8 vs 12*"
        ]
    )
    # Without a baseline at all, the claim fails saying so.
    result = pytester.runpytest_inprocess(run)
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(["*baseline.comparable == 1 failed: *--neuron-baseline*"])
