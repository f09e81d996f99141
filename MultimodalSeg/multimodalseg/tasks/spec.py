"""Data types of a task specification: the single source of truth for GUI, CLI, inference and training.

Pure Python: no numpy, no torch, so Slicer's own process can import it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from multimodalseg.errors import UserError

OutputKind = Literal["labels", "regions"]
Normalization = Literal["zscore", "ct", "pet", "none"]

# Slicer's DICOM master list, not its General Anatomy list: the latter is a subset that lacks several of our types
# (hippocampus, brain stem, the atria, vertebra, neoplasm); both use SCT 123037004 for "Anatomical Structure".
SLICER_ANATOMY_CONTEXT = "Segmentation category and type - DICOM master list"
SLICER_REGION_CONTEXT = "Anatomic codes - DICOM master list"


@dataclass(frozen=True)
class Code:
    """A coded concept, as DICOM and Slicer's terminologies write it: (scheme, value, meaning)."""

    scheme: str
    value: str
    meaning: str

    def slicer(self) -> str:
        return f"{self.scheme}^{self.value}^{self.meaning}"


ANATOMICAL_STRUCTURE = Code("SCT", "123037004", "Anatomical Structure")
MORPHOLOGICALLY_ALTERED = Code("SCT", "49755003", "Morphologically Altered Structure")
TISSUE = Code("SCT", "85756007", "Tissue")


@dataclass(frozen=True)
class Terminology:
    """SNOMED CT category and type of a segment, with optional laterality modifier.

    ``in_slicer_master_list`` is False where Slicer's DICOM master list
    (SegmentationCategoryTypeModifier-DICOM-Master.json) has no such (category, type, modifier): Slicer then shows
    the segment as a custom terminology entry, and DICOM SEG still carries the SNOMED CT codes given here.
    """

    category: Code
    type: Code
    modifier: Code | None = None
    in_slicer_master_list: bool = True

    def slicer_string(self) -> str:
        """The string ``vtkSegment.SetTerminology`` takes (Slicer's segmentations developer guide format)."""
        mod = self.modifier.slicer() if self.modifier else "^^"
        parts = (SLICER_ANATOMY_CONTEXT, self.category.slicer(), self.type.slicer(), mod)
        parts += (SLICER_REGION_CONTEXT, "^^", "^^")
        return "~".join(parts)


@dataclass(frozen=True)
class LabelSpec:
    """One output label.

    Args:
        value: the value written in output label maps (e.g. FreeSurfer 17, MM-WHS 500, BraTS 4).
        index: the contiguous class index used for training (1..N; 0 is background).
        name: display name (a segment's name in Slicer).
        color: RGB, 0-255.
        terminology: SNOMED CT category/type for Slicer and DICOM SEG.
    """

    value: int
    index: int
    name: str
    color: tuple[int, int, int]
    terminology: Terminology
    description: str = ""


@dataclass(frozen=True)
class RegionSpec:
    """An overlapping region made of labels (BraTS WT/TC/ET), by label name."""

    name: str
    labels: tuple[str, ...]
    description: str = ""


@dataclass(frozen=True)
class InputSpec:
    """One input image of a task, by role.

    Args:
        role: the name used on the command line (``--input t1ce=case_t1ce.nii.gz``) and in file names.
        title: what the GUI shows.
        modality: expected modality (``PET``, ``MR``, ``CT``), or several separated by ``|``.
        required: a missing required input is a user error.
        reference: the input whose grid the output is written on (exactly one per task).
        normalization: ``zscore`` (MR, per image over the foreground), ``ct`` (clip HU and scale),
            ``pet`` (SUV scaled), ``none``.
        name_patterns: case-insensitive substrings the Slicer widget uses to pre-select a volume.
    """

    role: str
    title: str
    modality: str
    required: bool = True
    reference: bool = False
    normalization: Normalization = "zscore"
    name_patterns: tuple[str, ...] = ()


_SIDES = (("Left-", "Right-"), ("Left_", "Right_"), ("left-", "right-"), ("left_", "right_"))


