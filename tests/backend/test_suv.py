"""SUV from a PET DICOM series written with pydicom, from given values, SUV statistics and the suv-stats command."""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from multimodalseg.errors import UserError
from multimodalseg.suv import (
    PEAK_RADIUS_MM,
    SUVOverrides,
    dicom_suv_parameters,
    load_suv,
    read_pet_series,
    structure_statistics,
)
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, PositronEmissionTomographyImageStorage, generate_uid

WEIGHT_KG = 72.5
DOSE_BQ = 370.0e6
HALF_LIFE_S = 6586.2
INJECTION = datetime(2024, 3, 5, 9, 12, 30)
SERIES = datetime(2024, 3, 5, 10, 17, 45)
SLOPES = ("0.25", "0.5", "1.375", "0.0625", "2.5", "0.8125")  # a different Rescale Slope on every slice
INTERCEPTS = ("0", "-2.5", "0", "1.25", "0", "-0.75")
SPACING = (2.5, 2.0, 3.0)  # x (between columns), y (between rows), z (between slices), mm
# Oblique orientation: rows along (cos a, sin a, 0), columns along z-ish, so direction handling is exercised.
_A = math.radians(20)
ORIENTATION = (math.cos(_A), math.sin(_A), 0.0, 0.0, 0.0, -1.0)
ORIGIN = np.array([-40.0, 12.5, 30.0])


def stored_values(seed: int = 3, shape=(6, 10, 12)) -> np.ndarray:
    return np.random.default_rng(seed).integers(-200, 32000, size=shape).astype(np.int16)


def expected_activity(stored: np.ndarray, slopes=SLOPES, intercepts=INTERCEPTS) -> np.ndarray:
    """Bq/mL: each slice's stored values × its own slope + its own intercept."""
    slopes = np.array([float(s) for s in slopes])[:, None, None]
    intercepts = np.array([float(s) for s in intercepts])[:, None, None]
    return stored.astype(np.float64) * slopes + intercepts


def write_pet_series(folder: Path, stored: np.ndarray | None = None, *, drop: tuple[str, ...] = (),
                     decay: str = "START", units: str = "BQML", slopes=SLOPES, intercepts=INTERCEPTS,
                     **tags) -> Path:
    """Write a real PET DICOM series, one file per slice, in shuffled file-name order."""
    stored = stored_values() if stored is None else stored
    folder.mkdir(parents=True, exist_ok=True)
    row_dir, col_dir = np.array(ORIENTATION[:3]), np.array(ORIENTATION[3:])
    normal = np.cross(row_dir, col_dir)
    series_uid, study_uid, frame_uid = generate_uid(), generate_uid(), generate_uid()
    names = np.random.default_rng(0).permutation(len(stored))
    for z, plane in enumerate(stored):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = PositronEmissionTomographyImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = pydicom.Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
        ds.Modality, ds.Units, ds.DecayCorrection = "PT", units, decay
        ds.CorrectedImage = ["ATTN", "DECY"]
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study_uid, series_uid, frame_uid
        ds.PatientName, ds.PatientID, ds.PatientWeight = "Phantom^PET", "PET001", f"{WEIGHT_KG}"
        ds.SeriesDate, ds.SeriesTime = SERIES.strftime("%Y%m%d"), SERIES.strftime("%H%M%S")
        ds.AcquisitionDate, ds.AcquisitionTime = SERIES.strftime("%Y%m%d"), SERIES.strftime("%H%M%S")
        info = pydicom.Dataset()
        info.RadionuclideTotalDose = f"{DOSE_BQ:.0f}"
        info.RadionuclideHalfLife = f"{HALF_LIFE_S}"
        info.RadiopharmaceuticalStartDateTime = INJECTION.strftime("%Y%m%d%H%M%S")
        ds.RadiopharmaceuticalInformationSequence = [info]
        ds.InstanceNumber = z + 1
        ds.ImageOrientationPatient = [f"{v:.10f}" for v in ORIENTATION]
        ds.ImagePositionPatient = [f"{v:.6f}" for v in ORIGIN + z * SPACING[2] * normal]
        ds.PixelSpacing = [f"{SPACING[1]}", f"{SPACING[0]}"]  # row spacing, column spacing
        ds.SliceThickness = f"{SPACING[2]}"
        ds.RescaleSlope, ds.RescaleIntercept = slopes[z], intercepts[z]
        ds.Rows, ds.Columns = plane.shape
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.PixelData = np.ascontiguousarray(plane, dtype="<i2").tobytes()
        for key, value in tags.items():
            setattr(ds, key, value)
        for key in drop:
            if key in ds:
                delattr(ds, key)
            if key in info:
                delattr(info, key)
        ds.save_as(folder / f"slice_{names[z]:03d}.dcm", enforce_file_format=True)
    return folder


