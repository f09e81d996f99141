"""FreeSurfer subjects: an aseg.mgz maps to the task's 45 aseg.mgz labels (cortex and white matter included), and a
value outside them is a one-line error naming it (issue 16)."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from multimodalseg.errors import UserError
from multimodalseg.io import read_image
from multimodalseg.preprocessing import load_label
from multimodalseg.tasks import get_task

from training.datasets import find_cases

TASK = get_task("petmr-brain")


def _write_aseg(path, values: np.ndarray) -> None:
    """An MGZ label map as recon-all writes it (int32, 1 mm, LIA-like affine is not needed for the values)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.MGHImage(values.astype(np.int32), np.diag([-1.0, -1.0, 1.0, 1.0])).to_filename(str(path))


def _subject(root, values: np.ndarray):
    sub = root / "sub-001"
    _write_aseg(sub / "mri" / "aseg.mgz", values)
    t1 = np.random.default_rng(0).uniform(10, 20, values.shape).astype(np.float32)
    nib.MGHImage(t1, np.diag([-1.0, -1.0, 1.0, 1.0])).to_filename(str(sub / "mri" / "T1.mgz"))
    nib.MGHImage(t1, np.diag([-1.0, -1.0, 1.0, 1.0])).to_filename(str(sub / "pet.mgz"))
    return sub


def test_aseg_mgz_maps_to_the_45_labels_with_cortex_and_white_matter(tmp_path):
    values = np.zeros((12, 10, 9), np.int32)
    all_values = [lab.value for lab in TASK.labels]
    values.reshape(-1)[: len(all_values)] = all_values  # every aseg.mgz value once
    _subject(tmp_path, values)
    _, cases = find_cases(TASK, tmp_path)
    case = cases[0]
    assert case.label.name == "aseg.mgz"
    reference = read_image(case.images["t1"].path)
    indices = load_label(TASK, case.label, reference)
    assert sorted(np.unique(indices).tolist()) == list(range(46))  # 0 + 1..45: none mapped to background
    lut = TASK.value_to_index()
    assert lut[3] == TASK.label("Left-Cerebral-Cortex").index and lut[41] == TASK.label("Right-Cerebral-White-Matter")\
        .index


@pytest.mark.parametrize("bad", [78, 1035])  # an aseg.stats-only row; an aparc+aseg cortical parcel
def test_aseg_with_a_value_outside_the_45_is_one_line_naming_it(tmp_path, bad):
    values = np.zeros((8, 8, 8), np.int32)
    values[2:4, 2:4, 2:4] = 3
    values[5:7, 5:7, 5:7] = bad
    _subject(tmp_path, values)
    _, cases = find_cases(TASK, tmp_path)
    reference = read_image(cases[0].images["t1"].path)
    with pytest.raises(UserError) as err:
        load_label(TASK, cases[0].label, reference)
    message = str(err.value)
    assert f"label values {bad} are not in the petmr-brain label table" in message and "aseg.mgz" in message
    assert "\n" not in message
