"""Phantom datasets in the public layouts, written with ``multimodalseg.phantoms`` (small 32^3 grids)."""

from __future__ import annotations

from pathlib import Path

import pytest
from multimodalseg.phantoms import make_case
from multimodalseg.phantoms.layouts import write_case

SHAPE = (32, 32, 32)


def write_dataset(task: str, out: Path, n: int, *, shape=SHAPE, modality: str | None = None, first_seed: int = 0,
                  first_index: int = 1) -> Path:
    """``n`` phantom cases of ``task`` in its public layout (co-registered: ``misregister=False``)."""
    for i in range(n):
        case = make_case(task, first_seed + i, shape=shape, modality=modality, misregister=False)
        write_case(case, out, first_index + i)
    return out


@pytest.fixture
def dataset(tmp_path):
    """Factory: ``dataset(task, n, root=None, **options)`` writes phantom cases (into ``root``, else a new folder)."""
    count = [0]

    def make(task: str, n: int, root: Path | None = None, **options) -> Path:
        count[0] += 1
        return write_dataset(task, root or tmp_path / f"{task}-{count[0]}", n, **options)

    return make


@pytest.fixture(scope="session")
def heart_data(tmp_path_factory) -> Path:
    """Four whole-heart CT phantoms in the MM-WHS layout, shared read-only by the trainer tests."""
    return write_dataset("whole-heart", tmp_path_factory.mktemp("heart"), 4, modality="ct")


@pytest.fixture(scope="session")
def mmwhs(tmp_path_factory):
    """Factory: ``mmwhs(n=4, first_seed=70)`` -> a folder of ``n`` CT + ``n`` MR whole-heart phantoms in the MM-WHS
    layout (``training_helpers.write_mmwhs_phantoms``), written once per session and shared read-only by the
    cascade tests."""
    from training_helpers import write_mmwhs_phantoms

    made: dict[tuple[int, int], Path] = {}

    def make(n: int = 4, first_seed: int = 70) -> Path:
        if (n, first_seed) not in made:
            made[n, first_seed] = write_mmwhs_phantoms(tmp_path_factory.mktemp("mmwhs"), n, first_seed)
        return made[n, first_seed]

    return make
