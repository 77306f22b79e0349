"""Precedence, for every option: marker keyword > command line > ini > default (one parametrised test)."""

from __future__ import annotations

from pathlib import Path

import pytest

# (ini lines, command-line args, marker line, the values the test sees). {A} and {B} are two runs;
# the tiny runs analyse 12 test-split texts.
CASES = {
    "max_samples default": ([], [], "", "max_samples=12 run={A} "),
    "max_samples ini": (["neuron_max_samples = 8"], [], "", "max_samples=8 "),
    "max_samples cli > ini": (["neuron_max_samples = 8"], ["--neuron-max-samples=6"], "", "max_samples=6 "),
    "max_samples marker > cli > ini": (
        ["neuron_max_samples = 8"],
        ["--neuron-max-samples=6"],
        "@pytest.mark.projection(max_samples=4)",
        "max_samples=4 ",
    ),
    "max_samples marker > ini": (
        ["neuron_max_samples = 8"],
        [],
        "@pytest.mark.projection(max_samples=4)",
        "max_samples=4 ",
    ),
    "run ini": (["neuron_run = {B}"], [], "", "run={B} "),
    "run cli > ini": (["neuron_run = {B}"], ["--neuron-run={A}"], "", "run={A} "),
    "run marker > cli": ([], ["--neuron-run={A}"], "@pytest.mark.neuron_run('{B}')", "run={B} "),
    "batch_size default": ([], [], "", "batch=32/default "),
    "batch_size ini": (["neuron_batch_size = 4"], [], "", "batch=4/ini "),
    "batch_size cli > ini": (["neuron_batch_size = 4"], ["--neuron-batch-size=2"], "", "batch=2/command line "),
    "device default": ([], [], "", "device=cpu/default "),
    "device ini": (["neuron_device = auto"], [], "", "device=auto/ini "),
    "device cli > ini": (["neuron_device = auto"], ["--neuron-device=CPU"], "", "device=cpu/command line "),
    "judge default": ([], [], "", "judge=bound/default "),
    "judge ini": (["neuron_judge = estimate"], [], "", "judge=estimate/ini "),
    "judge cli > ini": (["neuron_judge = estimate"], ["--neuron-judge=bound"], "", "judge=bound/command line "),
    "require_run ini": (["neuron_require_run = true"], [], "", "require_run=True/ini "),
    "report ini": (["neuron_report = out"], [], "", "report=out/ini "),
    "report cli > ini": (["neuron_report = out"], ["--neuron-report=elsewhere"], "", "report=elsewhere/command line "),
}


@pytest.mark.parametrize("ini, cli, marker, expected", list(CASES.values()), ids=list(CASES))
def test_precedence(
    pytester: pytest.Pytester, two_runs: list[Path], ini: list[str], cli: list[str], marker: str, expected: str
) -> None:
    a, b = two_runs
    fill = {"A": a.name, "B": b.name}
    paths = {"A": str(a), "B": str(b)}
    if ini:
        pytester.makeini("[pytest]\n" + "\n".join(line.format(**paths) for line in ini) + "\n")
    pytester.makepyfile(f"""
        import pytest
        from pytest_neuronprobe.pytest.stash import SESSION_KEY

        {marker.format(**paths)}
        def test_values(neuron_dataset, neuron_run, request):
            s = request.config.stash[SESSION_KEY].settings
            src = s.sources
            report = s.report_dir.name if s.report_dir else None
            print(f"VALUES max_samples={{len(neuron_dataset)}} run={{neuron_run.name}} "
                  f"device={{s.device}}/{{src['neuron_device']}} judge={{s.judge}}/{{src['neuron_judge']}} "
                  f"require_run={{s.require_run}}/{{src['neuron_require_run']}} "
                  f"report={{report}}/{{src['neuron_report']}} "
                  f"batch={{s.batch_size}}/{{src['neuron_batch_size']}} ")
    """)
    args = [arg.format(**paths) for arg in cli]
    if not any(arg.startswith("--neuron-run") for arg in args) and not any("neuron_run" in i for i in ini):
        args.append(f"--neuron-run={a}")
    result = pytester.runpytest_inprocess(*args, "-s", "-p", "no:xdist")
    result.assert_outcomes(passed=1)
    line = next(line[line.index("VALUES ") :] for line in result.outlines if "VALUES " in line)
    assert expected.format(**fill) in line, line


@pytest.mark.parametrize(
    "ini, cli, message",
    [
        (
            [],
            ["--neuron-device=tpu"],
            "*argument --neuron-device: invalid device 'tpu': choose from cpu, cuda, mps, auto*",
        ),
        ([], ["--neuron-max-samples=0"], "*argument --neuron-max-samples: expected a whole number >= 1, got '0'*"),
        ([], ["--neuron-judge=maybe"], "*argument --neuron-judge: invalid judge 'maybe': choose from bound, estimate*"),
        ([], ["--neuron-batch-size=-3"], "*argument --neuron-batch-size: expected a whole number >= 1, got '-3'*"),
        (["neuron_device = tpu"], [], "*ini option neuron_device: invalid device 'tpu'*"),
        (
            ["neuron_max_samples = many"],
            [],
            "*ini option neuron_max_samples: expected a whole number >= 1, got 'many'*",
        ),
        (["neuron_judge = maybe"], [], "*ini option neuron_judge: invalid judge 'maybe'*"),
    ],
    ids=["cli device", "cli max_samples", "cli judge", "cli batch_size", "ini device", "ini max_samples", "ini judge"],
)
def test_bad_values_are_usage_errors(pytester: pytest.Pytester, ini: list[str], cli: list[str], message: str) -> None:
    if ini:
        pytester.makeini("[pytest]\n" + "\n".join(ini) + "\n")
    pytester.makepyfile("def test_x():\n    pass\n")
    result = pytester.runpytest_inprocess(*cli)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])


def test_help_shows_metavars_defaults_and_ini_keys(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_inprocess("--help")
    text = " ".join(result.stdout.str().split())
    for fragment in (
        "--neuron-run=PATH",
        "--neuron-report=DIR",
        "--neuron-baseline=PATH",
        "--neuron-update-baseline",
        "--neuron-device={cpu,cuda,mps,auto}",
        "--neuron-max-samples=N",
        "--neuron-batch-size=N",
        "--neuron-require-run",
        "--neuron-judge={bound,estimate}",
        "Default: cpu, so the numbers are the same on every machine",
        "ini: neuron_run",
        "ini: neuron_report",
        "ini: neuron_device",
        "Default: bound",
        "precedence: marker keyword > command line > ini > default",
    ):
        assert fragment in text, fragment
    result.stdout.fnmatch_lines(["*neuron_run (paths):*", "*neuron_require_run (bool):*"])
