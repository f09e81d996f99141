"""The benchmark harness runs end to end in --quick mode and writes a well-formed JSON and Markdown report.

No timing is asserted (timings belong to benchmarks/, not to tests); the checks are about the report's structure
and about values that follow from the configuration (windows, parameters, the SegResNet row's own ratio, the
skipped bf16 run on a CPU without bf16 hardware).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RUN = ROOT / "benchmarks" / "run.py"


@pytest.fixture(scope="module")
def quick_report(tmp_path_factory) -> tuple[dict, str]:
    out, work = tmp_path_factory.mktemp("bench-out"), tmp_path_factory.mktemp("bench-work")
    cmd = [sys.executable, str(RUN), "--quick", "--tasks", "brain-tumor", "--in-process", "--threads", "1",
           "--parts", "main,variants,scaling", "--variants", "bf16,whole-volume",
           "--variant-networks", "ours", "--out", str(out), "--workdir", str(work)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads((out / "latest.json").read_text()), (out / "latest.md").read_text()


def test_json_has_every_row_and_column(quick_report):
    data, _ = quick_report
    assert data["format"] == "multimodalseg-benchmark/1" and data["complete"] is True
    assert len(data["load_average"]["start"]) == 3 and len(data["load_average"]["end"]) == 3
    rows = data["rows"]
    names = [r["network"] for r in rows]
    assert "segresnet16" in names and any(n.startswith("unet") for n in names)
    for row in rows:
        assert row["status"] == "ok", row.get("error")
        for key in ("task", "network", "width", "params", "windows", "seconds", "peak_rss_gib", "ratio_segresnet",
                    "device", "stages", "model_load_s"):
            assert key in row, key
        assert row["task"] == "brain-tumor" and row["device"] == "cpu" and row["threads"] == 1
        assert row["seconds"] > 0 and row["peak_rss_gib"] > 0
        if row["kind"] == "catalog":  # a shipped bundle keeps its own window size and is scored against the phantom
            assert row["windows"] >= 1 and row.get("dice") is not None
        else:  # 4×40×40×24 at its own spacing, 32³ windows with overlap 0.25: 1 × 2 × 2 windows
            assert row["windows"] == 4 and row["roi_zyx"] == [32, 32, 32]
        assert set(row["stages"]) >= {"load", "preprocess", "sliding window", "postprocess", "write", "total"}
    seg = next(r for r in rows if r["network"] == "segresnet16")
    assert seg["ratio_segresnet"] == 1.0
    assert 4_000_000 < seg["params"] < 5_500_000  # SegResNet(init_filters=16), 4 in, 3 out
    unet = next(r for r in rows if r["network"].startswith("unet"))
    ours = [r for r in rows if r["kind"] == "ours"]
    if ours:  # the UNet baseline is matched to our network's size
        assert abs(unet["params"] / ours[0]["params"] - 1) < 0.35


def test_variants_scaling_and_targets(quick_report):
    data, _ = quick_report
    changes = {v["change"]: v for v in data["variants"]}
    assert set(changes) == {"bf16", "whole-volume"}
    whole = changes["whole-volume"]
    assert whole["before_s"] > 0 and whole["after_s"] > 0 and 0 <= whole["agreement_dice"] <= 1
    run = next(r for r in data["variant_runs"] if r["variant"] == "whole-volume")
    assert run["windows"] == 1 and all(s % 32 == 0 for s in run["roi_zyx"])
    if not data["machine"]["cpu_bf16"]:
        assert changes["bf16"]["note"].startswith("skipped")
    points = data["scaling"]["points"]
    assert len(points) == 3 and points[0]["reference_voxels"] < points[1]["reference_voxels"] < \
        points[2]["reference_voxels"]
    assert isinstance(data["scaling"]["slope_total"], float)
    assert {t["target"].split(" (")[0] for t in data["targets"]} >= {
        "brain-tumor demo model time / SegResNet16", "brain-tumor peak RSS", "CLI overhead beyond inference",
        "time vs voxels, log-log slope"}


def test_markdown_tables_have_the_columns(quick_report):
    _, md = quick_report
    header = ("| task | network | width | params | windows | seconds | sliding window s | peak RSS GiB | "
              "ratio to SegResNet | Dice | device | load |")
    assert header in md
    assert "## Stage timings (s)" in md and "## Speed-ups, one at a time" in md and "Log-log slope" in md
    table = md.split(header)[1].split("\n\n")[0].strip().splitlines()[1:]
    assert len(table) >= 2 and all(line.count("|") == 13 for line in table)


def test_bad_option_is_refused():
    proc = subprocess.run([sys.executable, str(RUN), "--parts", "main,speed"], capture_output=True, text=True,
                          timeout=120, cwd=ROOT)
    assert proc.returncode != 0 and "--parts: unknown speed" in proc.stderr
