"""Real label maps for the generator: the small packaged copies, or a user's folder (``--anatomy DIR``).

Packaged maps live in ``anatomy/<kind>/`` next to this module (kind ``brain``, ``heart`` or ``spine``), already
in painted values (see :mod:`multimodalseg.synthesis.labels`), uint8, cropped and downsampled by
``tools/fetch_anatomy.py``. A user's folder is searched recursively for label maps (NIfTI, NRRD, MHA, MGZ);
each is relabelled through its kind's table and kept when it holds that kind's structures.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from multimodalseg.errors import UserError
from multimodalseg.phantoms.geometry import Grid
from multimodalseg.synthesis import labels as lt

PACKAGED = Path(__file__).resolve().parent / "anatomy"
KINDS = {"petmr-brain": "brain", "brain-tumor": "brain", "whole-heart": "heart", "spine": "spine"}
# Anatomies held out of the shipped demos' training: their validation cases and `multimodalseg demo` come from these,
# so no demo is ever scored on an anatomy it was trained on. fsaverage (and its mirror) is also left out of the
# PET/MR demo's training, because the real-image benchmark scores it on fsaverage's own T1 and aseg. The spine's
# tptbox maps are the masks of the benchmark's real tptbox CT and MR crops: both held out, the spine demo trains on
# the panoptica lumbar map.
HELD_OUT: dict[str, tuple[str, ...]] = {"brain": ("training_seg_17", "training_seg_18", "training_seg_19",
                                                  "training_seg_20"),
                                        "heart": ("linflonet_mesh",),
                                        "spine": ("tptbox_ct", "tptbox_mri")}
_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd", ".mgz")


@dataclass(frozen=True)
class Anatomy:
    """One real label map in painted values.

    Args:
        name: file stem (``training_seg_01``, ``fsaverage``, ...).
        kind: ``brain``, ``heart`` or ``spine``.
        labels: (Z, Y, X) uint16 painted values.
        grid: its voxel grid (LPS).
    """

    name: str
    kind: str
    labels: np.ndarray
    grid: Grid

    def centre(self) -> np.ndarray:
        """Physical centre (LPS mm) of the labelled voxels' bounding box."""
        nz = np.nonzero(self.labels)
        lo = np.array([a.min() for a in nz][::-1], float)
        hi = np.array([a.max() for a in nz][::-1], float)
        return np.asarray(self.grid.origin) + self.grid.matrix @ ((lo + hi) / 2)

    def extent_mm(self, values=None) -> np.ndarray:
        """Physical extent (x, y, z mm) of the voxels holding ``values`` (all labelled voxels by default)."""
        mask = self.labels > 0 if values is None else np.isin(self.labels, values)
        idx = np.stack(np.nonzero(mask)[::-1], 1).astype(float)
        pts = np.asarray(self.grid.origin) + idx @ self.grid.matrix.T
        return pts.max(0) - pts.min(0) + np.abs(self.grid.matrix).sum(1)


def grid_of(img: sitk.Image) -> Grid:
    return Grid(tuple(int(s) for s in img.GetSize()[::-1]), tuple(float(s) for s in img.GetSpacing()),
                tuple(float(o) for o in img.GetOrigin()), tuple(float(d) for d in img.GetDirection()))


def read_label_map(path: str | os.PathLike) -> tuple[np.ndarray, Grid]:
    """(Z, Y, X) integer array and its grid; MGZ through nibabel (RAS affine turned into LPS)."""
    path = Path(path)
    try:
        if path.name.endswith(".mgz"):
            import nibabel as nib

            img = nib.load(str(path))
            data = np.asarray(img.dataobj)
            data = data.astype(data.dtype.newbyteorder("="))  # MGZ is big-endian
            aff = np.diag([-1.0, -1.0, 1.0, 1.0]) @ img.affine  # RAS -> LPS
            spacing = np.linalg.norm(aff[:3, :3], axis=0)
            sitk_img = sitk.GetImageFromArray(np.ascontiguousarray(data.transpose(2, 1, 0)))
            sitk_img.SetSpacing(spacing.tolist())
            sitk_img.SetOrigin(aff[:3, 3].tolist())
            sitk_img.SetDirection((aff[:3, :3] / spacing).ravel().tolist())
        else:
            sitk_img = sitk.ReadImage(str(path))
    except (RuntimeError, OSError, ValueError) as exc:
        raise UserError(f"cannot read label map ({exc})", path) from exc
    if sitk_img.GetNumberOfComponentsPerPixel() != 1 or sitk_img.GetDimension() != 3:
        raise UserError("not a 3-D single-channel image", path)
    array = sitk.GetArrayFromImage(sitk_img)
    return array, grid_of(sitk_img)


