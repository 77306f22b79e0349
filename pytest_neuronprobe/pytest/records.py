"""What a session counts and what it keeps per run: typed records that travel from xdist workers as JSON."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from pytest_neuronprobe.core.jsonable import jsonable

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import numpy.typing as npt

    from pytest_neuronprobe.analyses.patching_fit import PatchingResult
    from pytest_neuronprobe.analyses.projection import ProjectionResult


#: Named arrays of one analysis (numpy arrays, and the texts as a list), as the report's plots read them.
Arrays = Mapping[str, object]

#: The summary keys the projection analysis fills (SPEC §5 plus extras); the patching one fills "patching".
PROJECTION_KEYS = ("dataset_size", "weight_similarities", "projections", "null", "self_check", "projection_options")


@dataclass
class Counters:
    """What the terminal summary counts: skips, analyses (and how many came from the cache), their time."""

    no_run: int = 0
    no_baseline: int = 0
    analyses: int = 0
    analyses_cached: int = 0
    analysis_ms: int = 0

    def analysed(self, *, cached: bool, seconds: float) -> None:
        self.analyses += 1
        self.analyses_cached += int(cached)
        self.analysis_ms += round(seconds * 1000)

    def add(self, other: Mapping[str, object]) -> None:
        """Add a worker's counters (as sent in its payload)."""
        for name, value in other.items():
            if name in self.__dataclass_fields__ and isinstance(value, int):
                setattr(self, name, getattr(self, name) + value)

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def _arrays(data: object) -> dict[str, object] | None:
    import numpy as np

    if not isinstance(data, Mapping):
        return None
    return {str(k): (list(v) if k == "texts" else np.asarray(v, dtype=float)) for k, v in data.items()}


@dataclass
class RunResults:
    """One run's summary (SPEC §5) with the arrays the report's plots need."""

    label: str
    summary: dict[str, object]
    has_projection: bool = False
    has_patching: bool = False
    projection_arrays: Arrays | None = None
    patching_arrays: Arrays | None = None
    null_values: npt.NDArray[np.float64] | None = None
    error: str | None = None

    @classmethod
    def of(
        cls,
        label: str,
        summary: dict[str, object],
        projection: ProjectionResult | None,
        patching: PatchingResult | None,
    ) -> RunResults:
        """The results of this process's analyses of a run (the summary's run name set to its label)."""
        run = summary.get("run")
        if isinstance(run, dict):
            run["name"] = label
        return cls(
            label=label,
            summary=summary,
            has_projection=projection is not None,
            has_patching=patching is not None,
            projection_arrays=dict(projection.arrays) if projection is not None else None,
            patching_arrays=dict(patching.arrays) if patching is not None else None,
            null_values=projection.arrays.get("null_random") if projection is not None else None,
        )

    @classmethod
    def failed(cls, label: str, exc: BaseException) -> RunResults:
        return cls(label, {"run": {"name": label}}, error=f"{type(exc).__name__}: {exc}")

    def to_json(self, with_arrays: bool) -> dict[str, object]:
        return {
            "label": self.label,
            "summary": jsonable(self.summary),
            "has_projection": self.has_projection,
            "has_patching": self.has_patching,
            "error": self.error,
            "projection_arrays": jsonable(self.projection_arrays) if with_arrays else None,
            "patching_arrays": jsonable(self.patching_arrays) if with_arrays else None,
            "null_values": jsonable(self.null_values) if with_arrays else None,
        }

    @classmethod
    def from_json(cls, d: Mapping[str, object]) -> RunResults:
        import numpy as np

        summary, error, null = d.get("summary"), d.get("error"), d.get("null_values")
        return cls(
            label=str(d["label"]),
            summary=dict(summary) if isinstance(summary, Mapping) else {},
            has_projection=bool(d.get("has_projection")),
            has_patching=bool(d.get("has_patching")),
            error=None if error is None else str(error),
            projection_arrays=_arrays(d.get("projection_arrays")),
            patching_arrays=_arrays(d.get("patching_arrays")),
            null_values=None if null is None else np.asarray(null, dtype=float),
        )

    def merged(self, other: RunResults | None) -> RunResults:
        """This run's results completed with the parts only `other` has."""
        if other is None:
            return self
        summary = dict(self.summary)
        out = RunResults(
            self.label,
            summary,
            self.has_projection,
            self.has_patching,
            self.projection_arrays,
            self.patching_arrays,
            self.null_values,
            self.error or other.error,
        )
        if not self.has_projection and other.has_projection:
            for key in PROJECTION_KEYS:
                if key in other.summary:
                    summary[key] = other.summary[key]
            mine, theirs = summary.get("run"), other.summary.get("run")
            if isinstance(mine, Mapping) and isinstance(theirs, Mapping):
                summary["run"] = {**mine, "split": theirs.get("split")}
            out.has_projection = True
            out.projection_arrays, out.null_values = other.projection_arrays, other.null_values
        if not self.has_patching and other.has_patching:
            summary["patching"] = other.summary.get("patching")
            out.has_patching = True
            out.patching_arrays = other.patching_arrays
        for key in ("control", "input_probe"):  # the control analysis (claims or the report asked for it)
            if key not in summary and key in other.summary:
                summary[key] = other.summary[key]
        if "attribution" not in summary and "attribution" in other.summary:
            summary["attribution"] = other.summary["attribution"]
        if "provenance" not in summary and "provenance" in other.summary:
            summary["provenance"] = other.summary["provenance"]
        return out


@dataclass
class FinishResult:
    """What the end of the session wrote, and what went wrong."""

    index_html: Path | None = None
    report_files: dict[str, dict[str, Path]] = field(default_factory=dict)
    baseline_files: list[Path] = field(default_factory=list)
    baseline_untouched: list[str] = field(default_factory=list)
    #: The history file appended to (--neuron-history), and how many run lines were appended.
    history_file: Path | None = None
    history_entries: int = 0
    errors: list[str] = field(default_factory=list)
