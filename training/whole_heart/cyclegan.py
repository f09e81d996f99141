"""CycleGAN MR -> CT modality transfer for the whole-heart training data (CM-TranCaF's MTN, METHODS §C.2).

Unpaired MR and CT volumes are resampled to one isotropic spacing (3 mm, the segmentation ROI's), scaled to
[-1, 1] (:func:`scale_ct`, :func:`scale_mr`) and cut into random patches; :class:`CycleGANTrainer` alternates the
generator step (LSGAN + 10·cycle + identity, ``training.whole_heart.losses.CycleGANLoss``) and the discriminator step
(on a 50-image history pool), with Adam(2e-4, β = (0.5, 0.999)), constant for the first half of the iterations
and linearly decaying to 0 over the second (junyanz defaults).

:func:`synthesize_ct` turns an MR volume into a synthetic CT in Hounsfield units on the MR's own grid, so the MR
label map stays valid for it; :func:`write_synthetic_cases` writes ``ct_synth_<id>_image/_label`` files in the
MM-WHS layout for ``fraction × number of real CT`` (rounded half up) MR cases (paper: 50 %, e.g. 10 synthetic +
20 real CT), which the supervised trainer then reads as CT cases. :func:`synthesize_dataset` does both for the
cascade's training split: the ``synthetic`` stage of the cascade recipe (``recipe.config.synthetic.train: true``).
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk
import torch
from monai.inferers import sliding_window_inference
from multimodalseg.io import write_image
from multimodalseg.nets.cyclegan import (
    DISCRIMINATOR_PAPER_CONFIG,
    GENERATOR_PAPER_CONFIG,
    ResnetGenerator,
    patch_discriminator,
)
from torch import nn

from training.whole_heart.losses import CycleGANLoss
from training.whole_heart.synthetic import synthetic_count, synthetic_id

CT_WINDOW_HU = (-1000.0, 1000.0)  # air .. beyond contrast blood and most bone; mapped linearly to [-1, 1]
MR_PERCENTILES = (0.5, 99.5)  # robust MR range mapped to [-1, 1]


def scale_ct(hu: np.ndarray) -> np.ndarray:
    """Hounsfield units -> [-1, 1] (clipped to :data:`CT_WINDOW_HU`)."""
    lo, hi = CT_WINDOW_HU
    return ((np.clip(np.asarray(hu, np.float32), lo, hi) - lo) / (hi - lo) * 2 - 1).astype(np.float32)


def unscale_ct(values: np.ndarray) -> np.ndarray:
    """[-1, 1] -> Hounsfield units (inverse of :func:`scale_ct` inside the window)."""
    lo, hi = CT_WINDOW_HU
    return ((np.asarray(values, np.float32) + 1) / 2 * (hi - lo) + lo).astype(np.float32)


def scale_mr(values: np.ndarray) -> np.ndarray:
    """MR intensities -> [-1, 1] between the volume's 0.5th and 99.5th percentiles (clipped)."""
    values = np.asarray(values, np.float32)
    lo, hi = (float(v) for v in np.percentile(values, MR_PERCENTILES))  # Python floats keep float32
    if hi <= lo:
        raise ValueError("the MR volume has no intensity range")
    return (np.clip((values - lo) / (hi - lo), 0, 1) * 2 - 1).astype(np.float32)


def resample_isotropic(image: sitk.Image, spacing: float) -> sitk.Image:
    """``image`` (float32, linear) on a grid of ``spacing`` mm covering the same extent, same origin/direction."""
    size = [max(1, int(math.ceil(n * s / spacing))) for n, s in zip(image.GetSize(), image.GetSpacing())]
    grid = sitk.Image(size, sitk.sitkUInt8)
    grid.SetSpacing([float(spacing)] * 3)
    grid.SetOrigin(image.GetOrigin())
    grid.SetDirection(image.GetDirection())
    minimum = float(sitk.GetArrayViewFromImage(image).min())
    return sitk.Resample(image, grid, sitk.Transform(3, sitk.sitkIdentity), sitk.sitkLinear, minimum,
                         sitk.sitkFloat32)


class ImagePool:
    """History of generated images (Shrivastava et al.): once full, each query returns, with probability ½, an
    older fake (replaced by the new one) instead of the new one, so the discriminator does not forget."""

    def __init__(self, size: int = 50, seed: int = 0) -> None:
        self.size, self.images, self.rng = size, [], random.Random(seed)

    def query(self, images: torch.Tensor) -> torch.Tensor:
        if self.size == 0:
            return images
        out = []
        for image in images.detach():
            image = image[None]
            if len(self.images) < self.size:
                self.images.append(image)
                out.append(image)
            elif self.rng.random() < 0.5:
                i = self.rng.randrange(self.size)
                out.append(self.images[i].clone())
                self.images[i] = image
            else:
                out.append(image)
        return torch.cat(out)


