"""Layout readers on phantom-written folders: BraTS 2020 and 2023 names, MSD 4D, MM-WHS (421), FreeSurfer
subjects (NIfTI and mri/*.mgz), spine with unlabelled cases, nnU-Net naming."""

from __future__ import annotations

import json
import shutil

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
from multimodalseg.errors import UserError
from multimodalseg.tasks import get_task

from training.core.config import TrainingConfig
from training.core.data import split_cases
from training.core.transforms import PrepareCased
from training.datasets import check_dataset, find_cases

BT = get_task("brain-tumor")


def prepared(task, case):
    """The arrays training sees for a case (image, label indices), through the shared preprocessing."""
    out = PrepareCased(task.id, None, None)(case.to_record())
    return out["image"], out["label"][0]


def arrays(case):
    return {role: sitk.GetArrayFromImage(image) for role, image in case.read_inputs().items()}


def relabel(path, mapping, out=None):
    image = sitk.ReadImage(str(path))
    arr = sitk.GetArrayFromImage(image)
    new = arr.copy()
    for old, value in mapping.items():
        new[arr == old] = value
    result = sitk.GetImageFromArray(new)
    result.CopyInformation(image)
    sitk.WriteImage(result, str(out or path))


def test_brats_2020_folders(dataset):
    root = dataset("brain-tumor", 2)
    layout, cases = find_cases(BT, root)
    assert layout == "brats"
    assert [c.id for c in cases] == ["BraTS20_Training_001", "BraTS20_Training_002"]
    for case in cases:
        assert set(case.images) == {"flair", "t1", "t1ce", "t2"}
        assert case.label.name == f"{case.id}_seg.nii.gz"
        assert case.images["t1ce"].path.name == f"{case.id}_t1ce.nii.gz"
        assert case.convention is None and case.co_registered
    assert check_dataset(BT, cases, layout).ok


def test_brats_2023_names_read_with_their_convention(dataset, tmp_path):
    root = dataset("brain-tumor", 1)
    src = root / "BraTS20_Training_001"
    dst = tmp_path / "brats2023" / "BraTS-GLI-00000-000"
    dst.mkdir(parents=True)
    for old, new in (("flair", "t2f"), ("t1", "t1n"), ("t1ce", "t1c"), ("t2", "t2w")):
        shutil.copy(src / f"BraTS20_Training_001_{old}.nii.gz", dst / f"BraTS-GLI-00000-000-{new}.nii.gz")
    relabel(src / "BraTS20_Training_001_seg.nii.gz", {4: 3}, dst / "BraTS-GLI-00000-000-seg.nii.gz")

    (case20,) = find_cases(BT, root)[1]
    layout, (case23,) = find_cases(BT, dst.parent)
    assert layout == "brats" and case23.convention == "brats2023"
    assert case23.images["t1ce"].path.name.endswith("-t1c.nii.gz")
    assert case23.images["flair"].path.name.endswith("-t2f.nii.gz")
    assert check_dataset(BT, [case23]).ok
    image20, label20 = prepared(BT, case20)
    image23, label23 = prepared(BT, case23)
    assert np.array_equal(image20, image23)
    assert np.array_equal(label20, label23)
    assert set(np.unique(label23)) == {0, 1, 2, 3}  # ET (value 3 in 2023) is training index 3


def test_msd_task01_4d_channels_and_label_order(dataset, tmp_path):
    root = dataset("brain-tumor", 1)
    (brats,) = find_cases(BT, root)[1]
    images = brats.read_inputs()
    msd = tmp_path / "Task01_BrainTumour"
    (msd / "imagesTr").mkdir(parents=True)
    (msd / "labelsTr").mkdir()
    # A channel order other than the task's: dataset.json's names decide the roles.
    order = ["t1ce", "flair", "t2", "t1"]
    sitk.WriteImage(sitk.JoinSeries([images[r] for r in order]), str(msd / "imagesTr" / "BRATS_001.nii.gz"))
    (msd / "imagesTr" / "._BRATS_001.nii.gz").write_bytes(b"\x00\x05\x16\x07 macOS resource fork")
    relabel(brats.label, {1: 2, 2: 1, 4: 3}, msd / "labelsTr" / "BRATS_001.nii.gz")  # MSD: 1 ED, 2 NCR, 3 ET
    (msd / "dataset.json").write_text(json.dumps({
        "name": "BRATS", "modality": {"0": "t1gd", "1": "FLAIR", "2": "T2w", "3": "T1w"},
        "labels": {"0": "background", "1": "edema", "2": "non-enhancing tumor", "3": "enhancing tumour"}}))

    layout, cases = find_cases(BT, msd)
    assert layout == "msd" and [c.id for c in cases] == ["BRATS_001"]
    (case,) = cases
    assert case.convention == "msd"
    assert {r: i.channel for r, i in case.images.items()} == {"t1ce": 0, "flair": 1, "t2": 2, "t1": 3}
    assert check_dataset(BT, cases, layout).ok
    original = arrays(brats)
    for role, arr in arrays(case).items():
        assert np.array_equal(arr, original[role]), role
    assert np.array_equal(prepared(BT, case)[1], prepared(BT, brats)[1])


