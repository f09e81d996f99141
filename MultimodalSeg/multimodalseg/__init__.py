"""MultimodalSeg backend: task specifications, volume I/O, registration, inference and evaluation.

This package never imports Slicer or Qt. ``multimodalseg.tasks``, ``multimodalseg.io`` and
``multimodalseg.registration`` also import without torch, because Slicer's own process uses them.
"""

__version__ = "0.1.0"