def decayed_dose(start: datetime = SERIES) -> float:
    return DOSE_BQ * 2.0 ** (-(start - INJECTION).total_seconds() / HALF_LIFE_S)


def test_series_reads_each_slice_with_its_own_rescale_and_the_dicom_geometry(tmp_path):
    stored = stored_values()
    folder = write_pet_series(tmp_path / "pet", stored)
    series = read_pet_series(folder)
    np.testing.assert_allclose(sitk.GetArrayFromImage(series.image), expected_activity(stored), rtol=0, atol=1e-9)
    # The geometry agrees with SimpleITK/GDCM reading the same files.
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    ref = reader.Execute()
    np.testing.assert_allclose(series.image.GetOrigin(), ref.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(series.image.GetSpacing(), ref.GetSpacing(), atol=1e-4)
    np.testing.assert_allclose(series.image.GetDirection(), ref.GetDirection(), atol=1e-6)
    assert series.image.GetSpacing() == pytest.approx(SPACING)


def test_first_slice_with_unit_slope_does_not_set_the_type_of_the_others(tmp_path):
    # SimpleITK's series reader, given these files, takes int16 from the first slice and wraps the others.
    slopes, intercepts = ("1",) + SLOPES[1:], ("0",) * len(SLOPES)
    stored = stored_values(seed=5)
    series = read_pet_series(write_pet_series(tmp_path / "pet", stored, slopes=slopes, intercepts=intercepts))
    expected = expected_activity(stored, slopes, intercepts)
    assert expected.max() > 32767
    np.testing.assert_allclose(sitk.GetArrayFromImage(series.image), expected, rtol=0, atol=1e-9)


def test_suv_start_decays_the_dose_to_the_series_time(tmp_path):
    stored = stored_values()
    suv = load_suv(write_pet_series(tmp_path / "pet", stored))
    expected = expected_activity(stored) * WEIGHT_KG * 1000.0 / decayed_dose()
    assert suv.source == "dicom" and suv.parameters.decay_correction == "START"
    assert suv.parameters.scale == pytest.approx(WEIGHT_KG * 1000.0 / decayed_dose(), rel=1e-12)
    np.testing.assert_allclose(sitk.GetArrayFromImage(suv.image), expected, rtol=0, atol=1e-6)
    assert expected.max() > 5  # a range where float32 precision matters


def test_suv_admin_uses_the_injected_dose(tmp_path):
    stored = stored_values(seed=9)
    # Times are irrelevant with ADMIN: the series time may even be missing.
    suv = load_suv(write_pet_series(tmp_path / "pet", stored, decay="ADMIN", drop=("SeriesTime",)))
    expected = expected_activity(stored) * WEIGHT_KG * 1000.0 / DOSE_BQ
    assert suv.parameters.decay_correction == "ADMIN"
    np.testing.assert_allclose(sitk.GetArrayFromImage(suv.image), expected, rtol=0, atol=1e-6)


def test_scan_time_is_the_earliest_acquisition_when_the_series_time_is_later(tmp_path):
    # A series re-saved after the scan: SeriesTime later than the acquisition (QIBA rule).
    folder = write_pet_series(tmp_path / "pet", SeriesTime="113000")
    params = dicom_suv_parameters(read_pet_series(folder))
    assert params.scan_time == SERIES
    assert params.decayed_dose_bq == pytest.approx(decayed_dose(), rel=1e-12)


def test_injection_start_time_without_date_uses_the_series_date(tmp_path):
    folder = write_pet_series(tmp_path / "pet", drop=("RadiopharmaceuticalStartDateTime",))
    ds = pydicom.dcmread(next(folder.iterdir()))
    assert "RadiopharmaceuticalStartDateTime" not in ds.RadiopharmaceuticalInformationSequence[0]
    for path in folder.iterdir():
        ds = pydicom.dcmread(path)
        ds.RadiopharmaceuticalInformationSequence[0].RadiopharmaceuticalStartTime = INJECTION.strftime("%H%M%S")
        ds.save_as(path)
    params = dicom_suv_parameters(read_pet_series(folder))
    assert params.injection_time == INJECTION


@pytest.mark.parametrize(
    ("drop", "message"),
    [
        (("PatientWeight",), "PatientWeight (0010,1030) is missing; give --weight"),
        (("RadionuclideTotalDose",), "RadionuclideTotalDose (0018,1074) is missing; give --dose"),
        (("RadionuclideHalfLife",), "RadionuclideHalfLife (0018,1075) is missing; give --half-life"),
        (("RadiopharmaceuticalStartDateTime",), "RadiopharmaceuticalStartDateTime (0018,1078) is missing"),
        (("PatientWeight", "RadionuclideTotalDose"), "(0010,1030) and RadionuclideTotalDose (0018,1074) are missing"),
        (("DecayCorrection",), "DecayCorrection (0054,1102) is missing"),
    ],
)
def test_missing_tag_names_the_file_and_the_tag(tmp_path, drop, message):
    folder = write_pet_series(tmp_path / "pet", drop=drop)
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")) as err:
        load_suv(folder)
    assert err.value.path is not None and Path(err.value.path).parent == folder
    assert "\n" not in str(err.value)


def test_missing_weight_can_be_given(tmp_path):
    folder = write_pet_series(tmp_path / "pet", drop=("PatientWeight",))
    suv = load_suv(folder, SUVOverrides(weight_kg=WEIGHT_KG))
    assert suv.parameters.scale == pytest.approx(WEIGHT_KG * 1000.0 / decayed_dose(), rel=1e-12)


@pytest.mark.parametrize(
    ("tags", "message"),
    [
        ({"units": "CNTS"}, r"Units \(0054,1001\) is 'CNTS'; SUV needs BQML"),
        ({"decay": "NONE"}, "DecayCorrection .* is 'NONE'"),
        ({"Modality": "MR"}, "not PT"),
        ({"PatientWeight": "0"}, r"PatientWeight \(0010,1030\) must be a positive number"),
        ({"CorrectedImage": ["DECY"]}, "not attenuation-corrected"),
    ],
)
def test_unusable_series_is_refused(tmp_path, tags, message):
    folder = write_pet_series(tmp_path / "pet", **tags)
    with pytest.raises(UserError, match=message):
        load_suv(folder)


def test_suv_from_given_values_for_a_volume_file(tmp_path, volume_file):
    activity = np.random.default_rng(1).uniform(0, 30000, (8, 9, 10)).astype(np.float32)
    path = volume_file("pet.nii.gz", activity)
    suv = load_suv(path, SUVOverrides(WEIGHT_KG, DOSE_BQ / 1e6, "09:12:30", "101745", HALF_LIFE_S))
    expected = activity.astype(np.float64) * WEIGHT_KG * 1000.0 / decayed_dose()
    np.testing.assert_allclose(sitk.GetArrayFromImage(suv.image), expected, rtol=0, atol=1e-6)
    already = load_suv(path, SUVOverrides(already_suv=True))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(already.image), activity)
    with pytest.raises(UserError, match="needs --dose, --scan-time"):
        load_suv(path, SUVOverrides(weight_kg=70, injection_time="0900"))
    with pytest.raises(UserError, match="before --injection-time"):
        load_suv(path, SUVOverrides(70, 370, "101745", "091230"))


