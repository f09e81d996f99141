"""Volume I/O through SimpleITK: NIfTI, NRRD, MHA and DICOM series, with checks and geometry kept.

Every reader raises :class:`UserError` naming the file and the problem; every writer writes to a temporary
file beside the target and renames it, so a failed run leaves no partial output. Imports without torch.

Coordinates: SimpleITK (like ITK and DICOM) works in LPS physical space; Slicer shows RAS.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from multimodalseg.errors import UserError
from multimodalseg.fileutil import atomic_write
from multimodalseg.io_dicom import (  # noqa: F401 - InputWarning, allow_no_geometry, warnings_to: public here too
    InputWarning,
    allow_no_geometry,
    is_dicom_file,
    warnings_to,
)
from multimodalseg.io_dicom import check_file as _check_dicom_file
from multimodalseg.io_dicom import read_series as _read_dicom_series
from multimodalseg.io_integrity import check_complete

VOLUME_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd", ".mgz")


def has_volume_suffix(path: str | os.PathLike) -> bool:
    return str(path).lower().endswith(VOLUME_SUFFIXES)


def read_image(path: str | os.PathLike, *, label: bool = False) -> sitk.Image:
    """Read a 3D volume and check it.

    Args:
        path: a NIfTI / NRRD / MHA / MGZ file, or a folder holding one DICOM series (``io_dicom``: geometry,
            multi-frame and slice-spacing checks).
        label: read as a label map: integer voxels required, returned as ``sitk.sitkUInt16``.

    Returns:
        The image in LPS physical space. A 4D image whose 4th axis has length 1 is reduced to 3D.

    Raises:
        UserError: missing, unreadable or truncated file (``io_integrity``), not 3D, non-finite voxels,
            non-positive spacing, non-integer label values; DICOM without geometry or with time frames.
    """
    p = Path(path)
    if not p.exists():
        raise UserError("file not found", p)
    try:
        if p.is_dir():
            image = _read_dicom_series(p)
        elif p.name.lower().endswith((".mgz", ".mgh")):
            image = _read_mgh(p)
        else:
            check_complete(p)
            if is_dicom_file(p):
                _check_dicom_file(p)
            image = sitk.ReadImage(str(p))
    except UserError:
        raise
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[-1] if str(exc).strip() else "unknown reason"
        raise UserError(f"cannot read image ({first.strip()})", p) from exc
    image = _to_3d(image, p)
    check_geometry(image, p)
    if image.GetNumberOfComponentsPerPixel() != 1:
        components = image.GetNumberOfComponentsPerPixel()
        raise UserError(f"image has {components} components per voxel; need a scalar image", p)
    arr = sitk.GetArrayViewFromImage(image)
    bad = int((~np.isfinite(arr)).sum()) if arr.dtype.kind == "f" else 0
    if arr.dtype.kind == "f" and not bad:
        bad = _nifti_nonfinite(p)
    if bad:
        raise UserError(f"image holds {bad} NaN or infinite voxels", p)
    if label:
        return to_label_image(image, p)
    return image


def _read_mgh(path: Path) -> sitk.Image:
    """FreeSurfer MGH/MGZ (``mri/T1.mgz``, ``mri/aseg.mgz``) through nibabel: SimpleITK has no MGH reader.

    nibabel gives the voxel-to-RAS affine of an (x, y, z) array; ITK wants LPS, so the first two rows flip sign.
    """
    import nibabel

    try:
        mgh = nibabel.load(str(path))
        data = np.asanyarray(mgh.dataobj)
    except Exception as exc:  # nibabel raises several types for damaged files
        raise UserError(f"cannot read image ({type(exc).__name__}: {exc})", path) from exc
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise UserError(f"image is {data.ndim}D ({'x'.join(map(str, data.shape))}); a 3D volume is needed", path)
    affine = np.diag([-1.0, -1.0, 1.0, 1.0]) @ np.asarray(mgh.affine, float)
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    if not np.all(spacing > 0):
        raise UserError("MGH affine has a zero voxel size", path)
    native = data.astype(data.dtype.newbyteorder("="), copy=False)  # MGH is big-endian on disk
    image = sitk.GetImageFromArray(np.ascontiguousarray(native.transpose(2, 1, 0)))
    image.SetSpacing([float(v) for v in spacing])
    image.SetDirection([float(v) for v in (affine[:3, :3] / spacing).ravel()])
    image.SetOrigin([float(v) for v in affine[:3, 3]])
    return image


def _nifti_nonfinite(path: Path) -> int:
    """Non-finite voxels of a float NIfTI file: SimpleITK's NIfTI reader silently turns NaN into 0."""
    if not path.is_file() or not path.name.lower().endswith((".nii", ".nii.gz")):
        return 0
    import nibabel

    try:
        nii = nibabel.load(str(path))
        if np.dtype(nii.get_data_dtype()).kind != "f":
            return 0
        return int((~np.isfinite(np.asanyarray(nii.dataobj))).sum())
    except Exception:  # SimpleITK read it, so a nibabel failure here is no reason to refuse the file
        return 0


