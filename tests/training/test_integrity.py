"""The dataset check: each problem is found, reported with its file, and refuses training (exit 2)."""

from __future__ import annotations

import gzip

import numpy as np
import SimpleITK as sitk
from multimodalseg.tasks import get_task

from training.core.cli import main
from training.datasets import check_dataset, find_cases

BT = get_task("brain-tumor")


def edit(path, fn):
    """Rewrite a volume file with ``fn(image) -> image``."""
    image = fn(sitk.ReadImage(str(path)))
    sitk.WriteImage(image, str(path))


def with_array(image, arr):
    out = sitk.GetImageFromArray(arr)
    out.CopyInformation(image)
    return out


def shifted(image, mm):
    image = sitk.Image(image)
    image.SetOrigin([o + mm for o in image.GetOrigin()])
    return image


def half_resolution(image):
    return sitk.Resample(image, [s // 2 for s in image.GetSize()], sitk.Transform(), sitk.sitkLinear,
                         image.GetOrigin(), [s * 2 for s in image.GetSpacing()], image.GetDirection(), 0.0,
                         image.GetPixelID())


def broken_brats(dataset):
    """Seven BraTS phantom cases: one problem each in cases 1-6, case 7 clean."""
    root = dataset("brain-tumor", 7)

    def f(i, kind):
        return root / f"BraTS20_Training_{i:03d}" / f"BraTS20_Training_{i:03d}_{kind}.nii.gz"

    f(1, "t2").unlink()
    edit(f(2, "seg"), lambda im: with_array(im, np.where(sitk.GetArrayFromImage(im) == 2, 3,
                                                         sitk.GetArrayFromImage(im)).astype(np.uint16)))
    edit(f(3, "flair"), lambda im: shifted(im, 1000.0))
    edit(f(4, "t1"), half_resolution)
    f(5, "t1ce").write_bytes(gzip.compress(b"not a NIfTI file at all" * 10))
    edit(f(6, "t2"), lambda im: with_array(im, np.where(np.arange(sitk.GetArrayFromImage(im).size).reshape(
        sitk.GetArrayFromImage(im).shape) == 100, np.nan, sitk.GetArrayFromImage(im)).astype(np.float32)))
    return root, f


def test_every_problem_is_reported_with_its_file(dataset):
    root, f = broken_brats(dataset)
    layout, cases = find_cases(BT, root)
    report = check_dataset(BT, cases, layout)
    by_case = {}
    for p in report.problems:
        by_case.setdefault(p.case, []).append(p)
    assert set(by_case) == {f"BraTS20_Training_{i:03d}" for i in range(1, 7)}  # case 7 is clean
    assert all(len(v) == 1 for v in by_case.values()), report.format()

    def one(i):
        return by_case[f"BraTS20_Training_{i:03d}"][0]

    assert one(1).path == str(root / "BraTS20_Training_001") and "missing T2 image (t2)" in one(1).message
    assert one(2).path == str(f(2, "seg")) and "label values 3 are not in the brain-tumor label table" \
        in one(2).message
    assert one(3).path == str(f(3, "flair")) and "does not overlap the reference 't1ce'" in one(3).message
    assert one(4).path == str(f(4, "t1")) and "grid differs from the reference 't1ce'" in one(4).message
    assert "spacing" in one(4).message
    assert one(5).path == str(f(5, "t1ce")) and "cannot read image" in one(5).message
    assert one(6).path == str(f(6, "t2")) and "NaN" in one(6).message
    text = report.format()
    assert "6 problems in 6 cases" in text
    for problem in report.problems:
        assert str(problem) in text


def test_check_command_prints_the_report_and_exits_2(dataset, capsys):
    root, f = broken_brats(dataset)
    code = main(["check", "--task", "brain-tumor", "--data", str(root)])
    out, err = capsys.readouterr()
    assert code == 2
    assert str(f(2, "seg")) in out and str(f(5, "t1ce")) in out
    assert err.count("\n") == 1 and "dataset check found 6 problem(s) in 6 case(s)" in err


def test_fit_refuses_before_training_and_writes_nothing(dataset, tmp_path, capsys):
    root, f = broken_brats(dataset)
    out_dir = tmp_path / "run"
    code = main(["fit", "--config", "training/configs/brain-tumor.yaml", "--data", str(root),
                 "--out", str(out_dir)])
    _, err = capsys.readouterr()
    assert code == 2
    assert "missing T2 image (t2)" in err and err.strip().splitlines()[-1].startswith("training fit: error:")
    assert not out_dir.exists()


def test_clean_dataset_passes_check_command(dataset, capsys):
    root = dataset("brain-tumor", 2)
    assert main(["check", "--task", "brain-tumor", "--data", str(root)]) == 0
    assert "2 cases (2 labelled): no problems found" in capsys.readouterr().out


def test_spine_mr_on_its_own_grid_is_fine_but_not_outside_the_ct(dataset):
    task = get_task("spine")
    root = dataset("spine", 2)
    edit(root / "case_001" / "mr.nii.gz", half_resolution)  # another grid: allowed, MR is resampled
    edit(root / "case_002" / "mr.nii.gz", lambda im: shifted(im, -800.0))
    layout, cases = find_cases(task, root)
    report = check_dataset(task, cases, layout)
    assert [(p.case, p.path) for p in report.problems] == [("case_002", str(root / "case_002" / "mr.nii.gz"))]
    assert "does not overlap the reference 'ct'" in report.problems[0].message


def test_dataset_without_any_label_is_refused(dataset):
    task = get_task("spine")
    root = dataset("spine", 2)
    for case in ("case_001", "case_002"):
        (root / case / "label.nii.gz").unlink()
    report = check_dataset(task, find_cases(task, root)[1])
    assert not report.ok and "no case has a label map" in report.format()
