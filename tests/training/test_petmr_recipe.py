"""PET/MR brain recipe and data: the demo and paper configs, Dice + omega CE, FreeSurfer values <-> training classes
(phantom subject and a hand-made aseg.mgz), and the PET resampled onto the T1 grid in physical space."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
import torch
import torch.nn.functional as F
from monai.transforms import RandAffined
from multimodalseg import preprocessing as prep
from multimodalseg.errors import UserError
from multimodalseg.tasks import get_task

from training.core.cli import CONFIG_DIR
from training.core.config import load_config
from training.core.losses import build_loss
from training.core.optim import build_optimizer
from training.core.supervised import make_network, network_spec
from training.core.transforms import PrepareCased, train_transforms
from training.datasets import check_dataset, find_cases

TASK = get_task("petmr-brain")


# ------------------------------------------------------------------------------------------------ configs, loss
def test_demo_config_is_the_dual_uxnet_at_demo_width():
    from multimodalseg.nets.dual_uxnet import DEMO_CONFIG

    config = load_config(CONFIG_DIR / "petmr-brain.yaml")
    spec = network_spec(config, TASK)
    assert spec == {"name": "dual_uxnet", "config": {"spatial_dims": 3, "in_channels": 2, "out_channels": 46,
                                                      **DEMO_CONFIG}}
    assert config.demo and config.loss.name == "dice_ce"
    assert config.loss.config["lambda_dice"] == config.loss.config["lambda_ce"] == 1.0
    assert config.augmentation.flip_prob == 0.5  # nnU-Net's mirroring; left-right flips swap Left-*/Right-*
    net = make_network(spec)
    assert 1.5e6 < sum(p.numel() for p in net.parameters()) < 1.7e6


def test_paper_config_loads_and_builds_the_paper_recipe():
    config = load_config(CONFIG_DIR / "petmr-brain-paper.yaml")
    assert (config.optimizer.name, config.optimizer.lr, config.train.epochs) == ("adamw", 1e-4, 250)
    assert config.augmentation.patch_size == [96, 96, 96] and config.augmentation.samples_per_case == 2
    assert config.augmentation.pos_fraction == 0.5 and config.train.batch_size == 1
    assert config.loss.config == {"lambda_dice": 1.0, "lambda_ce": 1.0}
    spec = network_spec(config, TASK)
    net = make_network(spec)
    # METHODS §A.3: 94.5 M parameters for the dual-branch spec at the paper width.
    assert sum(p.numel() for p in net.parameters()) / 1e6 == pytest.approx(94.5, abs=0.1)
    optimizer = build_optimizer(net.parameters(), config.optimizer)
    assert isinstance(optimizer, torch.optim.AdamW) and optimizer.defaults["lr"] == 1e-4
    steps = train_transforms(config, TASK).transforms
    scaling = [t for t in steps if isinstance(t, RandAffined)]
    assert len(scaling) == 1 and scaling[0].prob == 0.5


@pytest.mark.parametrize("omega", [1.0, 0.25, 3.0])
def test_dice_ce_is_dice_plus_omega_cross_entropy(omega):
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 6, 7, 4)
    target = torch.randint(0, 5, (2, 1, 6, 7, 4))
    loss = build_loss("dice_ce", "labels", lambda_dice=1.0, lambda_ce=omega)
    # By hand: mean over (batch, class) of the soft Dice loss, plus omega times the mean voxel cross-entropy.
    prob = logits.softmax(1)
    onehot = F.one_hot(target[:, 0], 5).movedim(-1, 1).float()
    dims = (2, 3, 4)
    dice = 1 - (2 * (prob * onehot).sum(dims) + 1e-5) / (prob.sum(dims) + onehot.sum(dims) + 1e-5)
    expected = dice.mean() + omega * F.cross_entropy(logits, target[:, 0])
    assert float(loss(logits, target)) == pytest.approx(float(expected), rel=1e-5)


# ------------------------------------------------------------------------------------- FreeSurfer values <-> 1..45
def _prepared(case):
    out = PrepareCased(TASK.id, None, None)(case.to_record())
    return out["image"], out["label"][0]


def test_phantom_subject_labels_map_to_1_45_and_back(dataset):
    root = dataset("petmr-brain", 1, shape=(48, 60, 48))
    layout, cases = find_cases(TASK, root)
    assert layout == "freesurfer" and check_dataset(TASK, cases, layout).ok
    _, indices = _prepared(cases[0])
    aseg = sitk.GetArrayFromImage(sitk.ReadImage(str(root / "sub-001" / "aseg.nii.gz")))
    assert 0 < indices.max() <= 45  # contiguous training classes
    back = prep.indices_to_values(indices, TASK)
    assert np.array_equal(back, aseg)  # and back to the FreeSurfer values, voxel for voxel
    for value in np.unique(aseg)[1:]:
        index = TASK.value_to_index()[int(value)]
        assert 1 <= index <= 45 and np.array_equal(indices == index, aseg == value)


def _write_mgz(array_zyx: np.ndarray, path: Path, spacing, origin_lps, dtype) -> None:
    """An MGZ with an axis-aligned LPS geometry, written by nibabel (RAS affine)."""
    lps = np.eye(4)
    lps[:3, :3] = np.diag(spacing)
    lps[:3, 3] = origin_lps
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.MGHImage(array_zyx.transpose(2, 1, 0).astype(dtype), np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps).to_filename(
        str(path))


def test_handmade_freesurfer_subject_mgz(tmp_path):
    # aseg.mgz value order gives the training classes; cerebral WM and cortex (2, 3, 41, 42) are classes too.
    expected_index = {17: 14, 24: 16, 53: 31, 85: 40, 251: 41, 255: 45, 2: 1, 3: 2, 41: 21, 42: 22}
    aseg = np.zeros((12, 14, 16), np.int32)
    blocks = {17: (slice(1, 3), slice(1, 4), slice(1, 5)), 53: (slice(1, 3), slice(1, 4), slice(10, 14)),
              24: (slice(5, 7), slice(2, 5), slice(6, 9)), 85: (slice(8, 9), slice(6, 7), slice(7, 9)),
              251: (slice(9, 11), slice(9, 12), slice(2, 4)), 255: (slice(9, 11), slice(9, 12), slice(11, 15)),
              2: (slice(4, 5), slice(10, 13), slice(0, 16)), 41: (slice(5, 6), slice(10, 13), slice(0, 16)),
              3: (slice(11, 12), slice(0, 3), slice(0, 16)), 42: (slice(11, 12), slice(4, 6), slice(0, 16))}
    for value, box in blocks.items():
        aseg[box] = value
    spacing, origin = (1.0, 1.2, 1.5), (-8.0, 5.0, 12.0)
    subject = tmp_path / "data" / "sub-001"
    t1 = np.random.default_rng(0).uniform(50, 100, aseg.shape).astype(np.float32)
    _write_mgz(aseg, subject / "mri" / "aseg.mgz", spacing, origin, np.int32)
    _write_mgz(t1, subject / "mri" / "T1.mgz", spacing, origin, np.float32)
    pet = sitk.GetImageFromArray((aseg > 0).astype(np.float32) * 5000.0)
    pet.SetSpacing(spacing)
    pet.SetOrigin(origin)
    sitk.WriteImage(pet, str(subject / "pet.nii.gz"))

    layout, cases = find_cases(TASK, tmp_path / "data")
    assert layout == "freesurfer" and cases[0].label == subject / "mri" / "aseg.mgz"
    assert check_dataset(TASK, cases, layout).ok
    image, indices = _prepared(cases[0])
    assert np.corrcoef(image[1].ravel(), t1.ravel())[0, 1] > 0.9999  # the T1 voxels, in place (z-scored)
    for value, index in expected_index.items():
        assert TASK.value_to_index()[value] == index
        assert np.array_equal(indices == index, aseg == value), value  # same voxels: the MGZ geometry is kept
    back = prep.indices_to_values(indices, TASK)
    assert np.array_equal(back, aseg)

    aseg[0, 0, 0] = 1000  # not a FreeSurfer aseg value of the table
    _write_mgz(aseg, subject / "mri" / "aseg.mgz", spacing, origin, np.int32)
    with pytest.raises(UserError, match=r"aseg\.mgz: label values 1000 are not in the petmr-brain label table"):
        _prepared(cases[0])


# ----------------------------------------------------------------------------------- PET onto the T1 grid
PET_SPACING = 2.5


def _hot_box_pet(lo_mm, hi_mm, origin=(-10.0, -6.25, -8.75), size=(20, 18, 22)) -> sitk.Image:
    """A PET on its own grid: 1000 Bq/mL at the voxels whose centres lie in the physical box [lo, hi), else 0."""
    idx = np.indices(size[::-1]).reshape(3, -1)[::-1].T  # (x, y, z) indices, array order
    centres = np.asarray(origin) + idx * PET_SPACING
    inside = np.all((centres >= lo_mm) & (centres < hi_mm), axis=1)
    pet = sitk.GetImageFromArray(inside.reshape(size[::-1]).astype(np.float32) * 1000.0)
    pet.SetSpacing((PET_SPACING,) * 3)
    pet.SetOrigin(origin)
    return pet


def _centroid_mm(mask: np.ndarray, image: sitk.Image) -> np.ndarray:
    zyx = np.argwhere(mask).mean(0)
    return np.asarray(image.TransformContinuousIndexToPhysicalPoint([float(v) for v in zyx[::-1]]))


def _pet_on_t1(tmp_path: Path, name: str, pet: sitk.Image, t1: sitk.Image) -> np.ndarray:
    subject = tmp_path / name / "sub-001"
    subject.mkdir(parents=True)
    sitk.WriteImage(t1, str(subject / "t1.nii.gz"))
    aseg = sitk.Image(t1.GetSize(), sitk.sitkUInt8)
    aseg.CopyInformation(t1)
    sitk.WriteImage(aseg, str(subject / "aseg.nii.gz"))
    sitk.WriteImage(pet, str(subject / "pet.nii.gz"))
    layout, cases = find_cases(TASK, tmp_path / name)
    assert layout == "freesurfer"
    return _prepared(cases[0])[0][0]  # channel 0: the PET, normalised (hot = 1)


def test_pet_structure_lands_where_it_is_in_physical_space(tmp_path):
    """The PET, on its own coarser grid whose origin is off the T1's by a non-integer number of voxels, goes onto
    the T1 grid in physical space: a hot structure lands on the T1 voxels at its physical position, and moves by
    exactly the physical shift when the structure is shifted."""
    t1 = sitk.GetImageFromArray(np.random.default_rng(1).uniform(50, 100, (30, 32, 34)).astype(np.float32))
    t1.SetSpacing((1.5, 1.5, 1.5))
    t1.SetOrigin((-3.0, 2.0, 1.0))
    idx = np.indices((30, 32, 34)).reshape(3, -1)[::-1].T
    centres = (np.asarray(t1.GetOrigin()) + idx * 1.5)
    centroids = []
    for k, shift in enumerate((np.zeros(3), np.array([10.0, -7.5, 5.0]))):
        lo, hi = np.array([12.5, 17.5, 15.0]) + shift, np.array([27.5, 30.0, 30.0]) + shift
        pet = _hot_box_pet(lo, hi)
        on_t1 = _pet_on_t1(tmp_path, f"case{k}", pet, t1)
        # The hot PET voxels' physical centroid is where the hot region's centroid lands on the T1 grid.
        expected = _centroid_mm(sitk.GetArrayFromImage(pet) > 0, pet)
        centroids.append(_centroid_mm(on_t1 > 0.5, t1))
        np.testing.assert_allclose(centroids[-1], expected, atol=0.75)  # half a T1 voxel
        # T1 voxels one PET voxel inside the box are fully hot; those one PET voxel outside are cold.
        inside = np.all((centres >= lo + PET_SPACING) & (centres < hi - PET_SPACING), axis=1).reshape(on_t1.shape)
        near = np.all((centres >= lo - PET_SPACING) & (centres < hi + PET_SPACING), axis=1).reshape(on_t1.shape)
        assert inside.sum() > 50 and (on_t1[inside] > 0.99).all() and (on_t1[~near] == 0).all()
    shift_seen = centroids[1] - centroids[0]
    np.testing.assert_allclose(shift_seen, [10.0, -7.5, 5.0], atol=1.5)


def test_class_balanced_patches_reach_the_small_structures(dataset):
    """45 structures of very different sizes: voxel-uniform foreground sampling centres most patches on the
    cerebellum and brainstem; ``balance_classes`` (RandCropByLabelClassesd) spreads the centres over the classes."""
    root = dataset("petmr-brain", 1, shape=(48, 60, 48))
    _, cases = find_cases(TASK, root)
    centre_classes = {}
    for balanced in (False, True):
        config = load_config(CONFIG_DIR / "petmr-brain.yaml",
                             ["augmentation.patch_size=[9, 9, 9]", "augmentation.samples_per_case=60",
                              f"augmentation.balance_classes={str(balanced).lower()}", "augmentation.pos_fraction=1.0"])
        transform = train_transforms(config, TASK)
        transform.set_random_state(seed=0)
        patches = transform(cases[0].to_record())
        centre_classes[balanced] = {int(p["label"][0, 4, 4, 4]) for p in patches}
    assert 0 not in centre_classes[True]  # pos_fraction 1: every centre on a structure
    assert len(centre_classes[True]) >= 30 and len(centre_classes[True]) > len(centre_classes[False]) + 10
