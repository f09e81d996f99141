"""``segment`` with clinical files (issue 18): DICOM SEG output, thin volumes, cine/uneven DICOM, warnings."""

from __future__ import annotations

import json

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from dicom_series import write_cine, write_series
from multimodalseg.progress import parse_progress_line
from multimodalseg.tasks import get_task


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("MULTIMODALSEG_HOME", str(tmp_path / "home"))


def _spine_case(tmp_path, shape=(8, 24, 20)):
    """A CT DICOM series and an MR NIfTI on the same grid."""
    rng = np.random.default_rng(3)
    ct = np.full(shape, -1000, np.int16)
    ct[:, 4:20, 4:16] = rng.normal(300, 50, (shape[0], 16, 12)).astype(np.int16)
    folder = write_series(tmp_path / "ct", ct, spacing=(1.0, 1.0, 2.0), origin=(-10.0, -12.0, 5.0))
    mr = sitk.GetImageFromArray(rng.normal(100, 10, shape).astype(np.float32))
    mr.CopyInformation(_grid(folder))
    sitk.WriteImage(mr, str(tmp_path / "mr.nii.gz"))
    return folder, tmp_path / "mr.nii.gz"


def _grid(folder):
    from multimodalseg import io

    return io.read_image(folder)


def _args(ct, mr, out, bundle, *extra):
    return ("segment", "--task", "spine", "-i", f"ct={ct}", "-i", f"mr={mr}", "-o", out, "--model", bundle,
            "--device", "cpu", "--no-fusion", "--progress", "none", *extra)


def _files(folder):
    return sorted(p.name for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def test_dicom_seg_round_trip(cli, tmp_path, untrained_bundle):
    import highdicom as hd

    bundle = untrained_bundle("spine")
    ct, mr = _spine_case(tmp_path)
    r = cli(*_args(ct, mr, tmp_path / "out" / "seg.dcm", bundle))
    assert r.code == 0, r.err
    r = cli(*_args(ct, mr, tmp_path / "out" / "seg.nii.gz", bundle))
    assert r.code == 0, r.err
    expected = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "out" / "seg.nii.gz")))
    task = get_task("spine")
    assert set(np.unique(expected)) - {0}, "the untrained model labels nothing: the round trip would prove little"

    seg = hd.seg.segread(tmp_path / "out" / "seg.dcm")
    sources = [pydicom.dcmread(p, stop_before_pixels=True) for p in sorted(ct.iterdir())]
    sources.sort(key=lambda ds: float(ds.ImagePositionPatient[2]))
    assert seg.SeriesInstanceUID != sources[0].SeriesInstanceUID
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == sources[0].SeriesInstanceUID
    assert seg.StudyInstanceUID == sources[0].StudyInstanceUID and seg.PatientID == "PHANTOM01"
    assert seg.FrameOfReferenceUID == sources[0].FrameOfReferenceUID
    # the segments: the task's labels in order, with names, SNOMED codes and colours
    assert [d.SegmentLabel for d in seg.SegmentSequence] == [lab.name for lab in task.labels]
    for desc, lab in zip(seg.SegmentSequence, task.labels):
        assert desc.SegmentedPropertyTypeCodeSequence[0].CodeValue == lab.terminology.type.value
        assert desc.SegmentedPropertyCategoryCodeSequence[0].CodeValue == lab.terminology.category.value
        assert desc.SegmentedPropertyTypeCodeSequence[0].CodingSchemeDesignator == "SCT"
        rgb = hd.color.CIELabColor.from_dicom_value(desc.RecommendedDisplayCIELabValue).to_rgb()
        assert np.allclose(rgb, lab.color, atol=2), (rgb, lab.color)
    # the masks, frame by source image, equal the NIfTI label map (segment number = label order)
    masks = seg.get_pixels_by_source_instance(
        source_sop_instance_uids=[ds.SOPInstanceUID for ds in sources], combine_segments=True)
    numbers = {lab.value: k for k, lab in enumerate(task.labels, start=1)}
    want = np.zeros_like(expected)
    for value, number in numbers.items():
        want[expected == value] = number
    np.testing.assert_array_equal(masks, want)


def test_dicom_seg_refused_for_non_dicom_inputs(cli, tmp_path, untrained_bundle):
    bundle = untrained_bundle("spine")
    ct, mr = _spine_case(tmp_path)
    ct_nii = tmp_path / "ct.nii.gz"
    sitk.WriteImage(_grid(ct), str(ct_nii))
    r = cli(*_args(ct_nii, mr, tmp_path / "out" / "seg.dcm", bundle))
    assert r.code == 2 and len(r.err.strip().splitlines()) == 1, r.err
    assert "ct.nii.gz: DICOM SEG output (.dcm) needs a DICOM reference input" in r.err
    assert _files(tmp_path / "out") == []


