"""nnU-Net's default augmentation on the MCF recipe's 2-D slices (``training.spine.slice_augment``): it changes a
sampled batch at probability 1 and nothing at 0, is deterministic per seed and across a restored generator, keeps
labels in the label set, and the spine-mcf.yaml demo trains with it."""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest
import yaml
from monai.transforms import RandAffined, RandFlipd, RandSimulateLowResolutiond, RandZoomd
from multimodalseg.errors import UserError
from multimodalseg.phantoms import make_case, write_case

from training.core.cli import main
from training.core.config import AugmentationConfig
from training.spine.mcf import MCFConfig, SliceCase, SliceSampler
from training.spine.slice_augment import slice_augmentation

PROBS = [f.name for f in fields(AugmentationConfig) if f.name.endswith("_prob")]
# per_channel_prob is not a step but how blur/low resolution treat channels; 0 (all together) is nnU-Net's 2-D default
NNUNET_2D = {k: getattr(AugmentationConfig(), k) for k in PROBS
             if k not in ("elastic_prob", "intensity_prob", "per_channel_prob", "thick_slice_prob")}  # not nnU-Net


def _cases() -> list[SliceCase]:
    rng = np.random.default_rng(0)
    image = rng.normal(size=(2, 6, 40, 40)).astype(np.float32)
    label = np.zeros((6, 40, 40), np.int64)
    label[:, 10:30, 12:20], label[:, 10:30, 22:30] = 1, 2  # two classes, so nearest resampling can be checked
    return [SliceCase(image, label, name="a"), SliceCase(image.copy(), None, name="b")]


def _batch(aug: AugmentationConfig | None, seed: int = 3, generator: np.random.Generator | None = None):
    config = MCFConfig(patch_size=(32, 32), augmentation=aug)
    sampler = SliceSampler(_cases(), config, generator or np.random.default_rng(seed))
    images, labels = sampler.labelled_batch(4)
    return images.numpy(), labels.numpy(), sampler.unlabelled_batch(2).numpy()


def _all(prob: float, **extra) -> AugmentationConfig:
    return AugmentationConfig(**{**{k: prob for k in NNUNET_2D}, **extra})


def test_probability_one_changes_the_batch_and_zero_or_disabled_leaves_it_as_without():
    plain = _batch(None)
    for off in (_all(0.0), AugmentationConfig(enabled=False)):
        assert slice_augmentation(off) == []
        assert all(np.array_equal(a, b) for a, b in zip(plain, _batch(off)))  # same draws: rng untouched
    images, labels, unlabelled = _batch(_all(1.0))
    assert images.shape == plain[0].shape and labels.shape == plain[1].shape and unlabelled.shape == plain[2].shape
    assert not np.allclose(images, plain[0]) and not np.allclose(unlabelled, plain[2])
    assert images.dtype == np.float32 and np.isfinite(images).all()


def test_each_step_has_its_config_probability_and_2d_ranges():
    aug = AugmentationConfig()
    steps = slice_augmentation(aug)
    by_type = {type(s).__name__: s for s in steps}
    assert by_type["RandAffined"].prob == aug.rotate_prob and by_type["RandZoomd"].prob == aug.scale_prob
    assert by_type["RandGaussianNoised"].prob == aug.noise_prob and by_type["RandFlipd"].prob == aug.flip_prob
    assert [type(s) for s in steps].count(RandFlipd) == 2  # both slice axes
    rotate = next(s for s in steps if isinstance(s, RandAffined))
    assert len(rotate.rand_affine.rand_affine_grid.rotate_range) == 1  # one in-plane angle
    lowres = next(s for s in steps if isinstance(s, RandSimulateLowResolutiond))
    assert lowres.upsample_mode == "bilinear" and lowres.prob == aug.lowres_prob
    assert isinstance(slice_augmentation(AugmentationConfig(scale_per_axis=False))[1], RandZoomd)
    with pytest.raises(UserError, match="elastic_prob"):
        slice_augmentation(AugmentationConfig(elastic_prob=0.1))
    with pytest.raises(UserError, match="noise_prob"):
        slice_augmentation(AugmentationConfig(noise_prob=1.5))


def test_deterministic_per_seed_and_after_a_restored_generator():
    aug = AugmentationConfig()  # nnU-Net's defaults
    a, b, c = _batch(aug, 5), _batch(aug, 5), _batch(aug, 6)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[0], c[0])
    # a checkpoint restores the loop's generator: the next batch must be the same augmented batch
    rng = np.random.default_rng(9)
    sampler = SliceSampler(_cases(), MCFConfig(patch_size=(32, 32), augmentation=aug), rng)
    sampler.labelled_batch(3)
    state = rng.bit_generator.state
    expected = sampler.labelled_batch(3)
    restored = np.random.default_rng(0)
    restored.bit_generator.state = state
    again = SliceSampler(_cases(), MCFConfig(patch_size=(32, 32), augmentation=aug), restored).labelled_batch(3)
    assert all(np.array_equal(x.numpy(), y.numpy()) for x, y in zip(expected, again))


def test_labels_stay_integer_in_the_label_set_and_follow_the_image():
    aug = _all(0.0, rotate_prob=1.0, scale_prob=1.0, flip_prob=1.0)
    images, labels, _ = _batch(aug, 11)
    plain = _batch(None, 11)[1]
    assert labels.dtype == np.int64 and set(np.unique(labels)) <= {0, 1, 2}
    assert not np.array_equal(labels, plain)  # the spatial steps moved the labels too
    assert (labels == 1).any() and (labels == 2).any()


@pytest.mark.slow
def test_spine_mcf_demo_config_trains_with_its_augmentation(tmp_path, capsys):
    block = yaml.safe_load(Path("training/configs/spine-mcf.yaml").read_text(encoding="utf-8"))["augmentation"]
    assert block == NNUNET_2D  # nnU-Net's defaults, spelled out
    paper = yaml.safe_load(Path("training/configs/spine-mcf-paper.yaml").read_text(encoding="utf-8"))["augmentation"]
    assert paper == {"enabled": False}  # MCF's reference: none
    data = tmp_path / "data"
    for i in range(2):
        write_case(make_case("spine", 700 + i, shape=(24, 40, 40)), data, i + 1)
    args = ["--config", "training/configs/spine-mcf.yaml", "--data", str(data)]
    sets = [a for s in ("train.threads=1", "recipe.config.mcf.iterations=2", "recipe.config.mcf.patch_size=[32, 32]",
                        "recipe.config.input=channels", "recipe.config.single_modality=false") for a in ("--set", s)]
    assert main(["fit", *args, "--out", str(tmp_path / "dry"), "--dry-run", *sets]) == 0
    assert "RandAffined p 0.2" in capsys.readouterr().out
    bad = ["--set", "augmentation.elastic_prob=0.1"]  # a 3-D step the slices cannot take: one line, exit 2
    assert main(["fit", *args, "--out", str(tmp_path / "dry"), "--dry-run", *sets, *bad]) == 2
    assert "augmentation.elastic_prob" in capsys.readouterr().err
    run = tmp_path / "run"
    assert main(["fit", *args, "--out", str(run), *sets]) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["stages"]["mcf"]["seconds"] >= 0
    assert len((run / "mcf" / "metrics.csv").read_text().splitlines()) == 1 + 2
