"""The modality-conditioned whole-heart trainer: interleaved CT and MR cases reach the conditional norms with
their own modality, validation runs per modality, and the exported bundle is marked ``conditional_modality``."""

from __future__ import annotations

import pytest
import torch
from multimodalseg import io
from multimodalseg.bundles import load_bundle
from multimodalseg.phantoms import make_case
from multimodalseg.tasks import get_task
from training_helpers import one_thread, tiny_config

from training.core.export import export_checkpoint
from training.core.supervised import fit
from training.whole_heart.conditioned import ModalityConditionedTrainer


@pytest.fixture()
def heart_data(tmp_path):
    root = tmp_path / "data"
    for modality in ("ct", "mr"):
        for i in range(2):
            case = make_case("whole-heart", 50 + i, modality=modality, shape=(40, 40, 40))
            io.write_image(case.images["image"], root / f"{modality}_train_{1001 + i}_image.nii.gz")
            io.write_image(case.label, root / f"{modality}_train_{1001 + i}_label.nii.gz")
    return root


@pytest.mark.slow
def test_trainer_passes_each_cases_modality_and_exports_a_conditional_bundle(heart_data, tmp_path, monkeypatch):
    config = tiny_config("whole-heart", heart_data, data={"val_fraction": 0.5},
                         model={"network": "maunet", "config": {"channels": [4, 8], "conditional_modality": True}},
                         loss={"name": "dice_softmax_focal", "config": {}}, train={"epochs": 1})
    seen: list[list[int]] = []
    original = ModalityConditionedTrainer.modality_ids

    def spy(self, batch):
        ids = original(self, batch)
        seen.append(ids.tolist())
        return ids

    monkeypatch.setattr(ModalityConditionedTrainer, "modality_ids", spy)
    with one_thread():
        result = fit(config, tmp_path / "run", trainer_cls=ModalityConditionedTrainer)
    assert result.last_epoch == 1
    flat = {i for ids in seen for i in ids}
    assert flat == {0, 1}  # CT (0) and MR (1) cases both reached the network with their own id
    bundle, _ = export_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt", tmp_path / "wh.pt")
    meta = load_bundle(bundle).meta
    assert meta["conditional_modality"] is True
    model = load_bundle(bundle).build_model()
    x = torch.randn(1, 1, 16, 16, 16)
    with pytest.raises(ValueError, match="conditioned on the modality"):
        model(x)


def test_a_case_without_a_modality_is_refused():
    trainer = ModalityConditionedTrainer.__new__(ModalityConditionedTrainer)
    trainer.task = get_task("whole-heart")
    trainer.device = torch.device("cpu")
    assert trainer.modality_ids({"modality": ["mr", "CT"]}).tolist() == [1, 0]
    with pytest.raises(ValueError, match="need a modality"):
        trainer.modality_ids({"modality": [""]})
