"""Every .ui loads with PySide6's QUiLoader (offscreen) and holds every widget the code uses as ``self.ui.<name>``."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

MODULE_DIR = Path(__file__).resolve().parents[2] / "MultimodalSeg"
UI_DIR = MODULE_DIR / "Resources" / "UI"
SOURCES = sorted([*MODULE_DIR.glob("*.py"), *(MODULE_DIR / "MultimodalSegLib").glob("*.py")])


def ui_usage() -> dict[str, set[str]]:
    """.ui file name -> the ``self.ui.<name>`` attributes of the classes that load it."""
    usage: dict[str, set[str]] = {}
    for source in SOURCES:
        tree = ast.parse(source.read_text())
        for cls in (n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)):
            names = {n.attr for n in ast.walk(cls) if isinstance(n, ast.Attribute)
                     and isinstance(n.value, ast.Attribute) and n.value.attr == "ui"
                     and isinstance(n.value.value, ast.Name) and n.value.value.id == "self"}
            ui_files = {c.value for c in ast.walk(cls) if isinstance(c, ast.Constant)
                        and isinstance(c.value, str) and c.value.endswith(".ui")}
            if names:
                assert len(ui_files) == 1, f"{source.name}:{cls.name} uses self.ui but loads {ui_files or 'no .ui'}"
                usage.setdefault(ui_files.pop(), set()).update(names)
    return usage


def load_ui(qapp, path: Path):
    from PySide6.QtCore import QFile
    from PySide6.QtUiTools import QUiLoader

    loader = QUiLoader()
    f = QFile(str(path))
    assert f.open(QFile.ReadOnly), path
    try:
        widget = loader.load(f)
    finally:
        f.close()
    assert widget is not None, f"{path.name}: {loader.errorString()}"
    return widget


def test_sources_use_the_two_ui_files():
    usage = ui_usage()
    assert set(usage) == {p.name for p in UI_DIR.glob("*.ui")} == {"MultimodalSeg.ui", "LandmarkPanel.ui"}
    assert {"applyButton", "progressBar", "statusLabel", "logTextEdit"} <= usage["MultimodalSeg.ui"]
    assert {"pairsTableWidget", "rmsLabel", "hardenButton"} <= usage["LandmarkPanel.ui"]


@pytest.mark.parametrize("ui_name", ["MultimodalSeg.ui", "LandmarkPanel.ui"])
def test_ui_loads_and_has_every_widget_the_code_uses(qapp, ui_name):
    from PySide6.QtCore import QObject

    widget = load_ui(qapp, UI_DIR / ui_name)
    missing = sorted(name for name in ui_usage()[ui_name] if widget.findChild(QObject, name) is None)
    assert not missing, f"{ui_name} lacks {missing}"


def test_containers_the_panel_fills_have_layouts(qapp):
    from PySide6.QtWidgets import QFormLayout, QTabWidget, QWidget

    widget = load_ui(qapp, UI_DIR / "MultimodalSeg.ui")
    assert isinstance(widget.findChild(QWidget, "inputsFrame").layout(), QFormLayout)
    assert isinstance(widget.findChild(QTabWidget, "registrationTabWidget"), QTabWidget)
