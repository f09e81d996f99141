"""CycleGAN MR -> CT transfer (METHODS §C.2) on whole-heart phantoms: networks, training, synthetic CT cases."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from multimodalseg.nets.cyclegan import (
    DISCRIMINATOR_PAPER_CONFIG,
    GENERATOR_PAPER_CONFIG,
    ResnetGenerator,
    patch_discriminator,
)
from multimodalseg.phantoms import make_case
from multimodalseg.postprocessing.heart import crop_roi, label_centre
from multimodalseg.tasks import get_task
from scipy import ndimage as ndi

from training.datasets.mmwhs import find_cases
from training.whole_heart.cyclegan import (
    CycleGAN,
    CycleGANConfig,
    ImagePool,
    prepare_volumes,
    scale_ct,
    scale_mr,
    synthesize_ct,
    train_cyclegan,
    unscale_ct,
    write_synthetic_cases,
)
from training.whole_heart.synthetic import synthetic_count

ROI_SIZE, ROI_SPACING = 16, 7.0  # 112 mm around the heart: small enough for a few CPU iterations
TINY_GENERATOR = {"channels": 4, "num_downsampling": 2, "num_blocks": 1}
TINY_CRITIC = {"channels": 4, "num_layers_d": 2}
BLOOD = (420, 500, 550, 600, 820, 850)


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.fixture(scope="module")
def unpaired():
    """Two MR and two CT phantoms of different anatomy (MM-WHS is unpaired), as heart ROIs in [-1, 1]."""
    cases = {m: [make_case("whole-heart", seed, modality=m) for seed in seeds]
             for m, seeds in (("mr", (1, 2)), ("ct", (3, 4)))}
    volumes = {m: prepare_volumes([crop_roi(c.images["image"], label_centre(c.label), size=ROI_SIZE,
                                            spacing=ROI_SPACING) for c in cs], m, spacing=None)
               for m, cs in cases.items()}
    return cases, volumes


def test_paper_sizes_and_patch_map():
    assert n_params(ResnetGenerator(3, 1, 1, **GENERATOR_PAPER_CONFIG)) == pytest.approx(5.89e6, rel=0.01)
    assert n_params(patch_discriminator(3, 1, **DISCRIMINATOR_PAPER_CONFIG)) == pytest.approx(11.05e6, rel=0.01)
    with torch.device("meta"):  # shapes only, no arithmetic: a 64³ input gives a 6³ patch map (METHODS)
        critic = patch_discriminator(3, 1, **DISCRIMINATOR_PAPER_CONFIG)
        assert critic(torch.zeros(1, 1, 64, 64, 64))[-1].shape == (1, 1, 6, 6, 6)
        generator = ResnetGenerator(3, 1, 1, **GENERATOR_PAPER_CONFIG)
        assert generator(torch.zeros(1, 1, 64, 64, 64)).shape == (1, 1, 64, 64, 64)
    with pytest.raises(ValueError, match="divisible"):
        ResnetGenerator(3, 1, 1, **TINY_GENERATOR)(torch.zeros(1, 1, 18, 16, 16))
    with pytest.raises(ValueError, match="input_skip"):
        ResnetGenerator(3, 1, 2, input_skip=True)
    x = torch.rand(1, 1, 16, 16, 16) * 1.8 - 0.9
    assert torch.allclose(ResnetGenerator(3, 1, 1, **TINY_GENERATOR, input_skip=True)(x), x, atol=1e-5)


def test_intensity_scaling():
    hu = np.array([-3000.0, -1000.0, 0.0, 400.0, 1000.0, 2000.0], np.float32)
    scaled = scale_ct(hu)
    assert scaled.dtype == np.float32 and scaled.min() == -1 and scaled.max() == 1
    assert np.allclose(unscale_ct(scaled), np.clip(hu, -1000, 1000))
    mr = np.random.default_rng(0).gamma(2.0, 100.0, 10000).astype(np.float32)
    s = scale_mr(mr)
    assert s.dtype == np.float32 and s.min() == -1 and s.max() == 1
    assert np.all(np.diff(s[np.argsort(mr)]) >= 0)  # monotonic
    assert np.mean(s == -1) == pytest.approx(0.005, abs=1e-3) and np.mean(s == 1) == pytest.approx(0.005, abs=1e-3)
    with pytest.raises(ValueError, match="range"):
        scale_mr(np.ones(10))


def test_image_pool_returns_history_once_full():
    pool = ImagePool(size=2, seed=0)
    first = torch.zeros(2, 1, 2)
    assert torch.equal(pool.query(first), first)  # filling up: the new images come back
    later = torch.ones(8, 1, 2)
    out = pool.query(later)
    assert out.shape == later.shape and (out == 0).all(-1).any() and (out == 1).all(-1).any()
    assert torch.equal(ImagePool(size=0).query(later), later)


def test_cyclegan_losses_decrease_on_phantoms(unpaired):
    _, volumes = unpaired
    torch.manual_seed(0)
    model = CycleGAN(3, generator=TINY_GENERATOR, discriminator=TINY_CRITIC)
    config = CycleGANConfig(iterations=10, lr=2e-3, seed=0)
    model, history = train_cyclegan(volumes["mr"], volumes["ct"], model=model, config=config, patch_size=ROI_SIZE)
    assert len(history) == 10 and all(np.isfinite(list(h.values())).all() for h in history)
    for key in ("g_cycle", "g_identity", "g_total", "d_ct", "d_mr"):
        values = [h[key] for h in history]
        assert np.mean(values[-3:]) < np.mean(values[:3]), (key, values)


def correlation_ratio(values: np.ndarray, labels: np.ndarray) -> float:
    """η²: the share of the intensity variance explained by the label regions."""
    total = ((values - values.mean()) ** 2).sum()
    between = sum((labels == v).sum() * (values[labels == v].mean() - values.mean()) ** 2 for v in np.unique(labels))
    return float(between / total)


def test_synthetic_ct_keeps_the_label_geometry(unpaired):
    cases, volumes = unpaired
    torch.manual_seed(0)
    generator = {**TINY_GENERATOR, "input_skip": True}  # starts as the identity, so a few steps keep anatomy
    model = CycleGAN(3, generator=generator, discriminator=TINY_CRITIC)
    config = CycleGANConfig(iterations=8, lr=2e-3, seed=0)
    model, _ = train_cyclegan(volumes["mr"], volumes["ct"], model=model, config=config, patch_size=ROI_SIZE)
    case = cases["mr"][0]
    mr = case.images["image"]
    synthetic = synthesize_ct(model.g_ct, mr, spacing=ROI_SPACING, roi_size=ROI_SIZE)
    assert synthetic.GetPixelID() == sitk.sitkInt16
    assert synthetic.GetSize() == mr.GetSize() and synthetic.GetSpacing() == mr.GetSpacing()
    assert synthetic.GetOrigin() == mr.GetOrigin() and synthetic.GetDirection() == mr.GetDirection()
    syn = sitk.GetArrayFromImage(synthetic).astype(np.float64)
    mr_arr = sitk.GetArrayFromImage(mr).astype(np.float64)
    labels = sitk.GetArrayFromImage(case.label)
    # Training changed the mapping: the synthetic CT is not the MR rescaled to HU.
    assert np.abs(syn - unscale_ct(scale_mr(mr_arr))).mean() > 20
    # Around the heart, the MR's label regions explain most of the synthetic CT's intensity variance, and best
    # where the labels are: moving them by 2 voxels along any axis explains less.
    region = ndi.binary_dilation(labels > 0, iterations=3)

    def explained(volume: np.ndarray, shift=(0, 0, 0)) -> float:
        return correlation_ratio(volume[region], np.roll(labels, shift, axis=(0, 1, 2))[region])

    shifts = [tuple(d if a == axis else 0 for a in range(3)) for axis in range(3) for d in (-2, 2)]
    assert explained(syn) >= 0.6 * explained(mr_arr)
    assert explained(syn) > max(explained(syn, s) for s in shifts)
    # The blood pool is brighter than the myocardium, as in CT (and in the bright-blood MR it came from).
    assert syn[np.isin(labels, BLOOD)].mean() > syn[labels == 205].mean() + 50


def test_write_synthetic_cases_in_the_mmwhs_layout(tmp_path):
    torch.manual_seed(0)
    generator = ResnetGenerator(3, 1, 1, **TINY_GENERATOR, input_skip=True)
    mr_cases = []
    for seed in (11, 12, 13):
        case = make_case("whole-heart", seed, modality="mr", shape=(32, 32, 32))
        mr_cases.append((f"mr_train_10{seed}", case.images["image"], case.label))
    assert synthetic_count(4, 0.5, 3) == 2 and synthetic_count(10, 0.5, 3) == 3 and synthetic_count(4, 0.0, 3) == 0
    written = write_synthetic_cases(generator, mr_cases, tmp_path, n_real_ct=4, fraction=0.5, spacing=None,
                                    roi_size=32)
    assert len(written) == 2
    found = find_cases(get_task("whole-heart"), tmp_path)
    assert len(found) == 2 and all(c.modality == "ct" and c.label is not None for c in found)
    by_name = {f"ct_synth_{cid.replace('_', '')}": (image, label) for cid, image, label in mr_cases}
    for case in found:
        image, label = by_name[case.id]
        synthetic = sitk.ReadImage(str(written[[p.name for p in written].index(f"{case.id}_image.nii.gz")]))
        assert synthetic.GetSize() == image.GetSize()
        assert np.allclose(synthetic.GetOrigin(), image.GetOrigin(), atol=1e-4)
        assert np.array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(case.label))),
                              sitk.GetArrayFromImage(label))
    with pytest.raises(ValueError, match="end in a number"):
        write_synthetic_cases(generator, [("mr_case", *mr_cases[0][1:])], tmp_path / "bad", n_real_ct=2,
                              spacing=None, roi_size=32)
