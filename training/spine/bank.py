"""The synthetic bank the spine demo (``spine-mcf-demo`` 0.2.0) was trained and validated on.

    python -m training.spine.bank --out DIR/train --n 32 --seed 0                            # training anatomies
    python -m training.spine.bank --out DIR/val --n 6 --seed 10000 --held-out --crop-seed 2  # held-out tptbox

Each case is ``multimodalseg synth --task spine`` (1.5 mm, misregistered MR with its true transform), then its CT
and label are cropped to a box the size of the real tptbox crops the benchmark scores (``--slices`` axial slices
of the labelled column at a seeded random level, ``--columns`` left-right columns around it; the MR stays whole
and is resampled onto the cropped CT grid when read). Cropping also keeps the one-off fusion of each case cheap
(3-35 s instead of about 150 s on a shared core).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import numpy as np
import SimpleITK as sitk


def crop_case(src: Path, dst: Path, rng: np.random.Generator, slices: int = 72, columns: int = 80) -> list[int]:
    """Copy one case folder, its CT and label cropped (ITK size of the crop returned)."""
    dst.mkdir(parents=True, exist_ok=True)
    for f in src.iterdir():
        if f.name not in ("ct.nii.gz", "label.nii.gz"):
            shutil.copy(f, dst / f.name)
    ct, lab = sitk.ReadImage(str(src / "ct.nii.gz")), sitk.ReadImage(str(src / "label.nii.gz"))
    a = sitk.GetArrayViewFromImage(lab)
    zs, _, xs = np.nonzero(a)
    lo = zs.min() + slices // 3
    zc = int(rng.integers(lo, max(lo + 1, zs.max() - slices // 3)))
    z0 = int(np.clip(zc - slices // 2, 0, max(0, a.shape[0] - slices)))
    x0 = int(np.clip((xs.min() + xs.max()) // 2 - columns // 2, 0, max(0, a.shape[2] - columns)))
    size = [min(columns, a.shape[2]), a.shape[1], min(slices, a.shape[0])]
    for name, image in (("ct.nii.gz", ct), ("label.nii.gz", lab)):
        sitk.WriteImage(sitk.RegionOfInterest(image, size, [x0, 0, z0]), str(dst / name), True)
    return size


def main(argv: list[str] | None = None) -> int:
    import torch
    from multimodalseg.phantoms import write_case
    from multimodalseg.synthesis.anatomy import split_anatomy
    from multimodalseg.synthesis.generate import make_synth_case

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--n", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0, help="seed of the first case")
    ap.add_argument("--held-out", action="store_true", help="draw from the held-out anatomies (validation)")
    ap.add_argument("--slices", type=int, default=72)
    ap.add_argument("--columns", type=int, default=80)
    ap.add_argument("--crop-seed", type=int, default=1, help="seed of the crop positions")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    training, held = split_anatomy("spine")
    maps = held if args.held_out else training
    rng = np.random.default_rng(args.crop_seed)
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.n):
            case = make_synth_case("spine", args.seed + i, anatomy=maps)
            folder = next(iter(write_case(case, Path(tmp), i + 1, overwrite=True).values())).parent
            size = crop_case(folder, args.out / folder.name, rng, args.slices, args.columns)
            print(f"{folder.name}: {case.info['anatomy']}, CT crop {size}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
