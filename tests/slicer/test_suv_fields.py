"""The PET/MR panel's SUV fields: pre-filled from a PET instance's DICOM tags, turned into segment's SUV options,
and a result table titled with what its values are (SUVbw, or PET values as stored)."""

from __future__ import annotations

import sys

import pytest
from multimodalseg.errors import UserError
from multimodalseg.tasks import get_task
from MultimodalSegLib import Command
from MultimodalSegLib.Results import tablesFromReport
from MultimodalSegLib.Suv import SuvValues, valuesFromDataset
from pydicom.dataset import Dataset


def pet_dataset(**overrides) -> Dataset:
    ds = Dataset()
    ds.PatientWeight = "72.5"
    ds.SeriesTime = "101745.000000"
    ds.AcquisitionTime = "102000"
    ds.Units = "BQML"
    item = Dataset()
    item.RadionuclideTotalDose = "370000000"
    item.RadiopharmaceuticalStartTime = "091230.00"
    ds.RadiopharmaceuticalInformationSequence = [item]
    for key, value in overrides.items():
        setattr(ds, key, value)
    return ds


def test_fields_from_the_pet_series_tags():
    values = valuesFromDataset(pet_dataset())
    assert (values.weightKg, values.doseMBq, values.injectionTime, values.scanTime, values.alreadySuv) == \
        (72.5, 370.0, "091230", "101745", False)
    assert values.complete and values.source == "DICOM"
    assert values.arguments() == ["--weight", "72.5", "--dose", "370", "--injection-time", "091230",
                                  "--scan-time", "101745"]


def test_missing_tags_stay_empty_and_gml_units_mean_already_suv():
    ds = pet_dataset(Units="GML")
    del ds.PatientWeight
    del ds.SeriesTime
    values = valuesFromDataset(ds)
    assert values.weightKg is None and values.scanTime == "102000" and values.alreadySuv
    assert values.arguments() == ["--already-suv"]
    item = Dataset()
    item.RadiopharmaceuticalStartDateTime = "20240105083000.5"
    assert valuesFromDataset(pet_dataset(RadiopharmaceuticalInformationSequence=[item])).injectionTime == "083000"


def test_incomplete_fields_are_refused_and_empty_fields_give_no_options():
    assert SuvValues().arguments() == []
    with pytest.raises(UserError, match="injected dose, injection time"):
        SuvValues(weightKg=70, scanTime="101500").arguments()
    with pytest.raises(UserError, match="positive"):
        SuvValues(weightKg=-1, doseMBq=300, injectionTime="0900", scanTime="1000").arguments()


def test_the_suv_options_reach_the_backend_command_and_the_backend_accepts_them(tmp_path):
    task = get_task("petmr-brain")
    extra = SuvValues(72.5, 370.0, "091230", "101745").arguments()
    command = Command.buildSegmentCommand([sys.executable], task, {"pet": "pet.nrrd", "t1": "t1.nrrd"}, "l.nrrd",
                                          extra=extra)
    assert command[command.index("--weight"):command.index("--weight") + 8] == extra
    from multimodalseg.cli import build_parser

    args = build_parser().parse_args(command[3:])
    assert (args.weight, args.dose, args.injection_time, args.scan_time) == ("72.5", "370", "091230", "101745")


@pytest.mark.parametrize("quantity", ["SUVbw (g/mL)", "PET values as stored (not SUV)"])
def test_the_statistics_table_says_what_its_values_are(quantity):
    report = {"suv": {"quantity": quantity, "suv_computed": quantity.startswith("SUV"),
                      "structures": [{"name": "Left-Thalamus", "volume_ml": 7.2, "suv_mean": 8.1}]}}
    (table,) = [t for t in tablesFromReport(report) if t.key == "suv_structures"]
    assert table.title == f"PET statistics: {quantity}"
