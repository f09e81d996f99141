"""The synthesis engine's spatial step, plain torch against TorchIO (issue 14: "whichever is faster, measured").

One draw = a random affine (scale 0.8-1.2, rotation +-15 degrees) plus a smooth non-linear deformation applied to
a real label map (SynthSeg's map 01, packaged at 2 mm) with nearest-neighbour resampling onto a grid of the same
size. Ours: :class:`multimodalseg.synthesis.spatial.SpatialTransform` (a velocity field integrated by scaling and
squaring, one ``grid_sample`` per grid). TorchIO: ``RandomAffine`` + ``RandomElasticDeformation`` (a B-spline
field, not a diffeomorphism), SimpleITK resampling, the same ranges. Both one thread; median of ``--repeats``.

    python benchmarks/bench_synthesis.py [--repeats 5] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
import torch


def _median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up (imports, allocator)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--json")
    args = p.parse_args(argv)
    torch.set_num_threads(1)

    import torchio as tio
    from multimodalseg.synthesis.anatomy import load_anatomy
    from multimodalseg.synthesis.spatial import SpatialRanges, SpatialTransform

    anatomy = next(a for a in load_anatomy("petmr-brain") if a.name == "training_seg_01")
    labels, grid = anatomy.labels, anatomy.grid
    rng = np.random.default_rng(0)
    ranges = SpatialRanges(flip=0.0, max_sigma_mm=4.0)

    def ours() -> np.ndarray:
        transform = SpatialTransform(rng, anatomy.centre(), anatomy.extent_mm(), ranges)
        return transform.sample(labels, grid, grid)

    affine = np.eye(4)
    affine[:3, :3] = np.diag(grid.spacing)
    subject = tio.Subject(label=tio.LabelMap(tensor=torch.from_numpy(labels.T[None].astype(np.int16)), affine=affine))
    torchio = tio.Compose([tio.RandomAffine(scales=0.2, degrees=15, isotropic=False),
                           tio.RandomElasticDeformation(num_control_points=7, max_displacement=8.0)])

    def theirs() -> np.ndarray:
        return torchio(subject)["label"].data.numpy()

    result = {"shape_zyx": list(labels.shape), "spacing_mm": list(grid.spacing), "threads": 1,
              "ours_s": round(_median_seconds(ours, args.repeats), 3),
              "torchio_s": round(_median_seconds(theirs, args.repeats), 3)}
    result["ratio_torchio_over_ours"] = round(result["torchio_s"] / result["ours_s"], 2)
    print(json.dumps(result))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
