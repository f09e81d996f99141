"""The ``multimodalseg`` command line: one module per subcommand, each with ``register`` and ``run``.

User errors print one line naming the file and the problem and exit with code 2 (``--debug`` shows the
traceback). Subcommand modules import heavy packages (torch, MONAI) inside ``run`` so that ``--help`` and
light commands start fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import traceback
from collections.abc import Sequence

from multimodalseg import __version__
from multimodalseg.errors import UserError

# Subcommand modules, in the order ``--help`` lists them. A new command is a module here plus one name.
COMMANDS = ("tasks", "phantom", "synth", "evaluate", "register", "segment", "fuse", "models", "suv-stats", "demo",
            "serve")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="multimodalseg", description="Multimodal medical image segmentation (MultimodalSeg backend)."
    )
    parser.add_argument("--version", action="version", version=f"multimodalseg {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the full traceback on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        module = importlib.import_module(f"multimodalseg.cli.{name.replace('-', '_')}_cmd")
        module.register(sub)
    return parser


def run_command(args: argparse.Namespace, prog: str, *, show_errors: bool = True) -> int:
    """Run ``args.func(args)`` and turn its outcome into an exit code, as every MultimodalSeg command line does:
    0 ok, 2 user error (one line), 130 interrupted, 1 internal error; ``args.debug`` shows tracebacks.
    ``show_errors`` False keeps user errors quiet (e.g. all DDP ranks but the first)."""
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        if args.debug:
            traceback.print_exc()
        if show_errors:
            print(f"{prog} {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog} {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # an internal error: say so, and show the traceback only with --debug
        if args.debug:
            traceback.print_exc()
        print(f"{prog} {args.command}: internal error: {type(exc).__name__}: {exc} (rerun with --debug)",
              file=sys.stderr)
        return 1


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (0 ok, 1 internal error, 2 user error, 130 interrupted)."""
    return run_command(build_parser().parse_args(argv), "multimodalseg")


if __name__ == "__main__":
    sys.exit(main())
