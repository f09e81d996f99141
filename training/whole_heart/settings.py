"""Settings of the whole-heart cascade recipe (``recipe.config`` of ``recipe.name: cascade``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class StageConfig:
    """One extra stage: its network arguments and optimisation (the loss and schedule are the config's)."""

    enabled: bool = True
    network: dict[str, Any] = field(default_factory=dict)
    epochs: int = 20
    lr: float = 1e-3
    batch_size: int = 1
    samples_per_case: int = 2


@dataclass
class LocalizationStage(StageConfig):
    """The localiser: ``grid`` per modality (None: METHODS'), the coarse grid shifted by up to ``shift_mm``."""

    grid: dict[str, Any] | None = None
    shift_mm: float = 20.0


@dataclass
class RefinementStage(StageConfig):
    """The SCN: reads the image too (``scn_with_image``); ``residual``: MAUNet logits + SCN output."""

    scn_with_image: bool = True
    residual: bool = True


@dataclass
class SyntheticConfig:
    """CycleGAN MR -> CT data: the ``synthetic`` stage trains it and writes ``RUN/synthetic`` (``train: true``), or
    ``dir`` names a folder written before; the segmentation stages mix it in.

    Args:
        train: run the CycleGAN stage first and use its cases.
        dir: folder of synthetic CT cases (MM-WHS layout, ``ct_synth_<id>``); None: no synthetic data (unless
            ``train``).
        fraction: synthetic cases added = fraction × real CT training cases, rounded half up (paper: 0.5).
        iterations, lr, batch_size, patch_size, spacing, generator, discriminator: the CycleGAN's training.
    """

    train: bool = False
    dir: str | None = None
    fraction: float = 0.5
    iterations: int = 2000
    lr: float = 2e-4
    batch_size: int = 2
    patch_size: int = 32
    spacing: float = 3.0
    generator: dict[str, Any] = field(default_factory=lambda: {"channels": 8, "num_downsampling": 2,
                                                                "num_blocks": 2})
    discriminator: dict[str, Any] = field(default_factory=lambda: {"channels": 8, "num_layers_d": 2})


@dataclass
class CascadeConfig:
    """``recipe.config`` of the cascade recipe: ROI grid per modality (None: 64³ at 3 mm CT / 4 mm MR), ROI
    augmentation, the stages (the segmentation stage is the config's ``model``/``loss``/``optimizer``/``train``)."""

    roi: dict[str, Any] | None = None
    jitter_mm: float = 10.0
    rotate_degrees: float = 10.0
    scale_range: float = 0.1
    augment_prob: float = 0.5
    fallback: str = "body"
    evaluate: bool = True
    localization: LocalizationStage = field(default_factory=LocalizationStage)
    refinement: RefinementStage = field(default_factory=RefinementStage)
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)
