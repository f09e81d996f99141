"""Phantom sample data: the files the real phantom writer and the real ``phantom`` command produce are found by
role, with the label map and the landmark lists."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from multimodalseg.phantoms import make_case
from multimodalseg.phantoms.layouts import write_case
from multimodalseg.registration import read_markups
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


def test_the_phantom_command_the_sample_data_runs(tmp_path):
    """The command Samples.py starts in the background, run for real, gives a case the finder reads."""
    task = get_task("whole-heart")
    command = Command.buildPhantomCommand([sys.executable], task.id, tmp_path / "phantoms", seed=2, modality="ct")
    env = Command.backendEnvironment(os.environ, os.path.join(os.path.dirname(__file__), "..", "..", "MultimodalSeg"))
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    found = findCaseFiles(task, tmp_path / "phantoms")
    assert found.complete(task) and found.images["image"].name == "ct_train_1001_image.nii.gz"
    assert found.label.name == "ct_train_1001_label.nii.gz"
