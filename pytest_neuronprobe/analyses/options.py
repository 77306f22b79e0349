"""The options of each analysis: the one home of their defaults and checks.

An options object is frozen and hashable: the session's memo key and part of the on-disk cache key.
Bad values raise :class:`OptionError` saying what is accepted; :meth:`from_keywords` checks marker
keywords (``@pytest.mark.projection(...)``) with messages that name the marker and keyword.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import ClassVar, TypeVar

from pytest_neuronprobe.core.errors import OptionError

#: The projections the projection analysis correlates with the ground truth (SPEC §3), in report order.
NAMES = ("prediction", "head", "input", "output", "neuron_dir", "live")

#: A progress callback: (texts done so far, texts in all), called after each batch.
Progress = Callable[[int, int], None]

SPLITS = ("auto", "all", "train", "val", "test")
INPUT_HOOKS = ("resid_mid", "resid_pre")
MODES = ("scale", "set", "add")
METHODS = ("cached", "full")
#: The factors a mode uses when none are given (`set` and `add` need explicit values).
DEFAULT_FACTORS: Mapping[str, tuple[float, ...]] = {"scale": (0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0)}
DEFAULT_BATCH_SIZE = 32

Validator = Callable[[object], object]
OptionsT = TypeVar("OptionsT", "ProjectionOptions", "PatchingOptions", "ControlOptions", "AttributionOptions")
ABLATIONS = ("mean", "zero")


# -- value checks (each raises OptionError saying what is expected) ---------------------------------


def choice(choices: tuple[str, ...]) -> Callable[[object], str]:
    """A check that the value is one of `choices`."""

    def check(value: object) -> str:
        if not isinstance(value, str) or value not in choices:
            raise OptionError(f"expected one of {', '.join(choices)}, got {value!r}")
        return value

    return check


def _integer(value: object) -> int | None:
    """`value` as an int if it is a whole number (Python's or numpy's, not a bool), else None."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        return None
    return int(value)


def positive_int(value: object) -> int:
    """A whole number >= 1 (given as an int or a string)."""
    number = _integer(value)
    if number is None and isinstance(value, str):
        try:
            number = int(value.strip())
        except ValueError:
            number = None
    if number is None or number < 1:
        raise OptionError(f"expected a whole number >= 1, got {value!r}")
    return number


def non_negative_int(value: object) -> int:
    """A whole number >= 0."""
    number = _integer(value)
    if number is None or number < 0:
        raise OptionError(f"expected a whole number >= 0, got {value!r}")
    return number


def boolean(value: object) -> bool:
    """True or False."""
    if not isinstance(value, bool):
        raise OptionError(f"expected true or false, got {value!r}")
    return value


def optional_positive_int(value: object) -> int | None:
    return None if value is None else positive_int(value)


def seed(value: object) -> int:
    """An integer seed."""
    number = _integer(value)
    if number is None:
        raise OptionError(f"expected an integer seed, got {value!r}")
    return number


def split(value: object) -> str | None:
    """One of SPLITS, or None; `auto` (the run's own split rule) is None."""
    if value is None:
        return None
    checked = choice(SPLITS)(value)
    return None if checked == "auto" else checked


def factors(value: object) -> tuple[float, ...] | None:
    """A non-empty list of finite numbers, as a tuple of floats (None stays None)."""
    if value is None:
        return None
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise OptionError(f"expected a list of numbers, got {value!r}")
    items = list(value)
    if not items or not all(
        isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v) for v in items
    ):
        raise OptionError(f"expected a non-empty list of finite numbers, got {value!r}")
    return tuple(float(v) for v in items)


def texts(value: object) -> tuple[str, ...] | None:
    """A non-empty list of non-empty strings, as a tuple (None stays None)."""
    if value is None:
        return None
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise OptionError(f"expected a list of strings, got {value!r}")
    items = list(value)
    if not items or not all(isinstance(v, str) and v for v in items):
        raise OptionError(f"expected a non-empty list of non-empty strings, got {value!r}")
    return tuple(items)


# -- the options ----------------------------------------------------------------------------------


def _check_fields(options: object, validators: Mapping[str, Validator]) -> None:
    """Normalise each field of a frozen options object in place; a bad one raises naming the field."""
    kind = getattr(options, "kind", "analysis")
    for name, check in validators.items():
        try:
            value = check(getattr(options, name))
        except OptionError as exc:
            raise OptionError(f"{kind} option {name}: {exc}") from None
        object.__setattr__(options, name, value)


