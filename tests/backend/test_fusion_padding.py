"""Fusion at inference: slices padded to 512 x 512 by default and cropped back exactly, ``--no-pad``, and progress
events per batch of slices from ``FusionRunner``, ``multimodalseg fuse`` and ``segment --task spine``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from multimodalseg import io
from multimodalseg.bundles import load_bundle, save_bundle
from multimodalseg.errors import UserError
from multimodalseg.inference.fusion import PAD_TO, FusionRunner, load_fusion_model
from multimodalseg.inference.predictor import Predictor
from multimodalseg.nets.cddfuse import CDDFuse
from multimodalseg.phantoms import make_case
from multimodalseg.progress import parse_progress_line

# A small CDDFuse (random weights) keeps 512 x 512 slices cheap on one CPU thread.
TINY = {"features": 4, "num_heads": 1, "encoder_blocks": 1, "decoder_blocks": 1, "detail": "cnn", "detail_layers": 1,
        "fusion_detail_layers": 1}  # no pad_to: the runner's default, 512 x 512


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("MULTIMODALSEG_HOME", str(tmp_path / "home"))


def _tiny(folder: Path, config: dict) -> Path:
    """A random-weight fusion bundle with the shipped bundle's metadata and the network ``config``."""
    torch.manual_seed(0)
    model = CDDFuse(2, 1, 1, **config)
    meta = {k: v for k, v in load_fusion_model(None).meta.items() if k not in ("format", "metrics", "seconds")}
    meta.update(id="tiny-fusion", network={"name": "cddfuse", "config": {"spatial_dims": 2, "in_channels": 1,
                                                                          "out_channels": 1, **config}})
    path = folder / "tiny-fusion.pt"
    save_bundle(path, model.state_dict(), meta)
    return path


@pytest.fixture(scope="module")
def tiny_bundle(tmp_path_factory):
    return _tiny(tmp_path_factory.mktemp("bundle"), TINY)


def volumes(shape=(5, 45, 38), seed=0):
    rng = np.random.default_rng(seed)
    ct = np.zeros(shape, np.float32)
    mr = np.zeros(shape, np.float32)
    ct[:, 5:-5, 6:-6] = rng.uniform(0.2, 1.0, (shape[0], shape[1] - 10, shape[2] - 12))
    mr[:, 8:-8, 4:-4] = rng.uniform(0.1, 0.9, (shape[0], shape[1] - 16, shape[2] - 8))
    return ct, mr


def test_default_pads_to_512_and_crops_back_exactly(tiny_bundle):
    # whole slices: bit-for-bit what the network gives (the strip-wise path differs by float summation order)
    runner = FusionRunner(load_bundle(tiny_bundle), "cpu", strips=False)
    assert runner.pad_to == PAD_TO == (512, 512) and runner.pad_mode == "replicate"
    assert runner.model.padded_size(45, 38) == (512, 512)
    assert runner.model.padded_size(600, 38) == (600, 512)  # a larger slice keeps its size
    ct, mr = volumes(shape=(1, 45, 38))
    ct[:, :, :3] = 0.7  # bright edges: replicate padding differs from zeros
    fused = runner.fuse(ct, mr)
    assert fused.shape == ct.shape and fused.dtype == np.float32
    # the same slice padded by hand (centred, edge values repeated), fused unpadded, cropped: what the runner gives
    top, left = (512 - 45) // 2, (512 - 38) // 2
    pad = ((0, 0), (top, 512 - 45 - top), (left, 512 - 38 - left))
    plain = load_bundle(tiny_bundle).build_model().eval()
    with torch.inference_mode():
        by_hand = plain(torch.from_numpy(np.pad(ct, pad, mode="edge"))[:, None],
                        torch.from_numpy(np.pad(mr, pad, mode="edge"))[:, None])
    expected = by_hand[:, 0, top:top + 45, left:left + 38].numpy()
    np.testing.assert_allclose(fused, expected, atol=1e-5)
    # padding changes the result (global channel attention), so the unpadded run differs
    unpadded = FusionRunner(load_bundle(tiny_bundle), "cpu", pad=False).fuse(ct, mr)
    assert unpadded.shape == ct.shape and np.abs(unpadded - fused).max() > 1e-3
    plain.pad_to = None  # the network's own default is 512 x 512 too
    with torch.inference_mode():
        direct = plain(torch.from_numpy(ct)[:, None], torch.from_numpy(mr)[:, None])[:, 0].numpy()
    np.testing.assert_allclose(unpadded, direct, atol=1e-5)


def test_pad_mode_option_and_bad_mode(tiny_bundle):
    rng = np.random.default_rng(3)
    ct, mr = (rng.uniform(0.2, 1.0, (2, 45, 41)).astype(np.float32) for _ in range(2))  # bright edges
    small = {"pad_size": (64, 64)}
    replicate = FusionRunner(load_bundle(tiny_bundle), "cpu", **small).fuse(ct, mr)
    runner = FusionRunner(load_bundle(tiny_bundle), "cpu", pad_mode="constant", **small)
    assert runner.describe()["pad_mode"] == "constant" and runner.describe()["pad_to"] == [64, 64]
    assert np.abs(runner.fuse(ct, mr) - replicate).max() > 1e-4
    assert FusionRunner(load_bundle(tiny_bundle), "cpu", pad=False).describe()["pad_to"] is None
    with pytest.raises(UserError, match="unknown pad mode 'wrap'"):
        FusionRunner(load_bundle(tiny_bundle), "cpu", pad_mode="wrap")
    with pytest.raises(UserError, match="batch must be at least 1"):
        FusionRunner(load_bundle(tiny_bundle), "cpu", 0)


