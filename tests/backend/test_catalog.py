"""Model catalogs: schema, ``models list | import | path``, model resolution, URL entries."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
from multimodalseg import catalog
from multimodalseg.bundles import save_bundle, sha256_file
from multimodalseg.errors import UserError
from multimodalseg.nets import build_network
from multimodalseg.tasks import get_task

SPINE = get_task("spine")
CONFIG = {"spatial_dims": 3, "in_channels": 2, "out_channels": 3, "features": (4, 4, 8, 8, 16, 4)}


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("MULTIMODALSEG_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(catalog, "shipped_catalog", lambda: tmp_path / "shipped" / "catalog.json")
    return tmp_path / "home"


def make_bundle(path: Path, version: str = "0.1", seed: int = 0, task: str = "spine") -> Path:
    torch.manual_seed(seed)
    net = build_network("basic_unet", **CONFIG)
    meta = {"id": "spine-tiny", "version": version, "task": task, "demo": True,
            "network": {"name": "basic_unet", "config": CONFIG},
            "labels": [{"index": lab.index, "value": lab.value, "name": lab.name} for lab in SPINE.labels],
            "preprocessing": {"spacing": None, "patch_size": [32, 32, 32]},
            "metrics": {"dice": 0.5}, "seconds": {"cpu": 1.5, "cpu_machine": "2-core test VM"}}
    save_bundle(path, net.state_dict(), meta)
    return path


ENTRY = {"id": "a", "version": "1.0", "task": "spine", "file": "a.pt", "sha256": "0" * 64, "inputs": ["ct", "mr"],
         "modality": ["CT", "MR"], "demo": True, "seconds": {"cpu": 3.0, "gpu": None}}


def test_shipped_catalog_follows_its_schema():
    data = json.loads((catalog.SHIPPED_DIR / "catalog.json").read_text())
    assert catalog.validate(data) == []
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads(catalog.SCHEMA_PATH.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate(data, schema)
    for entry in data["models"]:
        path = catalog.SHIPPED_DIR / entry["file"]
        assert path.is_file() and sha256_file(path) == entry["sha256"]


def _broken() -> list[dict]:
    good = {"format": "multimodalseg-catalog/1", "models": [ENTRY]}
    cases = []
    for change in (
        lambda d: d.update(format="other/1"),
        lambda d: d["models"][0].pop("sha256"),
        lambda d: d["models"][0].update(sha256="XYZ"),
        lambda d: d["models"][0].update(task="lungs"),
        lambda d: d["models"][0].update(url="https://example.org/a.pt"),  # file and url: not exactly one
        lambda d: d["models"][0].pop("file"),  # neither
        lambda d: d["models"][0].update(file="/abs/a.pt"),
        lambda d: d["models"][0].update(demo="yes"),
        lambda d: d["models"][0].update(seconds={"cpu": -1}),
        lambda d: d["models"][0].update(inputs=[]),
        lambda d: d["models"][0].update(extra=1),
        lambda d: d.update(models={}),
    ):
        d = copy.deepcopy(good)
        change(d)
        cases.append(d)
    return [good, *cases]


def test_validator_agrees_with_jsonschema():
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads(catalog.SCHEMA_PATH.read_text())
    docs = _broken()
    assert catalog.validate(docs[0]) == [] and jsonschema.Draft202012Validator(schema).is_valid(docs[0])
    for doc in docs[1:]:
        ours = catalog.validate(doc)
        assert ours, doc
        assert not jsonschema.Draft202012Validator(schema).is_valid(doc), doc


def test_invalid_catalog_file_is_a_user_error(cli, home):
    home.joinpath("models").mkdir(parents=True)
    home.joinpath("models", "catalog.json").write_text(json.dumps(_broken()[2]))
    r = cli("models", "list")
    assert r.code == 2
    assert "catalog.json: model catalog is invalid: $.models[0]: missing 'sha256'" in r.err


def test_import_list_path_and_segment_by_id(cli, tmp_path, home):
    bundle = make_bundle(tmp_path / "export" / "spine-tiny.pt")
    r = cli("models", "import", bundle)
    assert r.code == 0, r.err
    cached = home / "models" / "spine-tiny-0.1.pt"
    assert cached.is_file() and sha256_file(cached) == sha256_file(bundle)
    assert (home / "models" / "spine-tiny-0.1.pt.sha256").read_text().split()[0] == sha256_file(bundle)
    assert cli("models", "path").out.strip() == str(home / "models")
    listed = cli("models", "list")
    assert "spine-tiny" in listed.out and "user" in listed.out and "demo: trained on synthetic data" in listed.out
    data = json.loads(cli("models", "list", "--task", "spine", "--json").out)
    (entry,) = data["models"]
    assert entry["sha256"] == sha256_file(bundle) and entry["inputs"] == ["ct", "mr"] and entry["demo"] is True
    assert entry["seconds"] == {"cpu": 1.5, "cpu_machine": "2-core test VM"} and entry["metrics"] == {"dice": 0.5}
    assert entry["path"] == str(cached) and entry["source"] == "user"
    assert catalog.validate(json.loads((home / "models" / "catalog.json").read_text())) == []
    assert json.loads(cli("models", "list", "--task", "brain-tumor", "--json").out)["models"] == []
    # The newest version is the task's default model.
    assert cli("models", "import", make_bundle(tmp_path / "v2" / "spine-tiny.pt", "0.10", seed=1)).code == 0
    assert catalog.default_for("spine").version == "0.10"
    assert catalog.find("spine-tiny", "spine").version == "0.10"
    with pytest.raises(UserError, match="model 'spine-tiny' is for task 'spine', not 'whole-heart'"):
        catalog.find("spine-tiny", "whole-heart")
    from multimodalseg.inference.predictor import load_model

    loaded = load_model("spine", "spine-tiny")
    assert loaded.meta["version"] == "0.10" and loaded.path == home / "models" / "spine-tiny-0.10.pt"


def test_import_refuses_without_or_with_a_wrong_sha256(cli, tmp_path, home):
    bundle = make_bundle(tmp_path / "spine-tiny.pt")
    good = sha256_file(bundle)
    side = Path(f"{bundle}.sha256")
    side.unlink()
    r = cli("models", "import", bundle)
    assert r.code == 2 and "spine-tiny.pt: no sha256 to check the bundle against; pass --sha256 HEX" in r.err
    r = cli("models", "import", bundle, "--sha256", "ab" * 32)
    assert r.code == 2 and "model bundle sha256 mismatch" in r.err
    r = cli("models", "import", bundle, "--sha256", "not-hex")
    assert r.code == 2 and "--sha256 is not a sha256 (64 hex digits)" in r.err
    side.write_text(f"{'cd' * 32}  spine-tiny.pt\n")
    r = cli("models", "import", bundle, "--sha256", good)
    assert r.code == 2 and "--sha256 and the .sha256 file disagree" in r.err
    assert not (home / "models").exists() or not any((home / "models").iterdir())
    side.unlink()
    r = cli("models", "import", bundle, "--sha256", good.upper())
    assert r.code == 0, r.err
    assert (home / "models" / "spine-tiny-0.1.pt").is_file()


def test_reimport_with_other_content_needs_force(cli, tmp_path, home):
    assert cli("models", "import", make_bundle(tmp_path / "a" / "m.pt")).code == 0
    other = make_bundle(tmp_path / "b" / "m.pt", seed=5)
    r = cli("models", "import", other)
    assert r.code == 2 and "already imported with another sha256" in r.err and "--force" in r.err
    assert cli("models", "import", other, "--force").code == 0
    assert sha256_file(home / "models" / "spine-tiny-0.1.pt") == sha256_file(other)
    assert len(catalog.entries("spine")) == 1


def test_url_entry_is_fetched_and_checked(tmp_path, home):
    bundle = make_bundle(tmp_path / "remote" / "m.pt")
    entry = {**ENTRY, "id": "remote", "sha256": sha256_file(bundle), "url": bundle.as_uri()}
    del entry["file"]
    catalog.write_catalog(catalog.user_catalog(), [catalog.Entry.from_dict(entry)])
    from multimodalseg.inference.predictor import load_model

    loaded = load_model("spine", "remote")
    assert loaded.path == home / "models" / "remote-1.0.pt" and loaded.sha256 == entry["sha256"]
    bad = {**entry, "id": "remote-bad", "sha256": "1" * 64}
    catalog.write_catalog(catalog.user_catalog(), [catalog.Entry.from_dict(bad)])
    with pytest.raises(UserError, match="downloaded model 'remote-bad' has sha256 .*damaged or changed download"):
        load_model("spine", "remote-bad")
    assert not (home / "models" / "remote-bad-1.0.pt").exists()
    assert [p.name for p in (home / "models").iterdir() if p.name.startswith(".partial")] == []


def test_version_order():
    versions = ["0.9", "0.10", "1.0", "0.10.1", "2"]
    assert sorted(versions, key=catalog.version_key) == ["0.9", "0.10", "0.10.1", "1.0", "2"]


def test_shipped_entries_marked_incompatible_are_exactly_the_refused_bundles():
    """``incompatible`` in the shipped catalog says which bundles the loader refuses (the PET/MR demo 0.1.0, trained
    on the old aseg.stats label table), and every other shipped bundle loads against its task."""
    from multimodalseg.bundles import load_bundle

    for entry in catalog.read_catalog(catalog.shipped_catalog()):
        try:
            load_bundle(catalog.fetch(entry), sha256=entry.sha256, task=entry.task)
            refused = None
        except UserError as exc:
            refused = str(exc)
        assert (refused is None) == (entry.incompatible is None), (entry.id, refused)
        if refused:
            assert "label table" in refused and "\n" not in refused


def test_a_bundle_with_another_label_table_is_refused(tmp_path):
    from multimodalseg.bundles import load_bundle

    task = get_task("petmr-brain")
    labels = [{"index": lab.index, "value": lab.value, "name": lab.name} for lab in task.labels]
    labels[0] = {"index": 1, "value": 78, "name": "Left-WM-hypointensities"}
    path = tmp_path / "old.pt"
    save_bundle(path, {"w": torch.zeros(1)}, {"id": "old", "version": "1", "task": task.id, "network": {},
                                            "labels": labels})
    with pytest.raises(UserError, match=r"model old 1 was trained on another petmr-brain label table \(45 labels; it "
                                        r"lacks Left-Cerebral-White-Matter; has Left-WM-hypointensities\)"):
        load_bundle(path, task=task.id)
    assert load_bundle(path).meta["labels"][0]["value"] == 78  # without a task: readable (export, inspection)
    labels[0] = {"index": 2, "value": 2, "name": "Left-Cerebral-White-Matter"}  # right names, wrong index
    save_bundle(path, {"w": torch.zeros(1)}, {"id": "old", "version": "1", "task": task.id, "network": {},
                                            "labels": labels})
    with pytest.raises(UserError, match="uses other values or training indices"):
        load_bundle(path, task=task.id)