def _from_keywords(cls: type[OptionsT], base: OptionsT, keywords: Mapping[str, object], where: str) -> OptionsT:
    """`base` with the marker keywords applied; messages start with `where` (e.g. "@pytest.mark.patching")."""
    accepted = ", ".join(cls.KEYWORDS)
    unknown = [k for k in keywords if k not in cls.KEYWORDS]
    if unknown:
        raise OptionError(f"{where} got unknown keyword(s) {', '.join(map(repr, unknown))}; accepted: {accepted}")
    validators = cls.validators()
    changes: dict[str, object] = {}
    for key, value in keywords.items():
        try:
            changes[key] = validators[key](value)
        except OptionError as exc:
            raise OptionError(f"{where}({key}=...): {exc}") from None
    if "mode" in changes and "factors" not in changes:
        if changes["mode"] not in DEFAULT_FACTORS:
            raise OptionError(f"{where}(mode={changes['mode']!r}) needs factors=[...] (the values to set or add)")
        changes["factors"] = None  # the mode's own default
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]  # each value checked above


@dataclass(frozen=True, kw_only=True)
class ProjectionOptions:
    """Options of the projection analysis (SPEC §3); `split` None is the run's own split rule."""

    kind: ClassVar[str] = "projection"
    #: The keywords `@pytest.mark.projection(...)` accepts.
    KEYWORDS: ClassVar[tuple[str, ...]] = (
        "input_hook",
        "max_samples",
        "split",
        "n_resamples",
        "seed",
        "null_directions",
    )

    input_hook: str = "resid_mid"
    max_samples: int | None = None
    split: str | None = None
    n_resamples: int = 1000
    seed: int = 0
    null_directions: int = 200
    batch_size: int = DEFAULT_BATCH_SIZE

    @staticmethod
    def validators() -> dict[str, Validator]:
        return {
            "input_hook": choice(INPUT_HOOKS),
            "max_samples": optional_positive_int,
            "split": split,
            "n_resamples": non_negative_int,
            "seed": seed,
            "null_directions": non_negative_int,
            "batch_size": positive_int,
        }

    def __post_init__(self) -> None:
        _check_fields(self, self.validators())

    @classmethod
    def from_keywords(cls, base: ProjectionOptions, keywords: Mapping[str, object], *, where: str) -> ProjectionOptions:
        """`base` with the keywords of a marker applied (checked; messages prefixed by `where`)."""
        return _from_keywords(cls, base, keywords, where)


@dataclass(frozen=True, kw_only=True)
class PatchingOptions:
    """Options of the patching analysis (SPEC §4); `texts` None patches the analysed dataset texts."""

    kind: ClassVar[str] = "patching"
    #: The keywords `@pytest.mark.patching(...)` accepts.
    KEYWORDS: ClassVar[tuple[str, ...]] = (
        "mode",
        "factors",
        "texts",
        "max_samples",
        "split",
        "n_resamples",
        "seed",
        "method",
    )

    mode: str = "scale"
    #: None: the mode's default (DEFAULT_FACTORS); `set` and `add` need explicit values.
    factors: tuple[float, ...] | None = None
    texts: tuple[str, ...] | None = None
    max_samples: int | None = None
    split: str | None = None
    n_resamples: int = 1000
    seed: int = 0
    # batch_size before method: the order of the options in summary.json
    batch_size: int = DEFAULT_BATCH_SIZE
    method: str = "cached"

    @staticmethod
    def validators() -> dict[str, Validator]:
        return {
            "mode": choice(MODES),
            "factors": factors,
            "texts": texts,
            "max_samples": optional_positive_int,
            "split": split,
            "n_resamples": non_negative_int,
            "seed": seed,
            "method": choice(METHODS),
            "batch_size": positive_int,
        }

    def __post_init__(self) -> None:
        _check_fields(self, self.validators())
        if self.factors is None:
            if self.mode not in DEFAULT_FACTORS:
                raise OptionError(f"patching option mode {self.mode!r} needs explicit values (factors=[...])")
            object.__setattr__(self, "factors", DEFAULT_FACTORS[self.mode])

    @property
    def values(self) -> tuple[float, ...]:
        """The factors (never None after construction)."""
        assert self.factors is not None
        return self.factors

    @classmethod
    def from_keywords(cls, base: PatchingOptions, keywords: Mapping[str, object], *, where: str) -> PatchingOptions:
        """`base` with the keywords of a marker applied (checked; messages prefixed by `where`)."""
        return _from_keywords(cls, base, keywords, where)


