"""Phantom cases: public layouts read back with their geometry, labels, seeds, landmarks, misregistration,
contrast per modality, and the ``multimodalseg phantom`` command with its bad-input cases."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from multimodalseg.errors import UserError
from multimodalseg.io import label_values, read_image, resample_to_reference, same_geometry
from multimodalseg.phantoms import case_paths, make_case, write_case
from multimodalseg.registration.markups import read_markups
from multimodalseg.tasks import get_task
from multimodalseg.tasks.freesurfer import ASEG_STRUCTURES

TASKS = ("petmr-brain", "brain-tumor", "whole-heart", "spine")
MULTI_ROLE = ("petmr-brain", "brain-tumor", "spine")


def arr(image: sitk.Image) -> np.ndarray:
    return sitk.GetArrayFromImage(image)


@pytest.fixture(scope="module")
def cases():
    """One default case per task (and an MR heart), built once for the module."""
    out = {t: make_case(t, 0) for t in TASKS}
    out["brain-tumor-misregistered"] = make_case("brain-tumor", 0, misregister=True)
    out["whole-heart-mr"] = make_case("whole-heart", 0, modality="mr")
    return out


@pytest.mark.parametrize(("task", "options"), [
    ("brain-tumor", {}), ("whole-heart", {}), ("whole-heart", {"modality": "mr"}),
    ("petmr-brain", {"oblique": True, "anisotropic": True}),
    ("brain-tumor", {"oblique": True, "misregister": True}), ("spine", {"oblique": True, "anisotropic": True}),
])
def test_public_layout_reads_back_with_geometry(tmp_path, task, options):
    case = make_case(task, 1, **options)
    written = write_case(case, tmp_path, index=3)
    spec = get_task(task)
    assert written == case_paths(task, tmp_path, 3, case.modality, misregistered=case.info["misregistered"])
    assert all(p.is_file() for p in written.values())
    for role in spec.roles:
        back = read_image(written[role])
        assert same_geometry(back, case.images[role])
        np.testing.assert_allclose(arr(back), arr(case.images[role]), rtol=1e-6)
    label = read_image(written["label"], label=True)
    assert same_geometry(label, case.images[spec.reference_role])
    np.testing.assert_array_equal(arr(label), arr(case.label))
    spec.check_label_values(label_values(label), str(written["label"]))
    if task in MULTI_ROLE:
        for role in spec.roles:
            points, names = read_markups(written[f"landmarks_{role}"])
            np.testing.assert_allclose(points, case.landmarks[role], atol=1e-9)
            assert names == case.landmark_names
    if options.get("oblique"):
        direction = np.asarray(case.images[spec.reference_role].GetDirection()).reshape(3, 3)
        assert not np.allclose(direction, np.eye(3), atol=0.05)
        np.testing.assert_allclose(direction @ direction.T, np.eye(3), atol=1e-9)
    if options.get("anisotropic"):
        sx, sy, sz = case.images[spec.reference_role].GetSpacing()
        assert sz == pytest.approx(3 * sx) and sx == pytest.approx(sy)


def test_layout_names(tmp_path, cases):
    brats = write_case(cases["brain-tumor"], tmp_path, 7)
    assert {p.name for p in brats.values()} >= {f"BraTS20_Training_007_{s}.nii.gz"
                                                  for s in ("flair", "t1", "t1ce", "t2", "seg")}
    heart = write_case(cases["whole-heart-mr"], tmp_path, 2)
    assert sorted(p.name for p in heart.values()) == ["mr_train_1002_image.nii.gz", "mr_train_1002_label.nii.gz"]
    brain = write_case(cases["petmr-brain"], tmp_path, 1)
    assert {p.relative_to(tmp_path).as_posix() for p in brain.values()} == {
        "sub-001/pet.nii.gz", "sub-001/t1.nii.gz", "sub-001/aseg.nii.gz", "sub-001/pet.json",
        "sub-001/pet.mrk.json", "sub-001/t1.mrk.json", "sub-001/pet_to_t1.tfm"}
    tfm = sitk.ReadTransform(str(brain["transform_pet"]))
    p = cases["petmr-brain"].landmarks["t1"][0]
    np.testing.assert_allclose(tfm.TransformPoint(p.tolist()), cases["petmr-brain"].landmarks["pet"][0], atol=1e-6)
    assert not list(tmp_path.glob(".partial-*"))


def test_write_refuses_existing_files_and_bad_folder(tmp_path, cases):
    write_case(cases["spine"], tmp_path)
    before = (tmp_path / "case_001" / "ct.nii.gz").stat().st_mtime_ns
    with pytest.raises(UserError, match="already exists"):
        write_case(cases["spine"], tmp_path)
    assert (tmp_path / "case_001" / "ct.nii.gz").stat().st_mtime_ns == before
    write_case(cases["spine"], tmp_path, overwrite=True)
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    with pytest.raises(UserError, match="is a file"):
        write_case(cases["spine"], blocker)


def test_label_values_and_all_structures_present(cases):
    for key in TASKS + ("whole-heart-mr",):
        case = cases[key]
        spec = get_task(case.task)
        assert case.label.GetPixelID() == sitk.sitkUInt16
        values = set(label_values(case.label)) - {0}
        assert values == {lab.value for lab in spec.labels}, key
    for seed in (0, 1, 2):
        lab = arr(make_case("petmr-brain", seed).label)
        counts = dict(zip(*np.unique(lab, return_counts=True)))
        small = {name: counts.get(value, 0) for value, name, _ in ASEG_STRUCTURES if counts.get(value, 0) < 30}
        assert not small, f"seed {seed}: structures under 30 voxels: {small}"


def test_brain_layout_is_anatomical(cases):
    """Left structures on the patient's left (+x in LPS), ventricles medial to the putamen, brainstem below
    the thalamus, cerebellum behind the brainstem, corpus callosum above the lateral ventricles."""
    case = cases["petmr-brain"]
    lab = arr(case.label)

    def centre(*values):
        idx = np.argwhere(np.isin(lab, values)).mean(0)[::-1]
        return np.asarray(case.label.TransformContinuousIndexToPhysicalPoint(idx.tolist()))

    for left, right in ((10, 49), (12, 51), (17, 53), (4, 43), (8, 47)):
        assert centre(left)[0] > centre(right)[0] + 5
    midline = (centre(10)[0] + centre(49)[0]) / 2  # the pose moves the head anywhere in the scanner
    lateral = {v: abs(centre(v)[0] - midline) for v in (4, 43, 12, 51, 14, 72)}
    assert lateral[4] < lateral[12] and lateral[43] < lateral[51]
    assert lateral[14] < 3 and lateral[72] < 3  # 3rd ventricle and cavum septi on the midline
    assert centre(16)[2] < centre(10)[2] - 15
    assert centre(8, 47)[1] > centre(16)[1] + 10 and centre(8, 47)[2] < centre(10)[2]
    assert centre(251, 252, 253, 254, 255)[2] > centre(4, 43)[2]
    assert centre(255)[1] < centre(251)[1]  # CC_Anterior in front of CC_Posterior


def test_seed_reproduces_and_varies(cases):
    for task in TASKS:
        a, b, c = make_case(task, 5), make_case(task, 5), cases[task]  # c: seed 0
        for role in a.images:
            np.testing.assert_array_equal(arr(a.images[role]), arr(b.images[role]))
            np.testing.assert_array_equal(a.landmarks[role], b.landmarks[role])
        np.testing.assert_array_equal(arr(a.label), arr(b.label))
        for role, t in a.misregistration.items():
            assert t.GetParameters() == b.misregistration[role].GetParameters()
        # another seed: other anatomy, not just another pose: landmark distances and structure volumes change
        ref = get_task(task).reference_role
        d_a, d_c = (np.linalg.norm(x.landmarks[ref][:, None] - x.landmarks[ref][None], axis=2) for x in (a, c))
        assert np.abs(d_a - d_c).mean() > 1.0 and np.abs(d_a - d_c).max() > 4.0, task
        assert not np.allclose(a.landmarks[ref].mean(0), c.landmarks[ref].mean(0), atol=5.0)  # and another pose
        va, vc = (np.unique(arr(x.label), return_counts=True) for x in (a, c))
        sizes_a, sizes_c = dict(zip(*va)), dict(zip(*vc))
        changed = [v for v in sizes_a if v and abs(sizes_a[v] - sizes_c.get(v, 0)) > 0.03 * sizes_a[v]]
        if len(sizes_a) > 3:
            assert len(changed) >= 0.5 * (len(sizes_a) - 1), task
    ct, mr = make_case("whole-heart", 3, modality="ct"), make_case("whole-heart", 3, modality="mr")
    assert not np.allclose(ct.landmarks["image"] - ct.landmarks["image"][0],
                           mr.landmarks["image"] - mr.landmarks["image"][0], atol=2.0)  # unpaired anatomy


@pytest.mark.parametrize("key", ["petmr-brain", "spine", "brain-tumor-misregistered", "brain-tumor", "whole-heart"])
def test_landmarks_follow_the_known_transform(cases, key):
    case = cases[key]
    spec = get_task(case.task)
    ref = spec.reference_role
    points = case.landmarks[ref]
    assert points.shape[0] >= 8 and points.shape[1] == 3
    assert len(case.landmark_names) == len(points)
    assert np.linalg.svd(points - points.mean(0), compute_uv=False)[-1] > 10.0  # spread, not coplanar
    assert set(case.misregistration) == set(spec.roles) - {ref}
    for role, t in case.misregistration.items():
        assert isinstance(t, sitk.Euler3DTransform)
        mapped = np.array([t.TransformPoint(p.tolist()) for p in points])
        np.testing.assert_allclose(case.landmarks[role], mapped, atol=1e-6)
        angle = np.degrees(np.linalg.norm(t.GetParameters()[:3]))
        shift = np.linalg.norm(t.GetParameters()[3:])
        if case.info["misregistered"]:
            assert 1.9 < angle < 9.0 and 3.0 <= shift <= 8.0
        else:
            assert angle == 0 and shift == 0
    for role, image in case.images.items():
        index = np.array([image.TransformPhysicalPointToContinuousIndex(p.tolist()) for p in case.landmarks[role]])
        assert (index > -0.5).all() and (index < np.asarray(image.GetSize()) - 0.5).all(), role


@pytest.mark.parametrize(("task", "moving", "options"), [
    ("petmr-brain", "pet", {}), ("spine", "mr", {"oblique": True}), ("brain-tumor", "t2", {"misregister": True}),
])
def test_known_transform_aligns_moving_image(task, moving, options):
    """Resampled with its known transform, the moving image matches the same anatomy rendered without
    misregistration; resampled without it, it does not."""
    case = make_case(task, 2, **options)
    twin = make_case(task, 2, **{**options, "misregister": False})
    ref = case.images[case.reference_role]
    assert same_geometry(ref, twin.images[case.reference_role])
    truth = arr(resample_to_reference(twin.images[moving], ref, default_value=-1))
    aligned = arr(resample_to_reference(case.images[moving], ref, transform=case.misregistration[moving],
                                        default_value=-1))
    naive = arr(resample_to_reference(case.images[moving], ref, default_value=-1))
    inside = (truth >= 0) & (aligned >= 0) & (naive >= 0)  # where every field of view covers the voxel
    assert inside.mean() > 0.5
    r_aligned = np.corrcoef(aligned[inside], truth[inside])[0, 1]
    r_naive = np.corrcoef(naive[inside], truth[inside])[0, 1]
    assert r_aligned > 0.95
    assert r_aligned - r_naive > 0.1


def test_moving_roles_have_their_own_grids(cases):
    brain = cases["petmr-brain"]
    assert brain.images["pet"].GetSpacing() == (2.5, 2.5, 2.5)
    assert brain.images["t1"].GetSpacing() == (1.75, 1.75, 1.75)
    assert not np.allclose(brain.images["pet"].GetOrigin(), brain.images["t1"].GetOrigin())
    mr = cases["spine"].images["mr"]
    assert mr.GetSpacing()[0] > 2 * mr.GetSpacing()[1]  # sagittal thick slices
    tumour = cases["brain-tumor"]
    assert all(same_geometry(tumour.images[r], tumour.images["t1ce"]) for r in ("flair", "t1", "t2"))


def _means(image: np.ndarray, label: np.ndarray, *groups):
    return [float(image[np.isin(label, g)].mean()) for g in groups]


def test_brain_contrast(cases):
    case = cases["petmr-brain"]
    lab = arr(case.label)
    pet = arr(resample_to_reference(case.images["pet"], case.images["t1"], transform=case.misregistration["pet"]))
    grey, white, csf = (8, 47, 10, 49, 11, 50, 12, 51), (7, 46, 251, 252, 253, 254, 255), (4, 43)
    p_grey, p_white, p_csf = _means(pet, lab, grey, white, csf)
    assert p_grey > 1.3 * p_white and p_white > 1.3 * p_csf
    suv = p_grey * case.info["pet"]["suv_factor"]
    assert 3.0 < suv < 15.0  # Bq/mL that read as plausible FDG SUVs in grey matter
    t_white, t_grey, t_csf = _means(arr(case.images["t1"]), lab, white, grey, csf)
    assert t_white > 1.2 * t_grey and t_grey > 1.5 * t_csf


def test_tumor_contrast(cases):
    case = cases["brain-tumor"]
    lab = arr(case.label)
    img = {r: arr(im) for r, im in case.images.items()}
    normal = (img["t1ce"] > 0) & (lab == 0)
    assert (img["flair"][lab == 2].mean()) > 1.5 * img["flair"][normal].mean()
    assert img["t1ce"][lab == 4].mean() > 1.5 * img["t1ce"][lab == 1].mean()
    assert img["t1ce"][lab == 4].mean() > 1.3 * img["t1"][lab == 4].mean()  # enhancement
    assert img["t2"][lab == 2].mean() > 1.2 * img["t2"][normal].mean()
    assert img["t2"][lab == 1].mean() > img["t2"][normal].mean()
    assert img["t1"][lab == 1].mean() < img["t1"][normal].mean()
    assert (img["t1ce"] == 0).mean() > 0.3  # skull-stripped: zero background, as BraTS distributes it


def test_heart_contrast(cases):
    for key in ("whole-heart", "whole-heart-mr"):
        case = cases[key]
        lab = arr(case.label)
        image = arr(case.images["image"])
        blood, myo = _means(image, lab, (500, 420, 820), (205,))
        if case.modality == "ct":
            assert case.images["image"].GetPixelID() == sitk.sitkInt16
            assert blood > myo + 100 and 60 < myo < 180
            assert (image < -700).mean() > 0.1  # lungs and air
        else:
            assert blood > 2.5 * myo


def test_spine_contrast(cases):
    case = cases["spine"]
    lab = arr(case.label)
    bone, disc = _means(arr(case.images["ct"]), lab, (1,), (2,))
    assert bone > disc + 150
    t2 = arr(resample_to_reference(case.images["mr"], case.images["ct"], transform=case.misregistration["mr"]))
    t2_bone, t2_disc = _means(t2, lab, (1,), (2,))
    assert t2_disc > 1.2 * t2_bone
    names = case.landmark_names
    assert len(names) == 45 and names[0] == "L1 anterior superior" and names[-1] == "L5 spinous tip"


def test_shape_and_spacing_options():
    case = make_case("spine", 0, shape=(40, 32, 30))
    default = make_case("spine", 0)
    ct = case.images["ct"]
    assert ct.GetSize() == (30, 32, 40)
    fov = np.multiply(ct.GetSize(), ct.GetSpacing())
    np.testing.assert_allclose(fov, np.multiply(default.images["ct"].GetSize(), default.images["ct"].GetSpacing()))
    sized = make_case("brain-tumor", 0, spacing=(4.0, 4.0, 4.0))
    assert sized.images["t1ce"].GetSpacing() == (4.0, 4.0, 4.0) and sized.images["t1ce"].GetSize() == (40, 48, 40)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"task_id": "liver"}, "unknown task"),
    ({"task_id": "spine", "modality": "ct"}, "no modality choice"),
    ({"task_id": "whole-heart", "modality": "pet"}, "unknown modality"),
    ({"task_id": "spine", "shape": (2, 40, 40)}, "shape"),
    ({"task_id": "spine", "spacing": (1.0, 0.0, 1.0)}, "spacing"),
])
def test_make_case_bad_input(kwargs, message):
    with pytest.raises(UserError, match=message):
        make_case(**kwargs)


# --- the command ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("task", "n"), [("petmr-brain", 1), ("brain-tumor", 1), ("whole-heart", 1), ("spine", 2)])
def test_cli_writes_each_task(cli, tmp_path, task, n):
    result = cli("phantom", "--task", task, "--out", tmp_path, "--n", n, "--seed", "4")
    assert result.code == 0, result.err
    modalities = get_task(task).modalities or (None,)  # whole-heart: both by default
    for modality in modalities:
        for index in range(1, n + 1):
            paths = case_paths(task, tmp_path, index, modality, misregistered=task in ("petmr-brain", "spine"))
            for p in paths.values():
                assert p.is_file(), p
                assert str(p) in result.out
    first = case_paths(task, tmp_path, 1, modalities[0])["label"]  # case 1 is seed 4, exactly as make_case gives it
    expected = make_case(task, 4, modality=modalities[0]).label
    np.testing.assert_array_equal(arr(read_image(first, label=True)), arr(expected))


def test_cli_options_and_png(cli, tmp_path):
    result = cli("phantom", "--task", "whole-heart", "--out", tmp_path, "--modality", "mr", "--anisotropic",
                 "--oblique", "--png")
    assert result.code == 0, result.err
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "mr_train_1001_image.nii.gz", "mr_train_1001_label.nii.gz", "mr_train_1001_overlay.png"]
    image = read_image(tmp_path / "mr_train_1001_image.nii.gz")
    assert image.GetSpacing()[2] == pytest.approx(7.5)
    assert not np.allclose(np.asarray(image.GetDirection()).reshape(3, 3), np.eye(3), atol=0.05)


@pytest.mark.parametrize(("args", "message"), [
    (("--task", "liver"), "unknown task 'liver'"),
    (("--task", "spine", "--n", "0"), "--n must be at least 1"),
    (("--task", "spine", "--seed", "-1"), "--seed must be >= 0"),
    (("--task", "spine", "--modality", "mr"), "task spine has no modality choice"),
    (("--task", "whole-heart", "--modality", "pet"), "--modality must be one of ct, mr or both"),
])
def test_cli_bad_input(cli, tmp_path, args, message):
    out = tmp_path / "out"
    result = cli("phantom", "--out", out, *args)
    assert result.code == 2
    assert message in result.err
    assert len(result.err.strip().splitlines()) == 1 and "Traceback" not in result.err
    assert not out.exists() or not any(out.iterdir())


def test_cli_out_is_a_file_and_existing_cases(cli, tmp_path):
    blocker = tmp_path / "taken"
    blocker.write_text("not a folder")
    result = cli("phantom", "--task", "spine", "--out", blocker)
    assert result.code == 2 and "is a file" in result.err and len(result.err.strip().splitlines()) == 1
    out = tmp_path / "data"
    assert cli("phantom", "--task", "brain-tumor", "--out", out, "--seed", "1").code == 0
    seg = out / "BraTS20_Training_001" / "BraTS20_Training_001_seg.nii.gz"
    before = seg.read_bytes()
    again = cli("phantom", "--task", "brain-tumor", "--out", out, "--n", "2", "--seed", "9")
    assert again.code == 2 and "already exists" in again.err
    assert seg.read_bytes() == before and not (out / "BraTS20_Training_002").exists()  # nothing written
    assert cli("phantom", "--task", "brain-tumor", "--out", out, "--seed", "9", "--overwrite").code == 0
    assert seg.read_bytes() != before


def test_cli_as_a_process(cli_process, tmp_path):
    result = cli_process("phantom", "--task", "petmr-brain", "--out", tmp_path)
    assert result.code == 0, result.err
    assert "petmr-brain-0000: 7 files" in result.out
    assert (tmp_path / "sub-001" / "aseg.nii.gz").is_file()


def test_brain_phantom_labels_cortex_and_white_matter_as_aseg_mgz(cases):
    """Cortex 3/42 and cerebral white matter 2/41 are labels (the aseg.mgz table), on their own sides; the
    aseg.stats-only values 78/79/81/82 are never painted."""
    case = cases["petmr-brain"]
    lab = arr(case.label)
    counts = dict(zip(*np.unique(lab, return_counts=True)))
    assert all(counts.get(v, 0) > 5000 for v in (2, 3, 41, 42)), {v: counts.get(v, 0) for v in (2, 3, 41, 42)}
    assert not {78, 79, 81, 82} & set(counts)

    def x_centre(value):
        idx = np.argwhere(lab == value).mean(0)[::-1]
        return case.label.TransformContinuousIndexToPhysicalPoint(idx.tolist())[0]

    assert x_centre(3) > x_centre(42) + 20 and x_centre(2) > x_centre(41) + 20  # left = +x in LPS
