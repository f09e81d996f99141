"""Seeded synthetic phantom cases for every task and writers for the tasks' public dataset layouts.

``make_case(task, seed)`` returns a :class:`PhantomCase`: images by role (each on its own grid, moving roles
rigidly misregistered by a known transform), the label map on the reference grid with the task's output
values, and matching landmarks per role. ``write_case`` writes it as BraTS / MM-WHS / PET-MR subject / spine
case files. Everything is drawn from ``np.random.default_rng(seed)``: a seed reproduces a case exactly.

Example:
    >>> from multimodalseg.phantoms import make_case
    >>> case = make_case("spine", seed=3)
    >>> sorted(case.images), case.label.GetPixelIDTypeAsString()
    (['ct', 'mr'], '16-bit unsigned integer')
"""

from __future__ import annotations

from multimodalseg.phantoms import brain, heart, spine, tumor  # noqa: F401  (each module registers its model)
from multimodalseg.phantoms.case import PhantomCase, make_case
from multimodalseg.phantoms.layouts import case_paths, write_case

__all__ = ["PhantomCase", "case_paths", "make_case", "write_case"]
