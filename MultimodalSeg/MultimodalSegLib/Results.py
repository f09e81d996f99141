"""What a finished run becomes in Slicer, as plain data: the segment list, the result tables, extra volumes.

Plain Python: ``Scene.py`` applies these with Slicer calls. The segment list comes from the task specification
(names, colours, SNOMED CT terminology), never from the label file, so an absent structure still gets its
(empty) segment for the annotator to paint.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from multimodalseg.errors import UserError
from multimodalseg.io import has_volume_suffix
from multimodalseg.tasks import TaskSpec


@dataclass(frozen=True)
class SegmentSpec:
    """One segment of a result.

    Attributes:
        segmentId: stable id in the segmentation node (derived from the name).
        name: the label's name (``LV``, ``Left-Hippocampus``, ``NCR/NET``).
        value: the label map value the backend writes for it.
        color: RGB in 0..1 (Slicer's segment colour range).
        terminology: the string ``vtkSegment.SetTerminology`` takes.
        description: a longer name, if the task gives one.
    """

    segmentId: str
    name: str
    value: int
    color: tuple[float, float, float]
    terminology: str
    description: str = ""


def segmentId(name: str) -> str:
    """A segment id from a label name: ``NCR/NET`` -> ``NCR_NET``."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "segment"


def segmentSpecs(task: TaskSpec) -> list[SegmentSpec]:
    """One :class:`SegmentSpec` per label of the task, in the task's label order."""
    specs = []
    for label in task.labels:
        r, g, b = label.color
        specs.append(SegmentSpec(segmentId(label.name), label.name, label.value,
                                 (r / 255.0, g / 255.0, b / 255.0), label.terminology.slicer_string(),
                                 label.description))
    return specs


def segmentationNodeName(task: TaskSpec, inputName: str) -> str:
    """The result node's name: the reference input's name and the task, e.g. ``case1_t1ce - Brain Tumor (BraTS)``."""
    return f"{inputName} - {task.title}"


def segmentValues(task: TaskSpec, segmentNames: list[str]) -> tuple[dict[str, int], list[str]]:
    """Map segment names to the task's label values for "save for training".

    Names match a label's name, ignoring case and surrounding spaces (annotators rename segments in Segment
    Editor). Returns ``(segment name -> value, names that match no label)``.
    """
    byName = {label.name.strip().lower(): label.value for label in task.labels}
    values, unknown = {}, []
    for name in segmentNames:
        value = byName.get(name.strip().lower())
        if value is None:
            unknown.append(name)
        else:
            values[name] = value
    return values, unknown


@dataclass
class TableData:
    """A result table as plain data; ``Scene.py`` turns it into a ``vtkMRMLTableNode``.

    Attributes:
        key: the report entry it came from (e.g. ``suv_statistics``).
        title: human-readable title (node name suffix).
        columns: column names; the first is the row name.
        rows: one list per row, same length as ``columns``; cells are str, int, float or None (missing).
    """

    key: str
    title: str
    columns: list[str]
    rows: list[list[Any]]

    def columnIsNumeric(self, index: int) -> bool:
        values = [row[index] for row in self.rows if row[index] is not None]
        return bool(values) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)


# Report entries that describe the run rather than the patient: not shown as tables.
NON_RESULT_KEYS = frozenset({"event", "task", "model", "version", "device", "inputs", "outputs", "timings",
                             "seconds", "command", "created", "warnings", "case", "reference", "settings",
                             "precision"})

# Titles for the entries the workflows write; other tabular entries get a title from their key.
TITLES = {
    "suv_statistics": "SUV statistics", "suv_stats": "SUV statistics", "suv": "SUV statistics",
    "suv_structures": "SUV statistics", "suv_parameters": "SUV parameters",
    "volumes_ml": "Volumes (mL)", "region_volumes_ml": "Region volumes (mL)", "regions_ml": "Region volumes (mL)",
    "chamber_volumes_ml": "Chamber volumes (mL)", "fusion_metrics": "Fusion metrics",
}


# The title of a table whose group names its quantity ("PET statistics: SUVbw (g/mL)").
QUANTITY_TITLES = {"suv_structures": "PET statistics", "suv_statistics": "PET statistics"}


def _title(key: str) -> str:
    return TITLES.get(key, key.replace("_", " ").strip().capitalize())


