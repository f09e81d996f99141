"""``multimodalseg tasks``: the tasks, their inputs and labels."""

from __future__ import annotations

import argparse
import json

from multimodalseg.tasks import all_tasks, get_task


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("tasks", help="list the tasks, their inputs and labels")
    p.add_argument("task", nargs="?", help="show one task only")
    p.add_argument("--json", action="store_true", help="print the full specifications as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    tasks = [get_task(args.task)] if args.task else all_tasks()
    if args.json:
        print(json.dumps({"tasks": [t.to_dict() for t in tasks]}, indent=2))
        return 0
    for t in tasks:
        print(f"{t.id}: {t.title} ({len(t.labels)} labels, output {t.output_kind})")
        for i in t.inputs:
            flags = ", ".join(f for f, on in (("reference", i.reference), ("optional", not i.required)) if on)
            print(f"  input {i.role:6s} {i.modality:6s} {i.title}" + (f" [{flags}]" if flags else ""))
        if args.task:
            for lab in t.labels:
                print(f"  label {lab.value:4d} {lab.name}")
    return 0