@pytest.mark.parametrize("task, roles, shape, pattern", [
    ("whole-heart", ("image",), (1, 512, 512), r"image: image is too thin: 512x512x1 voxels \(512x512x1 mm\); task "
                                               r"whole-heart needs at least 4 voxels and 4 mm"),
    ("brain-tumor", ("flair", "t1", "t1ce", "t2"), (1, 24, 24), r"flair\.nii\.gz: image is too thin: 24x24x1 voxels"),
    ("petmr-brain", ("pet", "t1"), (3, 30, 30), r"pet\.nii\.gz: image is too thin: 30x30x3 voxels \(30x30x3 mm\)"),
])
def test_too_thin_for_the_task(cli, tmp_path, untrained_bundle, task, roles, shape, pattern):
    # brain-tumor: its demo model (regions output); the others: an untrained bundle
    model = [] if task == "brain-tumor" else ["--model", untrained_bundle(task)]
    args = ["segment", "--task", task, "-o", tmp_path / "out" / "seg.nii.gz", *model, "--device", "cpu",
            "--progress", "none"]
    for k, role in enumerate(roles):
        if role == "image":  # the single-slice DICOM of the issue
            path = write_series(tmp_path / "image", np.zeros(shape, np.int16) + 40)
        else:
            path = tmp_path / f"{role}.nii.gz"
            sitk.WriteImage(sitk.GetImageFromArray(np.full(shape, k + 1.0, np.float32)), str(path))
        args += ["-i", f"{role}={path}"]
    r = cli(*args)
    assert r.code == 2, r.err
    assert len(r.err.strip().splitlines()) == 1 and "internal error" not in r.err
    assert __import__("re").search(pattern, r.err), r.err
    assert _files(tmp_path / "out") == []


def test_spine_single_slice_is_fine(cli, tmp_path, untrained_bundle):
    # the spine's patches are one slice thick: one axial slice is a valid (if small) input
    bundle = untrained_bundle("spine")
    ct, mr = _spine_case(tmp_path, shape=(1, 24, 20))
    r = cli(*_args(ct, mr, tmp_path / "out" / "seg.nii.gz", bundle))
    assert r.code == 0, r.err


def test_cine_refused_then_allowed(cli, tmp_path, untrained_bundle):
    bundle = untrained_bundle("whole-heart")
    write_cine(tmp_path / "cine" / "cine.dcm", frames=16, rows=24, cols=20)
    base = ["segment", "--task", "whole-heart", "-i", f"image={tmp_path / 'cine'}", "--model", bundle,
            "--device", "cpu", "--progress", "none"]
    r = cli(*base, "-o", tmp_path / "out" / "seg.nii.gz")
    assert r.code == 2 and len(r.err.strip().splitlines()) == 1
    assert "multi-frame DICOM (16 frames, 69.47 ms apart)" in r.err and "--allow-dicom-without-geometry" in r.err
    assert _files(tmp_path / "out") == []
    r = cli(*base, "-o", tmp_path / "out" / "seg.nii.gz", "--allow-dicom-without-geometry")
    assert r.code == 0, r.err
    assert sitk.ReadImage(str(tmp_path / "out" / "seg.nii.gz")).GetSize() == (20, 24, 16)
    from multimodalseg.io_dicom import no_geometry_allowed

    assert not no_geometry_allowed()  # the policy is reset after the command


def test_uneven_series_is_one_warning_event(cli, tmp_path, untrained_bundle):
    bundle = untrained_bundle("whole-heart")
    z = [0.0, 2.0, 4.0, 6.0, 10.0, 12.0, 14.0, 16.0]
    write_series(tmp_path / "ct", np.full((8, 20, 18), 40, np.int16), spacing=(2, 2, 2), positions=z)
    r = cli("segment", "--task", "whole-heart", "-i", f"image={tmp_path / 'ct'}", "--model", bundle,
            "--device", "cpu", "--progress", "json", "-o", tmp_path / "seg.nii.gz",
            "--preview", tmp_path / "p.png")  # the preview reads the series a second time
    assert r.code == 0, r.err
    events = [parse_progress_line(line) for line in r.out.splitlines()]
    warned = [e["message"] for e in events if e and e["event"] == "warning" and "check" not in e]  # not quality
    assert warned == [f"{tmp_path / 'ct'}: slices are not evenly spaced (max deviation 2 mm); resampled to 2 mm"]
    assert "nonuniformity" not in r.err.lower() and "ImageSeriesReader" not in r.err
    assert sitk.ReadImage(str(tmp_path / "seg.nii.gz")).GetSize() == (18, 20, 9)


def test_same_file_for_two_roles_warns(cli, tmp_path, untrained_bundle):
    bundle = untrained_bundle("spine")
    _, mr = _spine_case(tmp_path)
    r = cli("segment", "--task", "spine", "-i", f"ct={mr}", "-i", f"mr={mr}", "-o", tmp_path / "seg.nii.gz",
            "--model", bundle, "--device", "cpu", "--no-fusion", "--progress", "json",
            "--report", tmp_path / "r.json")
    assert r.code == 0, r.err
    events = [parse_progress_line(line) for line in r.out.splitlines()]
    warned = [e["message"] for e in events if e and e["event"] == "warning" and "check" not in e]  # not quality
    assert warned == [f"{mr.resolve()}: the same file is given for inputs ct, mr; each input should be its own image"]
    assert json.loads((tmp_path / "r.json").read_text())["task"] == "spine"
