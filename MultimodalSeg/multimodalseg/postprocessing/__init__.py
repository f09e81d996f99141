"""Task-specific post-processing hooks (``TaskSpec.postprocess``), one module per workflow.

The generic part (nested regions -> labels, volumes) is ``multimodalseg.inference.postprocess``.
"""
