"""Spreading tests over pytest-xdist workers by run, so each worker loads only the runs it runs.

Imported only when pytest-xdist is installed (by the `pytest_xdist_make_scheduler` hook in plugin.py).
"""

from __future__ import annotations

import re
from typing import Any, Iterable, Sequence

from xdist.scheduler import LoadScopeScheduling

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
    param_id = rest[start + 1:-1]
    for label, pattern in patterns:
        if pattern.search(param_id):
            return label
    return None


class RunScopeScheduling(LoadScopeScheduling):
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
