"""``python -m training fit | validate | export | check``.

User errors (bad config, missing data, failed dataset check) print one line and exit with code 2, like the
``multimodalseg`` command (``--debug`` shows the traceback). Under ``torchrun`` only rank 0 prints.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from multimodalseg.cli import run_command
from multimodalseg.errors import UserError

CONFIG_DIR = Path(__file__).parent / "configs"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m training",
                                     description="Train, validate and export MultimodalSeg models.")
    parser.add_argument("--debug", action="store_true", help="show the full traceback on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show the full traceback")

    p = sub.add_parser("fit", parents=[common], help="train a model from a YAML config")
    p.add_argument("--config", required=True,
                   help=f"YAML config (examples: {', '.join(sorted(f.name for f in CONFIG_DIR.glob('*.yaml')))} "
                        f"in {CONFIG_DIR})")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set train.epochs=5 (repeatable; values are YAML)")
    p.add_argument("--data", help="dataset folder (overrides data.root)")
    p.add_argument("--out", help="run folder (default: runs/NAME)")
    p.add_argument("--init-from", metavar="BUNDLE", help="start from a model bundle's weights (fine-tuning)")
    p.add_argument("--resume", nargs="?", const="last", metavar="CHECKPOINT",
                   help="continue a run (default: OUT/checkpoints/last.pt)")
    p.add_argument("--device", help="auto, cpu, cuda, cuda:N (overrides train.device)")
    p.add_argument("--overwrite", action="store_true", help="start over in a folder that holds a run")
    p.set_defaults(func=run_fit)

    p = sub.add_parser("validate", parents=[common],
                       help="score a model on every labelled case of a dataset (through inference)")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--bundle", help="model bundle (.pt with its .sha256)")
    source.add_argument("--checkpoint", help="training checkpoint (exported to a temporary bundle first)")
    p.add_argument("--data", required=True, help="dataset folder")
    p.add_argument("--layout", default="auto", help="dataset layout (default: detect)")
    p.add_argument("--convention", help="label convention of the dataset's label maps")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    p.add_argument("--tta", action="store_true", help="flip test-time augmentation")
    p.add_argument("--noise-levels", metavar="L1,L2,...",
                   help="PET tasks: robustness curve, Dice with Gaussian noise of SD level x the PET's 99th "
                        "percentile added to the PET (e.g. 0.05,0.1,0.2; one more inference per level and case)")
    p.add_argument("--json", metavar="FILE", help="also write the metrics as JSON")
    p.set_defaults(func=run_validate)

    p = sub.add_parser("export", parents=[common], help="write a model bundle from a checkpoint")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", help="a checkpoint file")
    source.add_argument("--run", help="a run folder: its best checkpoint is exported")
    p.add_argument("-o", "--out", required=True, help="bundle file (.pt); a .sha256 file is written beside it")
    p.add_argument("--id", dest="model_id", help="model id (default: the config's name)")
    p.add_argument("--version", help="model version (default: the config's)")
    p.add_argument("--demo", action=argparse.BooleanOptionalAction, default=None,
                   help="mark as trained on synthetic phantoms (default: the config's demo flag)")
    p.set_defaults(func=run_export)

    p = sub.add_parser("check", parents=[common],
                       help="check a dataset (modalities, label values, geometry, readability)")
    p.add_argument("--task", required=True, help="task id")
    p.add_argument("--data", required=True, help="dataset folder")
    p.add_argument("--layout", default="auto", help="dataset layout (default: detect)")
    p.add_argument("--convention", help="label convention of the label maps (default: the layout's)")
    p.set_defaults(func=run_check)
    return parser


def _rank() -> int:
    return int(os.environ.get("RANK", "0"))


def run_fit(args: argparse.Namespace) -> int:
    from training.config import load_config

    overrides = list(args.overrides)
    config = load_config(args.config, overrides)
    if args.data:
        config.data.root = args.data
    if args.init_from:
        config.init_from = args.init_from
    if args.device:
        config.train.device = args.device
    out = Path(args.out) if args.out else Path("runs") / config.name

    from training.run import fit

    result = fit(config, out, resume=args.resume, overwrite=args.overwrite)
    if _rank() == 0:
        best = "n/a" if result.best_metric == float("-inf") else f"{result.best_metric:.4f}"
        stop = " (early stop)" if result.stopped_early else ""
        epochs = f"{result.last_epoch} epoch{'s' * (result.last_epoch != 1)}"
        print(f"trained {epochs}{stop}; best validation Dice {best} at epoch {result.best_epoch}; run folder {out}")
    return 0


def run_validate(args: argparse.Namespace) -> int:
    import tempfile

    from multimodalseg.tasks import get_task

    from training.datasets import check_dataset, find_cases
    from training.validate import format_summary, format_validation, pet_role, validate_bundle

    levels = _levels(args.noise_levels)
    with tempfile.TemporaryDirectory(prefix="mmseg-validate-") as tmp:
        if args.checkpoint:
            from training.export import export_checkpoint

            bundle, _ = export_checkpoint(args.checkpoint, Path(tmp) / "checkpoint.pt")
        else:
            bundle = Path(args.bundle)
        from multimodalseg.bundles import load_bundle

        task = get_task(load_bundle(bundle).task)
        if levels and pet_role(task) is None:
            raise UserError(f"--noise-levels: task {task.id} has no PET input")
        layout, cases = find_cases(task, args.data, args.layout, convention=args.convention)
        report = check_dataset(task, cases, layout)
        if not report.ok:
            print(report.format(), file=sys.stderr)
            report.raise_if_problems()
        result = validate_bundle(bundle, task, cases, device=args.device, tta=args.tta,
                                 noise_levels=levels)
    print(format_validation(result))
    print(format_summary(result), file=sys.stderr)  # stdout keeps the table alone; --json has everything
    if args.json:
        from multimodalseg.fileutil import atomic_write_text

        atomic_write_text(args.json, json.dumps(result, indent=2, allow_nan=False) + "\n")
    return 0


def _levels(text: str | None) -> list[float]:
    """``--noise-levels`` as finite numbers >= 0."""
    if text is None:
        return []
    try:
        levels = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UserError(f"--noise-levels '{text}' must be numbers separated by commas") from None
    if not levels or any(not 0 <= v < float("inf") for v in levels):
        raise UserError(f"--noise-levels '{text}' must be finite numbers >= 0")
    return levels


def run_export(args: argparse.Namespace) -> int:
    from training.export import export_checkpoint

    checkpoint = Path(args.checkpoint) if args.checkpoint else Path(args.run) / "checkpoints" / "best.pt"
    path, digest = export_checkpoint(checkpoint, args.out, model_id=args.model_id, version=args.version,
                                     demo=args.demo)
    print(f"wrote {path} (sha256 {digest})")
    return 0


def run_check(args: argparse.Namespace) -> int:
    from multimodalseg.tasks import get_task

    from training.datasets import check_dataset, find_cases

    task = get_task(args.task)
    layout, cases = find_cases(task, args.data, args.layout, convention=args.convention)
    report = check_dataset(task, cases, layout)
    print(report.format())
    report.raise_if_problems()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; returns the exit code (0 ok, 1 internal error, 2 user error, 130 interrupted)."""
    return run_command(build_parser().parse_args(argv), "training", show_errors=_rank() == 0)


if __name__ == "__main__":
    sys.exit(main())
