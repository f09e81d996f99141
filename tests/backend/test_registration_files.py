"""Files Slicer reads: markups (.mrk.json, .fcsv), transform files (.tfm, .h5, displacement fields), resampling.

The convention test builds two real image files related by a known rotation plus translation and checks that
a transform fitted from landmarks, written and read back by SimpleITK, resamples the moving file onto the
fixed one, and maps fixed points to moving points.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk
from multimodalseg.errors import UserError
from multimodalseg.io import read_image, write_image
from multimodalseg.registration import (
    fit_landmarks,
    read_markups,
    read_transform,
    resample_moving,
    write_markups,
    write_transform,
)
from scipy.spatial.transform import Rotation

FLIP = np.array([-1.0, -1.0, 1.0])
POINTS = np.array([[1.5, -2.0, 3.0], [40.0, 5.25, -6.0], [-7.0, 8.0, 90.0]])


# ---------------------------------------------------------------- markups


@pytest.mark.parametrize("suffix", [".mrk.json", ".fcsv"])
@pytest.mark.parametrize("frame", ["LPS", "RAS"])
def test_markups_round_trip(tmp_path, suffix, frame):
    path = write_markups(tmp_path / f"p{suffix}", POINTS, ["a", "b,with comma", "c"], coordinate_system=frame)
    points, names = read_markups(path)
    np.testing.assert_allclose(points, POINTS, atol=1e-12)
    assert names == ["a", "b,with comma", "c"]
    assert not list(tmp_path.glob(".partial-*"))


def test_mrk_json_follows_slicer_schema(tmp_path):
    path = write_markups(tmp_path / "f.mrk.json", POINTS, coordinate_system="RAS")
    doc = json.loads(path.read_text())
    assert doc["@schema"].endswith("markups-schema-v1.0.3.json#")
    (node,) = doc["markups"]
    assert node["type"] == "Fiducial" and node["coordinateSystem"] == "RAS" and node["coordinateUnits"] == "mm"
    cp = node["controlPoints"][1]
    assert {"id", "label", "position", "orientation", "selected", "locked", "visibility", "positionStatus"} <= set(cp)
    assert cp["positionStatus"] == "defined" and cp["label"] == "F-2" and len(cp["orientation"]) == 9
    np.testing.assert_allclose(cp["position"], POINTS[1] * FLIP)  # RAS on disk


def test_reads_slicer_written_ras_json_as_lps(tmp_path):
    # As Slicer 5 saves a point list: RAS, with extra fields we must ignore.
    doc = {"@schema": "x", "markups": [{
        "type": "Fiducial", "coordinateSystem": "RAS", "coordinateUnits": "mm", "locked": False,
        "controlPoints": [{"id": "1", "label": "L1", "position": [10.0, 20.0, 30.0], "positionStatus": "defined",
                           "orientation": [1, 0, 0, 0, 1, 0, 0, 0, 1]}],
        "measurements": [], "display": {"visibility": True}}]}
    path = tmp_path / "s.mrk.json"
    path.write_text(json.dumps(doc))
    points, names = read_markups(path)
    np.testing.assert_allclose(points, [[-10.0, -20.0, 30.0]])
    assert names == ["L1"]


@pytest.mark.parametrize("header,expected", [
    ("# CoordinateSystem = 0\n", [-1.0, -2.0, 3.0]),  # Slicer 4.6-4.10: 0 = RAS
    ("# CoordinateSystem = 1\n", [1.0, 2.0, 3.0]),  # 1 = LPS
    ("# CoordinateSystem = RAS\n", [-1.0, -2.0, 3.0]),
    ("# CoordinateSystem = LPS\n", [1.0, 2.0, 3.0]),
    ("", [-1.0, -2.0, 3.0]),  # no header: old files are RAS
])
def test_fcsv_coordinate_system_header(tmp_path, header, expected):
    path = tmp_path / "old.fcsv"
    path.write_text("# Markups fiducial file version = 4.6\n" + header
                    + "# columns = id,x,y,z,ow,ox,oy,oz,vis,sel,lock,label,desc,associatedNodeID\n"
                    + "vtkMRMLMarkupsFiducialNode_0,1,2,3,0,0,0,1,1,1,0,P-1,,vtkMRMLScalarVolumeNode1\n")
    points, names = read_markups(path)
    np.testing.assert_allclose(points, [expected])
    assert names == ["P-1"]


@pytest.mark.parametrize("name,text,message", [
    ("a.mrk.json", "{not json", "not valid JSON"),
    ("a.mrk.json", '{"x": 1}', "no 'markups' list"),
    ("a.mrk.json", '{"markups": [{"type": "Curve", "controlPoints": []}]}', "'Curve'"),
    ("a.mrk.json", '{"markups": [{"type": "Fiducial"}, {"type": "Fiducial"}]}', "holds 2 markups"),
    ("a.mrk.json", '{"markups": [{"type": "Fiducial", "controlPoints": []}]}', "holds no points"),
    ("a.mrk.json", '{"markups": [{"type": "Fiducial", "coordinateSystem": "IJK", "controlPoints": []}]}',
     "coordinate system 'IJK'"),
    ("a.mrk.json", '{"markups": [{"type": "Fiducial", "controlPoints": [{"label": "A", "positionStatus": '
     '"undefined"}]}]}', "'A' has no defined position"),
    ("a.mrk.json", '{"markups": [{"type": "Fiducial", "controlPoints": [{"label": "A", "position": [1, 2]}]}]}',
     "'A' has 2 coordinates"),
    ("a.mrk.json", '{"markups": [{"type": "Fiducial", "controlPoints": [{"label": "A", "position": '
     '[1, "x", 3]}]}]}', "non-numeric"),
    ("a.mrk.json", '{"markups": [{"type": "Fiducial", "controlPoints": [{"label": "A", "position": '
     '[1, NaN, 3]}]}]}', "NaN or infinite"),
    ("a.fcsv", "# CoordinateSystem = 2\nn,1,2,3\n", "coordinate system"),
    ("a.fcsv", "n,1,2\n", "row 1 has 3 fields"),
    ("a.fcsv", "n,1,abc,3,0,0,0,1,1,1,0,B\n", "'B' has a non-numeric"),
    ("a.fcsv", "# columns = id,label\nn,B\n", "lacks x, y, z"),
    ("a.fcsv", "", "holds no points"),
    ("a.txt", "1,2,3\n", "unsupported point-list format"),
])
def test_bad_point_files_are_refused(tmp_path, name, text, message):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(UserError, match=message) as info:
        read_markups(path)
    assert str(path) in str(info.value)


def test_bad_markups_writes_are_refused(tmp_path):
    with pytest.raises(UserError, match="file not found"):
        read_markups(tmp_path / "missing.mrk.json")
    with pytest.raises(UserError, match="2 names for 3 points"):
        write_markups(tmp_path / "a.mrk.json", POINTS, ["a", "b"])
    with pytest.raises(UserError, match="NaN"):
        write_markups(tmp_path / "a.fcsv", POINTS * [1, np.nan, 1])
    with pytest.raises(UserError, match="unsupported point-list format"):
        write_markups(tmp_path / "a.csv", POINTS)
    (tmp_path / "file").write_text("")
    with pytest.raises(UserError, match="cannot write"):
        write_markups(tmp_path / "file" / "a.mrk.json", POINTS)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


# ---------------------------------------------------------------- a known misregistration on real image files

BLOBS = np.array([[-20.0, -10.0, 30.0], [15.0, -25.0, 45.0], [5.0, 20.0, 20.0], [-10.0, 15.0, 60.0],
                  [25.0, 10.0, 35.0], [0.0, 0.0, 45.0]])
AMPLITUDES = np.array([100.0, 80.0, 120.0, 60.0, 90.0, 70.0])
TRUE_ROTATION = Rotation.from_euler("zyx", [20, -12, 8], degrees=True).as_matrix()
TRUE_SHIFT = np.array([9.0, -6.0, 4.5])  # fixed -> moving: x_m = R x_f + t


def anatomy(points_lps: np.ndarray) -> np.ndarray:
    """A smooth intensity pattern in the FIXED physical frame: Gaussian blobs at the landmark sites."""
    d2 = ((points_lps[:, None, :] - BLOBS[None]) ** 2).sum(axis=2)
    return (AMPLITUDES * np.exp(-d2 / (2 * 7.0**2))).sum(axis=1)


def grid_image(size, spacing, origin, direction, values_at) -> sitk.Image:
    image = sitk.Image(size, sitk.sitkFloat32)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    image.SetDirection(direction)
    k, j, i = np.meshgrid(*(np.arange(s) for s in size[::-1]), indexing="ij")
    ijk = np.stack([i.ravel(), j.ravel(), k.ravel()], axis=1).astype(float)
    lps = ijk * spacing @ np.asarray(direction).reshape(3, 3).T + origin
    out = sitk.GetImageFromArray(values_at(lps).reshape(size[::-1]).astype(np.float32))
    out.CopyInformation(image)
    return out


@pytest.fixture(scope="module")
def image_pair(tmp_path_factory):
    """fixed.nii.gz and moving.nrrd (different grids, oblique moving direction) of the same anatomy."""
    folder = tmp_path_factory.mktemp("pair")
    fixed = grid_image((40, 36, 32), (2.0, 2.0, 2.5), (-40.0, -36.0, 5.0), tuple(np.eye(3).ravel()), anatomy)
    oblique = Rotation.from_euler("z", 25, degrees=True).as_matrix()
    # the moving scanner sees the anatomy moved by the true transform: J(x_m) = I(R^T (x_m - t))
    size, spacing = np.array([56, 56, 44]), np.array([1.8, 1.9, 2.4])
    centre = BLOBS.mean(axis=0) @ TRUE_ROTATION.T + TRUE_SHIFT  # the moved anatomy's centre, in the middle
    origin = centre - oblique @ ((size - 1) * spacing / 2)
    moving = grid_image(tuple(size.tolist()), tuple(spacing), tuple(origin), tuple(oblique.ravel()),
                        lambda x: anatomy((x - TRUE_SHIFT) @ TRUE_ROTATION))
    write_image(fixed, folder / "fixed.nii.gz")
    write_image(moving, folder / "moving.nrrd")
    fixed_pts = np.vstack([BLOBS, [[-25.0, 20.0, 25.0], [20.0, -15.0, 55.0]]])
    moving_pts = fixed_pts @ TRUE_ROTATION.T + TRUE_SHIFT
    write_markups(folder / "fixed.mrk.json", fixed_pts)  # LPS on disk
    write_markups(folder / "moving.fcsv", moving_pts, coordinate_system="RAS")  # RAS on disk, as Slicer
    return folder


def correlation(a: sitk.Image, b: sitk.Image, mask: np.ndarray) -> float:
    x, y = sitk.GetArrayFromImage(a)[mask], sitk.GetArrayFromImage(b)[mask]
    return float(np.corrcoef(x, y)[0, 1])


@pytest.mark.parametrize("name,mode", [("t.tfm", "rigid"), ("t.h5", "rigid"), ("t.txt", "similarity"),
                                       ("t.tfm", "affine"), ("t.h5", "tps"), ("t.nrrd", "tps"),
                                       ("t.nii.gz", "tps")])
def test_written_transform_moves_moving_onto_fixed(image_pair, tmp_path, name, mode):
    fixed_pts, _ = read_markups(image_pair / "fixed.mrk.json")
    moving_pts, _ = read_markups(image_pair / "moving.fcsv")
    fixed = read_image(image_pair / "fixed.nii.gz")
    moving = read_image(image_pair / "moving.nrrd")
    fit = fit_landmarks(fixed_pts, moving_pts, mode)
    assert fit.rms < 1e-6
    path = write_transform(fit, tmp_path / name, reference=fixed)
    transform = read_transform(path)
    if name.endswith((".tfm", ".h5", ".txt")):
        assert sitk.ReadTransform(str(path)).GetName() == transform.GetName()
    # the file maps FIXED points to MOVING points (ITK's resampling direction) ...
    probe = fixed_pts + [3.0, -2.0, 1.0]
    mapped = np.array([transform.TransformPoint(p.tolist()) for p in probe])
    np.testing.assert_allclose(mapped, probe @ TRUE_ROTATION.T + TRUE_SHIFT, atol=1e-3 if mode == "tps" else 1e-6)
    # ... so resampling the moving FILE through it lands on the fixed grid.
    resampled = sitk.Resample(moving, fixed, transform, sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    truth = sitk.GetArrayFromImage(fixed)
    mask = truth > 5  # where the anatomy is (all of it lies inside both fields of view)
    assert correlation(resampled, fixed, mask) > 0.995
    error = np.abs(sitk.GetArrayFromImage(resampled) - truth)[mask]
    assert error.mean() < 0.02 * truth.max()
    # the opposite direction would be wrong: the same image through the inverse map does not match
    if mode == "rigid":
        wrong = sitk.Resample(moving, fixed, transform.GetInverse(), sitk.sitkLinear, 0.0, sitk.sitkFloat32)
        assert correlation(wrong, fixed, mask) < 0.6


def test_resample_moving_images_and_label_maps(image_pair):
    fixed_pts, _ = read_markups(image_pair / "fixed.mrk.json")
    moving_pts, _ = read_markups(image_pair / "moving.fcsv")
    fixed = read_image(image_pair / "fixed.nii.gz")
    moving = read_image(image_pair / "moving.nrrd")
    fit = fit_landmarks(fixed_pts, moving_pts, "rigid")
    out = resample_moving(fit, moving, fixed)
    assert out.GetSize() == fixed.GetSize() and out.GetPixelID() == sitk.sitkFloat32
    assert correlation(out, fixed, sitk.GetArrayFromImage(fixed) > 5) > 0.995
    # label maps: nearest neighbour, values and type kept
    labels = [sitk.Cast((img > 40) + (img > 80), sitk.sitkUInt8) for img in (fixed, moving)]
    out_label = resample_moving(fit, labels[1], fixed, label=True)
    assert out_label.GetPixelID() == sitk.sitkUInt8
    a, b = sitk.GetArrayFromImage(out_label), sitk.GetArrayFromImage(labels[0])
    assert set(np.unique(a)) == {0, 1, 2}
    # exactly what the true transform gives (the fit is exact here) ...
    truth = sitk.VersorRigid3DTransform()
    truth.SetMatrix(TRUE_ROTATION.ravel().tolist())
    truth.SetTranslation(TRUE_SHIFT.tolist())
    expected = sitk.Resample(labels[1], fixed, truth, sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    assert (a != sitk.GetArrayFromImage(expected)).mean() < 1e-4
    # ... and close to the fixed image's own labels (nearest neighbour on 2 mm voxels of small regions)
    for value in (1, 2):
        dice = 2 * ((a == value) & (b == value)).sum() / ((a == value).sum() + (b == value).sum())
        assert dice > 0.85
    # a fit that maps the fixed grid far away from the moving image is refused
    far = fit_landmarks(fixed_pts, moving_pts + 5000.0, "rigid")
    with pytest.raises(UserError, match="does not overlap"):
        resample_moving(far, moving, fixed)


def test_tps_field_equals_spline_at_voxel_centres(image_pair):
    fixed_pts, _ = read_markups(image_pair / "fixed.mrk.json")
    rng = np.random.default_rng(0)
    moving_pts = fixed_pts + rng.normal(size=fixed_pts.shape) * 3.0  # a real non-rigid warp
    fixed = read_image(image_pair / "fixed.nii.gz")
    fit = fit_landmarks(fixed_pts, moving_pts, "tps")
    transform = fit.to_sitk(fixed)
    index = [(0, 0, 0), (39, 35, 31), (17, 9, 23)]
    for idx in index:
        x = np.asarray(fixed.TransformIndexToPhysicalPoint(idx))
        np.testing.assert_allclose(transform.TransformPoint(x.tolist()), fit.inverse_points(x)[0], atol=1e-9)


def test_bad_transform_files_are_refused(tmp_path, image_pair):
    fixed_pts, _ = read_markups(image_pair / "fixed.mrk.json")
    tps = fit_landmarks(fixed_pts, fixed_pts + 1.0, "tps")
    rigid = fit_landmarks(fixed_pts, fixed_pts + 1.0, "rigid")
    with pytest.raises(UserError, match="give the fixed image as the reference"):
        write_transform(tps, tmp_path / "t.h5")
    with pytest.raises(UserError, match="cannot be a text transform"):
        write_transform(tps, tmp_path / "t.tfm", reference=read_image(image_pair / "fixed.nii.gz"))
    with pytest.raises(UserError, match="written as .tfm, .txt or .h5"):
        write_transform(rigid, tmp_path / "t.nrrd")
    with pytest.raises(UserError, match="unsupported transform format"):
        write_transform(rigid, tmp_path / "t.mat")
    with pytest.raises(UserError, match="file not found"):
        read_transform(tmp_path / "none.tfm")
    (tmp_path / "garbage.tfm").write_text("#Insight Transform File V1.0\nTransform: Nonsense_double_3_3\n")
    with pytest.raises(UserError, match="cannot read transform"):
        read_transform(tmp_path / "garbage.tfm")
    with pytest.raises(UserError, match="3 components"):
        read_transform(image_pair / "fixed.nii.gz")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["garbage.tfm"]
