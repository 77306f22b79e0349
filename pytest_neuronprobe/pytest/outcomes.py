"""What each run-dependent test did, recorded for the report (`TestRecord`), and assertion explanations."""

from __future__ import annotations

from typing import Any

import pytest

from pytest_neuronprobe.pytest.items import ClaimItem
from pytest_neuronprobe.pytest.stash import CURRENT_KEY, RECORD_KEY, RUN_PARAM, ItemOutcome, session_of
from pytest_neuronprobe.report.terminal import HELD_UNEXPECTEDLY

_TEXT_LIMIT = 4000


def run_label(item: pytest.Item) -> tuple[bool, str | None]:
    """(uses a run, which one) for any item."""
    if isinstance(item, ClaimItem):
        return True, item.label
    if RUN_PARAM not in getattr(item, "fixturenames", ()):
        return False, None
    callspec = getattr(item, "callspec", None)
    return True, callspec.params.get(RUN_PARAM) if callspec is not None else None


def describe(item: pytest.Item) -> str:
    """The claim's text, or the test's name with the first line of its docstring."""
    if isinstance(item, ClaimItem):
        return item.claim.text
    doc = getattr(getattr(item, "obj", None), "__doc__", None)
    first = doc.strip().splitlines()[0] if doc and doc.strip() else ""
    return f"{item.name}: {first}" if first else item.name


def _message(report: pytest.TestReport, call: pytest.CallInfo[None], item: pytest.Item) -> str:
    if report.skipped and isinstance(report.longrepr, tuple):
        return str(report.longrepr[2]).removeprefix("Skipped: ")
    if isinstance(item, ClaimItem) and item.verdict is not None:
        if item.verdict.passed and report.failed:  # a strict xfail whose claim held
            return f"{HELD_UNEXPECTEDLY} {item.claim.xfail}: {item.verdict.message}"
        return item.verdict.message
    if call.excinfo is not None:
        text = call.excinfo.exconly()
        return text if len(text) <= _TEXT_LIMIT else text[:_TEXT_LIMIT] + " …"
    return ""


def record(item: pytest.Item, call: pytest.CallInfo[None], report: pytest.TestReport) -> None:
    """Fold one phase's report into the item's record; after teardown, hand the record to the session."""
    from pytest_neuronprobe.report.files import TestRecord

    uses, label = run_label(item)
    if not uses:
        return
    rec = item.stash.setdefault(RECORD_KEY, ItemOutcome())
    if report.when == "setup":
        rec.outcome = "error" if report.failed else ("skipped" if report.skipped else "passed")
        rec.message = _message(report, call, item) if not report.passed else ""
    elif report.when == "call":
        if hasattr(report, "wasxfail"):
            rec.outcome = "xfailed" if report.skipped else "xpassed"
        else:
            rec.outcome = report.outcome
        rec.message = _message(report, call, item)
        rec.duration = report.duration
    elif report.when == "teardown":
        if report.failed:
            rec.outcome = "error"
            rec.message = (rec.message + "\nteardown: " + _message(report, call, item)).strip()
        values = {k: v for k, v in item.user_properties if k not in ("neuron_run", "claim")}
        session_of(item.config).record(
            TestRecord(
                nodeid=item.nodeid,
                run=label,
                claim=describe(item),
                outcome=rec.outcome,
                message=rec.message,
                values=values,
                kind="claim" if isinstance(item, ClaimItem) else "test",
                duration=rec.duration,
                order=rec.order,
                metric=item.claim.metric if isinstance(item, ClaimItem) else "",
            )
        )
        item.config.stash[CURRENT_KEY] = None


def explain(config: pytest.Config, op: str, left: Any, right: Any) -> list[str] | None:
    """Name the metric, its interval, n and the run of an operand that is one of the running test's numbers."""
    from pytest_neuronprobe.pytest.assertion import describe_operand, results_of

    item = config.stash.get(CURRENT_KEY, None)
    label = run_label(item)[1] if item is not None else None
    results = results_of(getattr(item, "funcargs", None) or {})
    lines = [d for d in (describe_operand(x, results, label) for x in (left, right)) if d]
    if not lines:
        return None
    return [f"{_short_repr(left)} {op} {_short_repr(right)}", *lines]


def _short_repr(x: object) -> str:
    text = repr(x)
    return text if len(text) <= 200 else text[:200] + " …"
