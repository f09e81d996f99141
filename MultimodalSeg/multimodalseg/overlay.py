"""Overlay pictures: axial, coronal and sagittal views of an image with its label map, as a PNG (Pillow only).

Views are resampled in physical space onto axis-aligned LPS planes through one point, so oblique and
anisotropic images show in their true proportions. Display conventions are radiological: patient right on
the picture's left in axial and coronal views, anterior on the left in sagittal views, superior up.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from PIL import Image, ImageDraw, ImageFont

from multimodalseg.errors import UserError
from multimodalseg.fileutil import atomic_write
from multimodalseg.io import physical_bounds
from multimodalseg.tasks import TaskSpec, get_task

ALPHA = 0.4
GAP = 4
TITLE_HEIGHT = 18
# (name, in-plane axes (columns, rows) in LPS, normal axis, letters at left and right edges)
VIEWS = (("axial", (0, 1), 2, ("R", "L")), ("coronal", (0, 2), 1, ("R", "L")), ("sagittal", (1, 2), 0, ("A", "P")))


def label_colors(task: TaskSpec | str | None, values: Sequence[int] = ()) -> dict[int, tuple[int, int, int]]:
    """Label value -> RGB: the task's table, then a fixed palette for values the table lacks (or no task)."""
    spec = get_task(task) if isinstance(task, str) else task
    colors = {lab.value: tuple(lab.color) for lab in spec.labels} if spec is not None else {}
    for v in values:
        if v and v not in colors:
            hue = (int(v) * 0.61803398875) % 1.0  # golden-ratio hues keep neighbouring values apart
            colors[int(v)] = tuple(int(255 * c) for c in _hsv_to_rgb(hue, 0.75, 1.0))
    return colors


