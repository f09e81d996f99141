"""Panel settings as they are stored in the module's parameter node (strings), and input auto-assignment.

Plain Python. The parameter node is saved with the scene, so a reopened scene shows the same model, device and
options; node selections are kept as node references (``input_<role>``) by ``Panel.py``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, fields

from multimodalseg.tasks import TaskSpec

from MultimodalSegLib.Command import DEVICE_KINDS

# Parameter-node reference roles never contain ':': vtkMRMLNode writes "role:id;" unescaped and splits at the first
# ':' when it reads a scene, so "input:t1ce" would come back as role "input" and be lost.
INPUT_REFERENCE_PREFIX = "input_"  # reference role of each task input: "input_t1ce"
UNCHOSEN_FOLDERS = ("", ".")  # ctkDirectoryButton.directory starts as "." (a default QDir): nothing chosen yet
DEVICE_ITEMS = (("auto", "Auto (GPU if available)"), ("cpu", "CPU"), ("gpu", "GPU (CUDA)"))  # (value, text)


def landmarkReferencePrefix(role: str) -> str:
    """Prefix of the landmark tab's parameters and references of input ``role``: ``landmarks_mr_``."""
    return f"landmarks_{role}_"


def chosenFolder(directory: object) -> str:
    """A directory button's folder, or "" when none was chosen (Slicer's working folder is never a choice)."""
    text = str(directory or "").strip()
    return "" if text in UNCHOSEN_FOLDERS else text


def _toBool(text: str) -> bool:
    return text.strip().lower() in ("1", "true", "yes", "on")


@dataclass
class PanelSettings:
    """The panel's options.

    Attributes:
        model: catalog model id; empty: the newest model of the task.
        device: ``auto``, ``cpu`` or ``gpu``.
        gpuIndex: which GPU when ``device`` is ``gpu``.
        tta: flip test-time augmentation.
        quick: the faster setting (sliding windows without overlap).
        modality: for multi-modality tasks (whole heart): ``ct``, ``mr`` or empty (the backend detects it).
        skullStrip: for tasks that strip whole-head MR (brain tumour): ``auto``, ``always`` or ``never``.
        trainingFolder: where "save for training" writes cases.
    """

    model: str = ""
    device: str = "auto"
    gpuIndex: int = 0
    tta: bool = False
    quick: bool = False
    modality: str = ""
    skullStrip: str = "auto"
    trainingFolder: str = ""

    def toParameters(self) -> dict[str, str]:
        """Every setting as a string, for ``vtkMRMLScriptedModuleNode.SetParameter``."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = ("true" if value else "false") if isinstance(value, bool) else str(value)
        return out

    @classmethod
    def fromParameters(cls, parameters: Mapping[str, str]) -> PanelSettings:
        """Settings from stored strings; missing or unreadable values fall back to the defaults."""
        settings = cls()
        for f in fields(cls):
            text = parameters.get(f.name)
            if text is None or text == "":
                continue
            default = getattr(settings, f.name)
            if isinstance(default, bool):
                setattr(settings, f.name, _toBool(text))
            elif isinstance(default, int):
                with contextlib.suppress(ValueError):
                    setattr(settings, f.name, max(0, int(text)))
            else:
                setattr(settings, f.name, text)
        if settings.device not in DEVICE_KINDS:
            settings.device = "auto"
        settings.trainingFolder = chosenFolder(settings.trainingFolder)
        return settings


def matchScore(patterns: Sequence[str], name: str) -> int:
    """How well a volume name matches a role: the length of its longest pattern found in the name (0: none)."""
    lowered = name.lower()
    return max((len(p) for p in patterns if p and p.lower() in lowered), default=0)


def autoAssign(
    task: TaskSpec,
    volumes: Sequence[tuple[str, str]],
    current: Mapping[str, str | None] | None = None,
    cleared: Collection[str] = (),
) -> dict[str, str | None]:
    """Pick a volume for each empty input role by the role's ``name_patterns``.

    Args:
        task: the task specification.
        volumes: ``(node id, node name)`` of the candidate volumes, in scene order.
        current: role -> node id already chosen (kept as it is).
        cleared: roles the user emptied on purpose: left empty.

    Returns:
        role -> node id (or None). Each volume is used once; the longest pattern wins, so ``case_t1ce`` goes to
        ``t1ce`` (pattern ``t1ce``) rather than ``t1`` (pattern ``t1``); ties go to the earlier volume.
    """
    result: dict[str, str | None] = {role: (current or {}).get(role) or None for role in task.roles}
    used = {v for v in result.values() if v}
    candidates = []
    for order, (nodeId, name) in enumerate(volumes):
        for spec in task.inputs:
            if spec.role in cleared:
                continue
            score = matchScore(spec.name_patterns, name)
            if score:
                candidates.append((-score, order, spec.role, nodeId))
    for _, _, role, nodeId in sorted(candidates):
        if result[role] is None and nodeId not in used:
            result[role] = nodeId
            used.add(nodeId)
    return result


def roleLabel(task: TaskSpec, role: str) -> str:
    """The selector's label: the role's title, with the reference input marked."""
    spec = task.input(role)
    text = spec.title
    if spec.reference:
        text += " (reference)"
    if not spec.required:
        text += " (optional)"
    return text + ":"


def roleToolTip(task: TaskSpec, role: str) -> str:
    spec = task.input(role)
    tip = f"{spec.title}: expected modality {spec.modality.replace('|', ' or ')}."
    if spec.reference:
        tip += " The result is written on this volume's grid (reference geometry)."
    else:
        tip += (f" Resampled onto the {task.input(task.reference_role).title} grid in physical space; "
                "register it first if the two are not aligned.")
    return tip


def modalityItems(task: TaskSpec) -> list[tuple[str, str]]:
    """``(value, text)`` of the modality selector; empty for tasks with one modality per input."""
    if not task.modalities:
        return []
    return [("", "Detect from the image"), *((m, m.upper()) for m in task.modalities)]


def skullStripItems(task: TaskSpec) -> list[tuple[str, str]]:
    """``(value, text)`` of the skull-stripping selector; empty for tasks that do not strip."""
    if not task.skull_strip:
        return []
    return [("auto", "Automatic (whole-head scans only)"), ("always", "Always"), ("never", "Never (already stripped)")]


def registrationTabTitle(task: TaskSpec, role: str) -> str:
    return f"{task.input(role).title} \u2192 {task.input(task.reference_role).title}"


def pointListLabels(task: TaskSpec, role: str) -> tuple[str, str]:
    """The landmark panel's labels for the fixed (reference) and the moving point list."""
    return f"Fixed ({task.input(task.reference_role).title}):", f"Moving ({task.input(role).title}):"
