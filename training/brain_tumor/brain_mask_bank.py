"""The synthetic bank the brain-mask model (``brain-mask-demo``) is trained and validated on.

    python -m training.brain_tumor.brain_mask_bank --out BANK/train --n 160 --seed 0
    python -m training.brain_tumor.brain_mask_bank --out BANK/train --n 160 --seed 1000  # a second worker
    python -m training.brain_tumor.brain_mask_bank --out BANK/val --n 12 --seed 50000 --held-out

Each case is a ``multimodalseg synth --task brain-tumor`` sample (2 mm) whose four sequences share one grid: a
whole-head case (scalp, skull, orbits, neck muscles painted with any brightness per sequence) with probability
``--whole-head-fraction`` (default 0.75), otherwise skull-stripped as BraTS data is. The target is the stripped
brain (``synthesis.generate.brain_mask``: brain, tumour and the CSF inside the brain's closed outline) in both kinds,
so that already-stripped input keeps what it has. Each case's field of view reaches a random 12-80 mm beyond the
deformed brain (``MARGIN_MM``; the tumour cases' own is 12 mm), so that most whole-head cases show the whole head
with air around it, as a real head scan does. Training draws only from the training anatomies without
fsaverage and its mirror (their label maps have no tissue outside the brain, and the real-image check scores
fsaverage's own T1); ``--held-out`` draws from the held-out ones (``synthesis.anatomy.HELD_OUT``).

One ``case_NNNN.npz`` per case: ``images`` (4, Z, Y, X) float16 in the order :data:`SEQUENCES`, ``mask`` uint8,
``spacing`` (x, y, z) mm, ``whole_head``, ``anatomy``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

SEQUENCES = ("flair", "t1", "t1ce", "t2")
EXCLUDED = ("fsaverage", "fsaverage_xhemi")  # no extra-cerebral labels; fsaverage is the real-image check
SPACING = 2.0
MARGIN_MM = (12.0, 80.0)  # field beyond the brain: 12 is the tumour cases' own; wide ones show the whole head in air


def write_bank(out: Path, n: int, seed: int, *, held_out: bool = False, whole_head_fraction: float = 0.75,
               spacing: float = SPACING, margin_mm: tuple[float, float] = MARGIN_MM) -> list[dict]:
    """Write ``n`` cases (seeds ``seed``..``seed + n - 1``) to ``out``; returns their index rows."""
    from multimodalseg.synthesis.anatomy import split_anatomy
    from multimodalseg.synthesis.generate import brain_mask, generate

    training, held = split_anatomy("brain-tumor")
    maps = held if held_out else tuple(m for m in training if m.name not in EXCLUDED)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        rng = np.random.default_rng([seed + i, 15])
        anatomy = maps[int(rng.integers(len(maps)))]
        margin = float(np.random.default_rng([seed + i, 16]).uniform(*margin_mm))  # own stream: other draws stay
        sample = generate("brain-tumor", anatomy, rng, spacing=spacing, whole_head_fraction=whole_head_fraction,
                          margin_mm=margin)
        images = np.stack([sample.images[r] for r in SEQUENCES]).astype(np.float16)
        mask = brain_mask(sample).astype(np.uint8)
        whole = bool(sample.info.get("whole_head"))
        name = f"case_{seed + i:05d}.npz"
        np.savez_compressed(out / name, images=images, mask=mask, spacing=np.asarray([spacing] * 3),
                            whole_head=whole, anatomy=anatomy.name)
        rows.append({"file": name, "anatomy": anatomy.name, "whole_head": whole, "shape": list(mask.shape),
                     "margin_mm": round(margin, 1)})
        print(f"{name}: {anatomy.name}, {'whole head' if whole else 'stripped'}, {list(mask.shape)}", flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--n", type=int, default=320)
    ap.add_argument("--seed", type=int, default=0, help="seed of the first case")
    ap.add_argument("--held-out", action="store_true", help="draw from the held-out anatomies (validation)")
    ap.add_argument("--whole-head-fraction", type=float, default=0.75)
    args = ap.parse_args(argv)
    rows = write_bank(args.out, args.n, args.seed, held_out=args.held_out,
                      whole_head_fraction=args.whole_head_fraction)
    index = args.out / f"index_{args.seed}.json"
    index.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
