"""Sample data: the files the real phantom writer and the real sample command (``synth --held-out``) produce are
found by role, with the label map and the landmark lists."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from multimodalseg.phantoms import make_case
from multimodalseg.phantoms.layouts import write_case
from multimodalseg.registration import fit_landmarks, read_markups
from multimodalseg.tasks import all_tasks, get_task
from MultimodalSegLib import Command
from MultimodalSegLib.SampleFiles import findCaseFiles


@pytest.mark.parametrize("task", all_tasks(), ids=lambda t: t.id)
def test_finds_every_file_of_a_written_phantom(tmp_path, task):
    modality = task.modalities[0] if task.modalities else None
    written = write_case(make_case(task.id, 1, modality=modality), tmp_path)
    found = findCaseFiles(task, tmp_path)
    assert found.complete(task)
    assert found.images == {role: written[role] for role in task.roles}
    assert found.label == written["label"]
    expected = {role: written[f"landmarks_{role}"] for role in task.roles if f"landmarks_{role}" in written}
    assert found.landmarks == expected
    if len(task.roles) > 1:  # paired landmark lists: same count in every role
        counts = {len(read_markups(path)[0]) for path in found.landmarks.values()}
        assert len(counts) == 1 and counts.pop() >= 4


def test_incomplete_folder(tmp_path):
    task = get_task("spine")
    (tmp_path / "case_001").mkdir()
    (tmp_path / "case_001" / "ct.nii.gz").write_bytes(b"")
    found = findCaseFiles(task, tmp_path)
    assert set(found.images) == {"ct"} and not found.complete(task) and found.label is None


SAMPLE_FILES = {"petmr-brain": ("sub-001/t1.nii.gz", "sub-001/aseg.nii.gz"),
                "brain-tumor": ("BraTS20_Training_001/BraTS20_Training_001_t1ce.nii.gz",
                                "BraTS20_Training_001/BraTS20_Training_001_seg.nii.gz"),
                "whole-heart": ("ct_train_1001_image.nii.gz", "ct_train_1001_label.nii.gz"),
                "spine": ("case_001/ct.nii.gz", "case_001/label.nii.gz")}


@pytest.mark.parametrize("task", all_tasks(), ids=lambda t: t.id)
def test_the_sample_command_the_sample_data_runs(tmp_path, task):
    """The command Samples.py starts in the background, run for real as a process (whole heart: the CT case), gives
    a case the finder reads, with a landmark list per role whose rigid fit is exact, for the self-test's
    registration step; moving inputs (PET, spine MR) are really misregistered, so that step has work to do."""
    modality = task.modalities[0] if task.modalities else None
    folder = tmp_path / "sample"
    command = Command.buildSampleCommand([sys.executable], task.id, folder, modality=modality)
    env = Command.backendEnvironment(os.environ, os.path.join(os.path.dirname(__file__), "..", "..", "MultimodalSeg"))
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    found = findCaseFiles(task, folder)
    reference, label = SAMPLE_FILES[task.id]
    assert found.complete(task) and found.images[task.reference_role] == folder / reference
    assert found.label == folder / label
    if len(task.roles) == 1:
        assert found.landmarks == {}
        return
    assert set(found.landmarks) == set(task.roles)
    fixed = read_markups(found.landmarks[task.reference_role])[0]
    for role in set(task.roles) - {task.reference_role}:
        moving = read_markups(found.landmarks[role])[0]
        assert len(moving) == len(fixed) >= 4
        fit = fit_landmarks(fixed, moving, "rigid")
        assert fit.rms < 0.01  # the same points, moved rigidly
        moved = np.abs(moving - fixed).max()
        assert moved > 1.0 if role in ("pet", "mr") else moved < 1e-6  # BraTS sequences are co-registered
