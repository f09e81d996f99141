"""Save for training: public layouts the training package reads back, manifest, never overwriting, bad input."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import numpy as np
import pytest
import SimpleITK as sitk
from multimodalseg.errors import UserError
from multimodalseg.tasks import get_task
from MultimodalSegLib.TrainingWriter import caseLayout, saveTrainingCase

NOW = datetime(2025, 1, 2, 3, 4, 5, tzinfo=timezone.utc)


def case_inputs(task, volume, shape=(10, 12, 14)):
    """Images for every role (the reference on a 1 mm grid, the others on 2 mm grids shifted by 1 mm) and a label
    map with every label of the task on the reference grid."""
    rng = np.random.default_rng(0)
    images = {}
    for spec in task.inputs:
        if spec.reference:
            images[spec.role] = volume(f"in/{spec.role}.nrrd", rng.normal(size=shape).astype(np.float32))
        else:
            half = tuple(s // 2 + 1 for s in shape)
            images[spec.role] = volume(f"in/{spec.role}.nrrd", rng.normal(size=half).astype(np.float32),
                                       spacing=(2.0, 2.0, 2.0), origin=(1.0, 0.0, 0.0))
    labels = np.zeros(shape, np.uint16)
    for k, label in enumerate(task.labels):
        labels.flat[k * 3:(k + 1) * 3] = label.value
    return images, volume("in/labels.nrrd", labels)


@pytest.mark.parametrize("task_id, layout", [
    ("brain-tumor", "brats"), ("petmr-brain", "freesurfer"), ("whole-heart", "mmwhs"), ("spine", "spine")])
def test_saved_case_reads_back_with_the_training_datasets(tmp_path, volume, task_id, layout):
    from training.datasets import find_cases

    task = get_task(task_id)
    images, labels = case_inputs(task, volume)
    modality = "mr" if task.modalities else None
    saved = saveTrainingCase(task, tmp_path / "train", images, labels, source={"scene": "s.mrb"},
                             model={"id": "demo", "version": "0.1"}, modality=modality, now=NOW)
    found_layout, cases = find_cases(task, tmp_path / "train")
    assert found_layout == layout and [c.id for c in cases] == [saved.caseId]
    case = cases[0]
    assert set(case.images) == set(task.roles) and case.label is not None
    reference = sitk.ReadImage(str(saved.files[task.reference_role]))
    for role in task.roles:  # every image on the reference grid
        image = sitk.ReadImage(str(saved.files[role]))
        assert image.GetSize() == reference.GetSize() and image.GetSpacing() == reference.GetSpacing()
    written = sitk.GetArrayFromImage(sitk.ReadImage(str(saved.files["label"])))
    np.testing.assert_array_equal(written, sitk.GetArrayFromImage(sitk.ReadImage(str(labels))))
    manifest = json.loads(saved.manifest.read_text())
    assert manifest["task"] == task_id and manifest["case"] == saved.caseId
    assert manifest["model"] == {"id": "demo", "version": "0.1"} and manifest["source"] == {"scene": "s.mrb"}
    assert manifest["created"] == "2025-01-02T03:04:05+00:00" and manifest["modality"] == modality
    assert set(manifest["files"]) == {*task.roles, "label"}


def test_moving_image_is_resampled_in_physical_space(tmp_path, volume):
    task = get_task("spine")
    ct = np.zeros((8, 8, 8), np.float32)
    mr = np.zeros((8, 8, 8), np.float32)
    mr[4, 4, 6] = 100.0  # x = 6 mm on the MR grid, whose origin is x = 2 mm: physical x = 8 mm ... off the CT grid
    mr[4, 4, 3] = 50.0  # physical x = 5 mm -> CT voxel x = 5
    images = {"ct": volume("ct.nrrd", ct), "mr": volume("mr.nrrd", mr, origin=(2.0, 0.0, 0.0))}
    labels = volume("labels.nrrd", np.ones((8, 8, 8), np.uint16))
    saved = saveTrainingCase(task, tmp_path / "t", images, labels)
    out = sitk.GetArrayFromImage(sitk.ReadImage(str(saved.files["mr"])))
    assert out[4, 4, 5] == pytest.approx(50.0) and out.max() == pytest.approx(50.0)


def test_never_overwrites_a_case(tmp_path, volume):
    task = get_task("brain-tumor")
    images, labels = case_inputs(task, volume)
    root = tmp_path / "train"
    existing = root / "BraTS20_Training_001"
    existing.mkdir(parents=True)
    (existing / "BraTS20_Training_001_flair.nii.gz").write_bytes(b"someone else's case")
    first = saveTrainingCase(task, root, images, labels)
    second = saveTrainingCase(task, root, images, labels)
    assert (first.caseId, second.caseId) == ("BraTS20_Training_002", "BraTS20_Training_003")
    assert (existing / "BraTS20_Training_001_flair.nii.gz").read_bytes() == b"someone else's case"
    assert sorted(p.name for p in (root / "BraTS20_Training_002").iterdir()) == sorted(
        ["BraTS20_Training_002_flair.nii.gz", "BraTS20_Training_002_t1.nii.gz", "BraTS20_Training_002_t1ce.nii.gz",
         "BraTS20_Training_002_t2.nii.gz", "BraTS20_Training_002_seg.nii.gz", "manifest.json"])


def test_flat_mmwhs_layout_skips_taken_numbers(tmp_path, volume):
    task = get_task("whole-heart")
    images, labels = case_inputs(task, volume)
    root = tmp_path / "mmwhs"
    root.mkdir()
    (root / "ct_train_1001_label.nii.gz").write_bytes(b"taken")
    saved = saveTrainingCase(task, root, images, labels, modality="CT")
    assert saved.caseId == "ct_train_1002"
    assert saved.files["image"].name == "ct_train_1002_image.nii.gz"
    assert saved.manifest.name == "ct_train_1002_manifest.json"
    with pytest.raises(UserError, match="whole-heart cases need a modality"):
        saveTrainingCase(task, root, images, labels)


def test_bad_labels_leave_nothing_behind(tmp_path, volume):
    task = get_task("brain-tumor")
    images, _ = case_inputs(task, volume)
    bad = np.zeros((10, 12, 14), np.uint16)
    bad[0, 0, 0] = 3  # ET is 4 in the task's own convention
    labels = volume("bad.nrrd", bad)
    with pytest.raises(UserError, match=r"bad.nrrd: label values 3 are not in the brain-tumor label table"):
        saveTrainingCase(task, tmp_path / "train", images, labels)
    assert not (tmp_path / "train").exists() or not any((tmp_path / "train").iterdir())


def test_missing_input_and_label_off_the_reference(tmp_path, volume):
    task = get_task("spine")
    ct = volume("ct.nrrd", np.zeros((6, 6, 6), np.float32))
    far = volume("far.nrrd", np.ones((6, 6, 6), np.uint16), origin=(500.0, 0.0, 0.0))
    with pytest.raises(UserError, match="select the T2 MR volume"):
        saveTrainingCase(task, tmp_path / "t", {"ct": ct}, far)
    with pytest.raises(UserError, match="label map does not overlap the reference input"):
        saveTrainingCase(task, tmp_path / "t", {"ct": ct, "mr": ct}, far)


def test_layout_names():
    tumor = caseLayout(get_task("brain-tumor"), 7)
    assert tumor.images["t1ce"] == "BraTS20_Training_007/BraTS20_Training_007_t1ce.nii.gz"
    assert caseLayout(get_task("petmr-brain"), 12).label == "sub-012/aseg.nii.gz"
    assert caseLayout(get_task("spine"), 3).images == {"ct": "case_003/ct.nii.gz", "mr": "case_003/mr.nii.gz"}
    heart = caseLayout(get_task("whole-heart"), 1, "MR")
    assert (heart.caseId, heart.label, heart.manifest, heart.folder) == (
        "mr_train_1001", "mr_train_1001_label.nii.gz", "mr_train_1001_manifest.json", None)
