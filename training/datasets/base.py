"""What every layout reader returns: :class:`Case` objects naming the files of one case by input role.

A reader only finds files; it never reads voxels. Reading happens in :meth:`Case.read_inputs` (for the
integrity check and for training) and the preparation itself in ``multimodalseg.preprocessing``, the same code
inference runs. Problems a reader notices (a case folder without a modality, a 4D file with the wrong channel
count) are kept on the case as ``notes`` so that the integrity check reports them all at once.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from multimodalseg import io
from multimodalseg.errors import UserError


@dataclass(frozen=True)
class CaseImage:
    """One input image: a 3D file, or one channel of a 4D file (MSD's ``imagesTr/BRATS_001.nii.gz``).

    Args:
        path: the file.
        channel: index along the 4th axis of a 4D file; None for a 3D file.
    """

    path: Path
    channel: int | None = None

    def describe(self) -> str:
        return os.fspath(self.path) + (f" [channel {self.channel}]" if self.channel is not None else "")


@dataclass
class Case:
    """One training case of a public layout.

    Args:
        id: case id, unique in the dataset (e.g. ``BraTS20_Training_001``, ``ct_train_1001``).
        images: input role -> image; required roles may be missing (the integrity check reports them).
        label: the label map, or None for an unlabelled case (semi-supervised training uses those).
        convention: label value convention of ``label`` (``brats2023``, ``msd``...); None: the task's own values.
        modality: ``ct``/``mr`` for tasks with one model for several modalities (whole heart); None otherwise.
        folder: the case's folder or the dataset root, for messages.
        co_registered: the layout promises one grid for all modalities (BraTS, MSD).
        notes: problems the reader found (reported by the integrity check as they are).
    """

    id: str
    images: dict[str, CaseImage]
    label: Path | None = None
    convention: str | None = None
    modality: str | None = None
    folder: Path | None = None
    co_registered: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def labelled(self) -> bool:
        return self.label is not None

    def read_inputs(self) -> dict[str, sitk.Image]:
        """Read every input image (role -> 3D image), with ``io.read_image``'s checks; 4D files split by channel."""
        cache: dict[Path, sitk.Image] = {}
        return {role: read_input(ref, cache) for role, ref in self.images.items()}

    def to_record(self) -> dict:
        """A plain dict for MONAI datasets (picklable, no images read)."""
        return {
            "id": self.id,
            "images": {r: (os.fspath(i.path), i.channel) for r, i in self.images.items()},
            "label": None if self.label is None else os.fspath(self.label),
            "convention": self.convention,
            "modality": self.modality,
        }


def read_input(ref: CaseImage, cache: dict[Path, sitk.Image] | None = None) -> sitk.Image:
    """Read one input (a 3D file, or a channel of a 4D file read once per ``cache``)."""
    if ref.channel is None:
        return io.read_image(ref.path)
    cache = {} if cache is None else cache
    if ref.path not in cache:
        cache[ref.path] = read_4d(ref.path)
    return extract_channel(cache[ref.path], ref.channel, ref.path)


def read_4d(path: Path) -> sitk.Image:
    """Read a 4D (or 3D) file with SimpleITK; a UserError naming it when it cannot be read."""
    if not path.is_file():
        raise UserError("file not found", path)
    try:
        return sitk.ReadImage(os.fspath(path))
    except RuntimeError as exc:
        last = str(exc).strip().splitlines()[-1].strip() if str(exc).strip() else "unknown reason"
        raise UserError(f"cannot read image ({last})", path) from None


def extract_channel(image: sitk.Image, channel: int, path: Path) -> sitk.Image:
    """Channel ``channel`` of a 4D image as a 3D image (geometry from the first three axes), checked like a 3D file."""
    if image.GetDimension() != 4:
        raise UserError(f"expected a 4D image with one channel per modality, got {image.GetDimension()}D", path)
    size = list(image.GetSize())
    if channel >= size[3]:
        raise UserError(f"4D image has {size[3]} channels; channel {channel} is missing", path)
    out = sitk.Extract(image, [size[0], size[1], size[2], 0], [0, 0, 0, channel])
    io.check_geometry(out, path)
    arr = sitk.GetArrayViewFromImage(out)
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise UserError(f"channel {channel} holds {int((~np.isfinite(arr)).sum())} NaN or infinite voxels", path)
    return out


VOLUME_PATTERN = re.compile(r"(\.nii\.gz|\.nii|\.nrrd|\.nhdr|\.mha|\.mhd|\.mgz)$", re.IGNORECASE)


def stem(path: Path) -> str:
    """File name without its volume suffix (``BraTS20_Training_001_flair.nii.gz`` -> ``..._flair``)."""
    return VOLUME_PATTERN.sub("", path.name)


def volume_files(folder: Path) -> list[Path]:
    """Volume files directly in ``folder``, sorted; hidden files (macOS ``._`` copies in MSD archives) skipped."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and not p.name.startswith(".") and VOLUME_PATTERN.search(p.name))


def case_folders(root: Path) -> list[Path]:
    """Sub-folders of ``root`` holding volume files (directly or in a FreeSurfer ``mri/`` folder), sorted by name."""
    return sorted(d for d in root.iterdir()
                  if d.is_dir() and not d.name.startswith(".") and (volume_files(d) or volume_files(d / "mri")))


def check_unique_ids(cases: Iterable[Case]) -> None:
    seen: dict[str, Case] = {}
    for case in cases:
        if case.id in seen:
            case.notes.append(f"case id '{case.id}' also used by {seen[case.id].folder}")
        seen.setdefault(case.id, case)
