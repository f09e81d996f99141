"""``multimodalseg models list | import FILE | path``: the model catalogs and the user's model cache."""

from __future__ import annotations

import argparse
import json

from multimodalseg import catalog


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list, import and locate model bundles",
                       description="Models come from the shipped catalog and the user's cache "
                                   "($MULTIMODALSEG_HOME/models, default ~/.cache/multimodalseg/models).")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    ls = actions.add_parser("list", help="list the models of every catalog")
    ls.add_argument("--task", help="only this task's models")
    ls.add_argument("--json", action="store_true", help="print the entries as JSON")
    imp = actions.add_parser("import", help="check a bundle's sha256 and copy it into the cache")
    imp.add_argument("file", help="bundle file (.pt)")
    imp.add_argument("--sha256", help="expected checksum (default: the FILE.sha256 beside it; one is required)")
    imp.add_argument("--force", action="store_true", help="replace an imported bundle with the same id and version")
    actions.add_parser("path", help="print the cache folder")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.action == "path":
        print(catalog.cache_dir())
        return 0
    if args.action == "import":
        return _import(args)
    return _list(args)


def _list(args: argparse.Namespace) -> int:
    if args.task:
        from multimodalseg.tasks import get_task

        get_task(args.task)
    entries = catalog.entries(args.task)
    if args.json:
        print(json.dumps({"cache": str(catalog.cache_dir()),
                          "models": [{**e.to_dict(), "source": e.source, "path": str(e.local_path())}
                                     for e in entries]}, indent=2))
        return 0
    if not entries:
        where = f" for task {args.task}" if args.task else ""
        print(f"no models{where}; train one ('python -m training fit ...', 'python -m training export ...') and "
              "run 'multimodalseg models import BUNDLE.pt'")
        return 0
    print(f"{'id':28s} {'version':9s} {'task':12s} {'source':8s} {'cpu s':>6s} {'gpu s':>6s}  notes")
    for e in entries:
        cpu, gpu = e.seconds.get("cpu"), e.seconds.get("gpu")
        notes = "demo: trained on synthetic data" if e.demo else ""
        print(f"{e.id:28s} {e.version:9s} {e.task:12s} {e.source:8s} {_num(cpu):>6s} {_num(gpu):>6s}  {notes}")
    return 0


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _import(args: argparse.Namespace) -> int:
    from multimodalseg.bundles import load_bundle

    expected = catalog.expected_sha256(args.file, args.sha256)
    bundle = load_bundle(args.file, sha256=expected)  # checks the file against it, then a weights-only load
    entry = catalog.add_to_user_catalog(args.file, bundle.meta, bundle.sha256, force=args.force)
    print(f"imported {entry.id} {entry.version} ({entry.task}) into {entry.local_path()}")
    return 0
