"""MultimodalSeg training: one ``python -m training fit`` for every method's recipe, export to the model bundles
the backend loads, validation through the predictor and a dataset check.

Layout:

- ``training.core``: config, recipes and the ``fit`` driver, the supervised loop, checkpoints, DDP, logging,
  optimisers, data loading, augmentation, losses, export, validation (``python -m training fit | validate |
  export | check``, :mod:`training.core.cli`);
- ``training.datasets``: readers of the public dataset layouts and the integrity check;
- one package per method, holding only what is particular to it: ``training.brain_tumor`` (BSC key points and
  loss, generalized Dice), ``training.petmr_brain``, ``training.whole_heart`` (cascade stages, CycleGAN, losses,
  the modality-conditioned trainer), ``training.spine`` (MCF, two-stage fusion, their losses and data).

Data preparation is ``multimodalseg.preprocessing``, the code inference runs, so training and use see the same
arrays.
"""
