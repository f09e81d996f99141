"""Training configuration: typed dataclasses, loaded from YAML, overridden from the command line.

Hyper-parameters are data (STYLE.md §5): one :class:`TrainingConfig` holds everything a run needs, and
``to_dict``/``from_dict`` round-trip it through plain YAML/JSON types. ``--set key.sub=value`` overrides any
field; the value is parsed as YAML (``--set train.epochs=5``, ``--set model.config.features=[4,4,8,16,32,4]``).
Unknown keys and values of the wrong type are :class:`UserError` naming the key.

Example:
    >>> cfg = load_config("training/configs/brain-tumor.yaml", overrides=["train.epochs=2"])
    >>> cfg.train.epochs
    2
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from multimodalseg.errors import UserError

Precision = Literal["auto", "fp32", "fp16", "bf16"]


@dataclass
class SyntheticConfig:
    """On-the-fly synthetic training data (``multimodalseg.synthesis``): fresh cases every epoch instead of a folder.

    Args:
        on_the_fly: draw the training cases from the generator (``training.core.synthetic_source``); validation
            still reads ``--data`` (all its labelled cases, or ``data.val_cases``). False (default): bank mode,
            the training cases are the files of ``--data`` (e.g. written before by ``multimodalseg synth``).
        anatomy: folder of real label maps (``multimodalseg synth --anatomy``); None: the packaged maps. The
            held-out anatomies (``multimodalseg.synthesis.anatomy.HELD_OUT``) are never drawn.
        n_per_epoch: cases generated per epoch (each gives ``augmentation.samples_per_case`` patches).
        seed: seed of the generator (case ``k`` of epoch ``e`` comes from ``(seed, e, k)``); None: the run's seed.
        spacing: the generator's reference spacing in mm; None: its default per task (2 mm, spine 1.5 mm).
        modalities: whole heart: the modalities drawn (one per case, at random); empty: all of the task's.
        misregister: moving inputs (PET, spine MR) get the generator's small rigid misregistration, as the
            ``synth`` command writes them.
        exclude: more anatomy names never drawn (e.g. ``[fsaverage, fsaverage_mirror]`` when a benchmark scores
            fsaverage).
        random_contrast_fraction: the share of MR images in SynthSeg's random contrast (``synth
            --random-contrast-fraction``); None: the generator's default per task.
    """

    on_the_fly: bool = False
    anatomy: str | None = None
    n_per_epoch: int = 16
    seed: int | None = None
    spacing: float | None = None
    modalities: list[str] = field(default_factory=list)
    misregister: bool = True
    exclude: list[str] = field(default_factory=list)
    random_contrast_fraction: float | None = None


@dataclass
class DataConfig:
    """Where the cases are and how they are split and prepared.

    Args:
        root: dataset folder (``--data`` overrides); None until given.
        layout: ``auto`` or a name in ``training.datasets.LAYOUTS`` (``brats``, ``msd``, ``mmwhs``, ``freesurfer``,
            ``spine``, ``nnunet``).
        label_convention: label values of the files (``brats2023``, ``msd``...); None: the layout's default.
        co_registered: the modalities of a case share one grid (BraTS, MSD do); None: the layout's default.
            When true, the integrity check reports modalities on different grids.
        val_fraction: share of labelled cases held out for validation (at least one when there are 2+ cases).
        val_cases: explicit validation case ids (override ``val_fraction``).
        spacing: network spacing in mm, ITK (x, y, z) order; None: the task's; ``[]``: keep the reference's.
        crop_margin: crop to the foreground box grown by this many voxels; None: no crop.
        orientation: orientation code (``LIA``, ``RAS``...) every case's network arrays are permuted and flipped
            to, written into the bundle's ``preprocessing.orientation`` for inference (``multimodalseg.orientation``);
            None: the task's; ``""``: each case as given.
        normalization: input role -> scheme of ``multimodalseg.preprocessing.normalize`` (``zscore``,
            ``zscore_clip``, ``min_max``, ``ct``, ``pet``, ``none``), used in training and written into the
            bundle's ``preprocessing.normalization`` (the predictor applies the same); roles not named keep the
            task's scheme. ``{}``: the task's schemes.
        cache: keep prepared cases in memory (MONAI ``CacheDataset``; bank mode).
        num_workers: DataLoader worker processes.
        synthetic: on-the-fly synthetic training cases (:class:`SyntheticConfig`); off by default.
    """

    root: str | None = None
    layout: str = "auto"
    label_convention: str | None = None
    co_registered: bool | None = None
    val_fraction: float = 0.2
    val_cases: list[str] = field(default_factory=list)
    spacing: list[float] | None = None
    crop_margin: int | None = None
    orientation: str | None = None
    normalization: dict[str, str] = field(default_factory=dict)
    cache: bool = True
    num_workers: int = 0
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)


@dataclass
class ModelConfig:
    """The network, by registry name (``multimodalseg.nets.NETWORKS``).

    Args:
        network: registry name; None: the task's network.
        config: keyword arguments; ``spatial_dims``, ``in_channels`` and ``out_channels`` are filled from the task.
    """

    network: str | None = None
    config: dict[str, Any] = field(default_factory=dict)


@dataclass
class LossConfig:
    """The loss, by name in ``training.core.losses.LOSSES`` (softmax or sigmoid chosen from the task's output kind)."""

    name: str = "dice_ce"
    config: dict[str, Any] = field(default_factory=dict)


@dataclass
class OptimizerConfig:
    """Optimiser by name (``adamw``, ``adam``, ``sgd``); ``config`` holds extra keyword arguments (``momentum``)."""

    name: str = "adamw"
    lr: float = 1e-3
    weight_decay: float = 1e-5
    config: dict[str, Any] = field(default_factory=dict)


@dataclass
class SchedulerConfig:
    """Learning-rate schedule stepped once per epoch: ``none``, ``cosine``, ``poly`` (``power``), ``step``."""

    name: str = "none"
    config: dict[str, Any] = field(default_factory=dict)


@dataclass
class AugmentationConfig:
    """Patch sampling and random augmentation (MONAI dictionary transforms, ``training.core.augment``).

    The defaults are nnU-Net's (v2 ``nnUNetTrainer.get_training_transforms``), each step with its own probability
    per patch, in nnU-Net's order: rotation, scaling, [elastic], noise, blur, brightness, contrast, low
    resolution, inverted gamma, gamma, mirroring. Paper configs set their paper's own steps instead.

    Args:
        patch_size: training patch, ITK (x, y, z) order, voxels; None: the task's.
        samples_per_case: patches drawn per case per epoch (``RandCropByPosNegLabeld.num_samples``).
        pos_fraction: share of patches centred on foreground; None: uniform random crops (DMFNet's sampling).
        balance_classes: split the foreground share evenly over the classes (``RandCropByLabelClassesd``, as
            nnU-Net's class oversampling) instead of over the foreground voxels (``RandCropByPosNegLabeld``):
            with many labels of very different sizes (45 aseg structures) voxel sampling centres nearly every
            patch on the largest ones.
        rotate_degrees: rotation range in degrees (nnU-Net: 30); 0: no rotation.
        rotate_prob: probability of a rotation (nnU-Net: 0.2).
        rotate_mode: ``all_axes``: one ``RandAffined`` turning about all three axes by U(-deg, deg) each
            (nnU-Net); ``one_plane``: one random plane only (DMFNet's ``RandomRotion``, MONAI ``RandRotated``).
        scale_range: zoom factors ``[low, high]`` (nnU-Net: [0.7, 1.4]); a single number ``s`` means
            ``[1 - s, 1 + s]``; 0: no scaling.
        scale_prob: probability of a scaling (nnU-Net: 0.2).
        scale_per_axis: False: one factor for all axes (nnU-Net, MONAI ``RandZoomd``); True: an independent
            factor per axis (``RandAffined``, 3D UX-Net's reference).
        elastic_prob: probability of an elastic deformation (``Rand3DElasticd``); nnU-Net v2 (and v1's
            nnUNetTrainerV2) turn it off: 0.
        elastic_sigma, elastic_magnitude: its smoothing sigma and displacement magnitude ranges in voxels
            (nnU-Net v1: sigma 9-13, alpha 0-900).
        noise_prob, noise_std: additive Gaussian noise, sd drawn in [0, noise_std] (``RandGaussianNoised``;
            nnU-Net: 0.1, 0.1).
        blur_prob, blur_sigma: Gaussian blur with sigma in ``blur_sigma`` voxels per axis
            (``RandGaussianSmoothd``; nnU-Net: 0.2, [0.5, 1.0]).
        brightness_prob, brightness_range: multiplicative brightness, one factor per channel
            (``RandScaleIntensityd``; nnU-Net: 0.15, [0.75, 1.25]).
        contrast_prob, contrast_range: contrast about the channel's mean, range preserved
            (``RandScaleIntensityFixedMeand``; nnU-Net: 0.15, [0.75, 1.25]).
        lowres_prob, lowres_zoom: simulated low resolution, down by a zoom in ``lowres_zoom`` (nearest) and back up
            (trilinear) (``RandSimulateLowResolutiond``; nnU-Net: 0.25, [0.5, 1.0]).
        thick_slice_prob, thick_slice_zoom: a 2-D acquisition's thick slices along one random axis: each slab of
            1 / zoom voxels averaged (the slice profile) and interpolated back linearly, zoom in
            ``thick_slice_zoom`` (:class:`training.core.augment.RandThickSlices`; off by default, nnU-Net has none).
            Clinical FLAIR and T2 are often 4-6.5 mm axial slices under an isotropic T1ce.
        per_channel_prob: 0 (default): blur, low resolution and thick slices act on all channels of a patch
            together; above 0:
            once fired, each channel takes them on its own with this probability (nnU-Net: 0.5), so the
            modalities differ in sharpness as re-gridded sequences do.
        gamma_prob, gamma_inverted_prob, gamma_range: gamma with the mean and sd retained, and the same on the
            inverted image (``RandAdjustContrastd`` with ``retain_stats``/``invert_image``; nnU-Net: 0.3, 0.1,
            [0.7, 1.5]).
        flip_prob: probability of a mirror, per axis (nnU-Net: 0.5). A mirror along the patient's left-right axis
            (from the direction matrix) swaps the Left/Right labels (``TaskSpec.lateral_pairs``).
        flip_axes: ``all`` (nnU-Net): each of the three axes; ``lateral``: the left-right axis only (SynthSeg's
            mirror), for anatomy always seen upright, where mirroring up-down and front-back costs a small network
            capacity for orientations no scan has.
        intensity_prob: probability of the papers' intensity scale and shift each (DMFNet, 3D UX-Net); 0 (default):
            off, nnU-Net's brightness/contrast/gamma instead.
        intensity_scale, intensity_shift: factors of ``RandScaleIntensityd`` / ``RandShiftIntensityd``.
        channel_wise: draw that intensity scale and shift per channel (modality), as DMFNet does.
        enabled: False: plain random crops only (no spatial or intensity augmentation, no mirroring).
        modality_dropout: train for missing inputs (``training.core.modality_dropout``): ``{prob, drop_prob,
            roles, keep_sets, keep_set_prob}``, roles default every optional input of the task; keep_sets are
            subsets drawn as a whole (``[[t1ce, flair]]``) with keep_set_prob given a drop; the bundle then
            lists them in ``preprocessing.missing_inputs``. None: off.
    """

    patch_size: list[int] | None = None
    samples_per_case: int = 2
    pos_fraction: float | None = 0.5
    balance_classes: bool = False
    rotate_degrees: float = 30.0
    rotate_prob: float = 0.2
    rotate_mode: Literal["all_axes", "one_plane"] = "all_axes"
    scale_range: float | list[float] = field(default_factory=lambda: [0.7, 1.4])
    scale_prob: float = 0.2
    scale_per_axis: bool = False
    elastic_prob: float = 0.0
    elastic_sigma: list[float] = field(default_factory=lambda: [9.0, 13.0])
    elastic_magnitude: list[float] = field(default_factory=lambda: [0.0, 900.0])
    noise_prob: float = 0.1
    noise_std: float = 0.1
    blur_prob: float = 0.2
    blur_sigma: list[float] = field(default_factory=lambda: [0.5, 1.0])
    brightness_prob: float = 0.15
    brightness_range: list[float] = field(default_factory=lambda: [0.75, 1.25])
    contrast_prob: float = 0.15
    contrast_range: list[float] = field(default_factory=lambda: [0.75, 1.25])
    lowres_prob: float = 0.25
    lowres_zoom: list[float] = field(default_factory=lambda: [0.5, 1.0])
    thick_slice_prob: float = 0.0
    thick_slice_zoom: list[float] = field(default_factory=lambda: [0.25, 0.5])
    per_channel_prob: float = 0.0
    gamma_prob: float = 0.3
    gamma_inverted_prob: float = 0.1
    gamma_range: list[float] = field(default_factory=lambda: [0.7, 1.5])
    flip_prob: float = 0.5
    flip_axes: Literal["all", "lateral"] = "all"
    intensity_prob: float = 0.0
    intensity_scale: float = 0.1
    intensity_shift: float = 0.1
    channel_wise: bool = False
    enabled: bool = True
    modality_dropout: dict[str, Any] | None = None


@dataclass
class TrainConfig:
    """The loop.

    Args:
        epochs: maximum number of epochs.
        batch_size: global batch (split evenly over DDP processes).
        precision: ``auto`` (fp16 autocast on CUDA, fp32 on CPU), ``fp32``, ``fp16`` (CUDA only), ``bf16``.
        grad_clip: maximum gradient norm; 0 disables clipping.
        val_interval: validate every this many epochs.
        patience: stop after this many validations without improvement; 0 disables early stopping.
        min_delta: improvement needed to count as better.
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:N``.
        checkpoint_interval: also keep ``epoch_NNNN.pt`` every this many epochs; 0: only last and best.
        threads: CPU threads of torch (``torch.set_num_threads``); None: torch's default. On a shared or busy
            machine 1-2 threads are often faster than more (OpenMP threads wait for each other).
    """

    epochs: int = 100
    batch_size: int = 2
    precision: Precision = "auto"
    grad_clip: float = 12.0
    val_interval: int = 1
    patience: int = 20
    min_delta: float = 0.0
    device: str = "auto"
    checkpoint_interval: int = 0
    threads: int | None = None


@dataclass
class ValidationConfig:
    """Sliding-window validation (MONAI ``sliding_window_inference``); ``roi_size`` None: the patch size."""

    roi_size: list[int] | None = None
    overlap: float = 0.5
    sw_batch_size: int = 1
    mode: Literal["gaussian", "constant"] = "gaussian"


@dataclass
class LoggingConfig:
    """TensorBoard events and a CSV table under the run folder; tqdm progress (``auto``: only on a terminal)."""

    tensorboard: bool = True
    csv: bool = True
    progress: Literal["auto", "always", "never"] = "auto"


@dataclass
class RecipeConfig:
    """What trains this config: a recipe by name (``training.core.recipes.RECIPES``: ``supervised``, ``cascade``,
    ``mcf``, ``fusion``) and its settings (checked against the recipe's own dataclass: its stages, their networks
    and schedules). ``--set recipe.config.KEY=VALUE`` overrides them like any other key."""

    name: str = "supervised"
    config: dict[str, Any] = field(default_factory=dict)


@dataclass
class TrainingConfig:
    """Everything one training run needs.

    Args:
        task: task id (``brain-tumor``...).
        name: model id written into the exported bundle.
        version: model version string.
        seed: seeds Python, numpy, torch and every MONAI random transform.
        demo: the model is trained on synthetic phantoms (the catalog shows it).
        init_from: a model bundle whose weights start the run (fine-tuning).
        recipe: the recipe and its stages (:class:`RecipeConfig`).
    """

    task: str = "brain-tumor"
    name: str = "model"
    version: str = "0.1.0"
    seed: int = 0
    demo: bool = False
    init_from: str | None = None
    recipe: RecipeConfig = field(default_factory=RecipeConfig)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    augmentation: AugmentationConfig = field(default_factory=AugmentationConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str | None = None) -> TrainingConfig:
        """Build and type-check from plain types; unknown keys are a UserError (``source`` names the file)."""
        return build_section(cls, data, "", source)

    def to_dict(self) -> dict[str, Any]:
        """Plain types only (YAML and JSON ready); ``from_dict(to_dict())`` gives an equal config."""
        return dataclasses.asdict(self)

    def with_overrides(self, overrides: list[str]) -> TrainingConfig:
        """A copy with ``key.sub=value`` assignments applied (values parsed as YAML)."""
        data = self.to_dict()
        for item in overrides:
            key, value = parse_override(item)
            assign_override(data, key, value)
        return TrainingConfig.from_dict(data, source="--set")


def load_config(path: str | os.PathLike | None = None, overrides: list[str] | None = None) -> TrainingConfig:
    """Read a YAML config (defaults when ``path`` is None), then apply ``--set`` overrides."""
    data: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise UserError("config file not found", p)
        try:
            loaded = yaml.safe_load(p.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            raise UserError(f"invalid YAML{where}: {getattr(exc, 'problem', None) or exc}", p) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise UserError(f"cannot read config ({exc})", p) from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise UserError(f"config must be a mapping of keys to values, not a {type(loaded).__name__}", p)
        data = loaded
    config = TrainingConfig.from_dict(data, source=None if path is None else os.fspath(path))
    return config.with_overrides(overrides) if overrides else config


def save_config(config: TrainingConfig, path: str | os.PathLike) -> Path:
    """Write the config as YAML atomically (what ``load_config`` reads back)."""
    from multimodalseg.fileutil import atomic_write_text

    return atomic_write_text(path, yaml.safe_dump(config.to_dict(), sort_keys=False))


def parse_override(item: str) -> tuple[str, Any]:
    """``"train.epochs=5"`` -> ``("train.epochs", 5)``; the value is YAML (``null``, ``[1, 2]``, ``true``)."""
    key, sep, text = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise UserError(f"override '{item}' must look like key.sub=value", "--set")
    try:
        return key, yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError:
        raise UserError(f"override '{item}': value is not valid YAML", "--set") from None


def assign_override(data: dict[str, Any], key: str, value: Any) -> None:
    """Set the dotted ``key`` (a ``--set`` override) in the raw config mapping ``data``."""
    parts = key.split(".")
    node: Any = data
    for i, part in enumerate(parts[:-1]):
        if not isinstance(node, dict) or part not in node:
            raise UserError(f"unknown config key '{'.'.join(parts[:i + 1])}'", "--set")
        if node[part] is None:  # a free-form mapping not set yet
            node[part] = {}
        node = node[part]
    if not isinstance(node, dict):
        raise UserError(f"config key '{'.'.join(parts[:-1])}' holds a value, not a section", "--set")
    node[parts[-1]] = value  # unknown leaf keys are caught by from_dict


def build_section(cls: type, data: Any, prefix: str, source: str | None) -> Any:
    """The dataclass ``cls`` from the raw mapping ``data``; unknown keys and bad types name ``prefix`` + key."""
    if not isinstance(data, dict):
        raise UserError(f"config section '{prefix.rstrip('.') or 'top level'}' must be a mapping", source)
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise UserError(f"unknown config key '{prefix}{unknown[0]}' (known in this section: "
                        f"{', '.join(sorted(known))})", source)
    kwargs = {name: _convert(hints[name], value, f"{prefix}{name}", source) for name, value in data.items()}
    return cls(**kwargs)


def _convert(hint: Any, value: Any, key: str, source: str | None) -> Any:
    """Check ``value`` against the annotation ``hint`` (and coerce int -> float, list -> tuple where typed)."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        return build_section(hint, {} if value is None else value, f"{key}.", source)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for option in (a for a in args if a is not type(None)):
            try:
                return _convert(option, value, key, source)
            except UserError as exc:
                errors.append(exc)
        raise errors[0]
    if origin is Literal:
        if value not in args:
            raise UserError(f"config key '{key}' must be one of {', '.join(map(str, args))}, not {value!r}", source)
        return value
    if origin is tuple:  # fixed-length tuples of the recipes' settings (patch sizes)
        if not isinstance(value, (list, tuple)) or (args and args[-1] is not Ellipsis and len(value) != len(args)):
            raise _type_error(key, f"a list of {len(args)} values" if args else "a list", value, source)
        if args and args[-1] is Ellipsis:
            return tuple(_convert(args[0], v, f"{key}[{i}]", source) for i, v in enumerate(value))
        return tuple(_convert(a, v, f"{key}[{i}]", source) for i, (a, v) in enumerate(zip(args, value)))
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise _type_error(key, "a list", value, source)
        return [_convert(args[0], v, f"{key}[{i}]", source) for i, v in enumerate(value)] if args else list(value)
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise _type_error(key, "a mapping", value, source)
        return dict(value)
    if hint is Any:
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise _type_error(key, "true or false", value, source)
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _type_error(key, "an integer", value, source)
        return value
    if hint is float:
        if isinstance(value, str):  # PyYAML reads 1e-3 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                raise _type_error(key, "a number", value, source) from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _type_error(key, "a number", value, source)
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise _type_error(key, "a string", value, source)
        return value
    raise TypeError(f"unsupported config annotation {hint!r} for {key}")


def _type_error(key: str, expected: str, value: Any, source: str | None) -> UserError:
    return UserError(f"config key '{key}' must be {expected}, not {value!r}", source)
