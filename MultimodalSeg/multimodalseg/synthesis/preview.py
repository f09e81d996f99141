"""Picture sheets of synthetic cases (and real images beside them), for the README and for looking at output.

``python -m multimodalseg.synthesis.preview --task TASK --out PNG [--n 3] [--real IMAGE ...]`` draws, per case,
the middle axial, coronal and sagittal slices of each role (percentile-windowed, resampled to 1 mm pixels),
one row per case and role; ``--real`` adds rows of real images.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import SimpleITK as sitk


def _iso(img: sitk.Image, mm: float = 1.0) -> np.ndarray:
    """The image resampled onto an axis-aligned grid of ``mm`` pixels (linear), as (z, y, x)."""
    size = np.asarray(img.GetSize()) * np.asarray(img.GetSpacing()) / mm
    ref = sitk.Image([int(s) for s in np.ceil(size)], sitk.sitkFloat32)
    ref.SetSpacing((mm, mm, mm))
    d = np.asarray(img.GetDirection()).reshape(3, 3)
    corners = [img.TransformIndexToPhysicalPoint([int(a), int(b), int(c)])
               for a in (0, img.GetSize()[0] - 1) for b in (0, img.GetSize()[1] - 1) for c in (0, img.GetSize()[2] - 1)]
    ref.SetOrigin(np.min(corners, 0).tolist())
    del d
    out = sitk.Resample(sitk.Cast(img, sitk.sitkFloat32), ref, sitk.Transform(), sitk.sitkLinear, 0.0)
    return sitk.GetArrayFromImage(out)


def _window(a: np.ndarray, ct: bool) -> np.ndarray:
    if ct:
        lo, hi = -250.0, 450.0
    else:
        fg = a[a > np.percentile(a, 5)] if a.size else a
        lo, hi = 0.0, float(np.percentile(fg, 99.5)) if fg.size else 1.0
    return (np.clip((a - lo) / max(hi - lo, 1e-6), 0, 1) * 255).astype(np.uint8)


def views(img: sitk.Image, ct: bool = False, height: int = 150) -> np.ndarray:
    """Axial, coronal and sagittal middle slices side by side (radiological display: patient left on the right)."""
    from PIL import Image

    a = _iso(img)
    z, y, x = (s // 2 for s in a.shape)
    # LPS array: rows of an axial slice go anterior -> posterior; coronal/sagittal flip z so superior is up
    slices = [a[z], a[::-1, y, :], a[::-1, :, x]]
    tiles = []
    for s in slices:
        w = _window(s, ct)
        pil = Image.fromarray(w)
        pil = pil.resize((max(1, int(round(pil.width * height / pil.height))), height))
        tiles.append(np.asarray(pil))
    gap = np.zeros((height, 4), np.uint8)
    return np.concatenate([t for tile in tiles for t in (tile, gap)], 1)


def sheet(rows: list[tuple[str, np.ndarray]], out: str | Path) -> Path:
    """Stack labelled rows into one PNG."""
    from PIL import Image, ImageDraw

    width = max(r.shape[1] for _, r in rows) + 110
    height = sum(r.shape[0] + 4 for _, r in rows)
    canvas = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    top = 0
    for text, r in rows:
        canvas.paste(Image.fromarray(r), (110, top))
        draw.text((4, top + r.shape[0] // 2 - 6), text, fill=255)
        top += r.shape[0] + 4
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(out)
    return out


def main(argv=None) -> int:
    import torch

    from multimodalseg.io import read_image
    from multimodalseg.synthesis.generate import make_synth_case

    torch.set_num_threads(1)
    p = argparse.ArgumentParser(description="picture sheet of synthetic cases")
    p.add_argument("--task", required=True)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--n", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--modality")
    p.add_argument("--roles", nargs="*")
    p.add_argument("--real", nargs="*", default=[], help="real images to show beside, LABEL=PATH")
    args = p.parse_args(argv)
    rows = []
    for spec in args.real:
        label, path = spec.split("=", 1)
        rows.append((f"real {label}", views(read_image(path), ct=label.startswith("ct"))))
    for i in range(args.n):
        case = make_synth_case(args.task, args.seed + i, modality=args.modality)
        for role, img in case.images.items():
            if args.roles and role not in args.roles:
                continue
            ct = role == "ct" or case.modality == "ct"
            rows.append((f"synth {args.seed + i} {role}", views(img, ct=ct)))
    print(sheet(rows, args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
