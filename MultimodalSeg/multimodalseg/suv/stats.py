"""SUV statistics per structure of a label map: volume, mean, SD, max and SUVpeak; CSV and JSON output.

Grids: the label map is resampled onto the PET grid (nearest neighbour, in physical space) and the SUV values are
never interpolated, so SUVmax is a real voxel and the statistics match what a PET reader measures. The volume is
counted on the label map's own grid (the segmentation's volume, not its PET-voxel approximation); ``pet_voxels``
says how many PET voxels the SUV values come from.

SUVpeak: the mean SUV over the PET voxels whose centres lie within 6.2035 mm (the radius of a 1 mL sphere) of the
centre of the structure's maximum voxel, whatever their label, in physical distance (spacing-aware), clipped at the
image border. With several voxels at the maximum, the first in (z, y, x) array order is the centre. This is the
sphere-at-the-maximum definition, not PERCIST's search for the hottest 1 mL sphere anywhere in the structure.
"""

from __future__ import annotations

import csv
import io as _io
import json
import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from multimodalseg.errors import UserError
from multimodalseg.fileutil import publish
from multimodalseg.io import overlap_fraction, resample_to_reference, same_geometry

PEAK_RADIUS_MM = (3000.0 / (4.0 * math.pi)) ** (1.0 / 3.0)  # 6.2035 mm: a sphere of 1 mL

CSV_COLUMNS = ("value", "name", "volume_ml", "pet_voxels", "suv_mean", "suv_sd", "suv_max", "suv_peak")


@dataclass
class StructureStatistics:
    """SUV statistics of one structure.

    Args:
        value: label value in the label map.
        name: label name (from the task's label table).
        volume_ml: volume on the label map's grid, mL.
        pet_voxels: PET voxels whose centres fall in the structure.
        suv_mean, suv_sd, suv_max, suv_peak: SUVbw (SD with ddof 0); None when ``pet_voxels`` is 0.
    """

    value: int
    name: str
    volume_ml: float
    pet_voxels: int
    suv_mean: float | None = None
    suv_sd: float | None = None
    suv_max: float | None = None
    suv_peak: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def sphere_offsets(spacing_zyx: Sequence[float], radius_mm: float) -> np.ndarray:
    """Integer (dz, dy, dx) offsets whose voxel centres lie within ``radius_mm`` of the centre voxel's."""
    reach = [int(math.floor(radius_mm / s)) for s in spacing_zyx]
    grid = np.stack(np.meshgrid(*[np.arange(-r, r + 1) for r in reach], indexing="ij"), -1).reshape(-1, 3)
    dist2 = ((grid * np.asarray(spacing_zyx)) ** 2).sum(1)
    return grid[dist2 <= radius_mm**2 * (1 + 1e-9)]  # an orthonormal direction keeps distances


def structure_statistics(
    suv: sitk.Image,
    labels: sitk.Image,
    names: Mapping[int, str],
    *,
    peak_radius_mm: float = PEAK_RADIUS_MM,
) -> list[StructureStatistics]:
    """Statistics for each label value in ``names`` (in its order), present in ``labels`` or not.

    Args:
        suv: SUV image (any scalar type), its own grid.
        labels: integer label map, any grid overlapping the PET; values not in ``names`` are not reported.
        names: label value -> name.
        peak_radius_mm: radius of the SUVpeak sphere (1 mL: 6.2035 mm).

    Raises:
        UserError: the label map and the PET do not overlap in physical space.
    """
    if overlap_fraction(labels, suv) <= 0.0:
        raise UserError("the label map does not overlap the PET in physical space")
    label_array = sitk.GetArrayViewFromImage(labels)
    counts = np.bincount(label_array.ravel().astype(np.int64))
    voxel_ml = float(np.prod(labels.GetSpacing())) / 1000.0
    on_pet = labels if same_geometry(labels, suv) else resample_to_reference(labels, suv, label=True)
    lab = sitk.GetArrayViewFromImage(on_pet)
    values = sitk.GetArrayFromImage(suv).astype(np.float64, copy=False)
    offsets = sphere_offsets(suv.GetSpacing()[::-1], peak_radius_mm)
    shape = np.asarray(values.shape)
    rows = []
    for value, name in names.items():
        count = int(counts[value]) if 0 <= value < len(counts) else 0
        row = StructureStatistics(int(value), name, count * voxel_ml, 0)
        where = np.flatnonzero(lab.ravel() == value)
        if where.size:
            inside = values.ravel()[where]
            centre = np.asarray(np.unravel_index(where[int(np.argmax(inside))], values.shape))
            sphere = centre + offsets
            sphere = sphere[((sphere >= 0) & (sphere < shape)).all(1)]
            row.pet_voxels = int(where.size)
            row.suv_mean = float(inside.mean())
            row.suv_sd = float(inside.std())
            row.suv_max = float(inside.max())
            row.suv_peak = float(values[tuple(sphere.T)].mean())
        rows.append(row)
    return rows


def statistics_csv(rows: Sequence[StructureStatistics]) -> str:
    """CSV text, one row per structure; empty cells where a structure has no PET voxels."""
    out = _io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for row in rows:
        d = row.to_dict()
        # significant digits, not decimals: a fixed 6 decimals kept 4 digits of a 0.0025 SUV (rounding 1e-4)
        writer.writerow(["" if d[c] is None else f"{d[c]:.10g}" if isinstance(d[c], float) else d[c]
                         for c in CSV_COLUMNS])
    return out.getvalue()


def write_statistics(
    rows: Sequence[StructureStatistics],
    csv_path: str | os.PathLike,
    json_path: str | os.PathLike | None = None,
    metadata: Mapping | None = None,
) -> None:
    """Write the CSV (and the JSON: ``metadata`` plus ``structures``), all or nothing.

    Every file is written to a temporary file beside its target first; the renames happen only when all are
    complete, so a failure leaves no partial output.

    Raises:
        UserError: a folder cannot be created or written.
    """
    texts = {Path(csv_path): statistics_csv(rows)}
    if json_path is not None:
        payload = {**(metadata or {}), "structures": [r.to_dict() for r in rows]}
        texts[Path(json_path)] = json.dumps(payload, indent=2) + "\n"
    temps: list[tuple[str, Path]] = []
    try:
        for path, text in texts.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".partial-", suffix=path.suffix, dir=path.parent)
            temps.append((tmp, path))
            with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
                f.write(text)
        for tmp, path in temps:
            publish(tmp, path)
    except OSError as exc:
        for tmp, _ in temps:
            Path(tmp).unlink(missing_ok=True)
        target = temps[-1][1] if temps else Path(csv_path)
        raise UserError(f"cannot write output ({exc.strerror or exc})", target) from exc