def _to_3d(image: sitk.Image, path: Path) -> sitk.Image:
    dim = image.GetDimension()
    if dim == 4 and image.GetSize()[3] == 1:
        return image[:, :, :, 0]
    if dim != 3:
        shape = "x".join(map(str, image.GetSize()))
        raise UserError(f"image is {dim}D ({shape}); a 3D volume is needed", path)
    return image


def check_geometry(image: sitk.Image, path: str | os.PathLike | None = None) -> None:
    """Raise a UserError when spacing is not positive or the direction matrix is singular."""
    spacing = image.GetSpacing()
    if any(not np.isfinite(s) or s <= 0 for s in spacing):
        raise UserError(f"spacing {tuple(round(s, 6) for s in spacing)} has a zero, negative or non-finite value", path)
    direction = np.asarray(image.GetDirection(), float).reshape(image.GetDimension(), image.GetDimension())
    if not np.isfinite(direction).all() or abs(np.linalg.det(direction)) < 1e-6:
        raise UserError("direction matrix is singular", path)
    if min(image.GetSize()) < 1:
        raise UserError("image is empty", path)


def check_extent(image: sitk.Image, min_voxels: Sequence[int], min_mm: Sequence[float] = (0.0, 0.0, 0.0),
                 path: str | os.PathLike | None = None, why: str = "") -> None:
    """Raise a UserError naming the image's size when an axis (x, y, z) has fewer than ``min_voxels`` voxels or
    spans less than ``min_mm`` (voxels x spacing)."""
    size, spacing = image.GetSize(), image.GetSpacing()
    extent = [n * s for n, s in zip(size, spacing)]
    if any(n < v for n, v in zip(size, min_voxels)) or any(e < m - 1e-6 for e, m in zip(extent, min_mm)):
        mm = "x".join(f"{e:.3g}" for e in extent)
        raise UserError(f"image is too thin: {'x'.join(map(str, size))} voxels ({mm} mm){f'; {why}' if why else ''}",
                        path)


def to_label_image(image: sitk.Image, path: str | os.PathLike | None = None) -> sitk.Image:
    """Cast a label map to UInt16, refusing non-integer or negative values."""
    arr = sitk.GetArrayViewFromImage(image)
    if arr.dtype.kind == "f" and (not np.isfinite(arr).all() or not np.array_equal(arr, np.round(arr))):
        raise UserError("label map holds non-integer values", path)
    if arr.size and arr.min() < 0:
        raise UserError(f"label map holds negative value {arr.min()}", path)
    if arr.size and arr.max() > np.iinfo(np.uint16).max:
        raise UserError(f"label map value {arr.max()} is too large", path)
    return sitk.Cast(image, sitk.sitkUInt16)


def label_values(image: sitk.Image) -> list[int]:
    """The distinct values of a label map, background included."""
    return [int(v) for v in np.unique(sitk.GetArrayViewFromImage(image))]


def write_image(image: sitk.Image, path: str | os.PathLike, *, compress: bool = True) -> Path:
    """Write atomically: a temporary file beside ``path``, renamed when complete.

    Raises:
        UserError: the folder cannot be created or written, or the suffix is not a volume format.
    """
    p = Path(path)
    if not has_volume_suffix(p):
        raise UserError(f"unsupported output format; use one of {', '.join(VOLUME_SUFFIXES)}", p)
    suffix = next(s for s in VOLUME_SUFFIXES if p.name.lower().endswith(s))
    return atomic_write(p, lambda tmp: sitk.WriteImage(image, tmp, compress), suffix)


