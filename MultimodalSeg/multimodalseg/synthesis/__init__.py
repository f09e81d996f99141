"""SynthSeg-style synthetic training data from real anatomy, for every task.

Real label maps (packaged small copies, or ``--anatomy DIR``) are relabelled into painted values
(:mod:`.labels`), given task extras (a pasted tumour, a thorax or lumbar body model, stacked vertebrae), deformed
at random (affine + integrated velocity field, mirror with left/right labels swapped), sampled on each role's own
grid, painted with intensities drawn per sample (contrast-agnostic Gaussians or modality-aware priors: MR
sequences, CT Hounsfield units, FDG PET uptake) and degraded (resolution, bias field, gamma, noise).

Example:
    >>> import numpy as np
    >>> from multimodalseg.synthesis import generate, load_anatomy
    >>> maps = load_anatomy("spine")
    >>> sample = generate("spine", maps[0], np.random.default_rng(0))
    >>> sorted(sample.images), int(sample.label.max()) <= 2
    (['ct', 'mr'], True)
"""

from __future__ import annotations

from multimodalseg.synthesis.anatomy import Anatomy, load_anatomy
from multimodalseg.synthesis.generate import DEFAULT_SPACING, SynthSample, generate, make_synth_case

__all__ = ["DEFAULT_SPACING", "Anatomy", "SynthSample", "generate", "load_anatomy", "make_synth_case"]
