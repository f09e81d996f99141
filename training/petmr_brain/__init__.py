"""PET/MR brain (METHODS §A): the dual-branch 3D UX-Net trains with the core's supervised recipe and Dice + CE
(``training/configs/petmr-brain*.yaml``); class-balanced patch sampling (``augmentation.balance_classes``) and the
PET analyses of ``validate`` (uptake correlation, noise robustness: :mod:`training.core.validate`) are the core's,
so nothing else is particular to it."""
