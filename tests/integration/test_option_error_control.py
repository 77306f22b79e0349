"""--neuron-error-control {none,holm,bh}: claims judged on an interval share the error rate of their family;
the outcomes and p-values are the same in one process and under -n 2."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

LEVEL = 0.025


def _props(junit: Path) -> dict[str, dict[str, str]]:
    """testcase name -> its properties (and `outcome`)."""
    out = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        props = {p.get("name", ""): p.get("value", "") for p in case.iter("property")}
        props["outcome"] = "failed" if case.find("failure") is not None else "passed"
        out[case.get("name", "")] = props
    return out


def _hair_claims(pytester: pytest.Pytester, runs: list[Path]) -> dict[str, str]:
    """Claims files that pass without error control, two claims only just (threshold a hair below ci_low)."""
    pytester.makefile(".yaml", neuron_claims='projection.head.r: ">= -1"\n')
    junit = pytester.path / "first.xml"
    pytester.runpytest_inprocess(*[f"--neuron-run={r}" for r in runs], f"--junitxml={junit}")
    lows = {name: float(p["projection.head.r.ci_low"]) for name, p in _props(junit).items()}
    files = {"neuron_claims": 'projection.live.r: ">= 0.5"\n'}
    for i, r in enumerate(runs):
        # a hair below: the JUnit property is rounded, so 1e-6 below and rounded down
        threshold = math.floor((lows[f"projection.head.r >= -1[{r.name}]"] - 1e-6) * 1e9) / 1e9
        files[f"neuron_claims_{i}"] = f'options:\n  run: "{r.name}"\nprojection.head.r: ">= {threshold!r}"\n'
    return files


def _holm(p: list[float]) -> list[float]:
    order = sorted(range(len(p)), key=lambda i: p[i])
    out, running = [0.0] * len(p), 0.0
    for rank, i in enumerate(order):
        running = max(running, (len(p) - rank) * p[i])
        out[i] = min(1.0, running)
    return out


def test_holm_fails_claims_that_pass_only_on_their_own(pytester: pytest.Pytester, two_runs: list[Path]) -> None:
    pytester.makefile(".yaml", **_hair_claims(pytester, two_runs))
    args = [f"--neuron-run={r}" for r in two_runs]
    pytester.runpytest_inprocess(*args, "--neuron-error-control=none").assert_outcomes(passed=4)
    junit = pytester.path / "holm.xml"
    result = pytester.runpytest_inprocess(*args, "--neuron-error-control=holm", f"--junitxml={junit}", "-v")
    result.assert_outcomes(passed=2, failed=2)
    props = _props(junit)
    names = sorted(props)
    raw = [float(props[n]["projection.head.r.p" if "head" in n else "projection.live.r.p"]) for n in names]
    adjusted = [
        float(props[n][("projection.head.r" if "head" in n else "projection.live.r") + ".p_adjusted"]) for n in names
    ]
    assert adjusted == pytest.approx(_holm(raw))
    for name, p, a in zip(names, raw, adjusted, strict=True):
        metric = "projection.head.r" if "head" in name else "projection.live.r"
        assert float(props[name][f"{metric}.family_size"]) == 4
        assert props[name]["outcome"] == ("passed" if a <= LEVEL else "failed")
        if "head" in name:  # passed by a hair on its own: p at the level, and no longer with 4 claims
            assert 0.015 < p <= LEVEL < a
    result.stdout.fnmatch_lines(
        [
            "*projection.head.r >= * failed after error control holm over 4 claim(s): p=*, adjusted p=* > 0.025; "
            "on its own: projection.head.r >= * passed: judged on the 95% interval's lower bound*"
        ]
    )


def test_bh_and_the_ini_key(pytester: pytest.Pytester, two_runs: list[Path]) -> None:
    claims = _hair_claims(pytester, two_runs)
    claims["neuron_claims"] += 'projection.head.r_squared: ">= 0"\n'  # not judged on an interval
    pytester.makefile(".yaml", **claims)
    pytester.makeini("[pytest]\nneuron_error_control = bh\n")
    junit = pytester.path / "bh.xml"
    result = pytester.runpytest_inprocess(*[f"--neuron-run={r}" for r in two_runs], f"--junitxml={junit}")
    # BH is step-up: with every raw p <= 0.025 every claim passes, the hair claims too (Holm fails them)
    result.assert_outcomes(passed=6)
    for name, p in _props(junit).items():
        if "r_squared" in name:  # not in the family
            assert not any(k.endswith(".p_adjusted") for k in p)
            continue
        metric = name.split(" ")[0]
        assert float(p[f"{metric}.family_size"]) == 4
        assert float(p[f"{metric}.p"]) <= float(p[f"{metric}.p_adjusted"]) <= LEVEL
    result = pytester.runpytest_inprocess(f"--neuron-run={two_runs[0]}", "--neuron-error-control=bonferroni")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*invalid error control 'bonferroni': choose from none, holm, bh*"])


def test_same_outcomes_and_p_values_under_xdist(pytester: pytest.Pytester, two_runs: list[Path]) -> None:
    pytest.importorskip("xdist")
    pytester.makefile(".yaml", **_hair_claims(pytester, two_runs))
    args = [*[f"--neuron-run={r}" for r in two_runs], "--neuron-error-control=holm", "-p", "no:cacheprovider"]
    one, two = pytester.path / "one.xml", pytester.path / "two.xml"
    pytester.runpytest_inprocess(*args, f"--junitxml={one}").assert_outcomes(passed=2, failed=2)
    pytester.runpytest_subprocess(*args, "-n", "2", f"--junitxml={two}").assert_outcomes(passed=2, failed=2)
    assert _props(one) == _props(two)
