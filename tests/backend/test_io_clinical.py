"""Clinical files (issue 18): truncated volumes, geometry-less and multi-frame DICOM, uneven slices, thin volumes."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import SimpleITK as sitk
from dicom_series import write_cine, write_series
from multimodalseg import io
from multimodalseg.errors import UserError

ARR = np.random.default_rng(0).normal(100, 20, (12, 16, 14)).astype(np.float32)


def _write(path, compress=True):
    sitk.WriteImage(sitk.GetImageFromArray(ARR), str(path), compress)
    return path


def _cut(path, fraction=1 / 3):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])


# file written, file to cut (detached data), expected message
TRUNCATED = [
    ("v.nii.gz", True, None, r"v\.nii\.gz: compressed data ends before the gzip end-of-stream marker"),
    ("v.nii", False, None, r"v\.nii: file is truncated: it holds \d+ of the 10752 data bytes"),
    ("v.nrrd", True, None, r"v\.nrrd: compressed data ends before the gzip end-of-stream"),
    ("v.nrrd", False, None, r"v\.nrrd: file is truncated: it holds \d+ of the 10752"),
    ("v.nhdr", True, "v.raw.gz", r"v\.raw\.gz: compressed data ends before the gzip end-of-stream"),
    ("v.nhdr", False, "v.raw", r"v\.raw: file is truncated"),
    ("v.mha", True, None, r"v\.mha: compressed data ends before its end-of-stream marker"),
    ("v.mha", False, None, r"v\.mha: file is truncated: it holds \d+ of the 10752"),
    ("v.mhd", True, "v.zraw", r"v\.zraw: compressed data ends before its end-of-stream marker"),
    ("v.mhd", False, "v.raw", r"v\.raw: file is truncated"),
]


@pytest.mark.parametrize("name, compress, data, pattern", TRUNCATED,
                         ids=[f"{t[0]}-{'gz' if t[1] else 'raw'}" for t in TRUNCATED])
def test_truncated_files_are_refused_not_zero_filled(tmp_path, name, compress, data, pattern):
    path = _write(tmp_path / name, compress)
    np.testing.assert_allclose(sitk.GetArrayFromImage(io.read_image(path)), ARR)  # complete: read as written
    _cut(tmp_path / (data or name))
    with pytest.raises(UserError, match=pattern):
        io.read_image(path)


def test_gzip_cut_inside_its_trailer_is_refused(tmp_path):
    # all the voxel bytes are there, only the 8-byte CRC/size trailer is missing: still an incomplete stream
    path = _write(tmp_path / "v.nii.gz")
    path.write_bytes(path.read_bytes()[:-4])
    with pytest.raises(UserError, match="end-of-stream"):
        io.read_image(path)


def test_detached_data_file_missing(tmp_path):
    path = _write(tmp_path / "v.mhd", False)
    (tmp_path / "v.raw").unlink()
    with pytest.raises(UserError, match=r"v\.mhd: data file 'v\.raw' named in the header is missing"):
        io.read_image(path)


def test_truncated_mgz(tmp_path):
    import nibabel

    path = tmp_path / "t1.mgz"
    nibabel.save(nibabel.MGHImage(ARR, np.eye(4)), str(path))
    _cut(path)
    with pytest.raises(UserError, match=r"t1\.mgz: cannot read image \(EOFError"):
        io.read_image(path)


# --- DICOM -------------------------------------------------------------------------------------------------------

def _volume(shape=(6, 10, 12)):
    return (np.arange(np.prod(shape)).reshape(shape) % 500).astype(np.int16)


def test_cine_without_geometry_is_refused_unless_allowed(tmp_path):
    write_cine(tmp_path / "cine" / "cine.dcm", frames=16, frame_time=69.47)
    with pytest.raises(UserError, match=r"cine: multi-frame DICOM \(16 frames, 69\.47 ms apart\) without a position "
                                        r"per frame.*--allow-dicom-without-geometry"):
        io.read_image(tmp_path / "cine")
    with pytest.raises(UserError, match=r"cine\.dcm: multi-frame DICOM"):  # the file itself, too
        io.read_image(tmp_path / "cine" / "cine.dcm")
    io.allow_no_geometry(True)
    try:
        assert io.read_image(tmp_path / "cine").GetSize() == (20, 24, 16)
    finally:
        io.allow_no_geometry(False)


def test_series_without_position_tags_is_refused(tmp_path):
    write_series(tmp_path / "s", _volume(), geometry=False)
    with pytest.raises(UserError, match=r"DICOM without ImagePositionPatient and ImageOrientationPatient"):
        io.read_image(tmp_path / "s")


def test_temporal_series_is_refused(tmp_path):
    write_series(tmp_path / "s", _volume((6, 10, 12)), positions=[0, 0, 2, 2, 4, 4])
    with pytest.raises(UserError, match=r"holds 6 images at 3 positions \(several time points"):
        io.read_image(tmp_path / "s")


def test_evenly_spaced_series_reads_without_warning(tmp_path, capfd):
    vol = _volume()
    write_series(tmp_path / "s", vol, spacing=(0.5, 0.6, 2.0), origin=(1, 2, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        image = io.read_image(tmp_path / "s")
    assert image.GetSize() == (12, 10, 6)
    np.testing.assert_allclose(image.GetSpacing(), (0.5, 0.6, 2.0), atol=1e-6)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image), vol)
    assert capfd.readouterr().err == ""


def test_uneven_series_one_warning_and_resampled(tmp_path, capfd):
    vol = np.zeros((6, 4, 5), np.int16)
    z = np.array([0.0, 2.0, 4.0, 8.0, 10.0, 12.0])  # a missing slice at 6 mm
    vol[:] = (10 * z).astype(np.int16)[:, None, None]  # intensity = 10 x position: linear, so exact after resampling
    write_series(tmp_path / "s", vol, spacing=(1, 1, 2), positions=z)
    messages = []
    with io.warnings_to(messages.append):
        image = io.read_image(tmp_path / "s")
        io.read_image(tmp_path / "s")  # read twice (segment reads the reference again for a preview): said once
    assert messages == [f"{tmp_path / 's'}: slices are not evenly spaced (max deviation 2 mm); resampled to 2 mm"]
    assert capfd.readouterr().err == ""  # no raw ITK warning on stderr
    assert image.GetSize() == (5, 4, 7)
    np.testing.assert_allclose(image.GetSpacing()[2], 2.0)
    np.testing.assert_allclose(sitk.GetArrayFromImage(image)[:, 0, 0], 10 * np.arange(0, 13, 2.0), atol=1e-4)
    np.testing.assert_allclose(image.GetOrigin(), (0, 0, 0), atol=1e-6)


def test_check_extent_names_the_size(tmp_path):
    image = io.make_image(np.zeros((1, 8, 9), np.float32), spacing=(0.5, 0.5, 3))
    with pytest.raises(UserError, match=r"x\.nii\.gz: image is too thin: 9x8x1 voxels \(4\.5x4x3 mm\); why"):
        io.check_extent(image, (1, 1, 4), path="x.nii.gz", why="why")
    io.check_extent(image, (4, 4, 1))
