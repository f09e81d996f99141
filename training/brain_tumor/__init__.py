"""Brain tumour (BraTS, METHODS §B): the boundary key points and the generalized Dice + BSC loss (``loss.name:
brats``). Trained by the core's supervised recipe (``training/configs/brain-tumor*.yaml``)."""