class CycleGAN(nn.Module):
    """The four networks: ``g_ct`` (MR -> CT), ``g_mr`` (CT -> MR), ``d_ct``, ``d_mr``.

    Args:
        spatial_dims: 2 or 3.
        generator: :class:`ResnetGenerator` arguments. Default the paper configuration (5.89 M each).
        discriminator: ``patch_discriminator`` arguments. Default the paper configuration (11.05 M each).
    """

    def __init__(self, spatial_dims: int = 3, *, generator: dict[str, Any] | None = None,
                 discriminator: dict[str, Any] | None = None) -> None:
        super().__init__()
        generator = dict(GENERATOR_PAPER_CONFIG if generator is None else generator)
        discriminator = dict(DISCRIMINATOR_PAPER_CONFIG if discriminator is None else discriminator)
        self.g_ct = ResnetGenerator(spatial_dims, 1, 1, **generator)
        self.g_mr = ResnetGenerator(spatial_dims, 1, 1, **generator)
        self.d_ct = patch_discriminator(spatial_dims, 1, **discriminator)
        self.d_mr = patch_discriminator(spatial_dims, 1, **discriminator)


@dataclass
class CycleGANConfig:
    """Optimisation settings (junyanz defaults, λ values per the paper summary; see ``CycleGANLoss``)."""

    iterations: int = 20000
    lr: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.999)
    lambda_cycle: float = 10.0
    lambda_identity: float = 1.0
    pool_size: int = 50
    decay_start: float = 0.5  # fraction of the iterations after which the learning rate decays linearly to 0
    seed: int = 0


class CycleGANTrainer:
    """One optimisation step of a :class:`CycleGAN` per :meth:`step` (generators first, then discriminators)."""

    def __init__(self, model: CycleGAN, config: CycleGANConfig | None = None) -> None:
        self.model, self.config = model, config or CycleGANConfig()
        c = self.config
        if c.iterations < 1 or not 0 <= c.decay_start <= 1:
            raise ValueError("iterations must be >= 1 and decay_start in [0, 1]")
        self.loss = CycleGANLoss(c.lambda_cycle, c.lambda_identity)
        generators = [*model.g_ct.parameters(), *model.g_mr.parameters()]
        critics = [*model.d_ct.parameters(), *model.d_mr.parameters()]
        self.opt_g = torch.optim.Adam(generators, lr=c.lr, betas=c.betas)
        self.opt_d = torch.optim.Adam(critics, lr=c.lr, betas=c.betas)
        start = int(c.decay_start * c.iterations)

        def factor(it: int) -> float:
            return 1.0 if it < start else max(0.0, 1.0 - (it - start) / max(1, c.iterations - start))

        self.schedulers = [torch.optim.lr_scheduler.LambdaLR(o, factor) for o in (self.opt_g, self.opt_d)]
        self.pool_ct, self.pool_mr = ImagePool(c.pool_size, c.seed), ImagePool(c.pool_size, c.seed + 1)
        self.iteration = 0

    def step(self, real_mr: torch.Tensor, real_ct: torch.Tensor) -> dict[str, float]:
        """One generator and one discriminator update on unpaired batches (B, 1, *S) in [-1, 1]."""
        m = self.model
        m.train()
        fake_ct, fake_mr = m.g_ct(real_mr), m.g_mr(real_ct)
        rec_mr, rec_ct = m.g_mr(fake_ct), m.g_ct(fake_mr)
        identity = self.loss.lambda_identity > 0
        idt_ct, idt_mr = (m.g_ct(real_ct), m.g_mr(real_mr)) if identity else (None, None)

        for p in [*m.d_ct.parameters(), *m.d_mr.parameters()]:
            p.requires_grad_(False)  # the generator step must not move the critics
        g = self.loss.generator(m.d_ct(fake_ct), m.d_mr(fake_mr), real_mr, rec_mr, real_ct, rec_ct, idt_ct, idt_mr)
        self.opt_g.zero_grad(set_to_none=True)
        g["total"].backward()
        self.opt_g.step()
        for p in [*m.d_ct.parameters(), *m.d_mr.parameters()]:
            p.requires_grad_(True)

        d_ct = self.loss.discriminator(m.d_ct(real_ct), m.d_ct(self.pool_ct.query(fake_ct)))
        d_mr = self.loss.discriminator(m.d_mr(real_mr), m.d_mr(self.pool_mr.query(fake_mr)))
        self.opt_d.zero_grad(set_to_none=True)
        (d_ct + d_mr).backward()
        self.opt_d.step()
        for scheduler in self.schedulers:
            scheduler.step()
        self.iteration += 1
        out = {f"g_{k}": float(v.detach()) for k, v in g.items()}
        out.update(d_ct=float(d_ct.detach()), d_mr=float(d_mr.detach()))
        return out


