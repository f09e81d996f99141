"""``multimodalseg register``: outputs, report, and exit code 2 with one line for every bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import SimpleITK as sitk
from multimodalseg.io import read_image, write_image
from multimodalseg.registration import read_markups, read_transform, write_markups
from scipy.spatial.transform import Rotation

ROTATION = Rotation.from_euler("xyz", [8, -5, 15], degrees=True).as_matrix()
SHIFT = np.array([6.0, -4.0, 3.0])  # fixed -> moving
SITES = np.array([[-15.0, -10.0, 10.0], [12.0, -14.0, 18.0], [4.0, 14.0, 6.0], [-8.0, 10.0, 24.0],
                  [16.0, 8.0, 14.0], [0.0, 0.0, 16.0], [-12.0, 4.0, 0.0]])


def blobs(points: np.ndarray) -> np.ndarray:
    d2 = ((points[:, None, :] - SITES[None]) ** 2).sum(axis=2)
    return (100.0 * np.exp(-d2 / (2 * 5.0**2))).sum(axis=1)


def sampled(size, spacing, origin, values_at) -> sitk.Image:
    k, j, i = np.meshgrid(*(np.arange(s) for s in size[::-1]), indexing="ij")
    lps = np.stack([i.ravel(), j.ravel(), k.ravel()], axis=1) * spacing + origin
    image = sitk.GetImageFromArray(values_at(lps).reshape(size[::-1]).astype(np.float32))
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    return image


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    d = tmp_path_factory.mktemp("reg")
    fixed = sampled((24, 24, 18), (2.0, 2.0, 2.0), (-24.0, -24.0, -10.0), blobs)
    centre = SITES.mean(axis=0) @ ROTATION.T + SHIFT  # the moving grid is centred on the moved anatomy
    moving = sampled((30, 30, 26), (1.8, 1.8, 1.8), tuple(centre - 1.8 * np.array([29, 29, 25]) / 2),
                     lambda x: blobs((x - SHIFT) @ ROTATION))
    write_image(fixed, d / "fixed.nii.gz")
    write_image(moving, d / "moving.nii.gz")
    write_image(sitk.Cast(moving > 50, sitk.sitkUInt8), d / "moving_label.nii.gz")
    write_markups(d / "fixed.mrk.json", SITES, [f"P{i}" for i in range(len(SITES))])
    write_markups(d / "moving.mrk.json", SITES @ ROTATION.T + SHIFT, [f"P{i}" for i in range(len(SITES))],
                  coordinate_system="RAS")
    return d


def run_ok(cli, *args):
    result = cli("register", *args)
    assert result.code == 0, result.err
    return result


def test_rigid_writes_transform_image_points_and_report(cli, case, tmp_path):
    out = tmp_path / "out"
    result = run_ok(cli, "--fixed-points", case / "fixed.mrk.json", "--moving-points", case / "moving.mrk.json",
                    "--moving", case / "moving.nii.gz", "--reference", case / "fixed.nii.gz", "-o", out)
    assert "rigid: 7 pairs, RMS" in result.out
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["transform.tfm", "resampled.nii.gz", "moving_points_registered.mrk.json", "report.json"])
    report = json.loads((out / "report.json").read_text())
    assert report["mode"] == "rigid" and report["pairs"] == 7 and report["rms_mm"] < 1e-6
    assert len(report["points"]) == 7 and report["points"][3]["fixed_label"] == "P3"
    assert all(p["loo_error_mm"] < 1e-6 for p in report["points"])
    transform = read_transform(out / "transform.tfm")
    np.testing.assert_allclose(transform.TransformPoint(SITES[1].tolist()), SITES[1] @ ROTATION.T + SHIFT,
                               atol=1e-6)
    fixed, resampled = read_image(case / "fixed.nii.gz"), read_image(out / "resampled.nii.gz")
    assert resampled.GetSize() == fixed.GetSize()
    a, b = sitk.GetArrayFromImage(resampled), sitk.GetArrayFromImage(fixed)
    assert np.corrcoef(a[b > 5], b[b > 5])[0, 1] > 0.99
    registered, names = read_markups(out / "moving_points_registered.mrk.json")
    np.testing.assert_allclose(registered, SITES, atol=1e-6)
    assert json.loads((out / "moving_points_registered.mrk.json").read_text())["markups"][0][
        "coordinateSystem"] == "RAS"


def test_tps_label_map_and_pairing_by_label(cli, case, tmp_path):
    # the moving file lists its points in another order: --pair-by label matches them by name
    moving, names = read_markups(case / "moving.mrk.json")
    order = [3, 0, 6, 1, 5, 2, 4]
    write_markups(tmp_path / "shuffled.fcsv", moving[order], [names[i] for i in order])
    out = tmp_path / "tps"
    run_ok(cli, "--fixed-points", case / "fixed.mrk.json", "--moving-points", tmp_path / "shuffled.fcsv",
           "--pair-by", "label", "--mode", "tps", "--moving", case / "moving_label.nii.gz", "--label",
           "--reference", case / "fixed.nii.gz", "-o", out)
    report = json.loads((out / "report.json").read_text())
    assert report["rms_mm"] < 1e-6 and report["points"][0]["moving_label"] == "P0"
    assert read_transform(out / "transform.h5").GetName() == "DisplacementFieldTransform"
    label = read_image(out / "resampled.nii.gz")
    assert label.GetPixelID() == sitk.sitkUInt16  # read_image(label=True) casts label maps to UInt16
    assert set(np.unique(sitk.GetArrayFromImage(label))) == {0, 1}
    # in file order the pairs are wrong: the fit is poor, not refused
    result = run_ok(cli, "--fixed-points", case / "fixed.mrk.json", "--moving-points", tmp_path / "shuffled.fcsv",
                    "-o", tmp_path / "wrong")
    assert json.loads((tmp_path / "wrong" / "report.json").read_text())["rms_mm"] > 5
    assert "largest residual" in result.out


def test_existing_output_needs_overwrite(cli, case, tmp_path):
    args = ["--fixed-points", case / "fixed.mrk.json", "--moving-points", case / "moving.mrk.json",
            "--mode", "affine", "-o", tmp_path]
    run_ok(cli, *args)
    before = (tmp_path / "transform.tfm").read_bytes()
    result = cli("register", *args)
    assert result.code == 2 and "use --overwrite" in result.err
    run_ok(cli, *args, "--overwrite", "--transform-name", "transform.tfm")
    assert (tmp_path / "transform.tfm").read_bytes() == before
    assert not list(tmp_path.parent.glob(".partial-register-*"))


def write_points(path, points):
    write_markups(path, np.asarray(points, float))
    return path


BAD_POINTS = {
    "counts": ([[0, 0, 0], [10, 0, 0], [0, 10, 0], [0, 0, 10]], [[0, 0, 0], [10, 0, 0], [0, 10, 0]],
               "rigid", "4 fixed points but 3 moving points"),
    "too_few": ([[0, 0, 0], [10, 0, 0]], [[0, 0, 0], [10, 0, 0]], "rigid", "at least 3 landmark pairs"),
    "too_few_affine": ([[0, 0, 0], [10, 0, 0], [0, 10, 0]], [[0, 0, 0], [10, 0, 0], [0, 10, 0]], "affine",
                       "at least 4 landmark pairs"),
    "collinear": ([[0, 0, 0], [10, 0, 0], [20, 0, 0]], [[0, 0, 0], [10, 0, 0], [0, 10, 0]], "similarity",
                  "fixed points are collinear"),
    "coplanar": ([[0, 0, 0], [10, 0, 0], [0, 10, 0], [10, 10, 0]], [[0, 0, 0], [10, 0, 0], [0, 10, 0],
                                                                     [0, 0, 10]], "tps", "fixed points are coplanar"),
    "duplicate": ([[0, 0, 0], [10, 0, 0], [0, 10, 0], [0, 0, 10]], [[0, 0, 0], [10, 0, 0], [0, 10, 0],
                                                                      [10, 0, 0]], "affine", "moving points 2 and 4"),
}


@pytest.mark.parametrize("name", sorted(BAD_POINTS))
def test_degenerate_point_sets_exit_2(cli, case, tmp_path, name):
    fixed, moving, mode, message = BAD_POINTS[name]
    f = write_points(tmp_path / "f.mrk.json", fixed)
    m = write_points(tmp_path / "m.mrk.json", moving)
    out = tmp_path / "out"
    result = cli("register", "--fixed-points", f, "--moving-points", m, "--mode", mode,
                 "--reference", case / "fixed.nii.gz", "-o", out)
    assert result.code == 2
    assert message in result.err and result.err.strip().count("\n") == 0
    assert result.err.startswith("multimodalseg register: error:")
    assert not out.exists() and not list(tmp_path.glob(".partial-*"))


def test_bad_files_and_arguments_exit_2(cli, case, tmp_path):
    good = ["--fixed-points", case / "fixed.mrk.json", "--moving-points", case / "moving.mrk.json"]
    nan = tmp_path / "nan.mrk.json"
    nan.write_text('{"markups": [{"type": "Fiducial", "controlPoints": [{"label": "A", "position": [1, NaN, 3]}]}]}')
    corrupt = tmp_path / "corrupt.fcsv"
    corrupt.write_text("a,1,2\n")
    not_image = tmp_path / "not_image.nii.gz"
    not_image.write_bytes(b"not a volume")
    far = write_points(tmp_path / "far.mrk.json", SITES @ ROTATION.T + SHIFT + 5000.0)
    cases = [
        (["--fixed-points", tmp_path / "missing.mrk.json", "--moving-points", case / "moving.mrk.json"],
         "file not found"),
        (["--fixed-points", nan, "--moving-points", case / "moving.mrk.json"], "NaN or infinite"),
        (["--fixed-points", case / "fixed.mrk.json", "--moving-points", corrupt], "row 1 has 3 fields"),
        ([*good, "--moving", case / "moving.nii.gz"], "--moving needs --reference"),
        ([*good, "--label"], "--label applies to --moving"),
        ([*good, "--mode", "tps"], "--mode tps needs --reference"),
        ([*good, "--regularization", "2"], "applies to --mode tps only"),
        ([*good, "--mode", "tps", "--regularization", "-1", "--reference", case / "fixed.nii.gz"],
         "regularization must be"),
        ([*good, "--moving", not_image, "--reference", case / "fixed.nii.gz"], "cannot read image"),
        (["--fixed-points", case / "fixed.mrk.json", "--moving-points", far, "--moving", case / "moving.nii.gz",
          "--reference", case / "fixed.nii.gz"], "does not overlap"),
        ([*good, "--transform-name", "t.nrrd"], "written as .tfm, .txt or .h5"),
        ([*good, "--transform-name", "../t.tfm"], "must be a file name"),
        ([*good, "--pair-by", "label", "--moving-points", corrupt], "row 1 has 3 fields"),
    ]
    for args, message in cases:
        out = tmp_path / "out"
        result = cli("register", *args, "-o", out)
        assert result.code == 2, (args, result.err)
        assert message in result.err, (message, result.err)
        assert result.err.strip().count("\n") == 0
        assert not out.exists() and not list(tmp_path.glob(".partial-*"))


def test_pair_by_label_needs_matching_labels(cli, case, tmp_path):
    moving, names = read_markups(case / "moving.mrk.json")
    write_markups(tmp_path / "renamed.mrk.json", moving, names[:-1] + ["other"])
    result = cli("register", "--fixed-points", case / "fixed.mrk.json", "--moving-points",
                 tmp_path / "renamed.mrk.json", "--pair-by", "label", "-o", tmp_path / "out")
    assert result.code == 2 and "fixed label 'P6' has no partner" in result.err


def test_output_never_overwrites_an_input(cli, case, tmp_path):
    fixed = tmp_path / "report.json"
    write_markups(fixed, SITES)  # a point list that happens to be named like an output
    result = cli("register", "--fixed-points", fixed, "--moving-points", case / "moving.mrk.json",
                 "-o", tmp_path, "--overwrite")
    assert result.code == 2 and "would overwrite an input" in result.err


def test_registration_imports_without_torch_or_vtk():
    code = ("import sys, multimodalseg.registration, multimodalseg.cli.register_cmd; "
            "bad = [m for m in ('torch', 'monai', 'vtk') if m in sys.modules]; print(bad); sys.exit(bool(bad))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_cli_process_end_to_end(cli_process, case, tmp_path):
    result = cli_process("register", "--fixed-points", case / "fixed.mrk.json", "--moving-points",
                         case / "moving.mrk.json", "--mode", "similarity", "-o", tmp_path / "o", timeout=120)
    assert result.code == 0, result.err
    assert "similarity: 7 pairs" in result.out
    assert read_transform(tmp_path / "o" / "transform.tfm").GetName() == "Similarity3DTransform"
