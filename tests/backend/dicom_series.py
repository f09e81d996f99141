"""Small DICOM series written with pydicom for the tests (CT or MR image storage, real geometry tags)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, MRImageStorage, generate_uid


def _base(modality: str, study: str, series: str, frame_of_reference: str) -> Dataset:
    ds = Dataset()
    ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = "Test^Phantom", "PHANTOM01", "19700101", "O"
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame_of_reference
    ds.StudyDate, ds.StudyTime, ds.StudyID, ds.AccessionNumber, ds.ReferringPhysicianName = "20260101", "120000", \
        "1", "A1", ""
    ds.Modality, ds.SeriesNumber, ds.Manufacturer = modality, 3, "tests"
    ds.SOPClassUID = CTImageStorage if modality == "CT" else MRImageStorage
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.RescaleSlope, ds.RescaleIntercept = 1, 0
    return ds


def _save(ds: Dataset, path: Path) -> Path:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = ds.SOPClassUID, ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def write_series(folder: Path, array: np.ndarray, spacing: Sequence[float] = (1.0, 1.0, 2.0),
                 origin: Sequence[float] = (0.0, 0.0, 0.0), modality: str = "CT",
                 positions: Sequence[float] | None = None, geometry: bool = True, study: str | None = None,
                 frame_of_reference: str | None = None) -> Path:
    """One file per slice of a (z, y, x) int16 array, axial (identity orientation).

    ``positions``: z of each slice (mm) instead of ``origin[2] + k * spacing[2]`` (uneven series, repeats);
    ``geometry=False`` leaves out Image Position/Orientation (Patient).
    """
    study, series = study or generate_uid(), generate_uid()
    frame_of_reference = frame_of_reference or generate_uid()
    zs = positions if positions is not None else [origin[2] + k * spacing[2] for k in range(array.shape[0])]
    for k, z in enumerate(zs):
        ds = _base(modality, study, series, frame_of_reference)
        ds.SOPInstanceUID, ds.InstanceNumber = generate_uid(), k + 1
        ds.Rows, ds.Columns = array.shape[1:]
        ds.PixelSpacing = [f"{spacing[1]:g}", f"{spacing[0]:g}"]
        ds.SliceThickness = f"{spacing[2]:g}"
        if geometry:
            ds.ImagePositionPatient = [f"{origin[0]:g}", f"{origin[1]:g}", f"{z:g}"]
            ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
        ds.PixelData = np.ascontiguousarray(array[k].astype("<i2")).tobytes()
        _save(ds, folder / f"slice{k:03d}.dcm")
    return folder


def write_cine(path: Path, frames: int = 16, rows: int = 24, cols: int = 20, frame_time: float = 69.47) -> Path:
    """A multi-frame MR cine without position/orientation tags (time frames), as a scanner console exports it."""
    ds = _base("MR", generate_uid(), generate_uid(), generate_uid())
    ds.SOPInstanceUID, ds.InstanceNumber = generate_uid(), 1
    ds.Rows, ds.Columns, ds.NumberOfFrames, ds.FrameTime = rows, cols, frames, f"{frame_time:g}"
    ds.FrameIncrementPointer = pydicom.tag.Tag("FrameTime")
    ds.PixelSpacing = ["1.5", "1.5"]
    data = (np.arange(frames * rows * cols) % 300).astype("<i2").reshape(frames, rows, cols)
    ds.PixelData = data.tobytes()
    return _save(ds, path)