def _hsv_to_rgb(h: float, s: float, v: float) -> tuple[float, float, float]:
    i = int(h * 6) % 6
    f = h * 6 - int(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    return [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i]


class _Display:
    """An axis-aligned display box around an image: LPS bounds and the display spacing (mm per pixel)."""

    def __init__(self, image: sitk.Image, panel_size: int) -> None:
        lo, hi = physical_bounds(image)
        half = np.abs(np.asarray(image.GetDirection()).reshape(3, 3)) @ (np.asarray(image.GetSpacing()) / 2)
        self.lo, self.hi = lo - half, hi + half  # voxel edges, not centres
        self.spacing = float((self.hi - self.lo).max()) / panel_size
        self.size = np.maximum(np.round((self.hi - self.lo) / self.spacing).astype(int), 1)

    def plane(self, axes: tuple[int, int], normal: int, point: np.ndarray) -> sitk.Image:
        """A one-voxel-thick reference grid for sitk.Resample: columns along ``axes[0]``, rows along ``axes[1]``."""
        size = [1, 1, 1]
        size[axes[0]], size[axes[1]] = int(self.size[axes[0]]), int(self.size[axes[1]])
        origin = self.lo + self.spacing / 2
        origin[normal] = point[normal]
        ref = sitk.Image(size, sitk.sitkUInt8)
        ref.SetSpacing([self.spacing] * 3)
        ref.SetOrigin([float(o) for o in origin])
        return ref


def _slice(image: sitk.Image, ref: sitk.Image, axes: tuple[int, int], label: bool) -> np.ndarray:
    interp = sitk.sitkNearestNeighbor if label else sitk.sitkLinear
    pixel = sitk.sitkUInt16 if label else sitk.sitkFloat32
    out = sitk.GetArrayFromImage(sitk.Resample(image, ref, sitk.Transform(), interp, 0, pixel))  # (z, y, x)
    arr = np.squeeze(out, axis=tuple(2 - a for a in range(3) if a not in axes))
    if axes == (0, 1):
        return arr  # rows y (anterior at top), columns x (patient right at left)
    return arr[::-1]  # rows z, flipped so superior is up


def _centre(image: sitk.Image, label: sitk.Image | None) -> np.ndarray:
    if label is not None:
        idx = np.argwhere(sitk.GetArrayViewFromImage(label) > 0)
        if len(idx):
            return np.asarray(label.TransformContinuousIndexToPhysicalPoint([float(v) for v in idx.mean(0)[::-1]]))
    size = np.asarray(image.GetSize(), float)
    return np.asarray(image.TransformContinuousIndexToPhysicalPoint([float(v) for v in (size - 1) / 2]))


def window(image: sitk.Image, low: float = 1.0, high: float = 99.5) -> tuple[float, float]:
    """Display window from intensity percentiles (a strided sample keeps it fast on big images)."""
    arr = sitk.GetArrayViewFromImage(image).ravel()
    sample = arr[:: max(1, arr.size // 400_000)].astype(np.float64)
    lo, hi = np.percentile(sample, [low, high])
    return float(lo), float(hi if hi > lo else lo + 1.0)


def _blend(gray: np.ndarray, lab: np.ndarray | None, win: tuple[float, float],
           colors: Mapping[int, tuple]) -> Image.Image:
    g = np.clip((gray - win[0]) / (win[1] - win[0]), 0, 1) * 255
    rgb = np.repeat(g[..., None], 3, axis=2)
    if lab is not None:
        for value in np.unique(lab):
            if value == 0:
                continue
            m = lab == value
            rgb[m] = (1 - ALPHA) * rgb[m] + ALPHA * np.asarray(colors.get(int(value), (255, 0, 0)), float)
    return Image.fromarray(np.round(rgb).astype(np.uint8), "RGB")


def _row(image: sitk.Image, label: sitk.Image | None, display: _Display, point: np.ndarray,
         win: tuple[float, float], colors: Mapping[int, tuple]) -> list[Image.Image]:
    panels = []
    font = ImageFont.load_default()
    for _name, axes, normal, letters in VIEWS:
        ref = display.plane(axes, normal, point)
        gray = _slice(image, ref, axes, label=False)
        lab = _slice(label, ref, axes, label=True) if label is not None else None
        panel = _blend(gray, lab, win, colors)
        draw = ImageDraw.Draw(panel)
        draw.text((2, panel.height // 2 - 5), letters[0], fill=(255, 255, 0), font=font)
        draw.text((panel.width - 8, panel.height // 2 - 5), letters[1], fill=(255, 255, 0), font=font)
        panels.append(panel)
    return panels


def _compose(rows: list[list[Image.Image]], title: str | None) -> Image.Image:
    widths = [sum(p.width for p in row) + GAP * (len(row) - 1) for row in rows]
    heights = [max(p.height for p in row) for row in rows]
    top = TITLE_HEIGHT if title else 0
    canvas = Image.new("RGB", (max(widths), top + sum(heights) + GAP * (len(rows) - 1)), (0, 0, 0))
    y = top
    for row, h in zip(rows, heights):
        x = 0
        for p in row:
            canvas.paste(p, (x, y))
            x += p.width + GAP
        y += h + GAP
    if title:
        ImageDraw.Draw(canvas).text((4, 3), title, fill=(255, 255, 255), font=ImageFont.load_default())
    return canvas


def _save(picture: Image.Image, path: str | os.PathLike) -> Path:
    p = Path(path)
    if not p.name.lower().endswith(".png"):
        raise UserError("overlay pictures are PNG; use a .png name", p)
    return atomic_write(p, lambda tmp: picture.save(tmp, format="PNG"), ".png")


def save_overlay_png(
    image: sitk.Image,
    label: sitk.Image | None,
    path: str | os.PathLike,
    task: TaskSpec | str | None = None,
    title: str | None = None,
    *,
    panel_size: int = 256,
    point: Sequence[float] | None = None,
) -> Path:
    """Write axial, coronal and sagittal views through the label's centre (the image centre without labels).

    Args:
        image: a 3D scalar image, any direction and spacing.
        label: a label map in the same physical space (any grid), or None.
        path: ``*.png``, written atomically.
        task: colours from this task's label table (a palette for unknown values).
        title: a line of text above the views.
        panel_size: pixels along the image's longest physical extent; the other sizes keep physical proportions.
        point: LPS point (mm) the three planes pass through, instead of the label's centre.

    Returns:
        The path written. The picture is ``3 * panel width + 2 * 4`` pixels wide (plus 18 rows for a title).
    """
    display = _Display(image, panel_size)
    point = _centre(image, label) if point is None else np.asarray(point, float)
    values = [int(v) for v in np.unique(sitk.GetArrayViewFromImage(label))] if label is not None else []
    rows = [_row(image, label, display, point, window(image), label_colors(task, values))]
    return _save(_compose(rows, title), path)


def save_case_overview_png(case, path: str | os.PathLike, *, panel_size: int = 200) -> Path:
    """One row per role (its own image, three views through the same physical point, no labels), then the
    reference image with the label; moving roles show their misregistration as it is."""
    task = get_task(case.task)
    reference = task.reference_role
    display = _Display(case.images[reference], panel_size)
    point = _centre(case.images[reference], case.label)
    values = [int(v) for v in np.unique(sitk.GetArrayViewFromImage(case.label))]
    colors = label_colors(task, values)
    rows = [_row(case.images[r], None, display, point, window(case.images[r]), colors) for r in task.roles]
    rows.append(_row(case.images[reference], case.label, display, point, window(case.images[reference]), colors))
    title = f"{case.case_id}: rows {', '.join(task.roles)}, {reference} + label"
    return _save(_compose(rows, title), path)
