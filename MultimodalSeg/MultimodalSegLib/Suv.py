"""The PET/MR panel's SUV fields: what the backend needs to turn PET activity into SUVbw, pre-filled from the PET
series' DICOM tags when the volume came from Slicer's DICOM database (as Slicer's PET modules do).

Plain Python (pydicom datasets, no ``slicer``). The values become ``segment``'s SUV options (``--weight`` kg,
``--dose`` MBq, ``--injection-time``, ``--scan-time``, ``--already-suv``); the backend computes SUVbw with decay
to the scan start. Without them it reports the PET values as stored and says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from multimodalseg.errors import UserError

# DICOM tags read, for the panel's "from DICOM" note.
TAGS = {"weight": "PatientWeight (0010,1030)", "dose": "RadionuclideTotalDose (0018,1074)",
        "injection": "RadiopharmaceuticalStartTime (0018,1072)", "scan": "SeriesTime (0008,0031)",
        "units": "Units (0054,1001)"}


@dataclass
class SuvValues:
    """The SUV fields. None (or an empty time) means "not given"; ``alreadySuv``: the PET voxels are SUV."""

    weightKg: float | None = None
    doseMBq: float | None = None
    injectionTime: str = ""
    scanTime: str = ""
    alreadySuv: bool = False
    source: str = ""  # where the values came from ("DICOM", "entered"), shown in the panel

    @property
    def complete(self) -> bool:
        return self.alreadySuv or (bool(self.weightKg) and bool(self.doseMBq) and bool(self.injectionTime)
                                   and bool(self.scanTime))

    @property
    def anyGiven(self) -> bool:
        return self.alreadySuv or any((self.weightKg, self.doseMBq, self.injectionTime, self.scanTime))

    def arguments(self) -> list[str]:
        """The ``segment`` options; an incomplete set is a UserError naming what is missing (the backend would
        otherwise fall back to the stored values, and the user asked for SUV)."""
        if self.alreadySuv:
            return ["--already-suv"]
        if not self.anyGiven:
            return []
        missing = [name for name, value in (("patient weight", self.weightKg), ("injected dose", self.doseMBq),
                                            ("injection time", self.injectionTime), ("scan time", self.scanTime))
                   if not value]
        if missing:
            raise UserError(f"SUV: enter the {', '.join(missing)} (or clear all SUV fields to get the PET values "
                            "as stored)")
        if self.weightKg <= 0 or self.doseMBq <= 0:
            raise UserError("SUV: patient weight and injected dose must be positive")
        return ["--weight", f"{self.weightKg:g}", "--dose", f"{self.doseMBq:g}",
                "--injection-time", self.injectionTime.strip(), "--scan-time", self.scanTime.strip()]


def _text(value: Any) -> str:
    return "" if value is None else str(value).strip()


def valuesFromDataset(ds: Any) -> SuvValues:
    """SUV fields from one PET instance's tags (a pydicom Dataset). Absent tags stay empty for the user to fill.

    Dose: RadionuclideTotalDose in Bq -> MBq; injection time: RadiopharmaceuticalStartTime, else the time part of
    RadiopharmaceuticalStartDateTime; scan time: SeriesTime, else AcquisitionTime (decay correction START);
    Units GML means the voxels are SUVbw already.
    """
    values = SuvValues(source="DICOM")
    weight = ds.get("PatientWeight")
    if weight not in (None, ""):
        values.weightKg = float(weight)
    info = ds.get("RadiopharmaceuticalInformationSequence")
    if info:
        item = info[0]
        dose = item.get("RadionuclideTotalDose")
        if dose not in (None, ""):
            values.doseMBq = round(float(dose) / 1e6, 6)
        start = _text(item.get("RadiopharmaceuticalStartTime"))
        if not start:
            start = _text(item.get("RadiopharmaceuticalStartDateTime"))[8:]
        values.injectionTime = start.split(".")[0]
    values.scanTime = (_text(ds.get("SeriesTime")) or _text(ds.get("AcquisitionTime"))).split(".")[0]
    values.alreadySuv = _text(ds.get("Units")).upper() == "GML"
    return values
