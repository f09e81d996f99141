"""Optional inputs a case lacks: what stands in for each, or a refusal naming it (``Predictor.predict``)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from multimodalseg.errors import UserError
from multimodalseg.tasks.spec import TaskSpec


def check_missing(task: TaskSpec, meta: Mapping[str, Any], bundle_id: str, images: Mapping[str, Any],
                  emit: Callable[[dict], None]) -> dict[str, str]:
    """Optional inputs not given: role -> what stands in for it (``preprocessing.missing_inputs`` of the
    bundle, which training with modality dropout writes); a bundle without that entry refuses, naming the
    role. A warning event names the missing inputs."""
    missing = [r for r in task.roles if r not in images]
    if not missing:
        return {}
    allowed = dict((meta.get("preprocessing") or {}).get("missing_inputs") or {})
    refused = [r for r in missing if r not in allowed]
    if refused:
        raise UserError(f"model '{bundle_id}' needs the {', '.join(refused)} input"
                        f"{'s' if len(refused) > 1 else ''}: it was not trained to run without "
                        f"{'them' if len(refused) > 1 else 'it'} (pass --input {refused[0]}=PATH)")
    stand_in = {r: str(allowed[r]) for r in missing}
    emit({"event": "warning", "message": "missing input" + ("s " if len(missing) > 1 else " ")
          + ", ".join(missing) + ": " + ", ".join(sorted(set(stand_in.values())))
          + " stand in for them, as in the model's training with modality dropout"})
    return stand_in
