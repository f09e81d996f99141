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
from typing import Any

from multimodalseg.cli import run_command
from multimodalseg.errors import UserError

CONFIG_DIR = Path(__file__).parents[1] / "configs"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m training",
                                     description="Train, validate and export MultimodalSeg models.")
    parser.add_argument("--debug", action="store_true", help="show the full traceback on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show the full traceback")

    p = sub.add_parser("fit", parents=[common], help="train a config's recipe (every stage) into a run folder")
    p.add_argument("--config", required=True,
                   help=f"YAML config (examples: {', '.join(sorted(f.name for f in CONFIG_DIR.glob('*.yaml')))} "
                        f"in {CONFIG_DIR})")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set train.epochs=5 (repeatable; values are YAML)")
    p.add_argument("--data", help="dataset folder (overrides data.root)")
    p.add_argument("--out", help="run folder (default: runs/NAME)")
    p.add_argument("--init-from", metavar="BUNDLE", help="start from a model bundle's weights (fine-tuning)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out at the stage (and epoch) where it stopped")
    p.add_argument("--dry-run", action="store_true",
                   help="check the config and the data, print the recipe (stages, networks, data, augmentation); "
                        "train nothing")
    p.add_argument("--device", help="auto, cpu, cuda, cuda:N (overrides train.device)")
    p.add_argument("--overwrite", action="store_true", help="start over in a folder that holds a run")
    p.set_defaults(func=run_fit)

    p = sub.add_parser("validate", parents=[common],
                       help="score a model on every labelled case of a dataset (through inference)")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--bundle", help="model bundle (.pt with its .sha256)")
    source.add_argument("--checkpoint", help="training checkpoint (exported to a temporary bundle first)")
    source.add_argument("--run", help="a run folder of `fit` (its bundle or best checkpoint)")
    p.add_argument("--data", help="dataset folder (default: the run's data.root)")
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
    source.add_argument("--run", help="a run folder of `fit`: its bundle, else its best checkpoint, is exported")
    p.add_argument("-o", "--out", required=True, help="bundle file (.pt); a .sha256 file is written beside it")
    p.add_argument("--id", dest="model_id", help="model id (default: the config's name)")
    p.add_argument("--version", help="model version (default: the config's)")
    p.add_argument("--demo", action=argparse.BooleanOptionalAction, default=None,
                   help="mark as trained on synthetic phantoms (default: the config's demo flag)")
    p.set_defaults(func=run_export)

    p = sub.add_parser("check", parents=[common],
                       help="check a dataset (modalities, label values, geometry, readability)")
    p.add_argument("--task", help="task id (default: the run's)")
    p.add_argument("--data", help="dataset folder (default: the run's data.root)")
    p.add_argument("--run", help="a run folder of `fit`: its task, data folder, layout and convention")
    p.add_argument("--layout", default=None, help="dataset layout (default: the run's, else detect)")
    p.add_argument("--convention", help="label convention of the label maps (default: the layout's)")
    p.set_defaults(func=run_check)
    return parser


def _rank() -> int:
    return int(os.environ.get("RANK", "0"))


def run_fit(args: argparse.Namespace) -> int:
    from training.core.config import load_config
    from training.core.fit import dry_run, fit_run

    config = load_config(args.config)
    if args.overrides:  # after the recipe filled in its defaults, so every recipe key can be overridden
        from training.core.recipes import resolve

        resolve(config)
        config = config.with_overrides(list(args.overrides))
    if args.data:
        config.data.root = args.data
    if args.init_from:
        config.init_from = args.init_from
    if args.device:
        config.train.device = args.device
    if args.dry_run:
        print(dry_run(config).format())
        return 0
    out = Path(args.out) if args.out else Path("runs") / config.name
    summary = fit_run(config, out, resume=args.resume, overwrite=args.overwrite)
    if _rank() == 0:
        print(f"{summary['recipe']}: {_stages_line(summary['stages'])}; run folder {out}"
              + (f"; bundle {summary['bundle']}" if summary.get("bundle") else ""))
    return 0


def _stages_line(stages: dict[str, Any]) -> str:
    """``supervised: trained 5 epochs (early stop); best validation Dice 0.8123 at epoch 4``, stage by stage."""
    parts = []
    for name, entry in stages.items():
        text = f"{name}: trained"
        if "last_epoch" in entry:
            n = entry["last_epoch"]
            text += f" {n} epoch{'s' * (n != 1)}" + (" (early stop)" if entry.get("stopped_early") else "")
        if entry.get("best_dice_mean") is not None:
            text += f"; best validation Dice {entry['best_dice_mean']:.4f} at epoch {entry['best_epoch']}"
        parts.append(text)
    return "; ".join(parts)


def run_validate(args: argparse.Namespace) -> int:
    import tempfile

    from multimodalseg.tasks import get_task

    from training.core.validate import format_summary, format_validation, pet_role, validate_bundle
    from training.datasets import check_dataset, find_cases

    levels = _levels(args.noise_levels)
    data = args.data or (_run_config(args.run).data.root if args.run else None)
    if not data:
        raise UserError("validate needs --data DIR (or --run RUN with data.root)")
    with tempfile.TemporaryDirectory(prefix="mmseg-validate-") as tmp:
        if args.checkpoint:
            from training.core.export import export_checkpoint

            bundle, _ = export_checkpoint(args.checkpoint, Path(tmp) / "checkpoint.pt")
        elif args.run:
            from training.core.export import export_run

            bundle, _ = export_run(args.run, Path(tmp) / "run.pt")
        else:
            bundle = Path(args.bundle)
        from multimodalseg.bundles import load_bundle

        task = get_task(load_bundle(bundle).task)
        if levels and pet_role(task) is None:
            raise UserError(f"--noise-levels: task {task.id} has no PET input")
        kind = load_bundle(bundle).meta.get("kind") or "segmentation"
        if kind != "segmentation":
            raise UserError(f"a {kind} model has no labels to validate against", bundle)
        layout, cases = find_cases(task, data, args.layout, convention=args.convention)
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
    from training.core.export import export_checkpoint, export_run

    options = {"model_id": args.model_id, "version": args.version, "demo": args.demo}
    if args.run:
        path, digest = export_run(args.run, args.out, **options)
    else:
        path, digest = export_checkpoint(args.checkpoint, args.out, **options)
    print(f"wrote {path} (sha256 {digest})")
    return 0


def _run_config(run: str) -> Any:
    from training.core.config import load_config

    path = Path(run) / "config.yaml"
    if not path.is_file():
        raise UserError("not a run folder of `python -m training fit` (no config.yaml)", run)
    return load_config(path)


def run_check(args: argparse.Namespace) -> int:
    from multimodalseg.tasks import get_task

    from training.datasets import check_dataset, find_cases

    config = _run_config(args.run) if args.run else None
    task_id = args.task or (config.task if config else None)
    data = args.data or (config.data.root if config else None)
    if not task_id or not data:
        raise UserError("check needs --task and --data (or --run RUN)")
    layout = args.layout or (config.data.layout if config else "auto")
    convention = args.convention or (config.data.label_convention if config else None)
    task = get_task(task_id)
    layout, cases = find_cases(task, data, layout, convention=convention)
    report = check_dataset(task, cases, layout)
    print(report.format())
    report.raise_if_problems()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; returns the exit code (0 ok, 1 internal error, 2 user error, 130 interrupted)."""
    return run_command(build_parser().parse_args(argv), "training", show_errors=_rank() == 0)


if __name__ == "__main__":
    sys.exit(main())
