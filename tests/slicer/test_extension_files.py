"""The extension as Slicer builds it: CMake lists every file, the Slicer API check passes, the plain-Python helpers
import without Slicer or torch, and the module files stay short."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MODULE_DIR = REPO / "MultimodalSeg"
CHECKER = REPO.parent / "shared" / "tools" / "slicer_api_check.py"
MODULES = ("PETMRBrain", "BrainTumor", "WholeHeart", "SpineCTMR")
PLAIN = ("Command", "Landmarks", "Models", "ModuleText", "Requirements", "Results", "Runner", "SampleFiles",
         "Settings", "Suv", "TrainingWriter", "Worker")
# Transforms needs only VTK (pip's vtk in the tests); the others need Slicer.
SLICER_SIDE = ("Install", "LandmarkPanel", "Logic", "Module", "Panel", "Samples", "Scene", "SelfTest", "SlicerProcess",
               "Transforms")


def cmake_text() -> str:
    return (MODULE_DIR / "CMakeLists.txt").read_text()


def test_every_lib_script_and_resource_is_listed_in_cmake():
    text = cmake_text()
    lib = sorted(p.relative_to(MODULE_DIR).as_posix() for p in (MODULE_DIR / "MultimodalSegLib").glob("*.py"))
    assert sorted(set(PLAIN) | set(SLICER_SIDE)) == sorted(Path(p).stem for p in lib if not p.endswith("__init__.py"))
    resources = sorted(p.relative_to(MODULE_DIR).as_posix() for p in (MODULE_DIR / "Resources").rglob("*")
                       if p.is_file())
    missing = [p for p in lib + resources if not re.search(rf"(^|\s){re.escape(p)}(\s|$)", text, re.M)]
    assert not missing, f"not in MultimodalSeg/CMakeLists.txt: {missing}"
    for module in MODULES:
        assert re.search(rf"NAME {module}\n\s+SCRIPTS {module}\.py", text)
        assert f"slicer_add_python_unittest(SCRIPT {module}.py)" in text
    assert text.count("WITH_GENERIC_TESTS") == 4
    assert "multimodalseg/*.py" in text  # the backend package installs beside the modules


def test_top_level_cmake_describes_the_extension():
    text = (REPO / "CMakeLists.txt").read_text()
    for variable in ("EXTENSION_HOMEPAGE", "EXTENSION_CATEGORY", "EXTENSION_CONTRIBUTORS", "EXTENSION_DESCRIPTION",
                     "EXTENSION_ICONURL", "EXTENSION_SCREENSHOTURLS", "EXTENSION_DEPENDS"):
        assert re.search(rf"set\({variable} \S", text), variable
    assert 'set(EXTENSION_CATEGORY "Segmentation")' in text and 'set(EXTENSION_DEPENDS "PyTorch")' in text
    assert "add_subdirectory(MultimodalSeg)" in text
    for url in re.findall(r"main/(\S+?\.png)", text):  # icon and screenshots exist in the repository
        assert (REPO / url).is_file(), url


@pytest.mark.skipif(not CHECKER.is_file(), reason="../shared/tools/slicer_api_check.py is not available")
def test_slicer_api_check_passes():
    done = subprocess.run([sys.executable, str(CHECKER), str(REPO)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "Summary: 0 error(s)" in done.stdout


def test_plain_helpers_import_without_slicer_qt_vtk_or_torch():
    code = (
        "import sys\n"
        f"sys.path.insert(0, {str(MODULE_DIR)!r})\n"
        f"for name in {PLAIN!r}:\n"
        "    __import__('MultimodalSegLib.' + name)\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('slicer', 'qt', 'ctk', 'vtk', 'torch', 'monai'))\n"
        "print(bad)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_slicer_imports_stay_in_the_slicer_side_files():
    pattern = re.compile(r"^\s*(import|from)\s+(slicer|qt|ctk|vtk)\b", re.M)
    for name in PLAIN:
        assert not pattern.search((MODULE_DIR / "MultimodalSegLib" / f"{name}.py").read_text()), name
    for path in [*MODULE_DIR.glob("*.py"), *(MODULE_DIR / "MultimodalSegLib").glob("*.py")]:
        assert not re.search(r"^\s*(import|from)\s+torch\b", path.read_text(), re.M), path


def test_module_files_are_short():
    for module in MODULES:
        lines = (MODULE_DIR / f"{module}.py").read_text().splitlines()
        assert len(lines) <= 60, f"{module}.py has {len(lines)} lines"  # the work is in MultimodalSegLib