@dataclass(frozen=True)
class LateralPairs:
    """The Left/Right label pairs of a task: what a mirror along the patient's left-right axis exchanges.

    Attributes:
        names: ``(left name, right name)`` per pair.
        indices: ``(left, right)`` training indices (the channels of a ``(B, K, ...)`` probability tensor).
        values: ``(left, right)`` label-map values (the task's own convention).

    Example:
        >>> pairs = get_task("petmr-brain").lateral_pairs()
        >>> probs_mirrored = probs[:, pairs.permutation(probs.shape[1])]  # after flipping along the LR axis
        >>> labels_mirrored = np.asarray(pairs.index_lut(46))[labels]     # a flipped training-index map
    """

    names: tuple[tuple[str, str], ...]
    indices: tuple[tuple[int, int], ...]
    values: tuple[tuple[int, int], ...]

    def __bool__(self) -> bool:
        return bool(self.indices)

    def permutation(self, num_channels: int, members: int = 1) -> list[int]:
        """Channel order that swaps each pair: ``new[:, c] = old[:, perm[c]]``. ``num_channels`` includes
        background; with ``members`` > 1 the channels are ``members`` concatenated blocks of ``num_channels //
        members`` (an ensemble's output) and each block is swapped alike. An involution: applying it twice is the
        identity."""
        per = num_channels // members
        if per * members != num_channels:
            raise ValueError(f"{num_channels} channels do not split into {members} members")
        block = list(range(per))
        for left, right in self.indices:
            if max(left, right) >= per:
                raise ValueError(f"pair ({left}, {right}) outside {per} channels")
            block[left], block[right] = right, left
        return [m * per + c for m in range(members) for c in block]

    def index_lut(self, num_classes: int) -> list[int]:
        """Lookup table for training-index maps (``lut[labels]``): each pair's indices exchanged, others kept."""
        return self.permutation(num_classes)

    def value_map(self) -> dict[int, int]:
        """Label value -> its mirror's value, both directions (values without a partner are absent)."""
        return {**{a: b for a, b in self.values}, **{b: a for a, b in self.values}}


def lateral_axis(direction: Sequence[float]) -> int:
    """The array axis of a ``(Z, Y, X)`` NumPy/torch volume that runs closest to the patient's left-right axis.

    ``direction`` is ITK's row-major 3x3 direction matrix (``image.GetDirection()``): column ``d`` is the LPS
    direction of index axis ``d`` (x, y, z), and array axis ``2 - d`` holds index axis ``d``. The axis whose column
    has the largest LPS x component is the one a flip mirrors left and right; for oblique grids that is the axis
    nearest to left-right (a flip along it still moves left structures to the right).
    """
    if len(direction) != 9:
        raise ValueError(f"a 3D direction matrix has 9 entries, got {len(direction)}")
    lps_x = [abs(float(direction[d])) for d in range(3)]  # row 0: the x (left-right) component of each column
    return 2 - max(range(3), key=lambda d: lps_x[d])


