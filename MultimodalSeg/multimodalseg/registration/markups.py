"""Slicer point lists: ``.mrk.json`` (markups schema v1.0.3) and the legacy ``.fcsv``, read and written.

Points are returned and taken in LPS (ITK's physical frame, like every array in this package). Files say
which frame they hold: ``.mrk.json`` has ``"coordinateSystem": "LPS"|"RAS"``; ``.fcsv`` has a
``# CoordinateSystem = `` header (``0``/``RAS`` or ``1``/``LPS``; files without it are RAS, the old
default). RAS and LPS differ by the sign of the first two axes. Slicer reads both frames; write RAS with
``coordinate_system="RAS"`` when a file is meant for people who read the numbers in Slicer's frame.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from multimodalseg.errors import UserError
from multimodalseg.fileutil import atomic_write_text

MARKUPS_SCHEMA = (
    "https://raw.githubusercontent.com/slicer/slicer/master/Modules/Loadable/Markups/Resources/Schema/"
    "markups-schema-v1.0.3.json#"
)
MARKUPS_SUFFIXES = (".mrk.json", ".fcsv", ".json")
FCSV_COLUMNS = ("id", "x", "y", "z", "ow", "ox", "oy", "oz", "vis", "sel", "lock", "label", "desc", "associatedNodeID")
_LPS_FLIP = np.array([-1.0, -1.0, 1.0])  # RAS <-> LPS: negate x and y (the map is its own inverse)


def ras_to_lps(points: np.ndarray) -> np.ndarray:
    """(N, 3) RAS -> LPS (also LPS -> RAS: the flip is its own inverse)."""
    return np.asarray(points, float) * _LPS_FLIP


lps_to_ras = ras_to_lps


def _frame(value: object, path: Path) -> str:
    text = str(value).strip().upper()
    if text in ("RAS", "0"):
        return "RAS"
    if text in ("LPS", "1"):
        return "LPS"
    raise UserError(f"unsupported coordinate system {value!r} (need RAS or LPS)", path)


def _check_points(points: np.ndarray, path: Path) -> np.ndarray:
    arr = np.asarray(points, float)
    if arr.ndim != 2 or arr.shape[1] != 3:
        raise UserError(f"points must be an (N, 3) array, got shape {arr.shape}", path)
    if not np.isfinite(arr).all():
        raise UserError("points hold NaN or infinite coordinates", path)
    return arr


def write_markups(
    path: str | os.PathLike,
    points_lps: np.ndarray,
    names: Sequence[str] | None = None,
    *,
    coordinate_system: str = "LPS",
) -> Path:
    """Write a point list Slicer loads as a markups fiducial (point list) node; the format follows the suffix.

    Args:
        path: ``*.mrk.json`` (Slicer's markups JSON) or ``*.fcsv`` (legacy comma-separated).
        points_lps: (N, 3) points in LPS mm.
        names: N labels (default ``F-1``, ``F-2``, ...).
        coordinate_system: frame written into the file, ``"LPS"`` or ``"RAS"``; points are converted.

    Returns:
        The path written (atomically: a failed write leaves nothing).

    Raises:
        UserError: bad suffix, points not (N, 3) finite, wrong number of names, unknown frame.
    """
    p = Path(path)
    pts = _check_points(points_lps, p)
    frame = _frame(coordinate_system, p)
    labels = [f"F-{i + 1}" for i in range(len(pts))] if names is None else [str(n) for n in names]
    if len(labels) != len(pts):
        raise UserError(f"{len(labels)} names for {len(pts)} points", p)
    out = pts if frame == "LPS" else lps_to_ras(pts)
    lower = p.name.lower()
    if lower.endswith(".fcsv"):
        return atomic_write_text(p, _fcsv_text(out, labels, frame), ".fcsv")
    if lower.endswith(".json"):
        return atomic_write_text(p, _mrk_json_text(out, labels, frame), ".json")
    raise UserError("unsupported point-list format; use .mrk.json or .fcsv", p)


def _mrk_json_text(points: np.ndarray, labels: list[str], frame: str) -> str:
    # The default orientation is identity in RAS; expressed in LPS it flips the first two axes.
    orientation = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    if frame == "LPS":
        orientation = [-1.0, -0.0, -0.0, -0.0, -1.0, -0.0, 0.0, 0.0, 1.0]
    control_points = [
        {
            "id": str(i + 1),
            "label": label,
            "description": "",
            "associatedNodeID": "",
            "position": [float(v) for v in point],
            "orientation": orientation,
            "selected": True,
            "locked": False,
            "visibility": True,
            "positionStatus": "defined",
        }
        for i, (point, label) in enumerate(zip(points, labels))
    ]
    doc = {
        "@schema": MARKUPS_SCHEMA,
        "markups": [
            {
                "type": "Fiducial",
                "coordinateSystem": frame,
                "coordinateUnits": "mm",
                "locked": False,
                "fixedNumberOfControlPoints": False,
                "labelFormat": "%N-%d",
                "lastUsedControlPointNumber": len(points),
                "controlPoints": control_points,
                "measurements": [],
            }
        ],
    }
    return json.dumps(doc, indent=4) + "\n"


def _fcsv_text(points: np.ndarray, labels: list[str], frame: str) -> str:
    buf = io.StringIO()
    buf.write("# Markups fiducial file version = 4.11\n")
    buf.write(f"# CoordinateSystem = {frame}\n")
    buf.write(f"# columns = {','.join(FCSV_COLUMNS)}\n")
    writer = csv.writer(buf, lineterminator="\n")  # quotes a label that holds a comma
    for i, (point, label) in enumerate(zip(points, labels)):
        x, y, z = (repr(float(v)) for v in point)
        writer.writerow([f"vtkMRMLMarkupsFiducialNode_{i}", x, y, z, 0, 0, 0, 1, 1, 1, 0, label, "", ""])
    return buf.getvalue()


def read_markups(path: str | os.PathLike) -> tuple[np.ndarray, list[str]]:
    """Read a Slicer point list.

    Args:
        path: ``*.mrk.json`` (one point list; RAS or LPS) or ``*.fcsv`` (RAS unless its header says LPS).

    Returns:
        ``(points, labels)``: (N, 3) float64 points in LPS mm, and the N point labels, in file order.

    Raises:
        UserError: missing or unreadable file, not a point list, several lists, a point without a defined
            position, NaN/inf or non-numeric coordinates, an unknown frame or unit.
    """
    p = Path(path)
    if not p.is_file():
        raise UserError("file not found" if not p.exists() else "not a file", p)
    try:
        text = p.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read point list ({getattr(exc, 'strerror', None) or exc})", p) from exc
    lower = p.name.lower()
    if lower.endswith(".fcsv"):
        points, labels, frame = _parse_fcsv(text, p)
    elif lower.endswith(".json"):
        points, labels, frame = _parse_mrk_json(text, p)
    else:
        raise UserError("unsupported point-list format; use .mrk.json or .fcsv", p)
    if not points:
        raise UserError("point list holds no points", p)
    arr = _check_points(np.asarray(points, float), p)
    return (arr if frame == "LPS" else ras_to_lps(arr)), labels


def _parse_mrk_json(text: str, path: Path) -> tuple[list[list[float]], list[str], str]:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"not valid JSON (line {exc.lineno}: {exc.msg})", path) from exc
    markups = doc.get("markups") if isinstance(doc, dict) else None
    if not isinstance(markups, list) or not markups:
        raise UserError("not a Slicer markups file (no 'markups' list)", path)
    if len(markups) != 1:
        raise UserError(f"file holds {len(markups)} markups; give one point list per file", path)
    node = markups[0]
    if not isinstance(node, dict) or node.get("type") != "Fiducial":
        kind = node.get("type") if isinstance(node, dict) else type(node).__name__
        raise UserError(f"markups type is {kind!r}; a point list ('Fiducial') is needed", path)
    frame = _frame(node.get("coordinateSystem", "LPS"), path)  # the schema's default is LPS
    units = node.get("coordinateUnits", "mm")
    if units != "mm":
        raise UserError(f"coordinate units {units!r} are not supported (need mm)", path)
    cps = node.get("controlPoints", [])
    if not isinstance(cps, list):
        raise UserError("'controlPoints' is not a list", path)
    points, labels = [], []
    for i, cp in enumerate(cps):
        if not isinstance(cp, dict):
            raise UserError(f"control point {i + 1} is not an object", path)
        label = str(cp.get("label", f"F-{i + 1}"))
        status = cp.get("positionStatus", "defined")
        if status != "defined" or "position" not in cp:
            raise UserError(f"control point {label!r} has no defined position (status {status!r})", path)
        points.append(_coords(cp["position"], label, path))
        labels.append(label)
    return points, labels, frame


def _coords(values: object, label: str, path: Path) -> list[float]:
    try:
        xyz = [float(v) for v in values]  # type: ignore[union-attr]
    except (TypeError, ValueError) as exc:
        raise UserError(f"control point {label!r} has a non-numeric position", path) from exc
    if len(xyz) != 3:
        raise UserError(f"control point {label!r} has {len(xyz)} coordinates; need 3", path)
    if not all(math.isfinite(v) for v in xyz):
        raise UserError(f"control point {label!r} has a NaN or infinite coordinate", path)
    return xyz


def _parse_fcsv(text: str, path: Path) -> tuple[list[list[float]], list[str], str]:
    frame = "RAS"  # files from before the header existed are RAS
    columns = list(FCSV_COLUMNS)
    rows: list[str] = []
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped:
            continue
        if stripped.startswith("#"):
            key, _, value = stripped[1:].partition("=")
            key = key.strip().lower()
            if key == "coordinatesystem":
                frame = _frame(value, path)
            elif key == "columns":
                columns = [c.strip() for c in value.split(",")]
            continue
        rows.append(line)
    missing = [c for c in ("x", "y", "z") if c not in columns]
    if missing:
        raise UserError(f"columns header lacks {', '.join(missing)}", path)
    ix, iy, iz = (columns.index(c) for c in ("x", "y", "z"))
    il = columns.index("label") if "label" in columns else None
    points, labels = [], []
    for n, row in enumerate(csv.reader(rows)):
        label = row[il] if il is not None and il < len(row) else f"F-{n + 1}"
        if len(row) <= max(ix, iy, iz):
            raise UserError(f"point row {n + 1} has {len(row)} fields; expected {len(columns)}", path)
        points.append(_coords([row[ix], row[iy], row[iz]], label, path))
        labels.append(label)
    return points, labels, frame
