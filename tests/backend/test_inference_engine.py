"""Predictor parts: region post-processing, windows, TTA flips, OOM fallback, 2D and modality-conditioned networks."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from monai.inferers import sliding_window_inference
from multimodalseg import io
from multimodalseg.bundles import load_bundle, save_bundle
from multimodalseg.errors import UserError
from multimodalseg.inference import Predictor, postprocess
from multimodalseg.inference.engine import (
    NetworkInput,
    WindowSettings,
    count_windows,
    mirror_swap,
    predict_probabilities,
    run_with_fallback,
)
from multimodalseg.nets import register_network
from multimodalseg.tasks import get_task

BRATS = get_task("brain-tumor")
HEART = get_task("whole-heart")


class SelectNet(torch.nn.Module):
    """TEST network: output channel j = gain * (input channel sources[j] - threshold) (a fixed 1x1x1 Conv3d)."""

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int, *, sources: list[int],
                 threshold: float = 0.0, gain: float = 50.0) -> None:
        super().__init__()
        self.conv = torch.nn.Conv3d(in_channels, out_channels, 1)
        with torch.no_grad():
            self.conv.weight.zero_()
            for j, c in enumerate(sources):
                self.conv.weight[j, c] = gain
            self.conv.bias.fill_(-gain * threshold)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class ModalityNet(torch.nn.Module):
    """TEST network conditioned on the modality: inside the body (input > 0) class 1 for CT (0), class 2 for MR (1)."""

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.out_channels = out_channels
        self.scale = torch.nn.Parameter(torch.tensor(50.0))

    def forward(self, x: torch.Tensor, modality: torch.Tensor) -> torch.Tensor:
        body = (x[:, :1] > 0).float()
        logits = torch.zeros((x.shape[0], self.out_channels, *x.shape[2:]), device=x.device)
        target = (1 + modality).view(-1, 1, 1, 1, 1)
        index = torch.arange(self.out_channels, device=x.device).view(1, -1, 1, 1, 1)
        return logits + self.scale * body * ((index == target).float() - 0.5)


register_network("test_select", f"{__name__}:SelectNet")
register_network("test_modality", f"{__name__}:ModalityNet")


def _bundle(tmp_path, task, name, config, **meta):
    net = {"test_select": SelectNet, "test_modality": ModalityNet, "basic_unet": None}[name]
    if net is None:
        from monai.networks.nets import BasicUNet as net
    module = net(**config)
    full = {"id": f"test-{name}", "version": "1", "task": task.id, "network": {"name": name, "config": config},
            "labels": [{"index": lab.index, "value": lab.value, "name": lab.name} for lab in task.labels], **meta}
    path = tmp_path / f"{name}.pt"
    save_bundle(path, module.state_dict(), full)
    return load_bundle(path, task=task.id)


def test_nested_regions_to_labels_round_trip():
    untied = dataclasses.replace(BRATS, postprocess=None)
    assert postprocess.regions_class_order(untied) == [(0, 2), (1, 1), (2, 3)]  # WT->ED, TC->NCR, ET->ET
    rng = np.random.default_rng(0)
    indices = rng.integers(0, 4, (6, 7, 8)).astype(np.uint8)
    regions = postprocess.labels_to_regions(indices, untied).astype(np.float32)
    np.testing.assert_array_equal(postprocess.regions_to_labels(regions, untied), indices)
    np.testing.assert_array_equal(postprocess.apply(regions * 0.9, untied, {"threshold": 0.5}), indices)
    assert postprocess.load_hook(BRATS).__name__ == "postprocess"
    with pytest.raises(ValueError, match="returned"):
        postprocess.apply(regions, dataclasses.replace(BRATS, postprocess=f"{__name__}:_bad_hook"), {})


def _bad_hook(prediction, task, options):
    return prediction  # region probabilities, not an index map


def test_volumes_in_ml():
    indices = np.zeros((10, 10, 10), np.uint8)
    indices[:2] = 1
    indices[2:3] = 3
    labels, regions = postprocess.volumes_ml(indices, BRATS, 0.002)
    assert labels == {"NCR/NET": 0.4, "ED": 0.0, "ET": 0.2}
    assert regions == {"WT": 0.6, "TC": 0.6, "ET": 0.2}


@pytest.mark.parametrize("shape, roi, overlap", [((40, 50, 33), (16, 16, 16), 0.25), ((20, 20, 20), (32, 32, 32), 0.5),
                                                  ((5, 64, 70), (1, 32, 32), 0.5), ((33, 17, 48), (16, 16, 16), 0.0)])
def test_window_count_matches_monai(shape, roi, overlap):
    calls = []

    def predictor(x):
        calls.append(x.shape[0])
        return x

    sliding_window_inference(torch.zeros((1, 1, *shape)), roi, 1, predictor, overlap=overlap)
    assert count_windows(shape, roi, overlap) == sum(calls)


def test_tta_flips():
    assert len(WindowSettings((16, 16, 16), tta=True).flips()) == 8
    assert WindowSettings((1, 16, 16), tta=True).flips() == [(), (3,), (4,), (3, 4)]
    assert WindowSettings((16, 16, 16)).flips() == [()]


def test_cuda_out_of_memory_falls_back(monkeypatch):
    tried, warnings = [], []

    def run(compute, stitch):
        tried.append((compute.type, stitch.type))
        if compute.type == "cuda":
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return torch.ones(1)

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    result, used = run_with_fallback(run, torch.device("cuda"), warnings.append)
    assert used.type == "cpu" and result.item() == 1
    assert tried == [("cuda", "cuda"), ("cuda", "cpu"), ("cpu", "cpu")]
    assert len(warnings) == 2 and "CUDA out of memory" in warnings[0] and "running on the CPU" in warnings[1]

    def broken(compute, stitch):
        raise RuntimeError("shape mismatch")

    with pytest.raises(RuntimeError, match="shape mismatch"):  # other errors are not swallowed
        run_with_fallback(broken, torch.device("cuda"), warnings.append)


def _brats_inputs():
    flair, t1ce, t2 = (np.zeros((24, 28, 32), np.float32) for _ in range(3))
    flair[2:22, 2:26, 2:30] = 1.0
    flair[4:20, 4:24, 4:28] = 5.0  # WT
    t1ce[2:22, 2:26, 2:30] = 1.0
    t1ce[7:17, 7:21, 7:25] = 5.0  # TC
    t2[2:22, 2:26, 2:30] = 1.0
    t2[9:15, 10:18, 10:22] = 5.0  # ET: 6 * 8 * 12 = 576 voxels > the 0.5 mL ET threshold
    arrays = {"flair": flair, "t1": t1ce * 0 + 1.0, "t1ce": t1ce, "t2": t2}
    return {r: io.make_image(a, spacing=(1.0, 1.0, 1.0)) for r, a in arrays.items()}, (flair, t1ce, t2)


def test_region_task_through_predictor_with_conventions(tmp_path):
    config = {"spatial_dims": 3, "in_channels": 4, "out_channels": 3, "sources": [0, 2, 3], "threshold": 1.0}
    bundle = _bundle(tmp_path, BRATS, "test_select", config,
                     preprocessing={"spacing": None, "patch_size": [16, 16, 16]})
    images, (flair, t1ce, t2) = _brats_inputs()
    z = {k: (a - a[a != 0].mean()) / a[a != 0].std() for k, a in (("wt", flair), ("tc", t1ce), ("et", t2))}
    expected = np.zeros(flair.shape, np.uint8)
    expected[z["wt"] > 1.0] = 2
    expected[z["tc"] > 1.0] = 1
    expected[z["et"] > 1.0] = 4
    own = Predictor(bundle, "cpu", overlap=0.5).predict(images)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(own.labels), expected)
    assert own.report["regions_ml"]["WT"] == pytest.approx((expected > 0).sum() / 1000)
    v23 = Predictor(bundle, "cpu", convention="brats2023").predict(images)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(v23.labels), np.where(expected == 4, 3, expected))
    with pytest.raises(UserError, match="unknown label convention 'brats2099'"):
        Predictor(bundle, "cpu", convention="brats2099")


def test_two_d_network_runs_slice_by_slice(tmp_path):
    spine = get_task("spine")
    config = {"spatial_dims": 2, "in_channels": 2, "out_channels": 3, "features": (4, 4, 8, 8, 16, 4)}
    bundle = _bundle(tmp_path, spine, "basic_unet", config,
                     preprocessing={"spacing": None, "patch_size": [32, 32, 1],
                                    "normalization": {"ct": "ct", "mr": "none"}})  # per-voxel: slices independent
    rng = np.random.default_rng(0)
    ct = io.make_image(rng.normal(0, 300, (3, 40, 36)).astype(np.float32))
    mr = io.make_image(rng.normal(100, 30, (3, 40, 36)).astype(np.float32))
    result = Predictor(bundle, "cpu", tta=True).predict({"ct": ct, "mr": mr})
    assert result.labels.GetSize() == (36, 40, 3)
    assert result.report["settings"]["roi_zyx"] == [1, 32, 32] and result.report["settings"]["windows"] == 12
    # Slices are independent: segmenting one slice alone gives that slice of the volume's result.
    alone = Predictor(bundle, "cpu", tta=True).predict({"ct": ct[:, :, 1:2], "mr": mr[:, :, 1:2]})
    np.testing.assert_array_equal(sitk.GetArrayFromImage(alone.labels)[0], sitk.GetArrayFromImage(result.labels)[1])


def test_modality_conditioned_network(tmp_path, cli, volume_file):
    bundle = _bundle(tmp_path, HEART, "test_modality", {"spatial_dims": 3, "in_channels": 1, "out_channels": 8},
                     conditional_modality=True, preprocessing={"spacing": None, "patch_size": [16, 16, 16],
                                                               "normalization": {"image": "none"}})
    arr = np.zeros((12, 20, 20), np.float32)
    arr[3:9, 4:16, 5:15] = 100.0
    image = volume_file("heart.nii.gz", arr)
    values = {}
    for modality in ("ct", "mr"):
        out = tmp_path / f"{modality}.nii.gz"
        r = cli("segment", "--task", "whole-heart", "--input", f"image={image}", "-o", out, "--model",
                bundle.path, "--modality", modality, "--progress", "none", "--device", "cpu")
        assert r.code == 0, r.err
        seg = sitk.GetArrayFromImage(sitk.ReadImage(str(out)))
        values[modality] = set(np.unique(seg[arr > 0])), set(np.unique(seg[arr == 0]))
    assert values["ct"] == ({HEART.index_to_value()[1]}, {0}) and values["mr"] == ({HEART.index_to_value()[2]}, {0})
    r = cli("segment", "--task", "whole-heart", "--input", f"image={image}", "-o", tmp_path / "x.nii.gz",
            "--model", bundle.path, "--progress", "none")
    assert r.code == 2 and "is conditioned on the modality: pass --modality ct|mr" in r.err


# --- streamed stitching (issue 18 item 7) and left-right flips (issue 16 item 2) -------------------------------------

PETMR = get_task("petmr-brain")


def _conv_net(in_channels: int = 2, out_channels: int = 5) -> NetworkInput:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv3d(in_channels, 6, 3, padding=1), torch.nn.ReLU(),
                                torch.nn.Conv3d(6, out_channels, 3, padding=1)).eval()
    return NetworkInput(model, "softmax")


@pytest.mark.parametrize("shape, roi, overlap, batch", [
    ((2, 40, 37, 45), (16, 16, 16), 0.25, 1),
    ((2, 12, 50, 33), (16, 16, 16), 0.5, 3),  # Z shorter than the window: MONAI's padding
    ((2, 33, 20, 29), (16, 20, 8), 0.0, 2),  # constant blending, a window as wide as the volume
])
def test_streamed_stitching_equals_monai_sliding_window(shape, roi, overlap, batch):
    """The ring-buffer path gives MONAI's probabilities bit for bit, so the labels are the same."""
    net, cpu = _conv_net(), torch.device("cpu")
    image = np.random.default_rng(1).normal(size=shape).astype(np.float32)
    settings = WindowSettings(roi, overlap, batch)
    x = torch.from_numpy(image)[None]
    with torch.inference_mode():
        monai = sliding_window_inference(x, roi, batch, net, overlap=overlap,
                                         mode="gaussian" if overlap > 0 else "constant")[0]
    streamed = predict_probabilities(net, image, settings, cpu, cpu, None, reduce=lambda p: p)
    assert torch.equal(streamed, monai)
    labels = predict_probabilities(net, image, settings, cpu, cpu, None,
                                   reduce=lambda p: p.argmax(0, keepdim=True).to(torch.uint8))
    assert labels.shape == (1, *shape[1:]) and torch.equal(labels[0], monai.argmax(0).to(torch.uint8))


