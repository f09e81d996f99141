import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from multimodalseg import io
from multimodalseg.errors import UserError

OBLIQUE = tuple(np.array([[0.9659258, -0.2588190, 0], [0.2588190, 0.9659258, 0], [0, 0, 1]]).ravel())


@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd", ".mha"])
def test_geometry_round_trip_including_oblique(tmp_path, suffix):
    arr = np.random.default_rng(0).normal(size=(6, 7, 8)).astype(np.float32)
    image = io.make_image(arr, spacing=(0.7, 0.8, 2.5), origin=(-10, 20.5, 3), direction=OBLIQUE)
    path = io.write_image(image, tmp_path / f"vol{suffix}")
    back = io.read_image(path)
    assert io.same_geometry(back, image, tol=1e-4)
    np.testing.assert_allclose(sitk.GetArrayFromImage(back), arr, rtol=1e-6)
    assert not list(tmp_path.glob(".partial-*"))


def test_dicom_series_folder(tmp_path):
    arr = (np.arange(4 * 5 * 6).reshape(4, 5, 6) * 10).astype(np.int16)
    image = io.make_image(arr, spacing=(0.5, 0.6, 2.0), origin=(1, 2, 3))
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    series_uid = pydicom.uid.generate_uid()
    for k in range(arr.shape[0]):
        sl = image[:, :, k]
        for tag, value in (("0020|000e", series_uid), ("0008|0060", "CT"), ("0020|0013", str(k + 1)),
                           ("0020|0032", "\\".join(map(str, image.TransformIndexToPhysicalPoint((0, 0, k))))),
                           ("0020|0037", "1\\0\\0\\0\\1\\0"), ("0018|0050", "2.0")):
            sl.SetMetaData(tag, value)
        writer.SetFileName(str(tmp_path / f"{k:03d}.dcm"))
        writer.Execute(sl)
    back = io.read_image(tmp_path)
    assert back.GetSize() == (6, 5, 4)
    np.testing.assert_allclose(back.GetSpacing(), (0.5, 0.6, 2.0), atol=1e-4)
    np.testing.assert_allclose(back.GetOrigin(), (1, 2, 3), atol=1e-4)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(back), arr)


def test_resample_in_physical_space_not_by_array_size():
    # A bright cube at physical x in [10, 14) mm on a 1 mm grid and a 2 mm grid with another origin.
    fine = np.zeros((20, 20, 40), np.float32)
    fine[5:10, 5:10, 10:14] = 1
    a = io.make_image(fine)
    ref = io.make_image(np.zeros((10, 10, 15), np.float32), spacing=(2, 2, 2), origin=(4, 0, 0))
    out = sitk.GetArrayFromImage(io.resample_to_reference(a, ref, label=True))
    assert out.shape == (10, 10, 15)
    xs = np.nonzero(out.any(axis=(0, 1)))[0]
    physical_x = 4 + 2 * xs
    assert physical_x.min() >= 10 and physical_x.max() <= 13


def test_copy_geometry_keeps_reference():
    ref = io.make_image(np.zeros((3, 4, 5), np.float32), spacing=(1, 2, 3), origin=(5, 6, 7), direction=OBLIQUE)
    out = io.copy_geometry(np.ones((3, 4, 5), np.uint8), ref)
    assert io.same_geometry(out, ref)
    with pytest.raises(ValueError):
        io.copy_geometry(np.ones((4, 4, 5)), ref)


def test_overlap_fraction():
    a = io.make_image(np.zeros((10, 10, 10), np.float32))
    assert io.overlap_fraction(a, a) == pytest.approx(1.0)
    far = io.make_image(np.zeros((10, 10, 10), np.float32), origin=(500, 0, 0))
    assert io.overlap_fraction(far, a) == 0.0


# --- bad input: one line naming the file and the problem ------------------------------------------

def test_missing_file(tmp_path):
    with pytest.raises(UserError, match=r"nope.nii.gz: file not found"):
        io.read_image(tmp_path / "nope.nii.gz")