def to_painted(kind: str, array: np.ndarray, grid: Grid) -> np.ndarray | None:
    """Relabel a source map into painted values, or None when it is not a usable ``kind`` label map."""
    if array.dtype.kind == "f":
        if not np.all(np.mod(array[::4, ::4, ::4], 1) == 0):
            return None  # an intensity image
        array = array.astype(np.int32)
    values = np.unique(array)
    if len(values) > 300 or values.min() < 0:
        return None
    vals = set(int(v) for v in values) - {0}
    if kind == "brain":
        table = lt.brain_table(values)
        painted = lt.apply_table(array, table)
        if len(set(table.values()) & set(lt.BRAIN_LABELS)) < 10:
            return None
        return lt.derive_corpus_callosum(painted, grid.matrix, grid.origin)
    if kind == "heart":
        if vals <= set(lt.HEART_SOURCE) and len(vals) >= 5:
            return lt.apply_table(array, {0: 0, **lt.HEART_SOURCE})
        heart = set(lt.HEART_VALUES) | {421}
        if len(vals & heart) >= 5:
            table = {v: (420 if v == 421 else v) if v in heart else lt.THORAX["soft"] for v in values.tolist()}
            return lt.apply_table(array, {**table, 0: 0})
        return None
    if kind == "spine":
        known = set(lt.SPINE_VERTEBRA) | set(lt.SPINE_DISC) | set(lt.SPINE_PAINTED_ONLY)
        if not vals & (set(lt.SPINE_VERTEBRA) - {26}) or len(vals & known) < 3:
            return None
        body = set(lt.SPINE_BODY.values())
        table = {int(v): int(v) if int(v) in known | body else lt.SPINE_BODY["soft"] for v in values}
        return lt.apply_table(array, table)
    raise ValueError(kind)


def _candidates(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.name.lower().endswith(_SUFFIXES))


@functools.lru_cache(maxsize=8)
def _load(kind: str, folder: str) -> tuple[Anatomy, ...]:
    root = Path(folder)
    found = []
    for path in _candidates(root):
        try:
            array, grid = read_label_map(path)
        except UserError:
            continue
        painted = to_painted(kind, array, grid)
        if painted is not None:
            name = path.name
            for suffix in _SUFFIXES:
                name = name.removesuffix(suffix)
            found.append(Anatomy(name, kind, painted.astype(np.uint16), grid))
    return tuple(found)


def load_anatomy(task_id: str, folder: str | os.PathLike | None = None) -> tuple[Anatomy, ...]:
    """The label maps a task's generator draws from: packaged ones, or those in ``folder``.

    Raises:
        UserError: ``folder`` is missing or holds no usable label map for the task.
    """
    kind = KINDS.get(task_id)
    if kind is None:
        from multimodalseg.tasks import get_task

        get_task(task_id)  # unknown id -> its UserError
        raise UserError(f"no synthetic-data generator for task {task_id}")
    root = PACKAGED / kind if folder is None else Path(folder)
    if not root.is_dir():
        raise UserError("anatomy folder does not exist", root)
    found = _load(kind, str(root.resolve()))
    if not found:
        raise UserError(f"no usable {kind} label maps for {task_id} here", root)
    return found


def block_mode(labels: np.ndarray, factors: tuple[int, int, int], small_voxels: int = 0) -> np.ndarray:
    """Downsample a (Z, Y, X) label map by integer ``factors`` with a majority vote per block.

    Labels with fewer than ``small_voxels`` voxels count double in the vote, so thin structures (vessels,
    the 5th ventricle) survive the coarser grid.
    """
    fz, fy, fx = factors
    z, y, x = (s - s % f for s, f in zip(labels.shape, factors))
    blocks = labels[:z, :y, :x].reshape(z // fz, fz, y // fy, fy, x // fx, fx)
    values, counts = np.unique(labels, return_counts=True)
    best = np.zeros((z // fz, y // fy, x // fx), np.float32)
    out = np.zeros_like(best, dtype=labels.dtype)
    for v, c in zip(values, counts):
        weight = 2.0 if c < small_voxels else 1.0
        score = (blocks == v).sum(axis=(1, 3, 5)).astype(np.float32) * weight
        if v == 0:
            score -= 0.5  # ties go to tissue, not background
        better = score > best
        out[better], best[better] = v, score[better]
    return out


def downsampled_grid(grid: Grid, factors: tuple[int, int, int], shape) -> Grid:
    """The grid of :func:`block_mode`'s output: block centres, ``factors`` (z, y, x) times the spacing."""
    f_xyz = np.asarray(factors[::-1], float)
    origin = np.asarray(grid.origin) + grid.matrix @ ((f_xyz - 1) / 2)
    return Grid(tuple(int(s) for s in shape), tuple(float(s) for s in np.asarray(grid.spacing) * f_xyz),
                tuple(float(o) for o in origin), grid.direction)


def crop_to_labels(labels: np.ndarray, grid: Grid, margin: int = 2) -> tuple[np.ndarray, Grid]:
    """Crop to the labelled voxels' bounding box plus ``margin`` voxels."""
    nz = np.nonzero(labels)
    lo = [max(int(a.min()) - margin, 0) for a in nz]
    hi = [min(int(a.max()) + margin + 1, s) for a, s in zip(nz, labels.shape)]
    out = labels[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
    origin = np.asarray(grid.origin) + grid.matrix @ np.asarray(lo[::-1], float)
    return out, Grid(tuple(out.shape), grid.spacing, tuple(float(o) for o in origin), grid.direction)


def split_anatomy(task_id: str, maps: tuple[Anatomy, ...] | None = None) -> tuple[tuple[Anatomy, ...],
                                                                                   tuple[Anatomy, ...]]:
    """``(training, held out)`` anatomies of a task (:data:`HELD_OUT`); kinds without a held-out list give
    ``(maps, ())``."""
    maps = maps if maps is not None else load_anatomy(task_id)
    held = set(HELD_OUT.get(KINDS.get(task_id, ""), ()))
    return tuple(m for m in maps if m.name not in held), tuple(m for m in maps if m.name in held)
