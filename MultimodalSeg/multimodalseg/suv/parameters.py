"""SUVbw parameters (weight, dose, half-life, times, decay-correction mode) and their command-line form."""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from datetime import datetime

from multimodalseg.errors import UserError

F18_HALF_LIFE_S = 6586.2  # 109.77 min


@dataclass(frozen=True)
class SUVParameters:
    """What converts activity concentration to SUVbw.

    Args:
        weight_kg: patient weight, kg.
        injected_dose_bq: injected activity at ``injection_time``, Bq.
        half_life_s: radionuclide half-life, s (F-18: 6586.2).
        injection_time: start of the injection (None only with ``"ADMIN"``).
        scan_time: the time the voxels are decay-corrected to with ``"START"`` (None only with ``"ADMIN"``).
        decay_correction: ``"START"`` (decay the dose to ``scan_time``) or ``"ADMIN"`` (the voxels are already
            corrected to the administration time: no decay).
    """

    weight_kg: float
    injected_dose_bq: float
    half_life_s: float
    injection_time: datetime | None
    scan_time: datetime | None
    decay_correction: str = "START"

    @property
    def decayed_dose_bq(self) -> float:
        if self.decay_correction == "ADMIN":
            return self.injected_dose_bq
        elapsed = (self.scan_time - self.injection_time).total_seconds()
        return self.injected_dose_bq * math.exp(-math.log(2.0) * elapsed / self.half_life_s)

    @property
    def scale(self) -> float:
        """SUV per Bq/mL: weight in g over the decayed dose in Bq (1 mL of tissue taken as 1 g)."""
        return self.weight_kg * 1000.0 / self.decayed_dose_bq

    def to_dict(self) -> dict:
        d = asdict(self)
        for key in ("injection_time", "scan_time"):
            d[key] = d[key].isoformat() if d[key] else None
        d.update(decayed_dose_bq=self.decayed_dose_bq, suv_per_bq_ml=self.scale)
        return d


@dataclass
class SUVOverrides:
    """Values given on the command line; for DICOM they replace (or fill in) tags, for other files they are required.

    Args:
        weight_kg: patient weight, kg.
        dose_mbq: injected activity, MBq.
        injection_time, scan_time: ``HHMMSS``, ``HH:MM:SS``, ``YYYYMMDDHHMMSS`` or ISO ``YYYY-MM-DDTHH:MM:SS``.
        half_life_s: s; F-18 (6586.2 s) when a volume file is given without it.
        already_suv: the voxels are SUV; nothing is computed.
    """

    weight_kg: float | None = None
    dose_mbq: float | None = None
    injection_time: str | None = None
    scan_time: str | None = None
    half_life_s: float | None = None
    already_suv: bool = False

    def any_given(self) -> bool:
        values = (self.weight_kg, self.dose_mbq, self.injection_time, self.scan_time, self.half_life_s)
        return any(v is not None for v in values)


def parse_time(text: str, option: str, day: datetime | None = None) -> datetime:
    """A date-time from a command-line value; a time alone is taken on ``day`` (or a fixed date)."""
    value = text.strip()
    digits = value.replace(":", "")
    clock = None
    try:
        if "-" in value:
            return datetime.fromisoformat(value).replace(tzinfo=None)
        if digits.isdigit() and len(digits) in (12, 14):
            return datetime.strptime(digits.ljust(14, "0"), "%Y%m%d%H%M%S")
        if digits.isdigit() and len(digits) in (4, 6):
            clock = datetime.strptime(digits.ljust(6, "0"), "%H%M%S").time()
    except ValueError:
        clock = None
    if clock is None:
        raise UserError(f"{option} '{text}' is not a time; use HHMMSS, HH:MM:SS or YYYYMMDDHHMMSS")
    return datetime.combine((day or datetime(2000, 1, 1)).date(), clock)


def suv_parameters(
    weight_kg: float | None,
    dose_mbq: float | None,
    injection_time: str | None,
    scan_time: str | None,
    half_life_s: float | None = None,
) -> SUVParameters:
    """SUV parameters from command-line values (non-DICOM PET: voxels in Bq/mL, decay-corrected to the scan start).

    Raises:
        UserError: a value is missing or not positive, or the scan is before the injection.
    """
    given = {"--weight": weight_kg, "--dose": dose_mbq, "--injection-time": injection_time, "--scan-time": scan_time}
    missing = [k for k, v in given.items() if v is None]
    if missing:
        raise UserError(f"the PET is not a DICOM series, so SUV needs {', '.join(missing)} (or --already-suv)")
    half_life_s = F18_HALF_LIFE_S if half_life_s is None else half_life_s
    check_positive({"--weight": weight_kg, "--dose": dose_mbq, "--half-life": half_life_s})
    injected = parse_time(injection_time, "--injection-time")
    scanned = parse_time(scan_time, "--scan-time", injected)
    if scanned < injected:
        raise UserError(f"--scan-time {scan_time} is before --injection-time {injection_time}; "
                        "give YYYYMMDDHHMMSS when the scan is on a later day")
    return SUVParameters(weight_kg, dose_mbq * 1e6, half_life_s, injected, scanned, "START")


def check_positive(values: dict[str, float | None], path: str | os.PathLike | None = None) -> None:
    """A UserError naming the first value that is given but not a positive finite number."""
    for name, value in values.items():
        if value is not None and not (math.isfinite(value) and value > 0):
            raise UserError(f"{name} must be a positive number, got {value}", path)
