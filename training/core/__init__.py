"""What every method's training uses: config, recipes and the ``fit`` driver, the supervised loop and recipe,
checkpoints, DDP, logging, optimisers, data loading, augmentation, losses, export and validation.

The methods' packages (``training.brain_tumor``, ``training.petmr_brain``, ``training.whole_heart``,
``training.spine``) hold only what is particular to them and register it here by name (recipes, trainers, losses).
"""