def random_patch(volume: np.ndarray, size: Sequence[int], rng: np.random.Generator) -> np.ndarray:
    """A random ``size`` patch of a (z, y, x) volume, padded with its minimum when the volume is smaller."""
    pad = [(0, max(0, s - n)) for s, n in zip(size, volume.shape)]
    if any(p[1] for p in pad):
        volume = np.pad(volume, pad, constant_values=float(volume.min()))
    start = [int(rng.integers(0, n - s + 1)) for s, n in zip(size, volume.shape)]
    return volume[tuple(slice(a, a + s) for a, s in zip(start, size))]


def prepare_volumes(images: Iterable[sitk.Image], modality: str, spacing: float | None = 3.0) -> list[np.ndarray]:
    """Images -> (z, y, x) float32 arrays in [-1, 1], resampled to ``spacing`` mm first unless None."""
    scale = {"ct": scale_ct, "mr": scale_mr}[modality]
    out = []
    for image in images:
        if spacing is not None:
            image = resample_isotropic(image, spacing)
        out.append(scale(sitk.GetArrayFromImage(image)).astype(np.float32))
    return out


def train_cyclegan(
    mr_volumes: Sequence[np.ndarray],
    ct_volumes: Sequence[np.ndarray],
    *,
    model: CycleGAN | None = None,
    config: CycleGANConfig | None = None,
    patch_size: Sequence[int] | int = 64,
    batch_size: int = 1,
    device: str | torch.device = "cpu",
) -> tuple[CycleGAN, list[dict[str, float]]]:
    """Train a CycleGAN on random patches of unpaired, already scaled volumes (see :func:`prepare_volumes`).

    Returns the model (on ``device``) and the per-iteration losses (``g_total``, ``g_gan``, ``g_cycle``,
    ``g_identity``, ``d_ct``, ``d_mr``).
    """
    if not mr_volumes or not ct_volumes:
        raise ValueError("CycleGAN training needs at least one MR and one CT volume")
    config = config or CycleGANConfig()
    size = (patch_size,) * 3 if isinstance(patch_size, int) else tuple(patch_size)
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    model = (model or CycleGAN()).to(device)
    trainer = CycleGANTrainer(model, config)
    history = []

    def batch(volumes: Sequence[np.ndarray]) -> torch.Tensor:
        picks = [volumes[int(rng.integers(len(volumes)))] for _ in range(batch_size)]
        return torch.from_numpy(np.stack([random_patch(v, size, rng)[None] for v in picks])).to(device)

    for _ in range(config.iterations):
        history.append(trainer.step(batch(mr_volumes), batch(ct_volumes)))
    return model, history


@torch.no_grad()
def synthesize_ct(generator: nn.Module, mr: sitk.Image, *, spacing: float | None = 3.0,
                  roi_size: Sequence[int] | int = 64, overlap: float = 0.25,
                  device: str | torch.device = "cpu") -> sitk.Image:
    """A synthetic CT (Int16 HU) of an MR volume, on the MR's grid, so the MR's label map fits it.

    The MR is resampled to ``spacing`` mm (the generator's training spacing; None: its own grid), scaled with
    :func:`scale_mr`, translated window by window (Gaussian blending), mapped back to HU and resampled onto the
    MR grid (outside the generated field: air).
    """
    work = resample_isotropic(mr, spacing) if spacing is not None else sitk.Cast(mr, sitk.sitkFloat32)
    x = torch.from_numpy(scale_mr(sitk.GetArrayFromImage(work)))[None, None].to(device)
    was_training = generator.training
    generator.eval()
    try:
        out = sliding_window_inference(x, roi_size, 1, generator, overlap=overlap, mode="gaussian")
    finally:
        generator.train(was_training)
    synthetic = sitk.GetImageFromArray(unscale_ct(out[0, 0].float().cpu().numpy()))
    synthetic.CopyInformation(work)
    if spacing is not None:
        synthetic = sitk.Resample(synthetic, mr, sitk.Transform(3, sitk.sitkIdentity), sitk.sitkLinear,
                                  CT_WINDOW_HU[0], sitk.sitkFloat32)
    return sitk.Cast(sitk.Round(synthetic), sitk.sitkInt16)