def test_mmwhs_ct_and_mr_with_label_421_and_a_test_image(dataset):
    task = get_task("whole-heart")
    root = dataset("whole-heart", 2, modality="ct")
    dataset("whole-heart", 1, root=root, modality="mr", first_seed=5)
    mr_label = root / "mr_train_1001_label.nii.gz"
    relabel(mr_label, {420: 421})
    assert 421 in np.unique(sitk.GetArrayFromImage(sitk.ReadImage(str(mr_label))))
    shutil.copy(root / "ct_train_1002_image.nii.gz", root / "ct_test_2001_image.nii.gz")

    layout, cases = find_cases(task, root)
    assert layout == "mmwhs"
    by_id = {c.id: c for c in cases}
    assert set(by_id) == {"ct_train_1001", "ct_train_1002", "mr_train_1001", "ct_test_2001"}
    assert by_id["mr_train_1001"].modality == "mr" and by_id["ct_train_1001"].modality == "ct"
    assert not by_id["ct_test_2001"].labelled
    assert check_dataset(task, cases, layout).ok  # 421 is an alias of LA, not an unknown value
    label = prepared(task, by_id["mr_train_1001"])[1]
    la = task.label("LA").index
    raw = sitk.GetArrayFromImage(sitk.ReadImage(str(mr_label)))
    assert np.array_equal(label == la, raw == 421)


def write_mgh(image: sitk.Image, path, dtype) -> None:
    """Write a SimpleITK image as FreeSurfer MGZ with nibabel (voxel-to-RAS affine from ITK's LPS geometry)."""
    lps = np.eye(4)
    lps[:3, :3] = np.asarray(image.GetDirection()).reshape(3, 3) @ np.diag(image.GetSpacing())
    lps[:3, 3] = image.GetOrigin()
    data = sitk.GetArrayFromImage(image).transpose(2, 1, 0).astype(dtype)
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.MGHImage(data, np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps).to_filename(str(path))


def test_freesurfer_subjects_nifti_and_mgz(dataset):
    task = get_task("petmr-brain")
    root = dataset("petmr-brain", 1)
    # sub-002: the same phantom as a FreeSurfer subject: mri/T1.mgz + mri/aseg.mgz, PET beside mri/.
    sub1, sub2 = root / "sub-001", root / "sub-002"
    write_mgh(sitk.ReadImage(str(sub1 / "t1.nii.gz")), sub2 / "mri" / "T1.mgz", np.float32)
    write_mgh(sitk.ReadImage(str(sub1 / "aseg.nii.gz")), sub2 / "mri" / "aseg.mgz", np.int32)
    shutil.copy(sub1 / "pet.nii.gz", sub2 / "pet.nii.gz")

    layout, cases = find_cases(task, root)
    assert layout == "freesurfer"
    assert [c.id for c in cases] == ["sub-001", "sub-002"]
    fs = cases[1]
    assert fs.images["t1"].path == sub2 / "mri" / "T1.mgz" and fs.label == sub2 / "mri" / "aseg.mgz"
    assert not fs.co_registered  # PET and MR come from different scans
    assert check_dataset(task, cases, layout).ok
    image1, label1 = prepared(task, cases[0])
    image2, label2 = prepared(task, fs)
    np.testing.assert_allclose(image2, image1, atol=1e-4)
    assert np.array_equal(label1, label2)
    assert len(np.unique(label2)) > 10


def test_spine_cases_without_label_are_unlabelled(dataset):
    task = get_task("spine")
    root = dataset("spine", 3)
    (root / "case_003" / "label.nii.gz").unlink()
    layout, cases = find_cases(task, root)
    assert layout == "spine"
    assert [c.labelled for c in cases] == [True, True, False]
    assert check_dataset(task, cases, layout).ok
    split = split_cases(cases, TrainingConfig(task="spine"))
    assert [c.id for c in split.unlabelled] == ["case_003"]
    assert sorted(c.id for c in split.train + split.val) == ["case_001", "case_002"]
    assert len(split.val) == 1


def test_nnunet_channel_files(dataset, tmp_path):
    root = dataset("brain-tumor", 1)
    (brats,) = find_cases(BT, root)[1]
    nn = tmp_path / "Dataset001_BraTS"
    (nn / "imagesTr").mkdir(parents=True)
    (nn / "labelsTr").mkdir()
    for channel, role in enumerate(BT.roles):
        shutil.copy(brats.images[role].path, nn / "imagesTr" / f"BRATS_001_{channel:04d}.nii.gz")
    shutil.copy(brats.label, nn / "labelsTr" / "BRATS_001.nii.gz")
    (nn / "dataset.json").write_text(json.dumps({"channel_names": {"0": "FLAIR", "1": "T1", "2": "T1ce", "3": "T2"},
                                                 "labels": {"background": 0}, "file_ending": ".nii.gz"}))
    layout, (case,) = find_cases(BT, nn)
    assert layout == "nnunet" and case.id == "BRATS_001"
    assert {r: i.path.name for r, i in case.images.items()} == {
        role: f"BRATS_001_{c:04d}.nii.gz" for c, role in enumerate(BT.roles)}
    assert np.array_equal(prepared(BT, case)[1], prepared(BT, brats)[1])


def test_find_cases_errors(tmp_path):
    with pytest.raises(UserError, match="dataset folder not found"):
        find_cases(BT, tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no cases found"):
        find_cases(BT, tmp_path / "empty")
    with pytest.raises(UserError, match="layout 'spine' holds no brain-tumor data"):
        find_cases(BT, tmp_path / "empty", "spine")
    with pytest.raises(UserError, match="unknown dataset layout 'kits'"):
        find_cases(BT, tmp_path / "empty", "kits")
