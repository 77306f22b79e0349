"""Claims files under bad input: encodings, nesting, overflow, unmatched run globs; per-claim xfail."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_neuronprobe.claims.loader import MAX_DEPTH, load_claims
from pytest_neuronprobe.core.errors import NeuronProbeError

CLAIM = 'projection.head.r: ">= 0.8"  # café\n'


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (CLAIM.encode("latin-1"), "must be UTF-8 text; byte 0xe9 is not UTF-8"),
        (CLAIM.encode("utf-16"), "must be UTF-8 text (it starts with a UTF-16 byte-order mark)"),
        (b"x: " + b"[" * 5000 + b"]" * 5000 + b"\n", f"nest more than {MAX_DEPTH} deep"),
        (("x:\n" + "".join("  " * i + "-\n" for i in range(1, 5000))).encode(), f"nest more than {MAX_DEPTH} deep"),
        (("x:\n" + "".join("  " * i + "a:\n" for i in range(1, 5000))).encode(), f"nest more than {MAX_DEPTH} deep"),
    ],
    ids=["latin-1", "utf-16", "deep-flow", "deep-block-list", "deep-block-mapping"],
)
def test_undecodable_or_deep_file_is_an_error_naming_the_file(tmp_path: Path, data: bytes, fragment: str) -> None:
    path = tmp_path / "neuron_claims.yaml"
    path.write_bytes(data)
    with pytest.raises(NeuronProbeError) as info:
        load_claims(path)
    assert str(info.value).startswith(str(path)), info.value
    assert fragment in str(info.value)


def test_utf8_bom_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "neuron_claims.yaml"
    path.write_bytes(CLAIM.encode("utf-8-sig"))
    (claim,) = load_claims(path)
    assert claim.text == "projection.head.r >= 0.8"


def test_bad_encoding_is_a_collection_error(pytester: pytest.Pytester, regression_run: Path) -> None:
    (pytester.path / "neuron_claims.yaml").write_bytes(CLAIM.encode("utf-16"))
    result = pytester.runpytest_inprocess(f"--neuron-run={regression_run}")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*claims file *neuron_claims.yaml*must be UTF-8 text*"])
    assert "UnicodeDecodeError" not in result.stdout.str()


@pytest.mark.parametrize(
    ("expr", "fragment"),
    [
        ("1.0 +- 1e309", "a finite number, found '1e309'"),
        (">= 1e400", "a finite number, found '1e400'"),
        ("<= -1e400", "a finite number, found '1e400'"),
        ("between 0 and 1e999", "a finite number, found '1e999'"),
        (">= baseline * 1e309", "a finite number, found '1e309'"),
        ("1e308 +- 1e308", "whose sum is finite"),
    ],
)
def test_a_number_overflowing_to_infinity_is_an_error_naming_the_claim(
    tmp_path: Path, expr: str, fragment: str
) -> None:
    path = tmp_path / "neuron_claims.yaml"
    path.write_text(f'projection.head.r: ">= 0"\npatching.slope: "{expr}"\n', encoding="utf-8")
    with pytest.raises(NeuronProbeError) as info:
        load_claims(path)
    message = str(info.value)
    assert message.startswith(f"{path}:2 [patching.slope]: cannot parse claim 'patching.slope: {expr}'"), message
    assert fragment in message


UNMATCHED = """\
projection.head.r: ">= 0"
patching.r_squared:
  expect: ">= 0"
  run: "no_such_run_*"
"""


def test_a_run_glob_matching_no_run_is_a_warning(pytester: pytest.Pytester, regression_run: Path) -> None:
    pytester.makefile(".yaml", neuron_claims=UNMATCHED)
    result = pytester.runpytest_inprocess(f"--neuron-run={regression_run}")
    result.assert_outcomes(passed=1, warnings=1)
    path = pytester.path / "neuron_claims.yaml"
    result.stdout.fnmatch_lines(
        [
            f"*ClaimsWarning: claim 'patching.r_squared >= 0' ({path}:3) is not checked: "
            f"its run glob 'no_such_run_*' matches none of this session's runs ({regression_run.name})"
        ]
    )


def test_a_run_glob_matching_no_run_is_an_error_with_require_run(
    pytester: pytest.Pytester, regression_run: Path
) -> None:
    pytester.makefile(".yaml", neuron_claims=UNMATCHED)
    result = pytester.runpytest_inprocess(f"--neuron-run={regression_run}", "--neuron-require-run")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        ["*claim 'patching.r_squared >= 0' * is not checked: its run glob 'no_such_run_*' matches none*"]
    )
    assert result.ret != 0


def test_a_file_wide_run_glob_matching_no_run_warns_per_claim(pytester: pytest.Pytester, regression_run: Path) -> None:
    pytester.makefile(
        ".yaml", neuron_claims='options: {run: "other_*"}\nprojection.head.r: ">= 0"\ndataset_size: "== 1"\n'
    )
    result = pytester.runpytest_inprocess(f"--neuron-run={regression_run}")
    result.assert_outcomes(warnings=2)
    result.stdout.fnmatch_lines(["*claim 'projection.head.r >= 0'*run glob 'other_*'*", "*claim 'dataset_size == 1'*"])


def test_xfail_key_is_read_and_validated(tmp_path: Path) -> None:
    path = tmp_path / "neuron_claims.yaml"
    path.write_text('a.b: ">= 0"\nc.d:\n  expect: ["<= 1", ">= 0"]\n  xfail: "  not yet  "\n', encoding="utf-8")
    assert [c.xfail for c in load_claims(path)] == [None, "not yet", "not yet"]
    for value, fragment in (("''", "got ''"), ("[a]", "got a list"), ("true", "got 'true'")):
        path.write_text(f'c.d:\n  expect: ">= 0"\n  xfail: {value}\n', encoding="utf-8")
        with pytest.raises(NeuronProbeError, match=r":3 \[c\.d\.xfail\]: expected a reason") as info:
            load_claims(path)
        assert fragment in str(info.value)


def test_xfail_claim_is_a_strict_xfail_with_its_reason(pytester: pytest.Pytester, regression_run: Path) -> None:
    pytester.makefile(
        ".yaml",
        neuron_claims="""\
projection.head.r:
  expect: ">= 2"
  xfail: "head not trained yet"
dataset_size:
  expect: ">= 1"
  xfail: "should fail but holds"
""",
    )
    result = pytester.runpytest_inprocess(f"--neuron-run={regression_run}", "-rxX")
    result.assert_outcomes(xfailed=1, failed=1)
    result.stdout.fnmatch_lines_random(
        [
            "XFAIL neuron_claims.yaml::projection.head.r >= 2*head not trained yet*",
            "*[[]XPASS(strict)[]] should fail but holds*",
        ]
    )


@pytest.mark.parametrize("with_run", [True, False])
def test_unknown_metrics_are_one_collection_error_with_or_without_a_run(
    pytester: pytest.Pytester, regression_run: Path, with_run: bool
) -> None:
    pytester.makefile(
        ".yaml",
        neuron_claims="""\
projection.head.r: ">= 0.5"
projection.head.rr:
  expect: ">= 0"
  xfail: "a bad metric is not an expected failure"
patching.slop: "1.0 +- 0.5"
""",
    )
    result = pytester.runpytest_inprocess(*([f"--neuron-run={regression_run}"] if with_run else []))
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            "*neuron_claims.yaml:3: unknown metric 'projection.head.rr'; did you mean *projection.head.r*",
            "*neuron_claims.yaml:5: unknown metric 'patching.slop'; did you mean *patching.slope*",
        ]
    )
