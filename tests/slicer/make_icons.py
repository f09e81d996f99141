"""Draw the extension's icons with Pillow: one per module, the extension icon and the Sample Data thumbnails.

Run from the repository root: ``python tests/slicer/make_icons.py`` (writes ``MultimodalSeg/Resources/Icons``).
Simple flat drawings at 4x size, downsampled for smooth edges.
"""

from __future__ import annotations

import sys
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter

ICONS = Path(__file__).resolve().parents[2] / "MultimodalSeg" / "Resources" / "Icons"
S = 512  # drawing size; icons are 128 px, thumbnails 256 px


def _canvas() -> tuple[Image.Image, ImageDraw.ImageDraw]:
    image = Image.new("RGBA", (S, S), (0, 0, 0, 0))
    return image, ImageDraw.Draw(image)


def _brain(draw: ImageDraw.ImageDraw, fill=(200, 200, 205, 255)) -> None:
    draw.ellipse((56, 96, 456, 416), fill=fill, outline=(90, 90, 100, 255), width=14)
    draw.line((256, 104, 256, 408), fill=(90, 90, 100, 255), width=10)  # the longitudinal fissure
    for y in (170, 250, 330):  # gyri, suggested by arcs
        draw.arc((96, y - 40, 236, y + 40), 200, 340, fill=(140, 140, 150, 255), width=10)
        draw.arc((276, y - 40, 416, y + 40), 200, 340, fill=(140, 140, 150, 255), width=10)


def petmr_brain() -> Image.Image:
    image, draw = _canvas()
    _brain(draw)
    glow = Image.new("RGBA", (S, S), (0, 0, 0, 0))
    g = ImageDraw.Draw(glow)
    for (x, y, r, c) in ((180, 220, 70, (255, 90, 0, 170)), (330, 260, 80, (255, 200, 0, 160)),
                         (250, 340, 55, (255, 40, 40, 170))):
        g.ellipse((x - r, y - r, x + r, y + r), fill=c)
    image.alpha_composite(glow.filter(ImageFilter.GaussianBlur(18)))
    return image


def brain_tumor() -> Image.Image:
    image, draw = _canvas()
    _brain(draw)
    cx, cy = 320, 230
    for r, c in ((110, (64, 200, 64, 200)), (70, (255, 230, 64, 255)), (40, (220, 50, 50, 255))):
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=c)  # ED halo, ET rim, NCR core
    return image


def whole_heart() -> Image.Image:
    image, draw = _canvas()
    draw.ellipse((70, 90, 270, 290), fill=(200, 30, 40, 255))
    draw.ellipse((242, 90, 442, 290), fill=(200, 30, 40, 255))
    draw.polygon([(84, 230), (428, 230), (256, 470)], fill=(200, 30, 40, 255))
    draw.ellipse((130, 170, 250, 320), fill=(40, 90, 220, 255))  # RV
    draw.ellipse((250, 160, 390, 330), fill=(240, 120, 120, 255))  # LV
    draw.rectangle((236, 20, 286, 140), fill=(255, 80, 180, 255))  # aorta
    return image


def spine() -> Image.Image:
    image, draw = _canvas()
    for i in range(5):
        y = 40 + i * 92
        draw.rounded_rectangle((150, y, 362, y + 66), radius=18, fill=(241, 214, 145, 255),
                               outline=(150, 120, 60, 255), width=8)
        draw.polygon([(362, y + 14), (440, y + 33), (362, y + 52)], fill=(225, 195, 125, 255))
        if i < 4:
            draw.rounded_rectangle((164, y + 68, 348, y + 90), radius=10, fill=(111, 184, 210, 255))
    return image


MODULES = {"PETMRBrain": petmr_brain, "BrainTumor": brain_tumor, "WholeHeart": whole_heart, "SpineCTMR": spine}
SAMPLES = {"petmr-brain": petmr_brain, "brain-tumor": brain_tumor, "whole-heart": whole_heart, "spine": spine}


def extension_icon() -> Image.Image:
    image = Image.new("RGBA", (S, S), (0, 0, 0, 0))
    for k, draw_fn in enumerate(MODULES.values()):
        tile = draw_fn().resize((S // 2, S // 2), Image.LANCZOS)
        image.alpha_composite(tile, ((k % 2) * S // 2, (k // 2) * S // 2))
    return image


def sample_thumbnail(draw_fn) -> Image.Image:
    background = Image.new("RGBA", (S, S), (24, 24, 32, 255))
    background.alpha_composite(draw_fn())
    return background


def main(out: Path = ICONS) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, draw_fn in MODULES.items():
        draw_fn().resize((128, 128), Image.LANCZOS).save(out / f"{name}.png", optimize=True)
        written.append(out / f"{name}.png")
    extension_icon().resize((128, 128), Image.LANCZOS).save(out / "MultimodalSeg.png", optimize=True)
    written.append(out / "MultimodalSeg.png")
    for task, draw_fn in SAMPLES.items():
        sample_thumbnail(draw_fn).convert("RGB").resize((256, 256), Image.LANCZOS).save(
            out / f"Sample-{task}.png", optimize=True)
        written.append(out / f"Sample-{task}.png")
    return written


if __name__ == "__main__":
    for path in main(Path(sys.argv[1]) if len(sys.argv) > 1 else ICONS):
        print(path)
