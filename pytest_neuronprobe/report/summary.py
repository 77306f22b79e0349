"""summary.json (SPEC §5): one dict per run, with provenance; and a run's report data from its analyses."""

from __future__ import annotations

import platform
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from pytest_neuronprobe.analyses.attribution_fit import AttributionResult
from pytest_neuronprobe.analyses.options import NAMES
from pytest_neuronprobe.analyses.patching_fit import PatchingResult
from pytest_neuronprobe.analyses.projection import ProjectionResult
from pytest_neuronprobe.analyses.stats import put_number
from pytest_neuronprobe.core.digests import file_digest, package_version, tree_digest
from pytest_neuronprobe.core.probe import Probe
from pytest_neuronprobe.core.version import __version__
from pytest_neuronprobe.report.files import RunReport

if TYPE_CHECKING:  # pragma: no cover
    from pytest_neuronprobe.analyses.control import ControlResult

LIBRARIES = ("torch", "transformer_lens", "transformers", "numpy", "scipy", "pandas")


def provenance(probe: Probe) -> dict[str, object]:
    """What produced these numbers: file hashes, model, processing, device, versions."""
    run, model = probe.run, probe.model
    dtype = next(iter(model.bridge.parameters())).dtype
    head_hash = file_digest(run.head_path) if run.head_path.is_file() else None
    head_mtime = (
        datetime.fromtimestamp(run.head_path.stat().st_mtime, timezone.utc).isoformat(timespec="seconds")
        if run.head_path.is_file()
        else None
    )
    return {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "pytest_neuronprobe": __version__,
        "head_sha256": head_hash,
        "config_sha256": file_digest(run.config_path),
        "dataset_sha256": file_digest(run.dataset_path),
        "head_path": str(run.head_path),
        # The run's training date: its head file's modification time (the report's trends order by it).
        "head_mtime": head_mtime,
        "config_path": str(run.config_path),
        "dataset_path": str(run.dataset_path),
        # The run's own base model (a model shared by content may have been booted from another run's copy).
        "model_source": str(run.base_model),
        "model_sha256": tree_digest(run.base_model) if run.base_model_is_local else None,
        "base_model_path": run.config.base_model_path,  # as config.json gives it (None: the hub name)
        "base_model_outside_run": run.base_model_outside is not None,
        "processing": model.processing,
        "prepend_bos": run.config.prepend_bos,
        "token_pos": run.config.token_pos,
        "neuron_hook": probe.neuron_hook,
        "feature_hook": probe.feature_hook,
        "device": str(model.device),
        "dtype": str(dtype).removeprefix("torch."),
        "python": platform.python_version(),
        "libraries": {name: package_version(name) for name in LIBRARIES},
    }


def build_summary(
    probe: Probe,
    projection: ProjectionResult | None = None,
    patching: PatchingResult | None = None,
    *,
    control: ControlResult | None = None,
    attribution: AttributionResult | None = None,
) -> dict[str, object]:
    """The SPEC §5 dict; analyses not run are present as empty objects / null (the control's are absent)."""
    run = probe.run
    split = projection.split if projection is not None else run.split
    summary: dict[str, object] = {
        "run": {
            "path": str(run.path),
            "name": run.name,
            "target_layer": run.layer,
            "target_neuron": run.neuron,
            "head_type": run.head_type,
            "base_model": run.config.base_model_name or run.base_model,
            "split": split,
        },
        "dataset_size": projection.n if projection is not None else len(run.analysed()),
        "weight_similarities": {"head_input": None, "head_output": None, "input_output": None},
        "projections": {name: {} for name in NAMES},
        "patching": None,
    }
    if projection is not None:
        extra = projection.as_dict()
        weights: dict[str, object] = {}
        for name in ("head_input", "head_output", "input_output"):
            put_number(weights, name, getattr(projection.weights, name))
        extra["weight_similarities"] = weights
        summary["weight_similarities"] = extra["weight_similarities"]
        summary["projections"] = extra["projections"]
        summary["null"] = extra["null"]
        summary["self_check"] = extra["self_check"]
        summary["projection_options"] = extra["options"]
    if patching is not None:
        summary["patching"] = patching.as_dict()
    if control is not None:
        summary.update(control.as_dict())
    if attribution is not None:
        summary["attribution"] = attribution.as_dict()
    summary["provenance"] = provenance(probe)
    add_reasons(summary, projection is not None)
    return summary


#: The summary sections holding numbers (each null number in them gets a `<name>_reason`).
NUMBER_SECTIONS = ("weight_similarities", "projections", "null", "patching", "attribution", "self_check")


def add_reasons(summary: dict[str, object], ran_projection: bool) -> None:
    """Give every null number in the number sections a sibling `<name>_reason` (its entry's `reason`, else why
    its analysis did not fill it); a section that is null gets `<section>_reason`."""
    not_run = {
        "patching": "the patching analysis did not run",
        "null": "the null baseline was not computed",
    }

    def walk(node: object, why: str) -> None:
        if isinstance(node, list):
            for item in node:
                walk(item, why)
        if not isinstance(node, dict):
            return
        own = str(node["reason"]) if node.get("reason") else why
        for key, value in list(node.items()):
            if value is None and not key.endswith("_reason") and f"{key}_reason" not in node:
                node[f"{key}_reason"] = own
            elif isinstance(value, (dict, list)) and key != "options":
                walk(value, own)

    for section in NUMBER_SECTIONS:
        if section not in summary:
            continue
        if summary[section] is None:
            summary[f"{section}_reason"] = not_run.get(section, f"the {section} analysis did not run")
        else:
            walk(summary[section], "undefined" if ran_projection else "the projection analysis did not run")


def run_report(
    probe: Probe,
    projection: ProjectionResult | None = None,
    patching: PatchingResult | None = None,
    *,
    control: ControlResult | None = None,
    attribution: AttributionResult | None = None,
) -> RunReport:
    """One run's report data (its summary and the arrays the figures plot), for :func:`report.files.write_report`."""
    return RunReport(
        name=probe.run.name,
        summary=build_summary(probe, projection, patching, control=control, attribution=attribution),
        projection_arrays=dict(projection.arrays) if projection is not None else None,
        patching_arrays=dict(patching.arrays) if patching is not None else None,
        null_values=projection.arrays.get("null_random") if projection is not None else None,
    )
