"""Landmark fits: closed forms against VTK and SimpleITK, thin-plate spline, errors, directions, degenerate sets."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from multimodalseg.errors import UserError
from multimodalseg.registration import LandmarkFit, fit_landmarks
from multimodalseg.registration.landmarks import _fit_linear
from multimodalseg.registration.tps import ThinPlateSpline
from multimodalseg.registration.validate import check_pairs
from scipy.spatial.transform import Rotation

vtk = pytest.importorskip("vtk")


def random_case(seed: int, n: int = 12, scale: float = 1.0, noise: float = 1.5, affine: bool = False):
    """Moving points in an LPS-like region far from the origin, fixed = known map of them plus noise."""
    rng = np.random.default_rng(seed)
    moving = rng.normal(size=(n, 3)) * [40, 30, 50] + [-20, 150, 300]
    linear = scale * Rotation.random(random_state=seed).as_matrix()
    if affine:
        linear = linear @ (np.eye(3) + 0.2 * rng.normal(size=(3, 3)))
    shift = rng.normal(size=3) * 20
    fixed = moving @ linear.T + shift + rng.normal(size=(n, 3)) * noise
    return fixed, moving


def vtk_points(points: np.ndarray):
    out = vtk.vtkPoints()
    out.SetDataTypeToDouble()  # the default is float32
    for p in points:
        out.InsertNextPoint(*p)
    return out


def vtk_landmark_matrix(fixed: np.ndarray, moving: np.ndarray, mode: str) -> np.ndarray:
    lt = vtk.vtkLandmarkTransform()
    lt.SetSourceLandmarks(vtk_points(moving))  # VTK maps source onto target: moving -> fixed
    lt.SetTargetLandmarks(vtk_points(fixed))
    {"rigid": lt.SetModeToRigidBody, "similarity": lt.SetModeToSimilarity, "affine": lt.SetModeToAffine}[mode]()
    lt.Update()
    m = lt.GetMatrix()
    return np.array([[m.GetElement(i, j) for j in range(4)] for i in range(4)])


def itk_landmark_transform(fixed: np.ndarray, moving: np.ndarray, mode: str) -> sitk.Transform:
    kind = {"rigid": sitk.VersorRigid3DTransform(), "similarity": sitk.Similarity3DTransform(),
            "affine": sitk.AffineTransform(3)}[mode]
    # ITK's initializer returns the fixed -> moving map (resampling direction).
    return sitk.LandmarkBasedTransformInitializer(kind, fixed.ravel().tolist(), moving.ravel().tolist())


def apply_sitk(transform: sitk.Transform, points: np.ndarray) -> np.ndarray:
    return np.array([transform.TransformPoint([float(v) for v in p]) for p in points])


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("mode", ["rigid", "similarity", "affine"])
def test_noisy_fit_equals_vtk_and_itk(mode, seed):
    fixed, moving = random_case(seed, scale=1.0 if mode == "rigid" else 1.2, affine=mode == "affine")
    fit = fit_landmarks(fixed, moving, mode)
    np.testing.assert_allclose(fit.matrix, vtk_landmark_matrix(fixed, moving, mode), atol=1e-6)
    probe = np.random.default_rng(seed + 100).normal(size=(20, 3)) * 80 + [0, 150, 300]
    itk = apply_sitk(itk_landmark_transform(fixed, moving, mode), probe)
    if mode != "affine":  # Kabsch and Horn are symmetric: ITK's fixed -> moving fit is exactly our inverse
        np.testing.assert_allclose(fit.inverse_points(probe), itk, atol=1e-6)
        np.testing.assert_allclose(apply_sitk(fit.to_sitk(), probe), itk, atol=1e-6)
    else:  # least squares is not: ITK minimises in the moving frame, i.e. our fit with the roles swapped
        np.testing.assert_allclose(fit_landmarks(moving, fixed, mode).transform_points(probe), itk, atol=1e-6)
        assert not np.allclose(fit.inverse_points(probe), itk, atol=1e-3)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("mode", ["rigid", "similarity", "affine"])
def test_exact_fit_equals_vtk_and_itk_and_recovers_truth(mode, seed):
    fixed, moving = random_case(seed, n=8, scale=1.0 if mode == "rigid" else 1.25, noise=0.0,
                                affine=mode == "affine")
    fit = fit_landmarks(fixed, moving, mode)
    np.testing.assert_allclose(fit.matrix, vtk_landmark_matrix(fixed, moving, mode), atol=1e-6)
    probe = np.random.default_rng(seed).normal(size=(20, 3)) * 80
    itk = itk_landmark_transform(fixed, moving, mode)
    np.testing.assert_allclose(apply_sitk(fit.to_sitk(), probe), apply_sitk(itk, probe), atol=1e-6)
    np.testing.assert_allclose(fit.transform_points(moving), fixed, atol=1e-8)
    np.testing.assert_allclose(fit.inverse_points(fixed), moving, atol=1e-8)
    assert fit.rms < 1e-8


@pytest.mark.parametrize("seed", range(4))
def test_noisy_similarity_scale_is_the_spread_ratio(seed):
    # Horn's scale (VTK, ITK, Slicer) is symmetric: fitting the other way round gives exactly the inverse.
    fixed, moving = random_case(seed, scale=1.3, noise=3.0)
    fit = fit_landmarks(fixed, moving, "similarity")
    spread = lambda p: np.sqrt(((p - p.mean(0)) ** 2).sum())  # noqa: E731
    np.testing.assert_allclose(np.cbrt(np.linalg.det(fit.matrix[:3, :3])), spread(fixed) / spread(moving), rtol=1e-9)
    back = fit_landmarks(moving, fixed, "similarity")
    np.testing.assert_allclose(back.matrix @ fit.matrix, np.eye(4), atol=1e-9)


def test_rigid_never_reflects():
    # A mirrored point set: the best orthogonal map is a reflection; the fit must stay a proper rotation.
    fixed, moving = random_case(3, noise=0.0)
    fit = fit_landmarks(fixed * [-1, 1, 1], moving, "rigid")
    assert np.linalg.det(fit.matrix[:3, :3]) == pytest.approx(1.0, abs=1e-12)
    np.testing.assert_allclose(fit.matrix[:3, :3] @ fit.matrix[:3, :3].T, np.eye(3), atol=1e-12)
    assert fit.rms > 1.0


def test_directions_are_explicit():
    # fixed = R moving + t, known: the fit's matrix is that map, to_sitk is its inverse (fixed -> moving).
    rotation = Rotation.from_euler("xyz", [10, -20, 30], degrees=True).as_matrix()
    shift = np.array([5.0, -7.0, 12.0])
    moving = np.array([[0, 0, 0], [50, 0, 0], [0, 40, 0], [0, 0, 30], [20, 20, 20]], float)
    fixed = moving @ rotation.T + shift
    fit = fit_landmarks(fixed, moving, "rigid")
    np.testing.assert_allclose(fit.matrix[:3, :3], rotation, atol=1e-12)
    np.testing.assert_allclose(fit.matrix[:3, 3], shift, atol=1e-12)
    point = np.array([[1.0, 2.0, 3.0]])
    np.testing.assert_allclose(fit.transform_points(point), point @ rotation.T + shift, atol=1e-12)
    np.testing.assert_allclose(fit.inverse_points(point), (point - shift) @ rotation, atol=1e-12)
    np.testing.assert_allclose(apply_sitk(fit.to_sitk(), point), (point - shift) @ rotation, atol=1e-12)
    assert fit.to_sitk().GetName() == "VersorRigid3DTransform"


@pytest.mark.parametrize("mode", ["rigid", "similarity", "affine", "tps"])
def test_ras_fit_is_the_lps_fit_in_the_other_frame(mode):
    fixed, moving = random_case(7, noise=1.0)
    flip = np.array([-1.0, -1.0, 1.0])
    lps = fit_landmarks(fixed, moving, mode)
    ras = fit_landmarks(fixed * flip, moving * flip, mode, frame="RAS")
    np.testing.assert_allclose(ras.residuals, lps.residuals, atol=1e-8)
    probe = fixed + 3.0
    if mode != "tps":
        np.testing.assert_allclose(ras.matrix_in("LPS"), lps.matrix, atol=1e-9)
        np.testing.assert_allclose(apply_sitk(ras.to_sitk(), probe), apply_sitk(lps.to_sitk(), probe), atol=1e-8)
    np.testing.assert_allclose(ras.inverse_points_lps(probe), lps.inverse_points(probe), atol=1e-8)


@pytest.mark.parametrize("seed", range(3))
def test_tps_interpolates_exactly_and_matches_vtk_and_itk_kernels(seed):
    fixed, moving = random_case(seed, n=15, noise=4.0)
    fit = fit_landmarks(fixed, moving, "tps")
    assert fit.matrix is None
    np.testing.assert_allclose(fit.inverse_points(fixed), moving, atol=1e-6)
    np.testing.assert_allclose(fit.transform_points(moving), fixed, atol=1e-6)
    assert fit.residuals.max() < 1e-6
    # VTK's spline with basis R on the same landmarks is the same function (fixed -> moving).
    source, target = fit.tps_landmarks
    tps = vtk.vtkThinPlateSplineTransform()
    tps.SetSourceLandmarks(vtk_points(source))
    tps.SetTargetLandmarks(vtk_points(target))
    tps.SetBasisToR()
    tps.Update()
    probe = np.random.default_rng(seed).normal(size=(30, 3)) * [40, 30, 50] + [-20, 150, 300]
    np.testing.assert_allclose(fit.inverse_points(probe), [tps.TransformPoint(*p) for p in probe], atol=1e-6)
    # and our forward map is the spline's inverse: VTK's iterative inverse agrees to its tolerance
    tps.SetInverseTolerance(1e-9)
    tps.SetInverseIterations(200)
    inverse = tps.GetInverse()
    np.testing.assert_allclose(fit.transform_points(probe), [inverse.TransformPoint(*p) for p in probe], atol=1e-5)
    np.testing.assert_allclose(fit.inverse_points(fit.transform_points(probe)), probe, atol=1e-8)


def test_tps_regularization_smooths():
    fixed, moving = random_case(11, n=20, noise=4.0)
    exact = fit_landmarks(fixed, moving, "tps")
    smoothed = [fit_landmarks(fixed, moving, "tps", regularization=lam) for lam in (1.0, 10.0, 100.0)]
    assert exact.bending_energy > 0
    energies = [exact.bending_energy] + [s.bending_energy for s in smoothed]
    assert all(a > b for a, b in zip(energies, energies[1:]))
    assert all(s.residuals.min() > 0 and s.rms > 1e-3 for s in smoothed)
    # The smoothed spline minimises data misfit + lam * bending energy (in the fixed -> moving direction).
    lam = 10.0
    s = smoothed[1]

    def objective(spline: ThinPlateSpline) -> float:
        return float(((spline(fixed) - moving) ** 2).sum() + lam * spline.bending_energy)

    assert objective(s.spline) < objective(exact.spline)
    assert objective(s.spline) < objective(smoothed[0].spline)
    # Large smoothing tends to the least-squares affine fit in the same direction.
    affine = fit_landmarks(moving, fixed, "affine").transform_points(fixed)  # maps fixed -> moving
    gaps = [np.abs(fit_landmarks(fixed, moving, "tps", regularization=lam).inverse_points(fixed) - affine).max()
            for lam in (1e3, 1e5, 1e7)]
    assert gaps[0] > gaps[1] > gaps[2] and gaps[2] < 1e-3


def test_tps_with_exact_affine_data_is_affine():
    fixed, moving = random_case(5, noise=0.0, affine=True)
    fit = fit_landmarks(fixed, moving, "tps")
    assert abs(fit.bending_energy) < 1e-8
    affine = fit_landmarks(fixed, moving, "affine")
    probe = fixed + 7.0
    np.testing.assert_allclose(fit.transform_points(probe), affine.transform_points(probe), atol=1e-6)


def brute_force_loo(fit: LandmarkFit) -> np.ndarray:
    n = len(fit.fixed)
    out = np.full(n, np.nan)
    for i in range(n):
        keep = np.arange(n) != i
        try:
            f, m = check_pairs(fit.fixed[keep], fit.moving[keep], fit.mode)
        except UserError:
            continue
        if fit.mode == "tps":
            mapped = ThinPlateSpline(f, m, fit.regularization).inverse(fit.moving[i:i + 1], start=fit.fixed[i:i + 1])
        else:
            a = _fit_linear(f, m, fit.mode)
            mapped = fit.moving[i:i + 1] @ a[:3, :3].T + a[:3, 3]
        out[i] = np.linalg.norm(mapped[0] - fit.fixed[i])
    return out


@pytest.mark.parametrize("mode,lam", [("rigid", 0), ("similarity", 0), ("affine", 0), ("tps", 0), ("tps", 5.0)])
def test_leave_one_out_equals_refitting(mode, lam):
    fixed, moving = random_case(21, n=25, scale=1.1, noise=2.0)
    fit = fit_landmarks(fixed, moving, mode, regularization=lam)
    loo = fit.loo_errors
    np.testing.assert_allclose(loo, brute_force_loo(fit), atol=1e-6)
    assert np.isfinite(loo).all()
    assert np.sqrt(np.mean(loo**2)) > fit.rms  # held-out errors exceed the fitted residuals


def test_leave_one_out_nan_when_too_few_or_degenerate():
    fixed, moving = random_case(2, n=3, noise=0.5)
    assert np.isnan(fit_landmarks(fixed, moving, "rigid").loo_errors).all()
    fixed, moving = random_case(2, n=4, noise=0.5)
    assert np.isnan(fit_landmarks(fixed, moving, "affine").loo_errors).all()
    # 4 points, 3 of them on a line: dropping the 4th leaves a collinear set
    moving = np.array([[0, 0, 0], [10, 0, 0], [20, 0, 0], [5, 10, 3]], float)
    fit = fit_landmarks(moving + 1.0, moving, "rigid")
    loo = fit.loo_errors
    assert np.isnan(loo[3]) and np.isfinite(loo[:3]).all()
    np.testing.assert_allclose(loo, brute_force_loo(fit), atol=1e-9)


def test_report_holds_every_pair():
    fixed, moving = random_case(4, n=6)
    report = fit_landmarks(fixed, moving, "affine").report()
    assert report["pairs"] == 6 and len(report["points"]) == 6
    assert report["points"][2]["fixed"] == pytest.approx(fixed[2].tolist())
    assert report["rms_mm"] == pytest.approx(np.sqrt(np.mean([p["residual_mm"] ** 2 for p in report["points"]])))


GOOD = np.array([[0, 0, 0], [50, 0, 0], [0, 40, 0], [0, 0, 30], [20, 25, 10]], float)
LINE = np.array([[0, 0, 0], [1, 1, 1], [2, 2, 2], [5, 5, 5]], float)
PLANE = np.array([[0, 0, 0], [50, 0, 0], [0, 40, 0], [30, 30, 0]], float)


@pytest.mark.parametrize(
    "mode,fixed,moving,message",
    [
        ("rigid", GOOD, GOOD[:4], "5 fixed points but 4 moving points"),
        ("rigid", GOOD[:2], GOOD[:2], "at least 3 landmark pairs, got 2"),
        ("similarity", GOOD[:2], GOOD[:2], "at least 3 landmark pairs, got 2"),
        ("affine", GOOD[:3], GOOD[:3], "at least 4 landmark pairs, got 3"),
        ("tps", GOOD[:3], GOOD[:3], "at least 4 landmark pairs, got 3"),
        ("rigid", LINE, GOOD[:4], "fixed points are collinear"),
        ("similarity", GOOD[:4], LINE * [1, 2, 3], "moving points are collinear"),
        ("affine", PLANE, GOOD[:4], "fixed points are coplanar"),
        ("tps", GOOD[:4], PLANE, "moving points are coplanar"),
        ("rigid", np.vstack([GOOD, GOOD[1]]), np.vstack([GOOD, GOOD[2]]), "fixed points 2 and 6 coincide"),
        ("affine", GOOD, np.vstack([GOOD[:4], GOOD[0]]), "moving points 1 and 5 coincide"),
        ("rigid", np.vstack([GOOD[:4], [np.nan, 0, 0]]), GOOD, "fixed point 5 has a NaN"),
        ("tps", GOOD, np.vstack([GOOD[:4], [0, np.inf, 0]]), "moving point 5 has a NaN or infinite"),
        ("rigid", GOOD[:, :2], GOOD[:, :2], "must be an (N, 3) array"),
        ("warp", GOOD, GOOD, "unknown registration mode"),
    ],
)
def test_degenerate_sets_are_refused(mode, fixed, moving, message):
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
        fit_landmarks(fixed, moving, mode)


def test_near_degenerate_uses_relative_tolerance():
    # 0.01 mm off a 100 mm line is collinear at any scale; 5 mm off it is fine, in mm or in metres.
    line = np.array([[0, 0, 0], [50, 0, 0], [100, 0.01, 0]], float)
    ok = np.array([[0, 0, 0], [50, 0, 0], [100, 5.0, 0]], float)
    for unit in (1.0, 1e-3):
        with pytest.raises(UserError, match="collinear"):
            fit_landmarks(line * unit, line * unit, "rigid")
        assert fit_landmarks(ok * unit, ok * unit + unit, "rigid").rms < 1e-9 * unit + 1e-12


def test_bad_regularization_is_refused():
    with pytest.raises(UserError, match="regularization"):
        fit_landmarks(GOOD, GOOD, "tps", regularization=-1)
    with pytest.raises(UserError, match="frame"):
        fit_landmarks(GOOD, GOOD, "rigid", frame="XYZ")
