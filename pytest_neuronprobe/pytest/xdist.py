"""pytest-xdist: tests spread by run (each worker loads only its runs), results gathered by the controller.

Imported only when pytest-xdist is installed. Workers publish a JSON payload on `workeroutput`
(:func:`worker_payload`); the controller folds each in when the worker goes down (:class:`XdistHooks`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pytest
from xdist.scheduler import LoadScopeScheduling

from pytest_neuronprobe.pytest.records import RunResults

if TYPE_CHECKING:  # pragma: no cover
    from pytest_neuronprobe.pytest.session import NeuronSession

WORKER_OUTPUT_KEY = "neuronprobe"
PAYLOAD_VERSION = 1

# Characters that may border a run label inside a test id: pytest joins the ids of several
# parametrizations with "-", and a claims item's name ends with "[<label>]".
_EDGE = r"\-\[\]"


def _shown(label: str) -> str:
    """The label as pytest writes it in a test id (non-ASCII escaped, like `_pytest.compat.ascii_escaped`)."""
    escaped = label.encode("unicode_escape").decode("ascii")
    return "".join(ch if 32 <= ord(ch) < 127 else f"\\x{ord(ch):02x}" for ch in escaped)


def label_patterns(labels: Iterable[str]) -> list[tuple[str, re.Pattern[str]]]:
    """(label, pattern finding it as a whole part of a test id) per label, longest label first."""
    patterns: list[tuple[str, re.Pattern[str]]] = []
    for label in sorted(set(labels), key=len, reverse=True):
        forms = dict.fromkeys([label, _shown(label)])
        body = "|".join(re.escape(form) for form in forms)
        patterns.append((label, re.compile(rf"(?<![^{_EDGE}])(?:{body})(?![^{_EDGE}])")))
    return patterns


def run_of(nodeid: str, patterns: Sequence[tuple[str, re.Pattern[str]]]) -> str | None:
    """The run label in `nodeid`'s parameter id (the longest label that is the whole id or a
    `-`/bracket-delimited part of it), or None when the test uses none of these runs."""
    _, sep, rest = nodeid.partition("::")
    start = rest.find("[")
    if not sep or start < 0 or not rest.endswith("]"):
        return None
    param_id = rest[start + 1 : -1]
    for label, pattern in patterns:
        if pattern.search(param_id):
            return label
    return None


class RunScopeScheduling(LoadScopeScheduling):  # type: ignore[misc]  # xdist ships no type hints
    """xdist's `loadscope` scheduling with one scope per run: every test of a run goes to the same
    worker, so each worker loads only its runs' models and computes only their analyses; tests
    that use no run are each their own scope and spread freely.

    The scheduler runs in the controller and sees only nodeids, so it finds a run by its label
    (the ids of run-dependent tests and claims items are the run labels) among the runs the
    controller knows: `--neuron-run` and the `neuron_run` ini key. Runs pinned by
    `@pytest.mark.neuron_run(...)` are resolved only while the workers collect; a test on a
    pinned run that is not also a command-line run is its own scope (outcomes are unchanged; that
    run may be loaded on more than one worker), or, when a command-line label is a `-`-delimited
    part of its id, it joins that run's scope.
    """

    def __init__(self, config: Any, log: Any = None, *, labels: Iterable[str] = ()) -> None:
        super().__init__(config, log)
        self._patterns = label_patterns(labels)
        self._scopes: dict[str, str] = {}

    def _split_scope(self, nodeid: str) -> str:
        # Called for every finished test too: remember each nodeid's scope.
        scope = self._scopes.get(nodeid)
        if scope is None:
            scope = self._scopes[nodeid] = run_of(nodeid, self._patterns) or nodeid
        return scope


def worker_payload(state: NeuronSession) -> str:
    """What a worker sends to the controller: its frozen run results, test records and counters, as JSON."""
    with_arrays = state.settings.report_dir is not None
    return json.dumps(
        {
            "version": PAYLOAD_VERSION,
            "paths": {label: str(e.path) for label, e in state.entries.items()},
            "runs": {label: results.to_json(with_arrays) for label, results in state.done.items()},
            "records": [r.as_dict() for r in state.records],
            "counters": state.counters.as_dict(),
        }
    )


def merge_payload(state: NeuronSession, payload: Mapping[str, Any]) -> None:
    """Fold one worker's payload into the controller's session."""
    from pytest_neuronprobe.report.files import TestRecord

    for label, path in (payload.get("paths") or {}).items():
        state.remote_paths.setdefault(label, path)
    for label, data in (payload.get("runs") or {}).items():
        results = RunResults.from_json(data)
        state.remote[label] = results.merged(state.remote.get(label)) if label in state.remote else results
    state.records.extend(TestRecord.from_dict(r) for r in payload.get("records") or [])
    state.counters.add(payload.get("counters") or {})


class XdistHooks:
    """Hooks that exist only with pytest-xdist (registered on the controller only when it is installed)."""

    def __init__(self, state: NeuronSession) -> None:
        self.state = state

    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        """Gather a finished worker's run results and test records."""
        payload = (getattr(node, "workeroutput", None) or {}).get(WORKER_OUTPUT_KEY)
        if payload:
            merge_payload(self.state, json.loads(payload))

    def pytest_xdist_make_scheduler(self, config: pytest.Config, log: Any) -> RunScopeScheduling | None:
        """With `--dist load` (what `-n N` gives), keep each run's tests on one worker; any other
        mode, or no command-line run, is xdist's own choice."""
        if config.getvalue("dist") != "load" or not self.state.cli_labels:
            return None
        return RunScopeScheduling(config, log, labels=self.state.cli_labels)