def test_streamed_and_full_predictor_paths_give_identical_labels(untrained_bundle):
    """The same PET/MR phantom through the predictor: default (streamed, labels only) and keep_probabilities
    (the whole probability volume, the old path) write the same label map."""
    from multimodalseg.phantoms import make_case

    bundle = load_bundle(untrained_bundle("petmr-brain", spacing=(2.5, 2.5, 2.5), patch=(32, 32, 32)))
    case = make_case("petmr-brain", 4, misregister=False)
    streamed = Predictor(bundle, "cpu").predict(case.images)
    full = Predictor(bundle, "cpu", keep_probabilities=True).predict(case.images)
    a, b = sitk.GetArrayFromImage(streamed.labels), sitk.GetArrayFromImage(full.labels)
    assert streamed.probabilities is None and full.probabilities is not None
    assert len(np.unique(a)) > 3 and np.array_equal(a, b)


class SideNet(torch.nn.Module):
    """TEST network that knows anatomy by position, as a trained one does: a bright voxel is Left-Hippocampus in
    the half of its window with high indices along ``axis`` (the patient's left on the test grids), else
    Right-Hippocampus. A flipped input therefore gets the other side's label."""

    def __init__(self, axis: int, left: int, right: int, channels: int) -> None:
        super().__init__()
        self.axis, self.left, self.right, self.channels = axis, left, right, channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[2 + self.axis]
        shape = [1, 1, 1, 1, 1]
        shape[2 + self.axis] = n
        high = (torch.arange(n, device=x.device) >= n // 2).view(shape).float()
        bright = (x[:, :1] > 0.5).float()
        logits = torch.zeros((x.shape[0], self.channels, *x.shape[2:]), device=x.device)
        logits[:, 0] = 5.0 * (1 - bright[:, 0])
        logits[:, self.left] = 10.0 * (bright * high)[:, 0]
        logits[:, self.right] = 10.0 * (bright * (1 - high))[:, 0]
        return logits


@pytest.mark.parametrize("direction, axis", [
    ((1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0), 2),  # axial LPS: the patient's left is high x index (array axis 2)
    ((0, 0, 1.0, 1.0, 0, 0, 0, 1.0, 0), 0),  # sagittal stack: left-right runs along the slices (array axis 0)
])
def test_flip_tta_keeps_a_left_only_structure_left(direction, axis):
    """A lateral phantom: one bright blob on the patient's left only. With flip TTA the passes flipped along the
    left-right axis (read from the direction matrix) label it Right; swapping the pairs back keeps it Left in all
    8 passes. Without the swap, or with a fixed array axis that is not the left-right one, half the passes vote
    Right."""
    size = (24, 20, 22)
    image = np.zeros((2, *size), np.float32)
    blob = [slice(6, 12), slice(5, 11), slice(7, 13)]
    blob[axis] = slice(size[axis] - 8, size[axis] - 3)  # high indices along the lateral axis: the left
    image[(slice(None), *blob)] = 1.0
    left, right = PETMR.label("Left-Hippocampus").index, PETMR.label("Right-Hippocampus").index
    net = NetworkInput(SideNet(axis, left, right, PETMR.num_classes).eval(), "softmax")
    settings, cpu = WindowSettings(size, 0.0, 1, tta=True), torch.device("cpu")  # one window: the whole volume
    mirror = mirror_swap(PETMR, direction, PETMR.num_classes)
    assert mirror.axis == axis

    probs = predict_probabilities(net, image, settings, cpu, cpu, None, mirror=mirror)
    inside = (slice(None), *blob)
    assert (probs[left][inside[1:]] > 0.99).all() and (probs[right] < 0.01).all()
    labels = predict_probabilities(net, image, settings, cpu, cpu, None, mirror=mirror,
                                   reduce=lambda p: p.argmax(0, keepdim=True).to(torch.uint8))[0].numpy()
    assert set(np.unique(labels[tuple(blob)])) == {left} and right not in labels

    unswapped = predict_probabilities(net, image, settings, cpu, cpu, None)
    assert (unswapped[left][inside[1:]] < 0.6).all()  # the old behaviour: Left and Right tie
    wrong_axis = dataclasses.replace(mirror, axis=(axis + 1) % 3)
    assert (predict_probabilities(net, image, settings, cpu, cpu, None, mirror=wrong_axis)[left][inside[1:]]
            < 0.6).all()


def test_mirror_swap_only_for_tasks_with_lateral_pairs():
    assert mirror_swap(HEART, (1, 0, 0, 0, 1, 0, 0, 0, 1), HEART.num_classes) is None
    assert mirror_swap(BRATS, (1, 0, 0, 0, 1, 0, 0, 0, 1), 3) is None
    two = mirror_swap(PETMR, (1, 0, 0, 0, 1, 0, 0, 0, 1), 2 * PETMR.num_classes, members=2)
    assert len(two.permutation) == 92 and two.permutation[46 + 3] == 46 + PETMR.label("Right-Lateral-Ventricle").index
