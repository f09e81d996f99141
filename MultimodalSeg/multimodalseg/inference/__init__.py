"""One predictor for every task: bundle -> inputs on the reference grid -> sliding window -> labels on that grid.

``Predictor`` and ``Result`` are imported on first use, so the torch-free parts (``postprocess``, ``batch``) can be
imported without torch.

Example:
    >>> from multimodalseg.inference import Predictor
    >>> result = Predictor.from_model("spine", None, device="auto").predict({"ct": "ct.nii.gz", "mr": "mr.nii.gz"})
    >>> result.write("seg.nii.gz")
"""

from __future__ import annotations

from typing import Any

__all__ = ["Predictor", "Result"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from multimodalseg.inference import predictor

        return getattr(predictor, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
