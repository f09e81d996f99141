"""Settings of the whole-heart cascade recipe (``recipe.config`` of ``recipe.name: cascade``).

The paper's ablation switches (CM-TranCaF, METHODS §C.1) are keys here and in the MAUNet's ``model.config``:
MTN ``synthetic.train``, SCN ``refinement.enabled``, PAB ``model.config.position_attention``, AG
``model.config.attention_gates``; ``train_modalities`` and ``mi_seg_hybrid`` choose the paper's CT-only training
or the hybrid with real MR and conditional instance norms (``training/configs/whole-heart-cascade-paper.yaml``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class StageConfig:
    """One extra stage: its network arguments and optimisation (the loss and schedule are the config's).

    ``iterations`` (optimiser steps), when set, replaces ``epochs``: epochs = ceil(iterations / steps per epoch),
    a step being one batch of ``batch_size`` cases × ``samples_per_case`` samples. ``weight_decay`` None: the
    config's ``optimizer.weight_decay``.
    """

    enabled: bool = True
    network: dict[str, Any] = field(default_factory=dict)
    epochs: int = 20
    iterations: int | None = None
    lr: float = 1e-3
    weight_decay: float | None = None
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
    augmentation, the stages (the segmentation stage is the config's ``model``/``loss``/``optimizer``/``train``).

    Args:
        train_modalities: the modalities of the real cases that train and validate the localiser, the MAUNet and
            the SCN (the CycleGAN reads the training split's MR and CT whatever this says). ``[ct]``: the paper
            (CT + synthetic CT, tested on CT); ``[ct, mr]``: real CT and MR (default, the demo cascade). The bundle
            records them (``cascade.modalities``) and warns on another modality.
        mi_seg_hybrid: the MI-Seg hybrid: real MR joins the training (``train_modalities`` + ``mr``) and the MAUNet's
            instance norms are conditioned on the modality (``conditional_modality``, CIN of the scope
            ``model.config.conditional_scope``, default encoder). Default False.
        iterations: optimiser steps of the segmentation stage; set, it replaces ``train.epochs`` (see
            :class:`StageConfig`). None: ``train.epochs``.
    """

    roi: dict[str, Any] | None = None
    train_modalities: list[str] = field(default_factory=lambda: ["ct", "mr"])
    mi_seg_hybrid: bool = False
    iterations: int | None = None
    jitter_mm: float = 10.0
    rotate_degrees: float = 10.0
    scale_range: float = 0.1
    augment_prob: float = 0.5
    fallback: str = "body"
    evaluate: bool = True
    localization: LocalizationStage = field(default_factory=LocalizationStage)
    refinement: RefinementStage = field(default_factory=RefinementStage)
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)
