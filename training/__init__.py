"""MultimodalSeg training: dataset readers for the public layouts, an integrity check, a supervised trainer
(MONAI transforms, AMP, checkpoints, early stop, TensorBoard/CSV logs, DDP through ``torchrun``) and export to
the model bundles the backend loads.

Command line: ``python -m training fit | validate | export | check`` (:mod:`training.cli`). Data preparation is
``multimodalseg.preprocessing``, the code inference runs, so training and use see the same arrays.
"""
