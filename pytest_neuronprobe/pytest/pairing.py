"""The session's baselines and history: which baseline summary each run pairs with, and what `previous` and
`best` stand for (a mixin of :class:`~pytest_neuronprobe.pytest.session.NeuronSession`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from pytest_neuronprobe.baseline import BaselinePair, NeuronIdentity, Pairing
    from pytest_neuronprobe.claims.metrics import Metric
    from pytest_neuronprobe.history import HistoryEntry
    from pytest_neuronprobe.pytest.options import Settings
    from pytest_neuronprobe.pytest.records import RunResults
    from pytest_neuronprobe.pytest.runs import RunEntry


class SessionBaselines:
    """Pairing with --neuron-baseline and reading --neuron-history, once per session."""

    # the session's fields this part reads (declared by NeuronSession)
    settings: Settings
    entries: dict[str, RunEntry]
    cli_labels: list[str]
    final: dict[str, RunResults]
    remote: dict[str, RunResults]
    _pairing: Pairing | None
    _pairs: dict[str, tuple[BaselinePair | None, str]]
    _history: list[HistoryEntry] | None

    @property
    def pairing(self) -> Pairing | None:
        """The baseline summaries and which one each run compares with; None without --neuron-baseline."""
        from pytest_neuronprobe.baseline import Pairing

        if self.settings.baseline is None:
            return None
        if self._pairing is None:
            self._pairing = Pairing.load(
                self.settings.baseline, update=self.settings.update_baseline, force=self.settings.baseline_run
            )
        return self._pairing

    def baseline_pair(self, label: str) -> tuple[BaselinePair | None, str]:
        """Which baseline summary this run compares with and why, or None with the reason why there is
        none; an ambiguous pairing raises NeuronProbeError listing the candidates."""
        pairing = self.pairing
        if pairing is None:
            return None, "no --neuron-baseline given"
        if label not in self._pairs:
            final = self.final.get(label) or self.remote.get(label)
            run = self.entries[label].run if label in self.entries else (final.summary if final else None)
            self._pairs[label] = pairing.pair(label, run)
        return self._pairs[label]

    def check_pairing(self) -> None:
        """Pair every command-line run now, so a bad baseline, a --neuron-baseline-run matching none or several
        of its runs, or an ambiguous pairing stops the session before any test (NeuronProbeError)."""
        if self.settings.baseline is not None:
            for label in self.cli_labels:
                self.baseline_pair(label)

    def baseline_for(self, label: str) -> tuple[dict[str, object] | None, str]:
        """This run's baseline summary, or None with the reason why there is none."""
        pair, reason = self.baseline_pair(label)
        return (None, reason) if pair is None else (pair.summary, "")

    def identity(self, label: str) -> NeuronIdentity | None:
        """The neuron this run probes (None for a run only a worker loaded)."""
        from pytest_neuronprobe.baseline import NeuronIdentity

        return NeuronIdentity.of_run(self.entries[label].run, digest=True) if label in self.entries else None

    def history_reference(self, label: str, which: str, *, lowest: bool) -> tuple[dict[str, Metric] | None, str]:
        """What `previous` or `best` stands for in this run's claims, or None with the reason (no earlier entry)."""
        from pytest_neuronprobe.history import HISTORY_FILE, read_history, reference_metrics

        directory = self.settings.history_dir
        assert directory is not None
        if self._history is None:
            self._history = read_history(directory)
        name = self.entries[label].run.name if label in self.entries else label
        where = str(directory / HISTORY_FILE)
        return reference_metrics(which, self._history, name, self.identity(label), lowest=lowest, where=where)
