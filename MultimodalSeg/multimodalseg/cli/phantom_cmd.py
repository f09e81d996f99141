"""``multimodalseg phantom``: write seeded synthetic cases of a task in its public dataset layout."""

from __future__ import annotations

import argparse
from pathlib import Path

from multimodalseg.errors import UserError
from multimodalseg.tasks import get_task


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "phantom", help="write synthetic phantom cases in a task's public layout",
        description="Write N seeded synthetic cases (seeds S..S+N-1) of a task in its public layout: BraTS folders, "
                    "MM-WHS pairs, PET/MR subject folders or spine CT/MR cases, with landmark files per role.",
    )
    p.add_argument("--task", required=True, help="task id (see 'multimodalseg tasks')")
    p.add_argument("--out", required=True, type=Path, help="dataset folder to write into (created if missing)")
    p.add_argument("--n", type=int, default=1, help="number of cases (default 1)")
    p.add_argument("--seed", type=int, default=0, help="seed of the first case (default 0)")
    p.add_argument("--modality", help="whole-heart only: ct, mr or both (default both: N CT and N MR cases)")
    p.add_argument("--anisotropic", action="store_true", help="thick slices on the reference grid")
    p.add_argument("--oblique", action="store_true", help="oblique (tilted) image directions")
    p.add_argument("--clinical", action="store_true", help="clinical-size grids (e.g. 240x240x155 for BraTS)")
    p.add_argument("--png", action="store_true", help="also write an overlay PNG per case")
    p.add_argument("--overwrite", action="store_true", help="replace existing case files")
    p.set_defaults(func=run)


def _modalities(task, requested: str | None) -> list[str | None]:
    if not task.modalities:
        if requested is not None:
            raise UserError(f"--modality: task {task.id} has no modality choice")
        return [None]
    if requested in (None, "both"):
        return list(task.modalities)
    if requested not in task.modalities:
        raise UserError(f"--modality must be one of {', '.join(task.modalities)} or both, got '{requested}'")
    return [requested]


def run(args: argparse.Namespace) -> int:
    from multimodalseg.phantoms import case_paths, make_case, write_case
    from multimodalseg.phantoms.layouts import prepare_out_dir

    task = get_task(args.task)
    if args.n < 1:
        raise UserError(f"--n must be at least 1, got {args.n}")
    if args.seed < 0:
        raise UserError(f"--seed must be >= 0, got {args.seed}")
    modalities = _modalities(task, args.modality)
    out: Path = args.out
    prepare_out_dir(out)
    if not args.overwrite:  # refuse before generating anything: no partial dataset
        for modality in modalities:
            for i in range(args.n):
                for p in case_paths(task.id, out, i + 1, modality, misregistered=True, overlay=args.png).values():
                    if p.exists():
                        raise UserError("already exists; choose another folder or pass --overwrite", p)
    for modality in modalities:
        for i in range(args.n):
            case = make_case(task.id, args.seed + i, modality=modality, anisotropic=args.anisotropic,
                             oblique=args.oblique, clinical=args.clinical)
            written = write_case(case, out, i + 1, overwrite=args.overwrite, overlay=args.png)
            print(f"{case.case_id}: {len(written)} files")
            for key, path in written.items():
                print(f"  {key}: {path}")
    return 0
