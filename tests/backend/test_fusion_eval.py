"""``multimodalseg evaluate --fused F --ct C --mr M``: EN, MI, SF and VIF of a fused image against its sources, with
the same functions (and the same numbers) as ``multimodalseg fuse``; bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
from multimodalseg import fusion_metrics as fm

SPACING = (1.6, 1.6, 2.0)
ORIGIN = (-40.0, -30.0, 10.0)


def sources(shape=(3, 48, 44), seed=0):
    """A CT in HU (air, soft tissue, a bone block) and an MR with a bright disc, one grid."""
    rng = np.random.default_rng(seed)
    ct = np.full(shape, -1000.0, np.float32)
    ct[:, 6:-6, 5:-5] = 40.0 + rng.normal(0, 15, (shape[0], shape[1] - 12, shape[2] - 10))
    ct[:, 15:30, 12:30] = 900.0
    mr = np.zeros(shape, np.float32)
    mr[:, 6:-6, 5:-5] = 300.0 + rng.normal(0, 20, (shape[0], shape[1] - 12, shape[2] - 10))
    mr[:, 20:26, 14:28] = 1200.0
    return ct, mr


@pytest.fixture
def case(volume_file):
    ct, mr = sources()
    ct8, mr8 = fm.source_gray8(ct, mr)
    fused = np.maximum(ct8, mr8)  # a max-rule fusion, 8-bit as 'fuse' writes it
    paths = {name: volume_file(f"{name}.nii.gz", arr, spacing=SPACING, origin=ORIGIN)
             for name, arr in (("ct", ct), ("mr", mr), ("fused", fused))}
    return paths, (fused, ct8, mr8)


def test_json_reports_fused_and_comparison_metrics(cli, case):
    paths, (fused, ct8, mr8) = case
    r = cli("evaluate", "--fused", paths["fused"], "--ct", paths["ct"], "--mr", paths["mr"], "--json")
    assert r.code == 0, r.err
    out = json.loads(r.out)["fusion"]
    assert out["settings"] == {"ct_window": [-250.0, 1250.0], "mr_percentile": 99.5, "axis": 0,
                               "fused_levels": "as stored"}
    metrics = out["metrics"]
    assert metrics["fused"]["slices"] == 3 and set(metrics) == {"fused", "ct", "mr"}
    # known answers: the CT taken as the fusion has VIFp(CT->CT) = 1, so VIF = 1 + VIFp(MR->CT); EN of the fused
    # volume's slices as a plain histogram entropy
    assert metrics["ct"]["VIF"] == pytest.approx(1.0 + np.mean([fm.vifp(m, c) for m, c in zip(mr8, ct8)]), rel=1e-9)
    counts = [np.bincount(s.ravel(), minlength=256) / s.size for s in fused]
    assert metrics["fused"]["EN"] == pytest.approx(np.mean([-(p[p > 0] * np.log2(p[p > 0])).sum() for p in counts]))
    # the max rule keeps both sources: more information about each than the other source alone carries
    assert metrics["fused"]["MI"] > 0 and metrics["fused"]["SF"] >= min(metrics["ct"]["SF"], metrics["mr"]["SF"])


def test_same_numbers_as_fuse_report(cli, tmp_path, volume_file):
    """evaluate on fuse's output and sources gives fuse's own metrics (one implementation)."""
    import torch
    from multimodalseg.bundles import save_bundle
    from multimodalseg.inference.fusion import load_fusion_model
    from multimodalseg.nets.cddfuse import CDDFuse

    tiny = {"features": 4, "num_heads": 1, "encoder_blocks": 1, "decoder_blocks": 1, "detail_layers": 1,
            "fusion_detail_layers": 1, "pad_to": None}
    torch.manual_seed(0)
    meta = {k: v for k, v in load_fusion_model(None).meta.items() if k not in ("format", "metrics", "seconds")}
    meta.update(id="tiny-fusion", network={"name": "cddfuse", "config": {"spatial_dims": 2, "in_channels": 1,
                                                                          "out_channels": 1, **tiny}})
    bundle = tmp_path / "tiny.pt"
    save_bundle(bundle, CDDFuse(2, 1, 1, **tiny).state_dict(), meta)
    ct, mr = sources(seed=1)
    ct_path = volume_file("ct.nii.gz", ct, spacing=SPACING, origin=ORIGIN)
    mr_path = volume_file("mr.nii.gz", mr, spacing=SPACING, origin=ORIGIN)
    out, report = tmp_path / "fused.nii.gz", tmp_path / "fused.json"
    r = cli("fuse", "--ct", ct_path, "--mr", mr_path, "--model", bundle, "-o", out, "--report", report,
            "--no-pad", "--progress", "none", "--device", "cpu")
    assert r.code == 0, r.err
    expected = json.loads(report.read_text())["metrics"]
    r = cli("evaluate", "--fused", out, "--ct", ct_path, "--mr", mr_path, "--json")
    assert r.code == 0, r.err
    got = json.loads(r.out)["fusion"]["metrics"]
    for name in ("fused", "ct", "mr"):
        assert got[name] == pytest.approx(expected[name], rel=1e-6)


def test_with_label_maps_and_as_a_table(cli, case, volume_file):
    paths, _ = case
    labels = np.zeros((3, 48, 44), np.uint8)
    labels[:, 15:30, 12:30] = 1
    lab = volume_file("lab.nii.gz", labels, spacing=SPACING, origin=ORIGIN)
    r = cli("evaluate", "--pred", lab, "--ref", lab, "--fused", paths["fused"], "--ct", paths["ct"], "--mr",
            paths["mr"], "--json")
    assert r.code == 0, r.err
    out = json.loads(r.out)
    assert out["mean"]["dice"] == 1.0 and out["fusion"]["metrics"]["fused"]["slices"] == 3
    r = cli("evaluate", "--fused", paths["fused"], "--ct", paths["ct"], "--mr", paths["mr"])
    assert r.code == 0, r.err
    lines = r.out.splitlines()
    assert lines[0].startswith("fusion metrics (mean over 3 slices")
    assert [line.split()[0] for line in lines[1:]] == ["fused", "CT", "MR"] and "VIF" in lines[1]


def test_float_fused_image_is_min_max_scaled(cli, case, volume_file):
    paths, (fused, _, _) = case
    as_float = volume_file("f.nii.gz", fused.astype(np.float32) / 255.0 * 3.0 + 0.5, spacing=SPACING,
                           origin=ORIGIN)
    r = cli("evaluate", "--fused", as_float, "--ct", paths["ct"], "--mr", paths["mr"], "--json")
    assert r.code == 0, r.err
    assert json.loads(r.out)["fusion"]["settings"]["fused_levels"] == "min-max scaled to 0-255"


@pytest.mark.parametrize("kind, expected", [
    ("missing fused", "nope.nii.gz: file not found"),
    ("missing mr", "nope.nii.gz: file not found"),
    ("mr off grid", "mr_moved.nii.gz: not on the CT grid (origin"),
    ("fused other size", "fused_big.nii.gz: not on the CT grid (size 50x48x3 vs 44x48x3)"),
    ("fused without sources", "the fusion metrics need --fused, --ct and --mr (missing --ct, --mr)"),
    ("sources without fused", "(missing --fused)"),
    ("nothing", "give --pred and --ref (label maps), or --fused, --ct and --mr"),
    ("pred without ref", "--pred and --ref go together"),
    ("task without labels", "--task and --convention are for label maps"),
    ("window without fused", "--ct-window and --mr-percentile are for the fusion metrics"),
    ("bad window", "fused.nii.gz: cannot compute the fusion metrics: CT window must have hi > lo"),
    ("too small for vif", "small_fused.nii.gz: cannot compute the fusion metrics: VIF needs images of at least"),
])
def test_bad_input_is_one_line_and_exit_2(cli, case, volume_file, tmp_path, kind, expected):
    paths, (fused, _, _) = case
    f, c, m = paths["fused"], paths["ct"], paths["mr"]
    args = None
    if kind == "missing fused":
        f = tmp_path / "nope.nii.gz"
    elif kind == "missing mr":
        m = tmp_path / "nope.nii.gz"
    elif kind == "mr off grid":
        m = volume_file("mr_moved.nii.gz", sources()[1], spacing=SPACING, origin=(0.0, 0.0, 0.0))
    elif kind == "fused other size":
        f = volume_file("fused_big.nii.gz", np.zeros((3, 48, 50), np.uint8), spacing=SPACING, origin=ORIGIN)
    elif kind == "fused without sources":
        args = ["--fused", f]
    elif kind == "sources without fused":
        args = ["--ct", c, "--mr", m]
    elif kind == "nothing":
        args = []
    elif kind == "pred without ref":
        args = ["--pred", f]
    elif kind == "task without labels":
        args = ["--fused", f, "--ct", c, "--mr", m, "--task", "spine"]
    elif kind == "window without fused":
        args = ["--pred", f, "--ref", f, "--ct-window", "0", "100"]
    elif kind == "bad window":
        args = ["--fused", f, "--ct", c, "--mr", m, "--ct-window", "100", "100"]
    elif kind == "too small for vif":
        small = {n: volume_file(f"small_{n}.nii.gz", a[:, :30, :30], spacing=SPACING, origin=ORIGIN)
                 for n, a in (("fused", fused), ("ct", sources()[0]), ("mr", sources()[1]))}
        f, c, m = small["fused"], small["ct"], small["mr"]
    if args is None:
        args = ["--fused", f, "--ct", c, "--mr", m]
    r = cli("evaluate", *args, "--json")
    assert r.code == 2
    assert r.out == ""
    assert r.err.count("\n") == 1 and "Traceback" not in r.err
    assert r.err.startswith("multimodalseg evaluate: error: ")
    assert expected in r.err