def test_corrupt_file(tmp_path):
    bad = tmp_path / "bad.nii.gz"
    bad.write_bytes(b"this is not a nifti file at all")
    with pytest.raises(UserError, match=r"bad.nii.gz: cannot read image"):
        io.read_image(bad)


def test_2d_and_4d_refused(tmp_path):
    p2 = tmp_path / "flat.nrrd"
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((5, 5), np.float32)), str(p2))
    with pytest.raises(UserError, match=r"flat.nrrd: image is 2D"):
        io.read_image(p2)
    p4 = tmp_path / "four.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((2, 3, 4, 5), np.float32), isVector=False), str(p4))
    with pytest.raises(UserError, match=r"four.nii.gz: image is 4D"):
        io.read_image(p4)


@pytest.mark.parametrize("name", ["nan.nrrd", "nan.mha", "nan.nii.gz"])
def test_nan_refused(volume_file, name):
    # NIfTI needs its own check: SimpleITK's NIfTI reader turns NaN into 0 silently.
    arr = np.zeros((4, 4, 4), np.float32)
    arr[1, 2, 3] = np.nan
    arr[0, 0, 0] = np.inf
    with pytest.raises(UserError, match=rf"{name}: image holds 2 NaN or infinite voxels"):
        io.read_image(volume_file(name, arr))


def test_bad_spacing_refused(tmp_path):
    # SimpleITK refuses to set a zero spacing, so write a NRRD header by hand as a user's tool might.
    raw = tmp_path / "zero.raw"
    np.zeros((2, 2, 2), np.float32).tofile(raw)
    hdr = tmp_path / "zero.nhdr"
    hdr.write_text("NRRD0004\ntype: float\ndimension: 3\nspace: left-posterior-superior\nsizes: 2 2 2\n"
                   "space directions: (1,0,0) (0,0,0) (0,0,1)\nendian: little\nencoding: raw\n"
                   "space origin: (0,0,0)\ndata file: zero.raw\n")
    with pytest.raises(UserError, match=r"zero.nhdr: "):
        io.read_image(hdr)


def test_non_integer_label_refused(volume_file):
    with pytest.raises(UserError, match=r"lab.nii.gz: label map holds non-integer values"):
        io.read_image(volume_file("lab.nii.gz", np.full((3, 3, 3), 0.5, np.float32)), label=True)


def test_write_refuses_unknown_format_and_unwritable_folder(tmp_path):
    img = io.make_image(np.zeros((2, 2, 2), np.float32))
    with pytest.raises(UserError, match="unsupported output format"):
        io.write_image(img, tmp_path / "out.png")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(UserError, match="cannot write output"):
        io.write_image(img, blocker / "sub" / "out.nii.gz")


def test_dicom_series_with_per_slice_rescale(tmp_path):
    # PET series often store each slice with its own RescaleSlope; the first slice must not fix the pixel type.
    raw = np.full((3, 4, 5), 100, np.int16)
    image = io.make_image(raw)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    series_uid = pydicom.uid.generate_uid()
    slopes = (1.0, 0.5, 700.25)
    for k in range(3):
        sl = image[:, :, k]
        for tag, value in (("0020|000e", series_uid), ("0008|0060", "PT"), ("0020|0013", str(k + 1)),
                           ("0020|0032", f"0\\0\\{k}"), ("0020|0037", "1\\0\\0\\0\\1\\0")):
            sl.SetMetaData(tag, value)
        path = tmp_path / f"{k}.dcm"
        writer.SetFileName(str(path))
        writer.Execute(sl)
        ds = pydicom.dcmread(path)
        ds.RescaleSlope, ds.RescaleIntercept = slopes[k], 0
        ds.save_as(path)
    values = sitk.GetArrayFromImage(io.read_image(tmp_path))[:, 0, 0]
    np.testing.assert_allclose(values, [100 * s for s in slopes], rtol=1e-6)


def test_written_files_get_normal_permissions(tmp_path):
    # Atomic writes go through mkstemp (0600); outputs must be readable like any file the user creates.
    import os

    mask = os.umask(0o022)
    try:
        path = io.write_image(io.make_image(np.zeros((2, 2, 2), np.float32)), tmp_path / "out.nrrd")
    finally:
        os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o644
