"""``segment`` options beyond the common ones: registration transforms per input and the spine outputs.

``--transform [ROLE=]TFM`` applies an ITK transform file (``multimodalseg register`` writes ``transform.tfm``:
fixed/reference -> moving, LPS) to that input while it is resampled onto the reference grid; without ``ROLE=`` it
is for the task's only non-reference input (spine: the MR). The spine options choose the fused image
(``--fusion-model``, ``--no-fusion``) and the level of the lowest vertebra (``--lowest-level``); the whole-heart
cascade's stages can be switched off (``--no-localization``, ``--no-refinement``); the brain tumour's skull
stripping of whole-head input (``--skull-strip``, ``--brain-mask-model``) can be forced or switched off.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from multimodalseg.errors import UserError

SPINE_TASK = "spine"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--transform", action="append", default=[], metavar="[ROLE=]TFM",
                   help="registration transform of an input ('multimodalseg register' writes it; fixed -> moving), "
                        "applied while resampling it onto the reference grid; ROLE= may be left out when the "
                        "task has one non-reference input (spine: the MR)")
    p.add_argument("--allow-dicom-without-geometry", action="store_true",
                   help="read DICOM inputs without position/orientation tags, multi-frame (e.g. cine) or temporal "
                        "series as GDCM stacks them (refused by default: their slice spacing is unknown)")
    g = p.add_argument_group("spine (outputs beside the label map: OUT_disagreement and OUT_fused)")
    g.add_argument("--fusion-model", metavar="ID|PATH", help="fusion bundle for the fused CT-MR image "
                   "(default: the newest fusion model in the catalogs, if any)")
    g.add_argument("--no-fusion", action="store_true", help="do not write the fused CT-MR image")
    g.add_argument("--fusion-no-pad", action="store_true", help="fuse unpadded slices (default: padded as the fusion "
                   "model was trained, 512x512 as the spine paper unless its bundle says otherwise)")
    g.add_argument("--lowest-level", metavar="LEVEL", help="level of the lowest vertebra in the image (default L5)")
    g = p.add_argument_group("brain tumour (its networks expect skull-stripped MR, as BraTS gives it)")
    g.add_argument("--skull-strip", choices=("auto", "always", "never"), default=None,
                   help="strip scalp, skull and orbits with the brain-mask model before the network: auto (default) "
                        "when the input is not already stripped, always, or never")
    g.add_argument("--brain-mask-model", metavar="ID|PATH",
                   help="brain-mask bundle (default: the newest brain-mask model in the catalogs)")
    g = p.add_argument_group("whole-heart cascade (bundles with localisation -> ROI -> MAUNet -> SCN stages)")
    g.add_argument("--no-localization", action="store_true",
                   help="skip the localisation network: centre the ROI on the body (or the image)")
    g.add_argument("--no-refinement", action="store_true", help="skip the SCN refinement of the ROI labels")


def parse_transforms(items: list[str], task) -> dict[str, Path]:
    """``[ROLE=]TFM`` items -> {role: path}; checked against the task's roles (UserError otherwise)."""
    moving = [r for r in task.roles if r != task.reference_role]
    out: dict[str, Path] = {}
    for item in items:
        role, sep, path = item.partition("=")
        if not sep:
            if len(moving) != 1:
                raise UserError(f"--transform: task {task.id} has {len(moving)} non-reference inputs; write "
                                f"ROLE=TFM ({', '.join(moving) or 'none'})")
            role, path = moving[0], item
        role, path = role.strip(), path.strip()
        if not role or not path:
            raise UserError(f"--transform expects [ROLE=]TFM, got '{item}'")
        if role == task.reference_role:
            raise UserError(f"--transform: '{role}' is the reference input (the output grid); transform the other "
                            "inputs onto it")
        if role not in task.roles:
            raise UserError(f"--transform: unknown input role '{role}' (roles: {', '.join(task.roles)})")
        if role in out:
            raise UserError(f"--transform for '{role}' given twice")
        out[role] = Path(path)
    return out


def read_transforms(paths: dict[str, Path]) -> dict[str, Any]:
    """Read the transform files (UserError naming a missing or unreadable one)."""
    from multimodalseg.registration import read_transform

    return {role: read_transform(path) for role, path in paths.items()}


def spine_options(args: argparse.Namespace, task) -> dict[str, Any]:
    """Options for the spine report extras; the spine options given for another task are a UserError."""
    given = [name for name, value in (("--fusion-model", args.fusion_model), ("--no-fusion", args.no_fusion),
                                      ("--fusion-no-pad", args.fusion_no_pad), ("--lowest-level", args.lowest_level))
             if value]
    if task.id != SPINE_TASK:
        if given:
            raise UserError(f"{', '.join(given)}: only for the spine task, not {task.id}")
        return {}
    if args.fusion_model and args.no_fusion:
        raise UserError("--fusion-model and --no-fusion contradict each other")
    from multimodalseg.inference.devices import slice_workers
    from multimodalseg.postprocessing.spine import LEVELS

    if args.lowest_level and args.lowest_level not in LEVELS:
        raise UserError(f"--lowest-level: unknown vertebral level '{args.lowest_level}' (use one of "
                        f"{', '.join(LEVELS)})")
    return {"fusion": not args.no_fusion, "fusion_model": args.fusion_model, "lowest_level": args.lowest_level,
            "device": args.device, "fusion_pad": not args.fusion_no_pad,
            "fusion_workers": slice_workers(getattr(args, "threads", None))}


def cascade_options(args: argparse.Namespace, bundle) -> dict[str, Any] | None:
    """Stage switches for a cascade bundle (``Predictor(cascade=...)``); refused for a bundle without stages."""
    given = [name for name, value in (("--no-localization", args.no_localization),
                                      ("--no-refinement", args.no_refinement)) if value]
    if not bundle.meta.get("cascade"):
        if given:
            raise UserError(f"{', '.join(given)}: model {bundle.meta.get('id', '?')} is not a cascade (only "
                            "whole-heart cascade bundles have stages)", bundle.path)
        return None
    return {"localize": not args.no_localization, "refine": not args.no_refinement}


def skull_strip_options(args: argparse.Namespace) -> dict[str, Any]:
    """``Predictor(skull_strip=..., brain_mask_model=...)``; the predictor refuses them for a task without it."""
    mode = getattr(args, "skull_strip", None)
    model = getattr(args, "brain_mask_model", None)
    if mode == "never" and model:
        raise UserError("--skull-strip never and --brain-mask-model contradict each other")
    return {"skull_strip": mode or "auto", "brain_mask_model": model}