@dataclass(frozen=True)
class TaskSpec:
    """A workflow: its inputs, labels, output kind, default geometry and network.

    Like nnU-Net's ``dataset.json``: the GUI, the CLI, inference and training all read this object.
    ``network`` is a name in ``multimodalseg.nets.NETWORKS`` (imported lazily), so this module needs no torch.
    """

    id: str
    title: str
    description: str
    inputs: tuple[InputSpec, ...]
    labels: tuple[LabelSpec, ...]
    output_kind: OutputKind = "labels"
    regions: tuple[RegionSpec, ...] = ()
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
    patch_size: tuple[int, int, int] = (128, 128, 128)
    # The array orientation training brings every case to (``multimodalseg.orientation``): LPS, ITK's identity
    # direction, the grid ``multimodalseg.synthesis`` generates on whatever the anatomy map's own orientation.
    orientation: str | None = "LPS"
    network: str | None = None
    network_config: Mapping[str, Any] = field(default_factory=dict)
    # Values some datasets use for a label, read as the label's own value (MM-WHS 421 -> 420).
    label_aliases: Mapping[int, int] = field(default_factory=dict)
    # Left/right pairs the names do not show (``(left name, right name)``); ``lateral_pairs`` adds them.
    mirror_pairs: tuple[tuple[str, str], ...] = ()
    # Other value conventions for the same labels: convention name -> {label name: value}.
    label_conventions: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    modalities: tuple[str, ...] = ()
    # Post-processing applied to the predicted label map, "module:function", imported lazily by inference.
    postprocess: str | None = None
    # Per-case extras of the segmentation report (PET/MR: SUV statistics per structure), "module:function",
    # imported lazily by inference (``multimodalseg.inference.extras``).
    report_extras: str | None = None
    # The networks are trained on skull-stripped input (BraTS): whole-head input is stripped by a brain-mask bundle
    # first (``multimodalseg.inference.brain_mask``, ``segment --skull-strip``).
    skull_strip: bool = False

    def __post_init__(self) -> None:
        refs = [i.role for i in self.inputs if i.reference]
        if len(refs) != 1:
            raise ValueError(f"task {self.id}: exactly one reference input needed, got {refs}")
        indices = sorted(lab.index for lab in self.labels)
        if indices != list(range(1, len(self.labels) + 1)):
            raise ValueError(f"task {self.id}: label indices must be 1..{len(self.labels)}")
        if len({lab.value for lab in self.labels}) != len(self.labels):
            raise ValueError(f"task {self.id}: label values must be unique")
        if self.orientation is not None:
            from multimodalseg.orientation import check_code

            check_code(self.orientation)

    @property
    def reference_role(self) -> str:
        return next(i.role for i in self.inputs if i.reference)

    @property
    def roles(self) -> tuple[str, ...]:
        return tuple(i.role for i in self.inputs)

    @property
    def num_classes(self) -> int:
        """Output channels for exclusive labels, including background."""
        return len(self.labels) + 1

    def input(self, role: str) -> InputSpec:
        for spec in self.inputs:
            if spec.role == role:
                return spec
        raise UserError(f"unknown input role '{role}' for task {self.id} (roles: {', '.join(self.roles)})")

    def label(self, name: str) -> LabelSpec:
        for lab in self.labels:
            if lab.name == name:
                return lab
        raise KeyError(name)

    def lateral_pairs(self) -> LateralPairs:
        """The Left/Right pairs: labels named ``Left-X``/``Right-X`` (FreeSurfer's style, also ``Left_``, lower
        case), plus :attr:`mirror_pairs`. A flip along the patient's left-right axis (:func:`lateral_axis`) must
        exchange each pair, in flip TTA, in training augmentation and in synthetic data."""
        by_name = {lab.name: lab for lab in self.labels}
        pairs: list[tuple[str, str]] = []
        for lab in self.labels:
            for left, right in _SIDES:
                if lab.name.startswith(left) and (partner := right + lab.name[len(left):]) in by_name:
                    pairs.append((lab.name, partner))
        for left, right in self.mirror_pairs:
            if left not in by_name or right not in by_name:
                raise ValueError(f"task {self.id}: mirror pair ({left}, {right}) names an unknown label")
            if (left, right) not in pairs:
                pairs.append((left, right))
        used = [n for pair in pairs for n in pair]
        if len(used) != len(set(used)):
            raise ValueError(f"task {self.id}: a label is in more than one left/right pair")
        return LateralPairs(tuple(pairs), tuple((by_name[a].index, by_name[b].index) for a, b in pairs),
                            tuple((by_name[a].value, by_name[b].value) for a, b in pairs))

    def value_to_index(self, convention: str | None = None) -> dict[int, int]:
        """Map from label-map values (in ``convention``, default the task's own) to training indices; 0 -> 0."""
        table = {0: 0}
        values = self.values(convention)
        for lab in self.labels:
            table[values[lab.name]] = lab.index
        if convention is None:
            for alias, target in self.label_aliases.items():
                table[alias] = table[target]
        return table

    def index_to_value(self, convention: str | None = None) -> dict[int, int]:
        values = self.values(convention)
        return {0: 0, **{lab.index: values[lab.name] for lab in self.labels}}

    def values(self, convention: str | None = None) -> dict[str, int]:
        """Label name -> value in ``convention`` (None: the task's own values)."""
        if convention is None:
            return {lab.name: lab.value for lab in self.labels}
        if convention not in self.label_conventions:
            known = ", ".join(self.label_conventions) or "none"
            raise UserError(f"unknown label convention '{convention}' for task {self.id} (known: {known})")
        return dict(self.label_conventions[convention])

    def check_label_values(
        self, present: Iterable[int], path: str | None = None, convention: str | None = None
    ) -> None:
        """Raise a UserError naming ``path`` when a label map holds values outside the task's table."""
        allowed = set(self.value_to_index(convention))
        unknown = sorted(int(v) for v in set(present) - allowed)
        if unknown:
            shown = ", ".join(map(str, unknown[:10])) + (" ..." if len(unknown) > 10 else "")
            raise UserError(
                f"label values {shown} are not in the {self.id} label table "
                f"(allowed: {', '.join(map(str, sorted(allowed)))})",
                path,
            )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, as ``multimodalseg tasks --json`` prints it."""
        d = asdict(self)
        d["reference"] = self.reference_role
        d["num_labels"] = len(self.labels)
        d["label_aliases"] = {str(k): v for k, v in self.label_aliases.items()}
        d["network_config"] = dict(self.network_config)
        d["label_conventions"] = {k: dict(v) for k, v in self.label_conventions.items()}
        d["mirror_pairs"] = [list(p) for p in self.mirror_pairs]
        d["lateral_pairs"] = [list(p) for p in self.lateral_pairs().values]
        for lab, out in zip(self.labels, d["labels"]):
            out["terminology_string"] = lab.terminology.slicer_string()
        return d
