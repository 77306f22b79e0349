"""Claims files as pytest items: one item per claim per run, judged without a Python traceback."""

from __future__ import annotations

from collections.abc import Iterator
from fnmatch import fnmatchcase
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import pytest

from pytest_neuronprobe.claims.loader import CLAIM_FILE_PATTERNS, load_claims
from pytest_neuronprobe.claims.metrics import (
    PAIR_METRICS,
    Metric,
    claim_needs,
    flatten,
    is_known_metric,
    needs_attribution,
)
from pytest_neuronprobe.claims.multiplicity import in_family
from pytest_neuronprobe.claims.verdicts import Claim, Verdict, evaluate, missing_message
from pytest_neuronprobe.core.errors import NeuronProbeError
from pytest_neuronprobe.pytest.family import judge_in_family
from pytest_neuronprobe.pytest.fixtures import no_run, prop
from pytest_neuronprobe.pytest.stash import session_of

if TYPE_CHECKING:  # pragma: no cover
    from _pytest._code.code import TerminalRepr

    from pytest_neuronprobe.pytest.session import NeuronSession


def collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    """A ClaimsFile for `neuron_claims*.yaml`, `neuron_claims*.yml` and `*.neuron.yaml`."""
    if any(fnmatchcase(file_path.name, pattern) for pattern in CLAIM_FILE_PATTERNS):
        return ClaimsFile.from_parent(parent, path=file_path)
    return None


def _skip(reason: str) -> NoReturn:
    """Skip the running claim; the skip is reported at the claim's line, not at this code."""
    raise pytest.skip.Exception(reason, _use_item_location=True)


class ClaimsWarning(pytest.PytestWarning):
    """A claims file says something the session cannot act on (e.g. a run glob that matches no run)."""


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
        unknown = [
            f"{self.path}:{c.line}: {missing_message(c.metric, {})}" for c in claims if not is_known_metric(c.metric)
        ]
        if unknown:  # a typo is an error now, with or without a run, never a skip or an expected failure
            raise self.CollectError("\n".join(unknown))
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
            matched = [lb for lb in labels if claim.applies_to(lb) or claim.applies_to(state.run(lb).name)]
            if not matched:
                self._unmatched(claim, labels, state.settings.require_run)
            for label in matched:
                yield ClaimItem.from_parent(self, name=f"{base}[{label}]", claim=claim, label=label, needs=needs)

    def _unmatched(self, claim: Claim, labels: list[str], require_run: bool) -> None:
        """A claim whose run glob matches none of the session's runs: a warning (an error with
        --neuron-require-run), never silently dropped."""
        message = (
            f"claim {claim.text!r} ({claim.where}) is not checked: its run glob {claim.run!r} "
            f"matches none of this session's runs ({', '.join(labels)})"
        )
        if require_run:
            raise self.CollectError(f"claims file {self.path}: {message} (an error with --neuron-require-run)")
        self.warn(ClaimsWarning(message))


class ClaimItem(pytest.Item):
    """One claim of a claims file, judged on one run (and its baseline, when the claim uses one)."""

    def __init__(self, *, claim: Claim, label: str | None, needs: tuple[bool, bool], **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.claim = claim
        self.label = label
        self.needs = needs
        self.verdict: Verdict | None = None
        if claim.xfail is not None:
            self.add_marker(pytest.mark.xfail(reason=claim.xfail, strict=True, raises=ClaimFailed))

    def runtest(self) -> None:
        state = session_of(self.config)
        if self.label is None:
            no_run(state)
            return
        verdict = self.judge(state)
        if state.settings.error_control != "none" and in_family(self.claim):
            verdict = judge_in_family(self, verdict, state)
        self.verdict = verdict
        self.user_properties.append(("neuron_run", self.label))
        self.user_properties.append(("claim", self.claim.text))
        for key, value in verdict.values.items():
            self.user_properties.append((f"{self.claim.metric}.{key}", prop(value)))
        if not verdict.passed:
            raise ClaimFailed(verdict.message)

    def judge(self, state: NeuronSession, *, quiet: bool = False) -> Verdict:
        """The claim's own verdict on its run (skips and fails as ``runtest`` does; ``quiet``: counts nothing)."""
        assert self.label is not None
        projection, patching = self.needs
        attribution = needs_attribution([self.claim.metric])  # only its own claims pay for the sweep
        metrics = dict(
            state.metrics(
                self.label,
                projection=projection,
                patching=patching,
                attribution=attribution,
                options=self.claim.options,
            )
        )
        ref, pair_note = self.claim.expr.ref, ""
        baseline = None
        if ref == "baseline" or self.claim.metric in PAIR_METRICS:
            baseline, pair_note = self._baseline(state, metrics, quiet)
        references = None
        if ref is not None and ref != "baseline":
            references = {ref: self._history(state, ref)}
        verdict = evaluate(self.claim, metrics, baseline, references=references)
        if pair_note and not verdict.passed:
            verdict = Verdict(verdict.passed, f"{verdict.message}{pair_note}", verdict.judged_on, verdict.values)
        return verdict

    def _baseline(
        self, state: NeuronSession, metrics: dict[str, Metric], quiet: bool
    ) -> tuple[dict[str, Metric] | None, str]:
        """The paired baseline's metrics (None without --neuron-baseline: the claim fails saying so), and a note
        on the pairing for a failure message. Puts `baseline.comparable` into `metrics`. No baseline for this
        run: skipped when this session writes it (--neuron-update-baseline), else failed, with the reason."""
        assert self.label is not None
        if state.settings.baseline is None:
            return None, ""
        pair, why = state.baseline_pair(self.label)
        if pair is None:
            if state.settings.update_baseline:
                state.counters.no_baseline += 0 if quiet else 1
                _skip(why)
            verdict = Verdict(False, f"{self.claim.text} failed: {why}", "estimate", {})
            if not quiet:
                self.verdict = verdict
            raise ClaimFailed(verdict.message)
        note = f" (baseline: {pair.name}, paired by {pair.reason})"
        if self.claim.metric in PAIR_METRICS:
            projection, patching = self.needs
            summary = state.summary(self.label, projection=projection, patching=patching, options=self.claim.options)
            pair = pair.compared_with(summary)
            metrics["baseline.comparable"] = Metric("baseline.comparable", float(pair.comparable))
            if pair.differences:
                note = f" (baseline {pair.name} was analysed differently: {'; '.join(pair.differences)})"
        return flatten(pair.summary), note

    def _history(self, state: NeuronSession, ref: str) -> dict[str, Metric] | None:
        """What `previous`/`best` stands for (None without --neuron-history: the claim fails saying so);
        skipped, with the reason, when the history has no earlier entry for this run."""
        assert self.label is not None
        if state.settings.history_dir is None:
            return None
        found, why = state.history_reference(self.label, ref, lowest=self.claim.expr.kind == "upper")
        if found is None:
            _skip(why)
        return found

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