@dataclass(frozen=True, kw_only=True)
class ControlOptions:
    """Options of the control task and the input probe: the projection options they share (which texts,
    the input hook, the seed), the number of shuffles and the optimiser steps of non-linear control heads."""

    kind: ClassVar[str] = "control"
    #: The keywords `@pytest.mark.projection_control(...)` accepts (the rest come from `projection`).
    KEYWORDS: ClassVar[tuple[str, ...]] = ("shuffles", "steps")

    projection: ProjectionOptions = ProjectionOptions()
    shuffles: int = 5
    #: Full-batch AdamW steps of a hidden-layer or classification control head (make-run's MLP_STEPS).
    steps: int = 400

    @staticmethod
    def validators() -> dict[str, Validator]:
        return {"shuffles": positive_int, "steps": positive_int}

    def __post_init__(self) -> None:
        _check_fields(self, self.validators())

    @classmethod
    def from_keywords(cls, base: ControlOptions, keywords: Mapping[str, object], *, where: str) -> ControlOptions:
        """`base` with the keywords of a marker applied (checked; messages prefixed by `where`)."""
        return _from_keywords(cls, base, keywords, where)


@dataclass(frozen=True, kw_only=True)
class AttributionOptions:
    """Options of the attribution sweep (issue 12): `k` units verified exactly (plus the target), `ablation`
    to the analysed texts' mean or to zero, attention heads (`heads`) as units besides the MLP neurons."""

    kind: ClassVar[str] = "attribution"
    #: The keywords `@pytest.mark.attribution(...)` accepts.
    KEYWORDS: ClassVar[tuple[str, ...]] = ("k", "ablation", "heads", "max_samples", "split", "n_resamples", "seed")

    k: int = 20
    ablation: str = "mean"
    heads: bool = False
    max_samples: int | None = None
    split: str | None = None
    n_resamples: int = 1000
    seed: int = 0
    batch_size: int = DEFAULT_BATCH_SIZE

    @staticmethod
    def validators() -> dict[str, Validator]:
        return {
            "k": positive_int,
            "ablation": choice(ABLATIONS),
            "heads": boolean,
            "max_samples": optional_positive_int,
            "split": split,
            "n_resamples": non_negative_int,
            "seed": seed,
            "batch_size": positive_int,
        }

    def __post_init__(self) -> None:
        _check_fields(self, self.validators())

    @classmethod
    def from_keywords(
        cls, base: AttributionOptions, keywords: Mapping[str, object], *, where: str
    ) -> AttributionOptions:
        """`base` with the keywords of a marker applied (checked; messages prefixed by `where`)."""
        return _from_keywords(cls, base, keywords, where)


def split_keywords(keywords: Mapping[str, object], *, where: str) -> tuple[dict[str, object], dict[str, object]]:
    """Analysis options given for both analyses at once (a claims file's ``options:``) as the projection's
    and the patching's keywords: each key goes to every analysis that accepts it (``max_samples``, ``split``,
    ``n_resamples``, ``seed`` to both). Checked: an unknown key or a bad value raises OptionError."""
    unknown = [k for k in keywords if k not in ProjectionOptions.KEYWORDS and k not in PatchingOptions.KEYWORDS]
    if unknown:
        accepted = ", ".join(dict.fromkeys((*ProjectionOptions.KEYWORDS, *PatchingOptions.KEYWORDS)))
        raise OptionError(f"{where}: unknown option(s) {', '.join(map(repr, unknown))}; analysis options: {accepted}")
    projection = {k: v for k, v in keywords.items() if k in ProjectionOptions.KEYWORDS}
    patching = {k: v for k, v in keywords.items() if k in PatchingOptions.KEYWORDS}
    ProjectionOptions.from_keywords(ProjectionOptions(), projection, where=where)
    PatchingOptions.from_keywords(PatchingOptions(), patching, where=where)
    return projection, patching
