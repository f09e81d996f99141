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
COMMANDS = ("tasks", "phantom", "evaluate", "register", "segment", "fuse", "models", "suv-stats", "demo")


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


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (0 ok, 1 internal error, 2 user error, 130 interrupted)."""
    args = build_parser().parse_args(argv)
    try:
        result = args.func(args)
        return int(result or 0)
    except UserError as exc:
        if args.debug:
            traceback.print_exc()
        print(f"multimodalseg {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"multimodalseg {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # an internal error: say so, and show the traceback only with --debug
        if args.debug:
            traceback.print_exc()
        print(f"multimodalseg {args.command}: internal error: {type(exc).__name__}: {exc} (rerun with --debug)",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
