"""Each panel renders offscreen from its .ui files and the task spec (the README pictures come from this code)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
import render_panels  # noqa: E402
from multimodalseg.tasks import get_task  # noqa: E402


@pytest.mark.parametrize("task_id, fit_points", [("spine", True), ("whole-heart", False), ("brain-tumor", False)])
def test_panel_renders(qapp, tmp_path, task_id, fit_points):
    path = render_panels.render(task_id, tmp_path / f"panel-{task_id}.png", fit_points=fit_points)
    image = Image.open(path).convert("L")
    assert image.width >= 400 and image.height >= 500
    lo, hi = image.getextrema()
    assert hi - lo > 100  # text on a background, not a blank grab


def test_panel_content_follows_the_task(qapp):
    from PySide6.QtWidgets import QLabel, QTabWidget, QWidget

    tumor = render_panels.task_panel(get_task("brain-tumor"), fit_points=False)
    labels = [w.text() for w in tumor.findChild(QWidget, "inputsFrame").findChildren(QLabel)]
    assert labels == ["FLAIR (optional):", "T1 (optional):", "T1 contrast-enhanced (reference):", "T2 (optional):"]
    tabs = tumor.findChild(QTabWidget, "registrationTabWidget")
    assert [tabs.tabText(i) for i in range(tabs.count())] == [
        "FLAIR \u2192 T1 contrast-enhanced", "T1 \u2192 T1 contrast-enhanced", "T2 \u2192 T1 contrast-enhanced"]
    heart = render_panels.task_panel(get_task("whole-heart"), fit_points=False)
    assert heart.findChild(QWidget, "registrationCollapsibleButton").isHidden()
    assert not heart.findChild(QWidget, "modalityComboBox").isHidden()
    assert tumor.findChild(QWidget, "modalityComboBox").isHidden()
    assert heart.findChild(QWidget, "skullStripComboBox").isHidden()
    assert not tumor.findChild(QWidget, "skullStripComboBox").isHidden()
    assert tumor.findChild(QWidget, "suvCollapsibleButton").isHidden()
    petmr = render_panels.task_panel(get_task("petmr-brain"), fit_points=False)
    assert not petmr.findChild(QWidget, "suvCollapsibleButton").isHidden()


def test_spine_registration_tab_shows_the_phantom_fit(qapp):
    from PySide6.QtWidgets import QLabel, QTableWidget

    spine = render_panels.task_panel(get_task("spine"), fit_points=True)
    table = spine.findChild(QTableWidget, "pairsTableWidget")
    assert table.rowCount() >= 4 and float(table.item(0, 1).text()) < 0.5
    assert spine.findChild(QLabel, "rmsLabel").text().startswith("RMS: ")


def test_readme_pictures_exist():
    images = Path(__file__).resolve().parents[2] / "docs" / "images"
    for task_id in ("petmr-brain", "brain-tumor", "whole-heart", "spine"):
        path = images / f"panel-{task_id}.png"
        assert path.is_file() and path.stat().st_size < 300_000, path
