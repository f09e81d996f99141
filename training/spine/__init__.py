"""Spine CT-MR (METHODS §E): the ``mcf`` and ``fusion`` recipes (:mod:`.recipes`), their runs and bundle metadata
(:mod:`.runs`), the MCF semi-supervised loop (:mod:`.mcf`, :mod:`.mcf_losses`), the two-phase CDDFuse loop
(:mod:`.fusion`, :mod:`.fusion_losses`) and the paired CT/MR data (:mod:`.data`)."""
