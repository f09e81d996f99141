"""Thin adapter from the backend's model catalogs (``multimodalseg.catalog``, no torch) to the model selector.

Plain Python.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from multimodalseg import catalog


@dataclass(frozen=True)
class ModelChoice:
    """One item of the model selector.

    Attributes:
        modelId: the ``--model`` value; empty for "the newest model of the task".
        text: what the selector shows.
        toolTip: version, source, measured time and validation metrics.
        demo: trained on synthetic data only.
    """

    modelId: str
    text: str
    toolTip: str
    demo: bool = False


def _seconds(entry: catalog.Entry) -> str:
    parts = [f"{k.upper()} {float(entry.seconds[k]):.0f} s" for k in ("cpu", "gpu") if entry.seconds.get(k)]
    return ", ".join(parts)


def _metrics(entry: catalog.Entry) -> str:
    shown = [f"{k} {v:.3f}" for k, v in entry.metrics.items()
             if isinstance(v, (int, float)) and not isinstance(v, bool)]
    return ", ".join(shown[:4])


def modelChoices(taskId: str) -> list[ModelChoice]:
    """The selector items for a task: "newest" first, then each catalog entry (newest version first per id).

    An unreadable catalog raises ``UserError`` (the panel shows it); no catalog at all gives only "newest".
    """
    # Segmentation models only: a task may also list other kinds (the spine's fusion model).
    entries = sorted(catalog.entries(taskId, kind="segmentation"),
                     key=lambda e: (e.id, catalog.version_key(e.version), e.source == "user"), reverse=True)
    choices = [ModelChoice("", "Newest model for this task", "The newest version in the shipped and user catalogs.")]
    seen: set[str] = set()
    listed: set[tuple[str, str]] = set()
    for entry in entries:
        if (entry.id, entry.version) in listed:  # in both catalogs: the user's copy (sorted first) is the one used
            continue
        listed.add((entry.id, entry.version))
        # "--model ID" resolves to the newest version of ID; an older version is passed by its bundle path.
        value = entry.id if entry.id not in seen else str(entry.local_path())
        seen.add(entry.id)
        text = f"{entry.id} {entry.version}" + (" (demo: synthetic data only)" if entry.demo else "")
        tip = [entry.description or entry.id, f"source: {entry.source} catalog ({entry.catalog})"]
        if _seconds(entry):
            tip.append(f"measured time per case: {_seconds(entry)}")
        if _metrics(entry):
            tip.append(f"validation: {_metrics(entry)}")
        if entry.demo:
            tip.append("Demo model trained on synthetic data: not for clinical images.")
        choices.append(ModelChoice(value, text, "\n".join(tip), entry.demo))
    return choices


def cacheFolder() -> Path:
    """The user's model cache (imported bundles and their catalog)."""
    return catalog.cache_dir()