def _cell(value: Any) -> Any:
    if isinstance(value, bool):
        return int(value)
    if value is None or isinstance(value, (str, int, float)):
        return value
    return json.dumps(value)


def _isNumber(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def tableFromEntry(key: str, value: Any) -> TableData | None:
    """A table from one report entry, or None when it is not tabular.

    Tabular shapes: a list of flat records (``[{"name": "LV", "volume_ml": 120.3}, ...]``); a mapping of names to
    records (``{"Left-Thalamus": {"suv_mean": 7.1, ...}}``); a mapping of names to numbers
    (``{"WT": 41.2, "TC": 12.9}``, one value column named after the entry).
    """
    if isinstance(value, list) and value and all(isinstance(v, Mapping) for v in value):
        columns: list[str] = []
        for record in value:
            columns += [k for k in record if k not in columns]
        return TableData(key, _title(key), columns, [[_cell(r.get(c)) for c in columns] for r in value])
    if isinstance(value, Mapping) and value:
        items = list(value.items())
        if all(isinstance(v, Mapping) for _, v in items):
            columns = []
            for _, record in items:
                columns += [k for k in record if k not in columns]
            rows = [[str(name)] + [_cell(record.get(c)) for c in columns] for name, record in items]
            return TableData(key, _title(key), ["name", *columns], rows)
        if all(_isNumber(v) or v is None for _, v in items):
            return TableData(key, _title(key), ["name", key], [[str(name), v] for name, v in items])
    return None


def tablesFromReport(report: Mapping[str, Any]) -> list[TableData]:
    """Every tabular result entry of a backend report (see :func:`tableFromEntry`), in report order.

    Nested result groups (``{"suv": {"statistics": [...]}}``) are searched one level deep. A group that says what
    its values are (``"quantity": "SUVbw (g/mL)"``, or "PET values as stored (not SUV)") puts that in the titles
    of its tables, so an activity table is never taken for SUV.
    """
    tables = []
    for key, value in report.items():
        if key in NON_RESULT_KEYS:
            continue
        table = tableFromEntry(key, value)
        if table is not None:
            tables.append(table)
        elif isinstance(value, Mapping):
            quantity = value.get("quantity") if isinstance(value.get("quantity"), str) else None
            for subKey, subValue in value.items():
                sub = tableFromEntry(f"{key}_{subKey}", subValue)
                if sub is not None:
                    if quantity:
                        sub.title = f"{QUANTITY_TITLES.get(sub.key, sub.title)}: {quantity}"
                    tables.append(sub)
    return tables


def readReport(path: str | os.PathLike) -> dict[str, Any]:
    """The backend's JSON report; an empty dict when the file does not exist.

    Raises:
        UserError: the file exists but is not a JSON object.
    """
    p = Path(path)
    if not p.exists():
        return {}
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UserError(f"backend report cannot be read ({exc})", p) from exc
    if not isinstance(data, dict):
        raise UserError("backend report is not a JSON object", p)
    return data


@dataclass(frozen=True)
class ExtraVolume:
    """A further backend output to load (spine: fused image, disagreement map)."""

    key: str
    path: Path
    isLabel: bool
    title: str


# Outputs that are masks or label maps (shown as label map volumes); any other extra output is an image.
LABEL_OUTPUT_KEYS = ("disagreement", "mask", "labels", "regions")


def extraVolumes(report: Mapping[str, Any], finished: Mapping[str, Any] | None = None,
                 labelsPath: str | os.PathLike | None = None) -> list[ExtraVolume]:
    """Volume outputs besides the label map that exist on disk, from the report's ``outputs`` and the finished
    event's (spine: ``fused``, ``disagreement``)."""
    outputs: dict[str, Any] = {}
    for source in (finished or {}, report):
        outputs.update(source.get("outputs") or {})
    skip = {Path(labelsPath).resolve()} if labelsPath else set()
    extras = []
    for key, value in outputs.items():
        if key == "labels" or not isinstance(value, str):
            continue
        path = Path(value)
        if not has_volume_suffix(path) or not path.is_file() or path.resolve() in skip:
            continue  # the report itself, the preview PNG, ...
        isLabel = any(word in key.lower() for word in LABEL_OUTPUT_KEYS)
        extras.append(ExtraVolume(key, path, isLabel, _title(key)))
    return extras
