"""Flip TTA by default: on for the brain-tumour model on CUDA (DMFNet tests with it), opt-in on the CPU (issue 16);
on everywhere for a bundle trained with left-right mirroring only, whose TTA flips only that axis."""

import argparse

import torch
from multimodalseg.cli import segment_cmd
from multimodalseg.inference.predictor import Predictor, default_tta


def test_tta_defaults_to_on_for_the_tumour_model_on_a_gpu_only():
    assert default_tta("brain-tumor", torch.device("cuda")) is True
    assert default_tta("brain-tumor", torch.device("cpu")) is False
    assert default_tta("spine", torch.device("cuda")) is False  # other tasks: opt-in
    lateral = {"training": {"augmentation": {"flip_axes": "lateral"}}}
    assert default_tta("petmr-brain", torch.device("cpu"), lateral) is True  # one mirrored pass
    assert default_tta("petmr-brain", torch.device("cpu"), {"training": {"augmentation": {"flip_axes": "all"}}}) \
        is False
    assert Predictor.from_model("brain-tumor", device="cpu").settings.tta is False  # CPU: opt-in
    assert Predictor.from_model("brain-tumor", device="cpu", tta=True).settings.tta is True


def test_segment_cli_tta_is_tri_state():
    parser = argparse.ArgumentParser()
    segment_cmd.register(parser.add_subparsers(dest="command"))
    base = ["segment", "--task", "brain-tumor"]
    assert parser.parse_known_args(base)[0].tta is None  # the predictor decides (GPU: on)
    assert parser.parse_known_args([*base, "--tta"])[0].tta is True
    assert parser.parse_known_args([*base, "--no-tta"])[0].tta is False


def test_tta_flips_only_the_axes_training_mirrored():
    """A lateral-only bundle (the PET/MR demo) gets 2 TTA passes, mirrored along the left-right array axis of the
    grid; an all-axes bundle 8. Measured on the real T1s: all 8 flips took PET/MR 0.5.0 from 0.333 / 0.284
    (fsaverage / Colin27) to 0.224 / 0.102, upside-down brains it never saw; the one mirror to 0.357 / 0.290."""
    from multimodalseg.inference.engine import WindowSettings, tta_mirror_axes

    lateral = {"training": {"augmentation": {"flip_axes": "lateral"}}}
    lps = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
    lia = (1.0, 0.0, 0.0, 0.0, 0.0, -1.0, 0.0, -1.0, 0.0)
    assert tta_mirror_axes(lateral, lps) == (2,) and tta_mirror_axes(lateral, lia) == (2,)  # x: left-right
    pir = (0.0, 0.0, -1.0, -1.0, 0.0, 0.0, 0.0, -1.0, 0.0)
    assert tta_mirror_axes(lateral, pir) == (0,)  # the slice axis of a sagittal stack
    assert tta_mirror_axes({}, lps) is None and tta_mirror_axes({"training": {}}, lps) is None
    assert WindowSettings((8, 8, 8), tta=True, mirror_axes=(2,)).flips() == [(), (4,)]
    assert len(WindowSettings((8, 8, 8), tta=True).flips()) == 8
    assert WindowSettings((1, 8, 8), tta=True, mirror_axes=(0,)).flips() == [()]  # a 2-D window: no slice flips
    predictor = Predictor.from_model("petmr-brain", device="cpu")
    assert predictor.settings.tta is True  # the shipped PET/MR demo: lateral mirroring only
