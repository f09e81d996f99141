"""The spine paper's pipeline in the predictor (issue 16 item 3): an MCF bundle whose ``preprocessing.input`` is
``fused`` segments the fused CT-MR image (1 channel, from the fusion bundle it names), sliced along its
``inference.plane``; ``channels`` (the ablation) and the old bundles (no ``input``) take CT and MR as channels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from multimodalseg import io
from multimodalseg import preprocessing as prep
from multimodalseg.bundles import load_bundle, save_bundle
from multimodalseg.errors import UserError
from multimodalseg.inference.fusion import FusionRunner, inputs_on_ct_grid, load_fusion_model, scale_inputs
from multimodalseg.inference.predictor import Predictor
from multimodalseg.inference.spine_extras import slice_axis
from multimodalseg.nets.mcf import DEMO_CONFIG, MCFNet
from multimodalseg.tasks import get_task

SPINE = get_task("spine")
SPACING = (1.6, 1.6, 1.6)


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    """A private user cache: only the shipped catalog counts."""
    monkeypatch.setenv("MULTIMODALSEG_HOME", str(tmp_path / "home"))


def _images(shape: tuple[int, int, int], seed: int = 3) -> dict[str, sitk.Image]:
    """CT (HU) and MR of one grid, with structure (a bright block) so that the fusion is not constant."""
    rng = np.random.default_rng(seed)
    ct = rng.normal(0, 100, shape).astype(np.float32)
    mr = rng.normal(100, 20, shape).astype(np.float32)
    ct[:, 8:20, 8:20] += 900
    mr[:, 4:12, 10:28] += 200
    return {"ct": io.make_image(ct, spacing=SPACING), "mr": io.make_image(mr, spacing=SPACING)}


def _bundle(folder: Path, net: MCFNet, *, kind: str | None, plane: str | None = None, roi=(32, 32)) -> Path:
    pre = {"spacing": list(SPACING), "roles": ["ct", "mr"], "patch_size": [*roi, 1]}
    if kind is not None:
        pre["input"] = kind
    inference = {"roi_size": [*roi, 1], "overlap": 0.0, "members": ["unet", "vnet"]}
    if plane:
        inference["plane"] = plane
    meta = {"id": "pair", "version": "0", "task": "spine", "kind": "segmentation",
            "labels": [{"index": lab.index, "value": lab.value, "name": lab.name} for lab in SPINE.labels],
            "network": {"name": "mcf", "config": {"spatial_dims": 2, "in_channels": 1 if kind == "fused" else 2,
                                                  "out_channels": 3, **DEMO_CONFIG, "output": "concat"}},
            "preprocessing": pre, "inference": inference}
    if kind == "fused":
        fusion = load_fusion_model(None)
        meta["fusion_model"] = {"model": fusion.id, "version": fusion.meta["version"], "sha256": fusion.sha256,
                                "pad": True}
    folder.mkdir(parents=True, exist_ok=True)
    save_bundle(folder / "pair.pt", net.state_dict(), meta)
    return folder / "pair.pt"


def _net(in_channels: int) -> MCFNet:
    torch.manual_seed(0)
    net = MCFNet(2, in_channels, 3, **DEMO_CONFIG)
    for head in (net.unet.final_conv, net.vnet.head):  # sharper logits: labels depend on the input
        head.weight.data *= 50
    return net.eval()


def _mean_labels(net: MCFNet, slices: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return ((net.unet(slices).softmax(1) + net.vnet(slices).softmax(1)) / 2).argmax(1).numpy()


def _fused(images: dict[str, sitk.Image]) -> np.ndarray:
    """The fused (Z, Y, X) volume made independently of the predictor: the shipped fusion bundle, as trained."""
    runner = FusionRunner(load_fusion_model(None), "cpu")
    ct, mr = inputs_on_ct_grid(images["ct"], images["mr"])
    return runner.fuse(*scale_inputs(ct, mr, runner.settings))


def test_default_pipeline_segments_the_fused_image(tmp_path):
    images = _images((4, 32, 32))
    net = _net(1)
    result = Predictor(load_bundle(_bundle(tmp_path, net, kind="fused")), "cpu", crop=False).predict(images)
    fused = _fused(images)
    expected = _mean_labels(net, torch.from_numpy(np.clip(fused, 0, 1)[:, None]))  # axial slices as a batch
    assert len(np.unique(expected)) > 1
    np.testing.assert_array_equal(result.indices, expected)
    spine = result.report["spine"]
    assert spine["network_input"] == "fused" and spine["fusion"]["segmented"] is True
    # the output image is the very fused volume the network saw
    np.testing.assert_array_equal(sitk.GetArrayFromImage(result.images["fused"]),
                                  np.round(np.clip(fused, 0, 1) * 255).astype(np.uint8))
    assert result.timings["fusion"] > 0 and "fusion" in result.report["timings"]


def test_fused_bundle_slices_along_its_plane(tmp_path):
    images = _images((32, 32, 4))  # (Z, Y, X): four sagittal (Z, Y) slices of 32 x 32
    assert slice_axis({"inference": {"plane": "sagittal"}}, images["ct"]) == 2
    net = _net(1)
    result = Predictor(load_bundle(_bundle(tmp_path, net, kind="fused", plane="sagittal")), "cpu",
                       crop=False).predict(images)
    fused = np.clip(_fused(images), 0, 1)
    expected = _mean_labels(net, torch.from_numpy(np.moveaxis(fused, 2, 0)[:, None].copy()))
    np.testing.assert_array_equal(result.indices, np.moveaxis(expected, 0, 2))


def test_channels_switch_and_old_bundles_take_ct_and_mr_as_channels(tmp_path):
    images = _images((4, 32, 32))
    net = _net(2)
    raw, _ = prep.to_reference_grid(SPINE, images)
    expected = _mean_labels(net, torch.from_numpy(prep.normalize_channels(SPINE, raw)).permute(1, 0, 2, 3))
    for kind in ("channels", None):  # None: a bundle from before preprocessing.input (e.g. spine-mcf-demo 0.1.0)
        result = Predictor(load_bundle(_bundle(tmp_path / str(kind), net, kind=kind)), "cpu",
                           crop=False).predict(images)
        np.testing.assert_array_equal(result.indices, expected)
        assert result.report["spine"]["network_input"] == "channels"
        assert result.report["spine"]["fusion"]["segmented"] is False and "fused" in result.images
    bad = load_bundle(_bundle(tmp_path / "bad", _net(1), kind="fused"))
    bad.meta["preprocessing"]["input"] = "channels"
    with pytest.raises(UserError, match="gives 2"):  # a 1-channel network cannot take the two channels
        Predictor(bad, "cpu")


def test_fused_bundle_needs_a_fusion_model_and_no_fusion_only_skips_the_output(tmp_path):
    images = _images((4, 32, 32))
    path = _bundle(tmp_path, _net(1), kind="fused")
    result = Predictor(load_bundle(path), "cpu", crop=False, report_options={"fusion": False}).predict(images)
    assert "fused" not in result.images and result.report["spine"]["fusion"]["segmented"] is True
    bundle = load_bundle(path)
    bundle.meta["fusion_model"] = {}
    with pytest.raises(UserError, match="not a fusion model"):  # a segmentation bundle given as the fusion model
        Predictor(bundle, "cpu", report_options={"fusion_model": str(path)}).predict(images)
