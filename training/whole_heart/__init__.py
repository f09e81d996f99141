"""Whole heart (MM-WHS, METHODS §C, §D): the modality-conditioned trainer (:mod:`.conditioned`), the cascade
recipe (:mod:`.recipe`: CycleGAN -> localiser -> MAUNet -> SCN, one bundle), its stages (:mod:`.cascade`) and
samples (:mod:`.cascade_data`), the CycleGAN (:mod:`.cyclegan`, :mod:`.synthetic`) and the losses (:mod:`.losses`)."""
