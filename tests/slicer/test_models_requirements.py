"""Model selector items from the real catalogs, and the dependency list Slicer installs."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import pytest
from multimodalseg import catalog
from multimodalseg.errors import UserError
from MultimodalSegLib import Models, Requirements

REQUIREMENTS = Path(__file__).resolve().parents[2] / "MultimodalSeg" / "Resources" / "requirements.txt"


def entry(model_id: str, version: str, task: str = "brain-tumor", demo: bool = False, **extra) -> catalog.Entry:
    fields = {"inputs": ["flair", "t1", "t1ce", "t2"], "modality": ["MR"], **extra}
    return catalog.Entry(id=model_id, version=version, task=task, sha256="0" * 64, demo=demo,
                         file=f"{model_id}-{version}.pt", **fields)


@pytest.fixture
def user_home(tmp_path, monkeypatch):
    monkeypatch.setenv("MULTIMODALSEG_HOME", str(tmp_path))
    return tmp_path


def test_model_choices_from_the_user_catalog(user_home):
    catalog.write_catalog(catalog.user_catalog(), [
        entry("tumor-demo", "0.9", demo=True),
        entry("tumor-demo", "0.10", demo=True, seconds={"cpu": 41.0, "gpu": 3.2},
              metrics={"dice_wt": 0.91, "note": "x"}),
        entry("my-model", "1.0"),
        entry("heart-demo", "1.0", task="whole-heart", inputs=["image"], modality=["CT", "MR"]),
    ])
    choices = Models.modelChoices("brain-tumor")
    assert choices[0].modelId == "" and choices[0].text.startswith("Newest")
    shipped = [e for e in catalog.entries("brain-tumor", kind="segmentation") if e.source == "shipped"]
    texts = [c.text for c in choices[1:]]
    assert texts[:3] == ["tumor-demo 0.10 (demo: synthetic data only)", "tumor-demo 0.9 (demo: synthetic data only)",
                         "my-model 1.0"]
    assert len(choices) == 4 + len(shipped)
    newest, older = choices[1], choices[2]
    assert newest.modelId == "tumor-demo"  # "--model ID" means the newest version
    assert older.modelId == str(user_home / "models" / "tumor-demo-0.9.pt")  # an older one is passed by path
    assert "CPU 41 s, GPU 3 s" in newest.toolTip and "dice_wt 0.910" in newest.toolTip and newest.demo
    assert "not for clinical images" in newest.toolTip and not choices[3].demo
    assert all("heart" not in c.text for c in choices)
    assert Models.cacheFolder() == user_home / "models"


def test_invalid_user_catalog_is_a_user_error(user_home):
    (user_home / "models").mkdir()
    (user_home / "models" / "catalog.json").write_text('{"format": "multimodalseg-catalog/1", "models": [{}]}')
    with pytest.raises(UserError, match="model catalog is invalid"):
        Models.modelChoices("spine")


def test_shipped_requirements_leave_slicers_packages_alone():
    lines = Requirements.readRequirements(REQUIREMENTS)
    names = {line.split("=")[0].split(">")[0].strip().lower() for line in lines}
    assert "monai==1.6.1" in lines
    assert not names & {"simpleitk", "torch", "vtk"}
    assert Requirements.withoutSkipped(lines) == lines


def test_without_skipped_and_missing():
    reqs = ["SimpleITK>=2.3", "simple_itk==1", "torch>=2.3", "VTK", "monai==1.6.1", "numpy>=1.24"]
    assert Requirements.withoutSkipped(reqs) == ["simple_itk==1", "monai==1.6.1", "numpy>=1.24"]
    installed = {"monai": "1.5.0", "numpy": "2.1.0"}

    def version(name):
        try:
            return installed[name]
        except KeyError:
            raise importlib.metadata.PackageNotFoundError(name) from None

    assert Requirements.missingRequirements(["monai==1.6.1", "numpy>=1.24", "nibabel>=5",
                                             "pywin32>=300; sys_platform == 'win32'"], version) == \
        ["monai==1.6.1", "nibabel>=5"]


def test_missing_requirements_against_this_environment():
    present = f"pytest>={importlib.metadata.version('pytest')}"
    assert Requirements.missingRequirements([present, "no-such-package-for-multimodalseg>=1"]) == \
        ["no-such-package-for-multimodalseg>=1"]


def test_bad_requirement_line_names_the_file(tmp_path):
    path = tmp_path / "requirements.txt"
    path.write_text("# comment\nmonai==1.6.1  # pinned\n\nthis is not valid!\n")
    with pytest.raises(ValueError, match="requirements.txt:4: not a requirement"):
        Requirements.readRequirements(path)


def test_restart_needed_only_for_packages_already_imported():
    assert Requirements.restartNeeded(["pillow>=10", "monai==1.6.1"], {"PIL": object()})
    assert Requirements.restartNeeded(["PyYAML>=6"], {"yaml": object()})
    assert not Requirements.restartNeeded(["nibabel>=5"], {"numpy": object()})


def test_torch_lookup_does_not_import_it():
    looked = []
    assert Requirements.torchAvailable(lambda name: looked.append(name) or object())
    assert not Requirements.torchAvailable(lambda name: None) and looked == ["torch"]


def test_spine_model_choices_hold_segmentation_models_only():
    # The shipped fusion bundle is a spine model too, but it is no segmentation model for the panel's list.
    from multimodalseg import catalog
    from MultimodalSegLib import Models

    kinds = {e.id: e.model_kind for e in catalog.entries("spine")}
    assert "fusion" in kinds.values() and "segmentation" in kinds.values()
    listed = [c.modelId for c in Models.modelChoices("spine") if c.modelId]
    assert listed and all(kinds[m] == "segmentation" for m in listed)
