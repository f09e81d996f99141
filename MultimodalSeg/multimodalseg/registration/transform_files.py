"""Transform files Slicer and ITK read: ITK transform files (.tfm, .txt, .h5) and displacement fields.

Direction and frame of every file written here (ITK's convention, which Slicer follows when it reads them):
the file maps FIXED physical points to MOVING physical points, in LPS. That is the resampling direction: for
each voxel of the fixed grid it says where to read the moving image. Slicer loads such a file as a transform
whose "from parent" is that map converted to RAS (so its "to parent" is moving -> fixed); put the moving volume
under it and the volume moves onto the fixed volume (harden to resample). ``sitk.ReadTransform`` gives the same
map, ready for ``sitk.Resample(moving, fixed, transform)``.

* rigid / similarity / affine: ``VersorRigid3DTransform`` / ``Similarity3DTransform`` / ``AffineTransform`` in
  ``.tfm``/``.txt`` (text) or ``.h5`` (HDF5).
* tps: SimpleITK can neither build nor read ITK's ``ThinPlateSplineKernelTransform``, so the spline is sampled on
  the fixed grid as a displacement field (``fixed -> moving`` displacement in LPS mm at each voxel centre): a
  ``DisplacementFieldTransform`` in ``.h5``, or a 3-component vector image ``.nrrd`` / ``.nii.gz`` / ``.mha``
  (Slicer loads it as a grid transform; NRRD says ``space: left-posterior-superior``; in NIfTI the vectors are
  LPS as ITK and ANTs write them, whatever the NIfTI header's RAS frame). Outside its grid the field is zero.
"""

from __future__ import annotations

import os
from pathlib import Path

import SimpleITK as sitk

from multimodalseg.errors import UserError
from multimodalseg.fileutil import atomic_write
from multimodalseg.registration.landmarks import LandmarkFit

TRANSFORM_SUFFIXES = (".tfm", ".txt", ".h5", ".hdf5")
FIELD_SUFFIXES = (".nrrd", ".nii.gz", ".nii", ".mha")


def _suffix(path: Path, choices: tuple[str, ...]) -> str | None:
    return next((s for s in choices if path.name.lower().endswith(s)), None)


def write_transform(fit: LandmarkFit, path: str | os.PathLike, reference: sitk.Image | None = None) -> Path:
    """Write ``fit`` as a file ITK and Slicer read, mapping fixed -> moving in LPS (see the module docstring).

    Args:
        fit: a landmark fit (its ``frame`` says whether its points were LPS or RAS; the file is LPS either way).
        path: ``.tfm``/``.txt``/``.h5`` for any mode; for tps also ``.nrrd``/``.nii.gz``/``.nii``/``.mha``.
        reference: the fixed image, whose grid a tps displacement field is sampled on (required for tps).

    Returns:
        The path written (atomically).

    Raises:
        UserError: unsupported suffix for the mode, tps without ``reference``, or the file cannot be written.
    """
    p = Path(path)
    field_suffix = _suffix(p, FIELD_SUFFIXES)
    transform_suffix = _suffix(p, TRANSFORM_SUFFIXES)
    if fit.mode == "tps":
        if reference is None:
            raise UserError("a thin-plate spline is written as a displacement field on the fixed grid; "
                            "give the fixed image as the reference", p)
        if transform_suffix in (".tfm", ".txt"):
            raise UserError("a thin-plate spline cannot be a text transform file; use .h5, .nrrd or .nii.gz", p)
        if field_suffix:
            field = fit.to_displacement_field(reference)
            return atomic_write(p, lambda tmp: sitk.WriteImage(field, tmp, True), field_suffix)
    elif field_suffix:
        raise UserError(f"a {fit.mode} transform is written as .tfm, .txt or .h5", p)
    if not transform_suffix:
        allowed = TRANSFORM_SUFFIXES + (FIELD_SUFFIXES if fit.mode == "tps" else ())
        raise UserError(f"unsupported transform format; use one of {', '.join(allowed)}", p)
    transform = fit.to_sitk(reference)
    return atomic_write(p, lambda tmp: sitk.WriteTransform(transform, tmp), transform_suffix)


def read_transform(path: str | os.PathLike) -> sitk.Transform:
    """Read an ITK transform file or a displacement field image as a ``sitk.Transform`` (fixed -> moving, LPS).

    Raises:
        UserError: missing file, unreadable or not a 3D transform, or a field that is not a 3-vector image.
    """
    p = Path(path)
    if not p.is_file():
        raise UserError("file not found", p)
    try:
        if _suffix(p, FIELD_SUFFIXES):
            field = sitk.ReadImage(str(p))
            if field.GetDimension() != 3 or field.GetNumberOfComponentsPerPixel() != 3:
                raise UserError("a displacement field must be a 3D image with 3 components per voxel", p)
            return sitk.DisplacementFieldTransform(sitk.Cast(field, sitk.sitkVectorFloat64))
        transform = sitk.ReadTransform(str(p))
    except RuntimeError as exc:
        lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
        reason = next((line for line in lines if "ERROR" in line or "Could not" in line), lines[-1] if lines else "")
        raise UserError(f"cannot read transform ({reason})", p) from exc
    if transform.GetDimension() != 3:
        raise UserError(f"transform is {transform.GetDimension()}D; a 3D transform is needed", p)
    return transform
