"""Claims files as pytest items: one item per claim per run, judged without a Python traceback."""

from __future__ import annotations

from collections.abc import Iterator
from fnmatch import fnmatchcase
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from pytest_neuronprobe.claims.loader import CLAIM_FILE_PATTERNS, load_claims
from pytest_neuronprobe.claims.metrics import claim_needs
from pytest_neuronprobe.claims.verdicts import Claim, Verdict, evaluate
from pytest_neuronprobe.core.errors import NeuronProbeError
from pytest_neuronprobe.pytest.fixtures import no_run, prop
from pytest_neuronprobe.pytest.stash import session_of

if TYPE_CHECKING:  # pragma: no cover
    from _pytest._code.code import TerminalRepr


def collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    """A ClaimsFile for `neuron_claims*.yaml`, `neuron_claims*.yml` and `*.neuron.yaml`."""
    if any(fnmatchcase(file_path.name, pattern) for pattern in CLAIM_FILE_PATTERNS):
        return ClaimsFile.from_parent(parent, path=file_path)
    return None


class ClaimFailed(Exception):
    """A claim's verdict was negative; the message is the verdict's."""


class ClaimsFile(pytest.File):
    """A YAML claims file: one item per claim per run."""

    def collect(self) -> Iterator[pytest.Item]:
        state = session_of(self.config)
        try:
            claims = load_claims(self.path, default_judge=state.settings.judge)
        except NeuronProbeError as exc:
            raise self.CollectError(f"claims file {self.path}: {exc}") from None
        needs = claim_needs(c.metric for c in claims)
        counts: dict[str, int] = {}
        for c in claims:
            counts[c.text] = counts.get(c.text, 0) + 1
        labels = state.cli_labels
        for claim in claims:
            base = claim.text if counts[claim.text] == 1 else f"{claim.text} (line {claim.line})"
            if not labels:
                yield ClaimItem.from_parent(self, name=base, claim=claim, label=None, needs=needs)
                continue
            for label in labels:
                if claim.applies_to(label) or claim.applies_to(state.run(label).name):
                    yield ClaimItem.from_parent(self, name=f"{base}[{label}]", claim=claim, label=label, needs=needs)


class ClaimItem(pytest.Item):
    """One claim of a claims file, judged on one run (and its baseline, when the claim uses one)."""

    def __init__(self, *, claim: Claim, label: str | None, needs: tuple[bool, bool], **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.claim = claim
        self.label = label
        self.needs = needs
        self.verdict: Verdict | None = None

    def runtest(self) -> None:
        state = session_of(self.config)
        if self.label is None:
            no_run(state)
            return
        projection, patching = self.needs
        metrics = state.metrics(self.label, projection=projection, patching=patching)
        baseline = None
        if self.claim.expr.uses_baseline and state.settings.baseline is not None:
            baseline = state.baseline_metrics(self.label)
            if baseline is None:  # a baseline was given but has nothing for this run: say why
                _, why = state.baseline_for(self.label)
                self.verdict = Verdict(False, f"{self.claim.text} failed: {why}", "estimate", {})
                raise ClaimFailed(self.verdict.message)
        self.verdict = verdict = evaluate(self.claim, metrics, baseline)
        self.user_properties.append(("neuron_run", self.label))
        self.user_properties.append(("claim", self.claim.text))
        for key, value in verdict.values.items():
            self.user_properties.append((f"{self.claim.metric}.{key}", prop(value)))
        if not verdict.passed:
            raise ClaimFailed(verdict.message)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: object = None) -> str | TerminalRepr:
        """The verdict message (or the bad-input message), without a Python traceback."""
        if isinstance(excinfo.value, ClaimFailed):
            where = f" ({self.claim.where})" if self.claim.where else ""
            return f"{excinfo.value}{where}\nrun: {self.label}"
        if isinstance(excinfo.value, NeuronProbeError):
            return f"{self.claim.text} could not be judged on run {self.label}: {excinfo.value}"
        return super().repr_failure(excinfo, style=style)  # type: ignore[arg-type]

    def reportinfo(self) -> tuple[Path, int | None, str]:
        line = self.claim.line - 1 if self.claim.line else None
        return self.path, line, f"claim {self.claim.text!r} on run {self.label}"
