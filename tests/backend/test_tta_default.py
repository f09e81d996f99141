"""Flip TTA by default: on for the brain-tumour model on CUDA (DMFNet tests with it), opt-in on the CPU (issue 16)."""

import argparse

import torch
from multimodalseg.cli import segment_cmd
from multimodalseg.inference.predictor import Predictor, default_tta


def test_tta_defaults_to_on_for_the_tumour_model_on_a_gpu_only():
    assert default_tta("brain-tumor", torch.device("cuda")) is True
    assert default_tta("brain-tumor", torch.device("cpu")) is False
    assert default_tta("spine", torch.device("cuda")) is False  # other tasks: opt-in
    assert Predictor.from_model("brain-tumor", device="cpu").settings.tta is False  # CPU: opt-in
    assert Predictor.from_model("brain-tumor", device="cpu", tta=True).settings.tta is True


def test_segment_cli_tta_is_tri_state():
    parser = argparse.ArgumentParser()
    segment_cmd.register(parser.add_subparsers(dest="command"))
    base = ["segment", "--task", "brain-tumor"]
    assert parser.parse_known_args(base)[0].tta is None  # the predictor decides (GPU: on)
    assert parser.parse_known_args([*base, "--tta"])[0].tta is True
    assert parser.parse_known_args([*base, "--no-tta"])[0].tta is False