def test_runner_progress_per_batch_in_order_to_1(tiny_bundle):
    ct, mr = volumes(shape=(7, 45, 38))
    # two padded 512x512 slices per pass over whole slices; one at a time strip by strip (cache-friendly)
    assert FusionRunner(load_bundle(tiny_bundle), "cpu", strips=False).batch_size(45, 38) == 2
    assert FusionRunner(load_bundle(tiny_bundle), "cpu").batch_size(45, 38) == 1
    fractions: list[float] = []
    FusionRunner(load_bundle(tiny_bundle), "cpu", 2, pad=False).fuse(ct, mr, fractions.append)
    assert fractions == pytest.approx([2 / 7, 4 / 7, 6 / 7, 1.0])


def write_pair(folder, z=(60, 66)):
    """A phantom spine pair with the MR already on the CT grid (a few axial slices: fast)."""
    case = make_case("spine", 971, misregister=False)
    ct = case.images["ct"][:, :, z[0]:z[1]]
    mr = sitk.Resample(case.images["mr"], ct, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    folder.mkdir(parents=True, exist_ok=True)
    return io.write_image(ct, folder / "ct.nii.gz"), io.write_image(mr, folder / "mr.nii.gz")


def events_of(text: str) -> list[dict]:
    return [e for e in map(parse_progress_line, text.splitlines()) if e is not None]


def check_progress(events: list[dict]) -> list[float]:
    """Fractions strictly increasing, in [0, 1], reaching 1.0; returns them."""
    fractions = [e["fraction"] for e in events if e["event"] == "progress"]
    assert fractions and all(b > a for a, b in zip(fractions, fractions[1:])) and fractions[-1] == 1.0
    return fractions


def test_fuse_command_emits_json_progress_per_slice_batch(cli, tmp_path, tiny_bundle):
    ct, mr = write_pair(tmp_path / "case")
    out, report = tmp_path / "fused.nii.gz", tmp_path / "fused.json"
    r = cli("fuse", "--ct", ct, "--mr", mr, "--model", tiny_bundle, "-o", out, "--report", report,
            "--progress", "json", "--device", "cpu", "--no-pad", "--batch", "2")
    assert r.code == 0, r.err
    events = events_of(r.out)
    assert events[0]["event"] == "started" and events[0]["model"] == "tiny-fusion"
    assert events[-1]["event"] == "finished" and events[-1]["outputs"] == {"fused": str(out), "report": str(report)}
    assert set(events[-1]["metrics"]["fused"]) >= {"EN", "MI", "SF", "VIF"}
    check_progress(events)
    fusion = [e["fraction"] for e in events if e.get("stage") == "fusion"]
    assert len(fusion) == 3  # one per batch of 2 of the 6 slices
    assert [e["stage"] for e in events if e["event"] == "progress"][-1] == "write"
    settings = json.loads(report.read_text())["settings"]
    assert settings["pad_to"] is None and settings["pad_mode"] is None
    assert io.same_geometry(sitk.ReadImage(str(out)), sitk.ReadImage(str(ct)))


def test_segment_spine_fusion_stage_progress(tmp_path, tiny_bundle):
    """The shipped MCF segments the fused image: fusion is its own stage before the sliding window, reporting
    after each batch of padded slices. Padding is asked for here: the shipped MCF
    was trained on unpadded fused slices, so by default it fuses unpadded, all 6 slices in one pass."""
    ct, mr = write_pair(tmp_path / "case", z=(60, 66))
    events: list[dict] = []
    predictor = Predictor.from_model("spine", None, device="cpu", progress=events.append,
                                     report_options={"fusion_model": str(tiny_bundle), "fusion_pad": True})
    result = predictor.predict({"ct": ct, "mr": mr})
    check_progress(events)
    stages = [e["stage"] for e in events if e["event"] == "progress"]
    fusion = [i for i, s in enumerate(stages) if s == "fusion"]
    batches = -(-6 // FusionRunner(load_bundle(tiny_bundle), "cpu").batch_size(512, 512))  # strips: 1 slice
    assert len(fusion) == batches >= 2
    assert stages.index("preprocess") < fusion[0] and fusion[-1] < stages.index("sliding window")
    fractions = [e["fraction"] for e in events if e.get("stage") == "fusion"]
    assert fractions[-1] - fractions[0] > 0.2  # fusion moves the bar visibly, not inside a few per cent
    assert "fused" in result.images and result.report["spine"]["fusion"]["settings"]["pad_to"] == [512, 512]


def test_a_bundle_trained_unpadded_runs_unpadded_unless_told(tmp_path):
    """Preprocessing follows the model: ``pad_to: null`` in the bundle (the shipped phantom demo) means the
    network learnt unpadded slices, so it runs unpadded; an explicit size still applies."""
    bundle = _tiny(tmp_path, {**TINY, "pad_to": None})
    assert FusionRunner(load_bundle(bundle), "cpu").describe()["pad_to"] is None
    assert FusionRunner(load_bundle(bundle), "cpu", pad_size=(64, 64)).describe()["pad_to"] == [64, 64]
    shipped = load_fusion_model(None)
    assert shipped.meta["network"]["config"]["pad_to"] is None and FusionRunner(shipped, "cpu").pad_to is None
