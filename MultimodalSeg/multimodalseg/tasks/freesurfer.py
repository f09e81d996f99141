"""The 45 labels of a FreeSurfer recon-all ``aseg.mgz``, with FreeSurferColorLUT values, names and colours.

A standard ``aseg.mgz`` holds exactly these 45 non-zero values (METHODS §A, checked on a real recon-all aseg). This
is not the ``aseg.stats`` table: that one leaves out cerebral cortex and white matter (2, 3, 41, 42; their volumes
come from the surfaces) and lists 78, 79, 81 and 82, which recon-all never writes into ``aseg.mgz``.
"""

from __future__ import annotations

# (FreeSurfer value, name, RGB) in value order; names and colours as in FreeSurfer 7's FreeSurferColorLUT.
ASEG_STRUCTURES: tuple[tuple[int, str, tuple[int, int, int]], ...] = (
    (2, "Left-Cerebral-White-Matter", (245, 245, 245)),
    (3, "Left-Cerebral-Cortex", (205, 62, 78)),
    (4, "Left-Lateral-Ventricle", (120, 18, 134)),
    (5, "Left-Inf-Lat-Vent", (196, 58, 250)),
    (7, "Left-Cerebellum-White-Matter", (220, 248, 164)),
    (8, "Left-Cerebellum-Cortex", (230, 148, 34)),
    (10, "Left-Thalamus", (0, 118, 14)),
    (11, "Left-Caudate", (122, 186, 220)),
    (12, "Left-Putamen", (236, 13, 176)),
    (13, "Left-Pallidum", (12, 48, 255)),
    (14, "3rd-Ventricle", (204, 182, 142)),
    (15, "4th-Ventricle", (42, 204, 164)),
    (16, "Brain-Stem", (119, 159, 176)),
    (17, "Left-Hippocampus", (220, 216, 20)),
    (18, "Left-Amygdala", (103, 255, 255)),
    (24, "CSF", (60, 60, 60)),
    (26, "Left-Accumbens-area", (255, 165, 0)),
    (28, "Left-VentralDC", (165, 42, 42)),
    (30, "Left-vessel", (160, 32, 240)),
    (31, "Left-choroid-plexus", (0, 200, 200)),
    (41, "Right-Cerebral-White-Matter", (0, 225, 0)),
    (42, "Right-Cerebral-Cortex", (205, 62, 78)),
    (43, "Right-Lateral-Ventricle", (120, 18, 134)),
    (44, "Right-Inf-Lat-Vent", (196, 58, 250)),
    (46, "Right-Cerebellum-White-Matter", (220, 248, 164)),
    (47, "Right-Cerebellum-Cortex", (230, 148, 34)),
    (49, "Right-Thalamus", (0, 118, 14)),
    (50, "Right-Caudate", (122, 186, 220)),
    (51, "Right-Putamen", (236, 13, 176)),
    (52, "Right-Pallidum", (13, 48, 255)),
    (53, "Right-Hippocampus", (220, 216, 20)),
    (54, "Right-Amygdala", (103, 255, 255)),
    (58, "Right-Accumbens-area", (255, 165, 0)),
    (60, "Right-VentralDC", (165, 42, 42)),
    (62, "Right-vessel", (160, 32, 240)),
    (63, "Right-choroid-plexus", (0, 200, 221)),
    (72, "5th-Ventricle", (120, 190, 150)),
    (77, "WM-hypointensities", (200, 70, 255)),
    (80, "non-WM-hypointensities", (164, 108, 226)),
    (85, "Optic-Chiasm", (234, 169, 30)),
    (251, "CC_Posterior", (0, 0, 64)),
    (252, "CC_Mid_Posterior", (0, 0, 112)),
    (253, "CC_Central", (0, 0, 160)),
    (254, "CC_Mid_Anterior", (0, 0, 208)),
    (255, "CC_Anterior", (0, 0, 255)),
)

# Older FreeSurfer versions (<= 6) call the thalamus "Thalamus-Proper".
LEGACY_NAMES = {"Left-Thalamus-Proper": 10, "Right-Thalamus-Proper": 49}