def write_synthetic_cases(
    generator: nn.Module,
    mr_cases: Sequence[tuple[str, sitk.Image, sitk.Image]],
    out_dir: str | Path,
    *,
    n_real_ct: int,
    fraction: float = 0.5,
    seed: int = 0,
    **synthesis: Any,
) -> list[Path]:
    """Write synthetic CT cases (``ct_synth_<id>_image.nii.gz`` + the MR's ``..._label.nii.gz``) in MM-WHS layout.

    Args:
        generator: the trained MR -> CT generator (``CycleGAN.g_ct``).
        mr_cases: (case id, MR image, MR label map) triples; a seeded random subset is used.
        out_dir: the folder (created); the supervised trainer reads it as extra CT cases.
        n_real_ct: number of real CT training cases; ``fraction`` of it is added (0.5 in the paper).
        **synthesis: :func:`synthesize_ct` arguments (``spacing``, ``roi_size``, ``device``...).

    Returns the written image paths.
    """
    count = synthetic_count(n_real_ct, fraction, len(mr_cases))
    chosen = random.Random(seed).sample(list(mr_cases), count)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for case_id, image, label in chosen:
        stem = synthetic_id(case_id)
        if not stem[-1].isdigit():
            raise ValueError(f"case id {case_id!r} must end in a number (MM-WHS names: ct_synth_<id>_image)")
        write_image(synthesize_ct(generator, image, **synthesis), out / f"{stem}_image.nii.gz")
        write_image(label, out / f"{stem}_label.nii.gz")
        written.append(out / f"{stem}_image.nii.gz")
    return written


def synthesize_dataset(config: Any, synthetic: Any, out: str | Path) -> dict[str, Any]:
    """Train the CycleGAN on the training split's unpaired MR and CT cases and write the synthetic CT cases.

    Args:
        config: the cascade's ``TrainingConfig`` (data root, validation split and seed: the same split as the
            cascade, so no validation MR case is translated).
        synthetic: its ``recipe.config.synthetic`` section (``training.whole_heart.settings.SyntheticConfig``).
        out: the synthetic CT folder (MM-WHS layout) with ``cyclegan_g_ct.pt`` (the MR -> CT generator's state
            dict) and ``synthetic.json`` (sources, counts, first and last losses).
    """
    from multimodalseg.fileutil import atomic_write, atomic_write_json
    from multimodalseg.io import read_image
    from multimodalseg.tasks import get_task

    from training.core.data import split_cases
    from training.core.supervised import load_cases

    task = get_task(config.task)
    _, cases = load_cases(config, task)
    split = split_cases([c for c in cases if not c.id.startswith("ct_synth_")], config)
    role = task.inputs[0].role
    train = {m: [c for c in split.train if c.modality == m] for m in ("mr", "ct")}
    if not train["mr"] or not train["ct"]:
        raise ValueError("the CycleGAN needs MR and CT training cases (after the validation split)")
    images = {m: [c.read_inputs()[role] for c in cs] for m, cs in train.items()}
    volumes = {m: prepare_volumes(images[m], m, synthetic.spacing) for m in ("mr", "ct")}
    model = CycleGAN(3, generator=dict(synthetic.generator), discriminator=dict(synthetic.discriminator))
    settings = CycleGANConfig(iterations=synthetic.iterations, lr=synthetic.lr, seed=config.seed)
    model, history = train_cyclegan(volumes["mr"], volumes["ct"], model=model, config=settings,
                                    patch_size=synthetic.patch_size, batch_size=synthetic.batch_size)
    mr_cases = [(c.id, image, read_image(c.label, label=True)) for c, image in zip(train["mr"], images["mr"])]
    written = write_synthetic_cases(model.g_ct, mr_cases, out, n_real_ct=len(train["ct"]),
                                    fraction=synthetic.fraction, seed=config.seed, spacing=synthetic.spacing,
                                    roi_size=synthetic.patch_size)
    folder = Path(out)
    state = {k: v.detach().cpu() for k, v in model.g_ct.state_dict().items()}
    atomic_write(folder / "cyclegan_g_ct.pt", lambda tmp: torch.save(state, tmp), ".pt")
    sources = {synthetic_id(c.id): c.id for c in train["mr"]}
    names = [p.name.removesuffix("_image.nii.gz") for p in written]
    summary = {"cases": {n: sources[n] for n in names}, "real_ct": len(train["ct"]), "fraction": synthetic.fraction,
               "val_cases": [c.id for c in split.val], "iterations": synthetic.iterations,
               "first_losses": history[0], "last_losses": history[-1]}
    atomic_write_json(folder / "synthetic.json", summary)
    return summary
