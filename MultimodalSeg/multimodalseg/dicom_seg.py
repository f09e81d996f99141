"""DICOM Segmentation output through highdicom (``segment -o seg.dcm``), as TotalSegmentator and Slicer write it.

One binary SEG object holds a segment per task label, in the task's label order, each with its name, its colour
(CIELab, from the task's RGB) and its SNOMED CT category and type (``tasks``: the same terminology Slicer shows),
and references the source series (the reference input, which must be a DICOM series). Segments absent from the
label map are kept (empty), so segment numbers always mean the same structure for a task. No torch.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from multimodalseg.errors import UserError
from multimodalseg.fileutil import atomic_write

SEG_SUFFIXES = (".dcm",)


def is_seg_path(path: str | os.PathLike) -> bool:
    return str(path).lower().endswith(SEG_SUFFIXES)


def source_files(source: str | os.PathLike) -> list[str]:
    """The files of the DICOM series ``source`` (a folder of one series, or one file), in the slice order that
    ``io.read_image`` stacks them; UserError when ``source`` is not DICOM."""
    from multimodalseg.io_dicom import is_dicom_file

    p = Path(source)
    if p.is_file():
        if not is_dicom_file(p):
            raise UserError("DICOM SEG output (.dcm) needs a DICOM reference input; this is not DICOM (write "
                            ".nii.gz or .nrrd instead)", p)
        return [os.fspath(p)]
    reader = sitk.ImageSeriesReader()
    series = reader.GetGDCMSeriesIDs(os.fspath(p)) if p.is_dir() else ()
    if len(series) != 1:
        raise UserError("DICOM SEG output (.dcm) needs a DICOM series as the reference input (write .nii.gz or "
                        ".nrrd instead)", p)
    return list(reader.GetGDCMSeriesFileNames(os.fspath(p), series[0]))


def _code(code):
    from pydicom.sr.coding import Code

    scheme = {"SCT": "SCT"}.get(code.scheme, code.scheme)
    return Code(code.value, scheme, code.meaning)


def segment_descriptions(task, algorithm: str, version: str) -> list:
    """highdicom segment descriptions for the task's labels: numbers 1..N in label order."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    algo = hd.AlgorithmIdentificationSequence(name=algorithm, version=version,
                                              family=codes.cid7162.ArtificialIntelligence)
    out = []
    for number, lab in enumerate(task.labels, start=1):
        out.append(hd.seg.SegmentDescription(
            segment_number=number, segment_label=lab.name,
            segmented_property_category=_code(lab.terminology.category),
            segmented_property_type=_code(lab.terminology.type),
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC, algorithm_identification=algo,
            display_color=hd.color.CIELabColor.from_rgb(*lab.color)))
    return out


def write_dicom_seg(labels: sitk.Image, source: str | os.PathLike, task, path: str | os.PathLike, *,
                    values: dict[str, int] | None = None, algorithm: str = "MultimodalSeg",
                    version: str = "0") -> Path:
    """Write ``labels`` (the task's output values on the reference grid) as a DICOM SEG object referencing the
    DICOM series ``source``, atomically.

    Args:
        labels: label map on the source series' grid.
        source: the reference input (a DICOM series folder or file).
        task: the task spec (labels, colours, terminology).
        path: the ``.dcm`` file to write.
        values: label name -> value in ``labels`` (a non-default convention); the task's values by default.
        algorithm, version: the model, for the segments' algorithm identification.

    Raises:
        UserError: a non-DICOM source, or a label map whose grid is not the source's slices.
    """
    import highdicom as hd
    import pydicom

    files = source_files(source)
    datasets = [pydicom.dcmread(f) for f in files]
    arr = sitk.GetArrayViewFromImage(labels)
    frames = sum(int(getattr(ds, "NumberOfFrames", 1) or 1) for ds in datasets)
    if arr.shape[0] != frames or (int(datasets[0].Rows), int(datasets[0].Columns)) != arr.shape[1:]:
        raise UserError(f"DICOM SEG output needs the label map on the source images ({frames} of "
                        f"{datasets[0].Rows}x{datasets[0].Columns}), got {'x'.join(map(str, arr.shape[::-1]))}; "
                        "the series was resampled on reading (uneven slices?): write .nii.gz instead", source)
    values = values or {lab.name: lab.value for lab in task.labels}
    mask = np.zeros(arr.shape, np.uint8 if len(task.labels) < 256 else np.uint16)
    for number, lab in enumerate(task.labels, start=1):
        mask[arr == values[lab.name]] = number
    seg = hd.seg.Segmentation(
        source_images=datasets, pixel_array=mask, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=segment_descriptions(task, algorithm, version),
        series_instance_uid=hd.UID(), series_number=int(getattr(datasets[0], "SeriesNumber", 0) or 0) + 1000,
        sop_instance_uid=hd.UID(), instance_number=1, manufacturer="MultimodalSeg",
        manufacturer_model_name=algorithm, software_versions=version, device_serial_number="0",
        series_description=f"{task.title} (MultimodalSeg)"[:64], omit_empty_frames=False)
    return atomic_write(path, lambda tmp: seg.save_as(tmp), ".dcm")
