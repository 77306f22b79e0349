"""Where the plugin keeps its state on pytest's objects."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:  # pragma: no cover
    from pytest_neuronprobe.pytest.session import NeuronSession


@dataclass
class ItemOutcome:
    """One item's outcome so far, folded from its setup, call and teardown reports."""

    order: int = 0
    outcome: str = "passed"
    message: str = ""
    duration: float = 0.0


SESSION_KEY = pytest.StashKey["NeuronSession"]()
RECORD_KEY = pytest.StashKey[ItemOutcome]()
#: The item now running, so assertion explanations can name its run.
CURRENT_KEY = pytest.StashKey["pytest.Item | None"]()
#: The indirect parameter every run-dependent test is parametrized over (its value: the run label).
RUN_PARAM = "_neuronprobe_run"


def session_of(config: pytest.Config) -> NeuronSession:
    """The plugin's session state of this pytest run."""
    return config.stash[SESSION_KEY]


def is_worker(config: pytest.Config) -> bool:
    """Whether this process is a pytest-xdist worker."""
    return hasattr(config, "workerinput")