def same_geometry(a: sitk.Image, b: sitk.Image, tol: float = 1e-5) -> bool:
    """True when size, origin, spacing and direction agree (within ``tol``)."""
    return (
        a.GetSize() == b.GetSize()
        and np.allclose(a.GetOrigin(), b.GetOrigin(), atol=tol)
        and np.allclose(a.GetSpacing(), b.GetSpacing(), atol=tol)
        and np.allclose(a.GetDirection(), b.GetDirection(), atol=tol)
    )


def physical_bounds(image: sitk.Image) -> tuple[np.ndarray, np.ndarray]:
    """Axis-aligned LPS bounding box (min, max) of the image's voxel centres, in mm."""
    size = np.asarray(image.GetSize())
    corners = [
        image.TransformContinuousIndexToPhysicalPoint([float(c) for c in corner])
        for corner in np.stack(np.meshgrid(*[[0, s - 1] for s in size], indexing="ij"), -1).reshape(-1, 3)
    ]
    pts = np.asarray(corners)
    return pts.min(0), pts.max(0)


def overlap_fraction(image: sitk.Image, reference: sitk.Image) -> float:
    """Fraction of the reference's bounding box volume that the image's bounding box covers."""
    lo_a, hi_a = physical_bounds(image)
    lo_r, hi_r = physical_bounds(reference)
    half = np.asarray(reference.GetSpacing()) / 2  # a 1-voxel-thick axis still has extent
    lo_r, hi_r = lo_r - half, hi_r + half
    lo_a, hi_a = lo_a - np.asarray(image.GetSpacing()) / 2, hi_a + np.asarray(image.GetSpacing()) / 2
    inter = np.clip(np.minimum(hi_a, hi_r) - np.maximum(lo_a, lo_r), 0, None)
    return float(np.prod(inter) / np.prod(hi_r - lo_r))


def resample_to_reference(
    image: sitk.Image,
    reference: sitk.Image,
    *,
    label: bool = False,
    transform: sitk.Transform | None = None,
    default_value: float = 0.0,
) -> sitk.Image:
    """Resample ``image`` onto ``reference``'s grid in physical space (never array resizing).

    Args:
        image: the moving image.
        reference: the grid (size, origin, spacing, direction) of the result.
        label: nearest-neighbour interpolation and the input's pixel type; linear and float32 otherwise.
        transform: maps reference (fixed) physical points to ``image`` points, ITK's resampling direction;
            identity when None.
        default_value: value outside ``image``.
    """
    interpolator = sitk.sitkNearestNeighbor if label else sitk.sitkLinear
    pixel = image.GetPixelID() if label else sitk.sitkFloat32
    return sitk.Resample(
        image, reference, transform or sitk.Transform(3, sitk.sitkIdentity), interpolator, default_value, pixel
    )


def copy_geometry(array: np.ndarray, reference: sitk.Image, dtype: np.dtype | type | None = None) -> sitk.Image:
    """An image from a (z, y, x) array with exactly ``reference``'s geometry."""
    if tuple(array.shape[::-1]) != reference.GetSize():
        raise ValueError(f"array shape {array.shape} does not match reference size {reference.GetSize()[::-1]}")
    image = sitk.GetImageFromArray(array if dtype is None else array.astype(dtype, copy=False))
    image.CopyInformation(reference)
    return image


def make_image(
    array: np.ndarray,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    origin: Sequence[float] = (0.0, 0.0, 0.0),
    direction: Sequence[float] | None = None,
) -> sitk.Image:
    """An image from a (z, y, x) array and its geometry (direction row-major 3x3, identity by default)."""
    image = sitk.GetImageFromArray(array)
    image.SetSpacing([float(s) for s in spacing])
    image.SetOrigin([float(o) for o in origin])
    if direction is not None:
        image.SetDirection([float(d) for d in np.asarray(direction, float).ravel()])
    return image