# ------------------------------------------------------------------------------------------- statistics
def phantom(tmp_path: Path, hot: float = 9.0):
    """Label map (1 mm, oblique) with 4 brain structures of constant uptake; PET on a 2×2×3 mm grid.

    PET voxel centres coincide with label voxel centres, so nearest-neighbour resampling assigns each PET voxel
    exactly its structure. One voxel of the putamen is hot.
    """
    direction = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])  # rotated 90° about z
    lab = np.zeros((36, 40, 44), np.uint16)  # (z, y, x)
    uptake = {17: 3.0, 53: 4.5, 12: 6.0, 16: 2.0}  # L-hippocampus, R-hippocampus, L-putamen, brain stem
    lab[3:15, 4:20, 4:20] = 17
    lab[3:15, 4:20, 24:40] = 53
    lab[18:33, 22:37, 10:34] = 12
    lab[18:33, 4:19, 10:34] = 16
    labels = sitk.GetImageFromArray(lab)
    labels.SetSpacing((1.0, 1.0, 1.0))
    labels.SetOrigin((10.0, -5.0, 2.0))
    labels.SetDirection(direction.ravel().tolist())
    # PET grid: every 2nd voxel in x and y, every 3rd in z, starting one label voxel in (index 1, 1, 0).
    pet_lab = lab[0::3, 1::2, 1::2]
    pet = np.zeros(pet_lab.shape, np.float32)
    for value, suv in uptake.items():
        pet[pet_lab == value] = suv
    pet += np.float32(0.5) * (pet_lab == 0)  # background uptake
    zz, yy, xx = np.nonzero(pet_lab == 12)
    hot_index = (int(zz[len(zz) // 2]), int(yy[len(yy) // 2]), int(xx[len(xx) // 2]))
    pet[hot_index] = hot
    image = sitk.GetImageFromArray(pet)
    image.SetSpacing((2.0, 2.0, 3.0))
    image.SetOrigin(labels.TransformIndexToPhysicalPoint((1, 1, 0)))
    image.SetDirection(direction.ravel().tolist())
    sitk.WriteImage(labels, str(tmp_path / "labels.nii.gz"))
    sitk.WriteImage(image, str(tmp_path / "suv.nii.gz"))
    return labels, image, uptake, lab, hot_index


def brute_force_peak(image: sitk.Image, centre: tuple[int, int, int]) -> float:
    """Mean of the voxels whose physical centres are within 1 mL-sphere radius, by physical points."""
    arr = sitk.GetArrayFromImage(image).astype(np.float64)
    c = np.array(image.TransformIndexToPhysicalPoint(centre[::-1]))
    values = [
        arr[z, y, x]
        for z in range(arr.shape[0]) for y in range(arr.shape[1]) for x in range(arr.shape[2])
        if np.linalg.norm(np.array(image.TransformIndexToPhysicalPoint((x, y, z))) - c) <= PEAK_RADIUS_MM
    ]
    return float(np.mean(values))


def test_statistics_on_a_phantom_with_known_uptake(tmp_path):
    labels, pet, uptake, lab, hot_index = phantom(tmp_path, hot=9.0)
    names = {17: "Left-Hippocampus", 53: "Right-Hippocampus", 12: "Left-Putamen", 16: "Brain-Stem", 18: "absent"}
    rows = {r.value: r for r in structure_statistics(pet, labels, names)}
    assert abs(PEAK_RADIUS_MM - 6.2035) < 1e-4
    for value in (17, 53, 16):
        r = rows[value]
        assert r.volume_ml == pytest.approx((lab == value).sum() / 1000.0)
        assert r.suv_mean == pytest.approx(uptake[value]) and r.suv_max == pytest.approx(uptake[value])
        assert r.suv_sd == pytest.approx(0.0, abs=1e-9)
        # All voxels tie at the maximum: the sphere is centred on the first in (z, y, x) order, a corner, so it
        # also takes in background.
        first = tuple(int(i[0]) for i in np.nonzero(lab[0::3, 1::2, 1::2] == value))
        assert r.suv_peak == pytest.approx(brute_force_peak(pet, first), rel=1e-9)
        assert 0.5 < r.suv_peak < uptake[value]
    put = rows[12]
    n = put.pet_voxels
    assert n == int((lab[0::3, 1::2, 1::2] == 12).sum())
    assert put.suv_max == pytest.approx(9.0)
    assert put.suv_mean == pytest.approx((6.0 * (n - 1) + 9.0) / n)
    assert put.suv_sd == pytest.approx(np.std([6.0] * (n - 1) + [9.0]))
    assert put.suv_peak == pytest.approx(brute_force_peak(pet, hot_index), rel=1e-9)
    assert 6.0 < put.suv_peak < 9.0
    assert rows[18].pet_voxels == 0 and rows[18].volume_ml == 0 and rows[18].suv_mean is None


def test_statistics_with_the_pet_on_the_label_grid(tmp_path):
    labels, _, uptake, lab, _ = phantom(tmp_path)
    values = np.where(lab == 17, 3.0, 0.0) + np.where(lab == 12, 6.0, 0.0)
    values[25, 29, 20] = 7.0  # in the putamen, 6 voxels or more from its border
    pet = sitk.GetImageFromArray(values.astype(np.float32))
    pet.CopyInformation(labels)
    rows = structure_statistics(pet, labels, {17: "Left-Hippocampus", 12: "Left-Putamen"})
    assert rows[0].pet_voxels == (lab == 17).sum() == round(rows[0].volume_ml * 1000)
    assert rows[0].suv_mean == pytest.approx(uptake[17])
    # 1 mm voxels: the 1 mL sphere holds the voxels within 6.2 mm, all inside the putamen here.
    inside = (np.indices((13, 13, 13)) - 6) ** 2
    n_sphere = int((inside.sum(0) <= PEAK_RADIUS_MM**2).sum())
    assert rows[1].suv_peak == pytest.approx((6.0 * (n_sphere - 1) + 7.0) / n_sphere)


# ------------------------------------------------------------------------------------------------- CLI
def test_cli_suv_stats_from_dicom_writes_csv_and_json(tmp_path, cli):
    stored = np.zeros((6, 10, 12), np.int16)
    stored[:, 2:8, 3:9] = 4000  # one block of known activity per slice (scaled by each slice's slope)
    folder = write_pet_series(tmp_path / "pet", stored)
    series = read_pet_series(folder)
    lab = np.zeros(stored.shape, np.uint16)
    lab[1:5, 3:7, 4:8] = 17
    labels = sitk.GetImageFromArray(lab)
    labels.CopyInformation(series.image)
    sitk.WriteImage(labels, str(tmp_path / "aseg.nii.gz"))
    result = cli("suv-stats", "--pet", folder, "--labels", tmp_path / "aseg.nii.gz", "-o", tmp_path / "out.csv",
                 "--json", tmp_path / "out.json")
    assert result.code == 0, result.err
    rows = list(csv.DictReader((tmp_path / "out.csv").open()))
    assert len(rows) == 45 and rows[0].keys() >= {"name", "volume_ml", "suv_mean", "suv_sd", "suv_max", "suv_peak"}
    hippo = next(r for r in rows if r["value"] == "17")
    assert hippo["name"] == "Left-Hippocampus"
    suv = expected_activity(stored) * WEIGHT_KG * 1000.0 / decayed_dose()
    inside = suv[lab == 17]
    assert float(hippo["suv_mean"]) == pytest.approx(inside.mean(), abs=1e-5)
    assert float(hippo["suv_max"]) == pytest.approx(inside.max(), abs=1e-5)
    assert float(hippo["volume_ml"]) == pytest.approx(lab.sum() / 17 * np.prod(SPACING) / 1000, abs=1e-6)
    payload = json.loads((tmp_path / "out.json").read_text())
    assert payload["suv"]["source"] == "dicom" and payload["task"] == "petmr-brain"
    assert payload["suv"]["parameters"]["weight_kg"] == WEIGHT_KG
    assert next(s for s in payload["structures"] if s["value"] == 17)["suv_max"] == pytest.approx(inside.max())


def test_cli_suv_stats_already_suv_file(tmp_path, cli):
    labels, pet, uptake, *_ = phantom(tmp_path)
    result = cli("suv-stats", "--pet", tmp_path / "suv.nii.gz", "--labels", tmp_path / "labels.nii.gz",
                 "--already-suv", "-o", tmp_path / "stats.csv")
    assert result.code == 0, result.err
    rows = {r["value"]: r for r in csv.DictReader((tmp_path / "stats.csv").open())}
    assert float(rows["53"]["suv_mean"]) == pytest.approx(uptake[53])
    assert rows["18"]["suv_mean"] == ""  # Left-Amygdala is not in this label map


def bad_inputs(tmp_path: Path) -> dict[str, list]:
    labels, pet, *_ = phantom(tmp_path)
    dicom_no_weight = write_pet_series(tmp_path / "pet_no_weight", drop=("PatientWeight",))
    bad_labels = sitk.GetArrayFromImage(labels)
    bad_labels[0, 0, 0] = 1000
    img = sitk.GetImageFromArray(bad_labels)
    img.CopyInformation(labels)
    sitk.WriteImage(img, str(tmp_path / "bad_labels.nii.gz"))
    pet_file, lab_file = tmp_path / "suv.nii.gz", tmp_path / "labels.nii.gz"
    out = tmp_path / "o.csv"
    return {
        "not found": ["--pet", tmp_path / "nope.nii.gz", "--labels", lab_file, "--already-suv", "-o", out],
        "PatientWeight (0010,1030) is missing; give --weight": ["--pet", dicom_no_weight, "--labels", lab_file,
                                                                 "-o", out],
        "SUV needs --weight": ["--pet", pet_file, "--labels", lab_file, "-o", out],
        "--dose 'lots' is not a number": ["--pet", pet_file, "--labels", lab_file, "--weight", "70", "--dose",
                                          "lots", "--injection-time", "0900", "--scan-time", "1000", "-o", out],
        "--scan-time '25:00' is not a time": ["--pet", pet_file, "--labels", lab_file, "--weight", "70", "--dose",
                                              "300", "--injection-time", "0900", "--scan-time", "25:00", "-o", out],
        "cannot be combined": ["--pet", pet_file, "--labels", lab_file, "--already-suv", "--weight", "70", "-o",
                               out],
        "label values 1000": ["--pet", pet_file, "--labels", tmp_path / "bad_labels.nii.gz", "--already-suv",
                              "-o", out],
        "overwrite an input": ["--pet", pet_file, "--labels", lab_file, "--already-suv", "-o", lab_file],
        "unknown task": ["--pet", pet_file, "--labels", lab_file, "--already-suv", "--task", "nope", "-o", out],
    }


def test_cli_bad_inputs_exit_2_with_one_line_and_no_output(tmp_path, cli):
    cases = bad_inputs(tmp_path)
    before = (tmp_path / "labels.nii.gz").read_bytes()
    for expected, args in cases.items():
        result = cli("suv-stats", *args)
        assert result.code == 2, (expected, result.err)
        assert expected in result.err and len(result.err.strip().splitlines()) == 1, result.err
        assert not (tmp_path / "o.csv").exists()
    assert (tmp_path / "labels.nii.gz").read_bytes() == before  # the input -o pointed at is untouched


def test_cli_process_missing_dose_exit_2(tmp_path, cli_process):
    phantom(tmp_path)
    folder = write_pet_series(tmp_path / "pet", drop=("RadionuclideTotalDose",))
    result = cli_process("suv-stats", "--pet", folder, "--labels", tmp_path / "labels.nii.gz", "-o",
                         tmp_path / "o.csv")
    assert result.code == 2 and "RadionuclideTotalDose (0018,1074) is missing; give --dose" in result.err
    assert len(result.err.strip().splitlines()) == 1 and not (tmp_path / "o.csv").exists()


def test_suv_imports_without_torch():
    code = "import sys, multimodalseg.suv, multimodalseg.cli.suv_stats_cmd; print('torch' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "False", proc.stderr


def test_suv_table_of_the_petmr_task_has_cortex_and_white_matter_rows():
    """The per-structure table follows the task's aseg.mgz labels: cortex (the main FDG region) and white matter
    get rows, with the phantom's grey > white uptake."""
    from multimodalseg.phantoms import make_case
    from multimodalseg.tasks import get_task

    task = get_task("petmr-brain")
    case = make_case("petmr-brain", 3, misregister=False)
    names = {lab.value: lab.name for lab in task.labels}
    rows = {r.name: r for r in structure_statistics(case.images["pet"], case.label, names)}
    assert len(rows) == 45 and "Left-WM-hypointensities" not in rows
    for side in ("Left", "Right"):
        cortex, wm = rows[f"{side}-Cerebral-Cortex"], rows[f"{side}-Cerebral-White-Matter"]
        assert cortex.volume_ml > 50 and wm.volume_ml > 50
        assert cortex.suv_mean > 1.5 * wm.suv_mean


def test_statistics_csv_keeps_small_and_large_values_to_their_precision():
    """Ten significant digits: a 0.0025 SUV (a PET stored in kBq/mL without SUV values) and a 1.2 L volume both
    read back within 1e-9 relative; a fixed 6 decimals kept only 4 digits of the small one."""
    from multimodalseg.suv.stats import StructureStatistics, statistics_csv

    rows = [StructureStatistics(2, "Left-Cerebral-White-Matter", 1234.5678912345, 10, 0.0024623371245979797,
                                0.000123456789, 1e-7, 3.14159265358979), StructureStatistics(4, "empty", 0.0, 0)]
    table = list(csv.DictReader(statistics_csv(rows).splitlines()))
    for read, row in zip(table, rows):
        for key, value in row.to_dict().items():
            if value is None:
                assert read[key] == ""
            elif isinstance(value, float):
                assert float(read[key]) == pytest.approx(value, rel=1e-9, abs=1e-12)
            else:
                assert read[key] == str(value)
