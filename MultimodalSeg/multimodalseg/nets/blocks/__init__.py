"""Building blocks of the paper networks that MONAI does not provide."""
