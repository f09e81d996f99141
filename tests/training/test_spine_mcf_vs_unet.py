"""Issue 8's comparison, small: MCF with 20 % of the phantom cases labelled against the same UNet trained on the
labelled cases alone, same budget and seed (the full-size numbers are in the demo bundle's metadata)."""

from __future__ import annotations

import pytest
from multimodalseg.phantoms import make_case, write_case

from training.spine.data import choose_labelled, load_cases
from training.spine.mcf import MCFConfig
from training.spine.runs import SPACING, slice_cases, train_mcf_run, train_unet_alone


@pytest.mark.slow
def test_mcf_with_20_percent_labels_is_not_below_the_unet_alone(tmp_path):
    for i, seed in enumerate(range(500, 505)):  # 5 training cases: 1 labelled (20 %), 4 unlabelled
        write_case(make_case("spine", seed), tmp_path / "train", i + 1)
    write_case(make_case("spine", 510), tmp_path / "val", 1)
    cases = load_cases(tmp_path / "train", SPACING)
    val = load_cases(tmp_path / "val", SPACING)
    for case in val:  # every 4th axial slice: the 2D networks see slices one by one, scoring stays honest
        case.image, case.label = case.image[:, ::4], case.label[::4]
    labelled = choose_labelled(cases, 0.2, seed=0)
    assert len(labelled) == 1
    train = slice_cases(cases, labelled)
    assert sum(c.label is not None for c in train) == 1
    config = MCFConfig(iterations=100, patch_size=(64, 64), seed=1337)
    mcf = train_mcf_run(train, val, config)
    unet = train_unet_alone(train, val, config)
    assert mcf.dice["vertebra"] >= unet.dice["vertebra"], (mcf.dice, unet.dice)
    assert mcf.dice["vertebra"] > 0.5, mcf.dice  # it learned the vertebrae, not an empty map
