"""The bad-input suite of every command (issue 18): exit code 2, one line naming the problem, no output file and
unchanged inputs, for each row of :data:`CASES`.

Rows use placeholders: ``{in}`` (the folder of inputs made by :func:`world`), ``{out}`` (the output folder, which
must hold no file afterwards), ``{spine}``/``{heart}`` (untrained bundles). Other bad-input tests with special
set-ups live beside the code they test (test_inference_cli, test_evaluate_cli, test_suv, test_registration_cli).
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from dicom_series import write_cine, write_series

SEG = ("segment", "--task", "spine", "--model", "{spine}", "--device", "cpu", "--no-fusion", "--progress", "none")
SEG_IO = (*SEG, "-o", "{out}/seg.nii.gz")
GOOD = ("-i", "ct={in}/ct.nii.gz", "-i", "mr={in}/mr.nii.gz")
HEART = ("segment", "--task", "whole-heart", "--model", "{heart}", "--device", "cpu", "--progress", "none",
         "-o", "{out}/seg.nii.gz")
EVAL = ("evaluate", "--pred", "{in}/labels.nii.gz")
SUV = ("suv-stats", "--pet", "{in}/pet.nii.gz", "--weight", "70", "--dose", "300", "--injection-time", "100000",
       "--scan-time", "110000", "-o", "{out}/suv.csv")
FUSE = ("fuse", "--ct", "{in}/ct.nii.gz", "--device", "cpu", "--progress", "none")
REG = ("register", "--fixed-points", "{in}/f.fcsv", "--moving-points", "{in}/m.fcsv", "-o", "{out}/reg")

CASES: list[tuple[str, tuple[str, ...], str]] = [
    # segment: input files
    ("seg-truncated-nii-gz", (*SEG_IO, "-i", "ct={in}/ct.nii.gz", "-i", "mr={in}/cut.nii.gz"),
     r"cut\.nii\.gz: compressed data ends before the gzip end-of-stream marker"),
    ("seg-truncated-nii", (*SEG_IO, "-i", "ct={in}/cut.nii", "-i", "mr={in}/mr.nii.gz"),
     r"cut\.nii: file is truncated"),
    ("seg-truncated-mha", (*SEG_IO, *GOOD[:2], "-i", "mr={in}/cut.mha"), r"cut\.mha: compressed data ends"),
    ("seg-truncated-nhdr", (*SEG_IO, *GOOD[:2], "-i", "mr={in}/cut.nhdr"), r"cut\.raw\.gz: compressed data ends"),
    ("seg-truncated-nrrd", (*SEG_IO, *GOOD[:2], "-i", "mr={in}/cut.nrrd"), r"cut\.nrrd: compressed data ends"),
    ("seg-corrupt", (*SEG_IO, *GOOD[:2], "-i", "mr={in}/corrupt.nii.gz"), r"corrupt\.nii\.gz: "),
    ("seg-2d", (*SEG_IO, *GOOD[:2], "-i", "mr={in}/flat.nii.gz"), r"flat\.nii\.gz: image is 2D"),
    ("seg-4d", (*SEG_IO, *GOOD[:2], "-i", "mr={in}/four.nii.gz"), r"four\.nii\.gz: image is 4D"),
    ("seg-nan", (*SEG_IO, *GOOD[:2], "-i", "mr={in}/nan.nrrd"), r"nan\.nrrd: image holds 1 NaN"),
    ("seg-zero-spacing", (*SEG_IO, *GOOD[:2], "-i", "mr={in}/zero.nhdr"), r"zero\.nhdr: "),
    ("seg-cine", (*SEG_IO, "-i", "ct={in}/cine", *GOOD[2:]), r"cine: multi-frame DICOM \(16 frames"),
    ("seg-no-geometry", (*SEG_IO, "-i", "ct={in}/nogeo", *GOOD[2:]), r"nogeo: DICOM without ImagePositionPatient"),
    ("seg-temporal", (*SEG_IO, "-i", "ct={in}/temporal", *GOOD[2:]), r"temporal: DICOM series holds 6 images at 3"),
    ("seg-empty-folder", (*SEG_IO, "-i", "ct={in}/empty", *GOOD[2:]), r"empty: folder holds no DICOM series"),
    ("seg-thin-heart", (*HEART, "-i", "image={in}/thin"), r"thin: image is too thin: 40x36x1 voxels"),
    ("seg-thin-heart-nifti", (*HEART, "-i", "image={in}/thin3.nii.gz"), r"thin3\.nii\.gz: image is too thin"),
    ("seg-missing-file", (*SEG_IO, *GOOD[:2], "-i", "mr={in}/nothere.nii.gz"), r"nothere\.nii\.gz: file not found"),
    ("seg-no-overlap", (*SEG_IO, *GOOD[:2], "-i", "mr={in}/far.nii.gz"), r"far\.nii\.gz: does not overlap"),
    # segment: roles and options
    ("seg-unknown-role", (*SEG_IO, *GOOD[:2], "-i", "pet={in}/mr.nii.gz"), r"unknown input role 'pet'"),
    ("seg-missing-role", (*SEG_IO, *GOOD[:2]), r"task spine needs input mr"),
    ("seg-bad-item", (*SEG_IO, *GOOD[:2], "-i", "{in}/mr.nii.gz"), r"--input expects ROLE=PATH"),
    ("seg-role-twice", (*SEG_IO, *GOOD, "-i", "mr={in}/mr.nii.gz"), r"input role 'mr' given twice"),
    ("seg-unknown-task", ("segment", "--task", "lungs", *GOOD, "-o", "{out}/s.nii.gz"), r"unknown task 'lungs'"),
    ("seg-output-suffix", (*SEG, *GOOD, "-o", "{out}/seg.txt"), r"seg\.txt: unsupported output format"),
    ("seg-dicom-seg-nifti", (*SEG, *GOOD, "-o", "{out}/seg.dcm"), r"ct\.nii\.gz: DICOM SEG output \(\.dcm\) needs"),
    ("seg-overwrite-input", (*SEG, *GOOD, "-o", "{in}/mr.nii.gz"), r"mr\.nii\.gz: output would overwrite an input"),
    ("seg-output-folder", (*SEG, *GOOD, "-o", "{in}/folder.nii.gz"), r"folder\.nii\.gz: output is a folder"),
    ("seg-preview-suffix", (*SEG_IO, *GOOD, "--preview", "{out}/p.jpg"), r"p\.jpg: expected a \.png file name"),
    ("seg-report-suffix", (*SEG_IO, *GOOD, "--report", "{out}/r.txt"), r"r\.txt: expected a \.json file name"),
    ("seg-stats-no-pet", (*SEG_IO, *GOOD, "--stats", "{out}/s.csv"), r"--stats: task spine reports no per-structure"),
    ("seg-suv-no-pet", (*SEG_IO, *GOOD, "--weight", "70"), r"the SUV options .* task spine has no PET"),
    ("seg-overlap", (*SEG_IO, *GOOD, "--overlap", "1.5"), r"overlap must be in \[0, 1\)"),
    ("seg-convention", (*SEG_IO, *GOOD, "--convention", "msd"), r"unknown label convention 'msd' for task spine"),
    ("seg-lowest-level", (*SEG_IO, *GOOD, "--lowest-level", "Q9"), r"--lowest-level: unknown vertebral level 'Q9'"),
    ("seg-fusion-contradiction", ("segment", "--task", "spine", "--model", "{spine}", "--no-fusion",
                                  "--fusion-model", "x", *GOOD, "-o", "{out}/s.nii.gz", "--progress", "none"),
     r"--fusion-model and --no-fusion contradict"),
    ("seg-spine-option-other-task", (*HEART, "-i", "image={in}/ct.nii.gz", "--lowest-level", "L5"),
     r"--lowest-level: only for the spine task"),
    ("seg-transform-missing", (*SEG_IO, *GOOD, "--transform", "{in}/none.tfm"), r"none\.tfm: file not found"),
    ("seg-transform-reference", (*SEG_IO, *GOOD, "--transform", "ct={in}/none.tfm"), r"'ct' is the reference input"),
    ("seg-batch-missing-dir", (*SEG, "--input-dir", "{in}/nodir", "--output-dir", "{out}/b"),
     r"nodir: input folder not found"),
    ("seg-batch-with-output", (*SEG, "--input-dir", "{in}", "--output-dir", "{out}/b", "-o", "{out}/x.nii.gz"),
     r"batch mode \(--input-dir/--output-dir\) takes no --input, -o"),
    ("seg-batch-half", (*SEG, "--input-dir", "{in}"), r"batch mode needs both --input-dir and --output-dir"),
    ("seg-nothing", SEG, r"give the inputs \(--input ROLE=PATH \.\.\.\) and -o OUT"),
    # evaluate
    ("eval-missing-ref", (*EVAL, "--ref", "{in}/nothere.nii.gz"), r"nothere\.nii\.gz: file not found"),
    ("eval-truncated-ref", (*EVAL, "--ref", "{in}/cut.nii.gz"), r"cut\.nii\.gz: compressed data ends"),
    ("eval-intensity-ref", (*EVAL, "--ref", "{in}/ctint.nii.gz"),
     r"ctint\.nii\.gz: holds \d+ distinct label values: an intensity image, not a label map\? Give --task"),
    ("eval-max-labels", (*EVAL, "--ref", "{in}/labels.nii.gz", "--max-labels", "0"), r"--max-labels must be"),
    ("eval-float-labels", (*EVAL, "--ref", "{in}/mr.nii.gz"), r"mr\.nii\.gz: label map holds non-integer values"),
    ("eval-other-grid", (*EVAL, "--ref", "{in}/labels_small.nii.gz"), r"labels"),
    ("eval-pred-only", EVAL, r"--pred and --ref go together"),
    ("eval-task-values", (*EVAL, "--ref", "{in}/labels.nii.gz", "--task", "petmr-brain"), r"labels\.nii\.gz: "),
    ("eval-fusion-half", ("evaluate", "--fused", "{in}/ct.nii.gz", "--ct", "{in}/ct.nii.gz"),
     r"the fusion metrics need --fused, --ct and --mr \(missing --mr\)"),
    ("eval-unknown-task", (*EVAL, "--ref", "{in}/labels.nii.gz", "--task", "lungs"), r"unknown task 'lungs'"),
    # suv-stats
    ("suv-other-atlas", (*SUV, "--labels", "{in}/atlas999.nii.gz"),
     r"atlas999\.nii\.gz: .*999.*; for another atlas use --task none \(and --names TABLE\)"),
    ("suv-names-with-task", (*SUV, "--labels", "{in}/labels.nii.gz", "--names", "{in}/names.csv", "--task",
                             "petmr-brain"), r"--names is for any label map \(task-free\)"),
    ("suv-names-bad-line", (*SUV, "--labels", "{in}/labels.nii.gz", "--names", "{in}/bad_names.csv"),
     r"bad_names\.csv: names table line 3: value 7 has no name"),
    ("suv-names-missing", (*SUV, "--labels", "{in}/labels.nii.gz", "--names", "{in}/none.csv"),
     r"none\.csv: cannot read names table"),
    ("suv-negative-weight", ("suv-stats", "--pet", "{in}/pet.nii.gz", "--labels", "{in}/labels.nii.gz",
                             "--task", "none", "--weight", "-3", "-o", "{out}/s.csv"), r"--weight must be a positive"),
    ("suv-truncated-pet", ("suv-stats", "--pet", "{in}/cut.nii.gz", "--labels", "{in}/labels.nii.gz", "--task",
                           "none", "--weight", "70", "--dose", "300", "--injection-time", "100000", "--scan-time",
                           "110000", "-o", "{out}/s.csv"), r"cut\.nii\.gz: compressed data ends"),
    ("suv-overwrite-input", ("suv-stats", "--pet", "{in}/pet.nii.gz", "--labels", "{in}/labels.nii.gz",
                             "-o", "{in}/labels.nii.gz"), r"labels\.nii\.gz: output would overwrite an input"),
    # fuse
    ("fuse-dicom-seg", (*FUSE, "--mr", "{in}/mr.nii.gz", "-o", "{out}/f.dcm"), r"f\.dcm: the fused image is a volume"),
    ("fuse-missing-mr", (*FUSE, "--mr", "{in}/nothere.nii.gz", "-o", "{out}/f.nii.gz"), r"nothere\.nii\.gz: file not"),
    ("fuse-truncated-mr", (*FUSE, "--mr", "{in}/cut.nii.gz", "-o", "{out}/f.nii.gz", "--model", "{fusion}"),
     r"cut\.nii\.gz: compressed data ends"),
    ("fuse-output-suffix", (*FUSE, "--mr", "{in}/mr.nii.gz", "-o", "{out}/f.png"), r"f\.png: unsupported output"),
    ("fuse-not-a-fusion-model", (*FUSE, "--mr", "{in}/mr.nii.gz", "-o", "{out}/f.nii.gz", "--model", "{spine}"),
     r"is not a fusion model"),
    # register, tasks, phantom, models, demo
    ("register-missing-points", ("register", "--fixed-points", "{in}/none.fcsv", "--moving-points", "{in}/m.fcsv",
                                 "-o", "{out}/reg"), r"none\.fcsv: "),
    ("register-truncated-moving", (*REG, "--moving", "{in}/cut.nii.gz", "--reference", "{in}/ct.nii.gz"),
     r"cut\.nii\.gz: compressed data ends"),
    ("tasks-unknown", ("tasks", "lungs"), r"unknown task 'lungs'"),
    ("phantom-unknown-task", ("phantom", "--task", "lungs", "--out", "{out}/ph"), r"unknown task 'lungs'"),
    ("models-import-missing", ("models", "import", "{in}/none.pt"), r"none\.pt: "),
    ("demo-unknown-task", ("demo", "--task", "lungs", "--out", "{out}/demo", "--device", "cpu"),
     r"unknown task 'lungs'"),
]


def _cut(path: Path, fraction: float = 0.4) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])


def _img(arr: np.ndarray, **geometry) -> sitk.Image:
    image = sitk.GetImageFromArray(arr)
    for key, value in geometry.items():
        getattr(image, f"Set{key.capitalize()}")(value)
    return image


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    """Every input file the table refers to, good and bad, in one folder."""
    root = tmp_path_factory.mktemp("bad-inputs")
    rng = np.random.default_rng(5)
    shape = (20, 40, 36)
    ct = np.full(shape, -1000.0, np.float32)
    ct[4:16, 6:34, 6:30] = rng.normal(40, 10, (12, 28, 24))
    mr = np.zeros(shape, np.float32)
    mr[4:16, 6:34, 6:30] = rng.normal(200, 30, (12, 28, 24))
    labels = np.zeros(shape, np.uint8)
    labels[6:10, 10:20, 10:20], labels[11:14, 10:20, 10:20] = 1, 2
    for name, arr in (("ct", ct), ("mr", mr), ("labels", labels), ("pet", np.abs(mr) * 50)):
        sitk.WriteImage(_img(arr), str(root / f"{name}.nii.gz"))
    intensity = np.round(rng.normal(500, 150, shape)).clip(0).astype(np.uint16)  # an image as stored, not labels
    sitk.WriteImage(_img(intensity), str(root / "ctint.nii.gz"))
    (root / "folder.nii.gz").mkdir()
    sitk.WriteImage(_img(labels[:10]), str(root / "labels_small.nii.gz"))
    sitk.WriteImage(_img(np.where(labels > 0, 999, 0).astype(np.uint16)), str(root / "atlas999.nii.gz"))
    far = _img(mr, origin=(0.0, 500.0, 0.0))
    sitk.WriteImage(far, str(root / "far.nii.gz"))
    for name, compress in (("cut.nii.gz", True), ("cut.nii", False), ("cut.mha", True), ("cut.nrrd", True)):
        sitk.WriteImage(_img(mr), str(root / name), compress)
        _cut(root / name)
    sitk.WriteImage(_img(mr), str(root / "cut.nhdr"), True)
    _cut(root / "cut.raw.gz")
    (root / "corrupt.nii.gz").write_bytes(b"not a volume at all")
    sitk.WriteImage(_img(np.ones((24, 24), np.float32)), str(root / "flat.nii.gz"))
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((2, 3, 4, 5), np.float32), isVector=False),
                    str(root / "four.nii.gz"))
    nan = mr.copy()
    nan[5, 5, 5] = np.nan
    sitk.WriteImage(_img(nan), str(root / "nan.nrrd"))
    np.zeros((2, 2, 2), np.float32).tofile(root / "zero.raw")
    (root / "zero.nhdr").write_text("NRRD0004\ntype: float\ndimension: 3\nspace: left-posterior-superior\n"
                                    "sizes: 2 2 2\nspace directions: (1,0,0) (0,0,0) (0,0,1)\nendian: little\n"
                                    "encoding: raw\nspace origin: (0,0,0)\ndata file: zero.raw\n")
    write_cine(root / "cine" / "cine.dcm")
    write_series(root / "nogeo", np.zeros((4, 10, 12), np.int16), geometry=False)
    write_series(root / "temporal", np.zeros((6, 10, 12), np.int16), positions=[0, 0, 2, 2, 4, 4])
    write_series(root / "thin", np.zeros((1, 36, 40), np.int16) + 40)
    sitk.WriteImage(_img(ct[:3]), str(root / "thin3.nii.gz"))
    (root / "empty").mkdir()
    (root / "names.csv").write_text("value,name\n1,bone\n2,disc\n")
    (root / "bad_names.csv").write_text("value,name\n1,bone\n7,\n")
    points = "\n".join(f"{k},{x},{y},{z},0,0,0,1,1,1,0,F-{k},," for k, (x, y, z) in
                       enumerate([(0, 0, 0), (10, 0, 0), (0, 12, 0), (0, 0, 9), (5, 5, 5)], start=1))
    header = "# Markups fiducial file version = 4.11\n# CoordinateSystem = LPS\n" \
             "# columns = id,x,y,z,ow,ox,oy,oz,vis,sel,lock,label,desc,associatedNodeID\n"
    (root / "f.fcsv").write_text(header + points + "\n")
    (root / "m.fcsv").write_text(header + points + "\n")
    return root


def _digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_the_suite_is_large_and_covers_every_command():
    from multimodalseg.cli import COMMANDS

    assert len(CASES) >= 50 and len({c[0] for c in CASES}) == len(CASES)
    covered = {argv[0] for _, argv, _ in CASES}
    assert covered >= set(COMMANDS) - {"serve", "synth"}, set(COMMANDS) - covered


@pytest.mark.parametrize("name, argv, pattern", CASES, ids=[c[0] for c in CASES])
def test_bad_input(cli, world, tmp_path, untrained_bundle, monkeypatch, name, argv, pattern):
    monkeypatch.setenv("MULTIMODALSEG_HOME", str(tmp_path / "home"))
    out = tmp_path / "out"
    values = {"in": str(world), "out": str(out)}
    text = " ".join(argv)
    if "{spine}" in text:
        values["spine"] = str(untrained_bundle("spine"))
    if "{heart}" in text:
        values["heart"] = str(untrained_bundle("whole-heart"))
    if "{fusion}" in text:
        from multimodalseg.inference.fusion import load_fusion_model

        values["fusion"] = str(load_fusion_model(None).path)
    before = _digest(world)
    r = cli(*(a.format(**values) for a in argv))
    lines = r.err.strip().splitlines()
    assert r.code == 2, (r.code, r.err)
    assert len(lines) == 1, r.err
    assert re.search(pattern, lines[0]), lines[0]
    assert "internal error" not in lines[0] and "Traceback" not in r.err
    written = sorted(str(p) for p in out.rglob("*") if p.is_file()) if out.exists() else []
    assert written == [], written
    assert _digest(world) == before
