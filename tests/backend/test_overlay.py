"""Overlay PNGs: size in physical proportions, orientation conventions, label colours, atomic writing."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from multimodalseg.errors import UserError
from multimodalseg.overlay import save_case_overview_png, save_overlay_png
from multimodalseg.phantoms import make_case
from PIL import Image


def volume(size_xyz, spacing=(1.0, 1.0, 1.0), direction=None, dtype=np.float32):
    """A gradient image (so windowing has a range) with the given geometry."""
    z, y, x = np.meshgrid(*(np.arange(n) for n in size_xyz[::-1]), indexing="ij")
    image = sitk.GetImageFromArray((x + 2 * y + 3 * z).astype(dtype))
    image.SetSpacing(spacing)
    if direction is not None:
        image.SetDirection(np.asarray(direction, float).ravel().tolist())
    return image


def label_like(image, boxes):
    """A label map on ``image``'s grid with ``value`` in index boxes ``(value, (x0, x1), (y0, y1), (z0, z1))``."""
    arr = np.zeros(image.GetSize()[::-1], np.uint16)
    for value, (x0, x1), (y0, y1), (z0, z1) in boxes:
        arr[z0:z1, y0:y1, x0:x1] = value
    lab = sitk.GetImageFromArray(arr)
    lab.CopyInformation(image)
    return lab


def pixels(path):
    return np.asarray(Image.open(path).convert("RGB")).astype(int)


def panels(png, widths, top=0):
    """Split the picture into its three panels (gap 4 px)."""
    out, x = [], 0
    for w in widths:
        out.append(png[top:, x:x + w])
        x += w + 4
    return out


def test_size_keeps_physical_proportions(tmp_path):
    image = volume((64, 64, 32), spacing=(1.0, 1.0, 2.0))  # 64 mm on every axis
    path = save_overlay_png(image, None, tmp_path / "iso.png")
    assert Image.open(path).size == (3 * 256 + 8, 256)
    titled = save_overlay_png(image, None, tmp_path / "titled.png", title="case 1", panel_size=128)
    assert Image.open(titled).size == (3 * 128 + 8, 128 + 18)
    box = volume((100, 50, 25))  # x 100 mm, y 50, z 25 -> 0.5 mm per pixel at panel_size 200
    path = save_overlay_png(box, None, tmp_path / "box.png", panel_size=200)
    assert Image.open(path).size == (200 + 200 + 100 + 8, 100)  # axial 200x100, coronal 200x50, sagittal 100x50


def test_oblique_image_shows_its_whole_extent(tmp_path):
    angle = np.radians(30)
    rot = [[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]]
    image = volume((64, 64, 64), direction=rot)
    path = save_overlay_png(image, None, tmp_path / "oblique.png")
    in_plane = 64 * (np.cos(angle) + np.sin(angle))  # axis-aligned box around the rotated square
    height = round(64 / in_plane * 256)
    assert Image.open(path).size == (256 + 256 + 256 + 8, 256)
    png = pixels(path)
    coronal = png[:, 260:516]
    assert (coronal[height + 2:] == 0).all() and coronal[:height].max() > 0  # z extent drawn to scale


def test_orientation_conventions(tmp_path):
    """A label at the patient's left, anterior, superior corner: right of the axial and coronal views
    (radiological), top of the axial view (anterior up), top of coronal and sagittal (superior up), left of
    the sagittal view (anterior left)."""
    image = volume((40, 40, 40))
    lab = label_like(image, [(7, (28, 36), (4, 12), (28, 36))])  # LPS: +x left, -y anterior, +z superior
    path = save_overlay_png(image, lab, tmp_path / "corner.png", panel_size=40)
    png = pixels(path)
    axial, coronal, sagittal = panels(png, (40, 40, 40))
    # label pixels: red differs from green (the yellow orientation letters have R == G)
    coloured = [np.argwhere(np.abs(p[..., 0] - p[..., 1]) > 8) for p in (axial, coronal, sagittal)]
    assert all(len(c) > 20 for c in coloured)
    (ay, ax), (cy, cx), (sy, sx) = (c.mean(0) for c in coloured)
    assert ax > 20 and ay < 20  # axial: patient left on the right, anterior at the top
    assert cx > 20 and cy < 20  # coronal: left on the right, superior at the top
    assert sx < 20 and sy < 20  # sagittal: anterior on the left, superior at the top


def test_label_colours_from_the_task(tmp_path):
    image = volume((48, 48, 48))
    lab = label_like(image, [(500, (10, 30), (10, 30), (10, 30)), (205, (30, 38), (10, 30), (10, 30))])
    png = pixels(save_overlay_png(image, lab, tmp_path / "heart.png", task="whole-heart"))
    r, g, b = png[..., 0], png[..., 1], png[..., 2]
    # blended at 40 %: pixel = 0.6 * grey + 0.4 * colour, so LV (200, 0, 0) gives R - G = 80 and G = B
    lv = (np.abs(r - g - 80) <= 1) & (g == b)
    myo = (np.abs(r - g - 80) <= 1) & (np.abs(b - g - 16) <= 1)  # Myo (220, 20, 60): R - G = 80, B - G = 16
    assert lv.sum() > 1000 and myo.sum() > 100
    plain = pixels(save_overlay_png(image, None, tmp_path / "plain.png"))
    assert not (np.abs(plain[..., 0] - plain[..., 1]) > 8).any()  # no label: grey, yellow letters only


def test_values_outside_the_table_get_a_palette(tmp_path):
    image = volume((32, 32, 32))
    lab = label_like(image, [(9, (8, 24), (8, 24), (8, 24))])
    png = pixels(save_overlay_png(image, lab, tmp_path / "palette.png", task="spine"))
    assert (np.abs(png[..., 0] - png[..., 1]) > 20).sum() > 300


def test_bad_output_and_atomic_write(tmp_path):
    image = volume((16, 16, 16))
    with pytest.raises(UserError, match="PNG"):
        save_overlay_png(image, None, tmp_path / "x.jpg")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(UserError, match="cannot write"):
        save_overlay_png(image, None, blocker / "x.png")
    save_overlay_png(image, None, tmp_path / "ok.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "ok.png"]  # no temporary files left


def test_case_overview(tmp_path):
    case = make_case("spine", 0)
    path = save_case_overview_png(case, tmp_path / "overview.png")
    png = pixels(path)
    ct = case.images["ct"]
    extent = np.multiply(ct.GetSize(), ct.GetSpacing())
    n = np.round(extent / (extent.max() / 200)).astype(int)  # display pixels per axis (x, y, z)
    assert png.shape[1] == n[0] + n[0] + n[1] + 8
    assert png.shape[0] == 18 + 3 * max(n[1], n[2]) + 2 * 4  # title, rows ct, mr, ct + label
    r, g, b = png[..., 0], png[..., 1], png[..., 2]
    vertebra = (np.abs(r - g - 11) <= 2) & (np.abs(g - b - 28) <= 2)  # (241, 214, 145) at 40 %
    assert vertebra[-max(n[1], n[2]):].sum() > 200 and vertebra[: -max(n[1], n[2])].sum() == 0
