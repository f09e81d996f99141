"""Recipes: what ``python -m training fit`` trains. The config names a recipe, the recipe names its stages.

A recipe (:class:`Recipe`) has a settings dataclass (the config's ``recipe.config``), an ordered list of stages
(:class:`Stage`) and a :meth:`Recipe.plan` for ``--dry-run``. Recipes are registered by ``"module:attribute"``
name (:data:`RECIPES`), so the core does not import the methods' packages; a fifth workflow adds one line
(``register_recipe``). Every recipe writes the same run folder (:mod:`training.core.fit`):

    RUN/config.yaml              the config, recipe settings filled in
    RUN/summary.json             recipe, stages (status and metrics of each), bundle
    RUN/<stage>/config.yaml      the stage's own config (supervised-loop stages)
    RUN/<stage>/metrics.csv      one row per epoch (or per logged iteration)
    RUN/<stage>/tensorboard/     TensorBoard events (``logging.tensorboard``)
    RUN/<stage>/checkpoints/     last.pt, best.pt (supervised-loop stages)
    RUN/<name>-<version>.pt      the bundle, for recipes that assemble one (cascade, MCF, fusion)
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from multimodalseg.errors import UserError
from multimodalseg.fileutil import atomic_write_json

from training.core.config import TrainingConfig, build_section

# name -> "module:attribute" of a Recipe instance.
RECIPES: dict[str, str] = {
    "supervised": "training.core.supervised:RECIPE",
    "cascade": "training.whole_heart.recipe:RECIPE",
    "mcf": "training.spine.recipes:MCF_RECIPE",
    "fusion": "training.spine.recipes:FUSION_RECIPE",
    "brain-mask": "training.brain_tumor.brain_mask:RECIPE",
}


def register_recipe(name: str, target: str) -> None:
    """Add a recipe under ``name``; ``target`` is ``"module:attribute"`` of a :class:`Recipe`."""
    RECIPES[name] = target


def get_recipe(name: str) -> Recipe:
    if name not in RECIPES:
        raise UserError(f"unknown recipe '{name}' in recipe.name (known: {', '.join(sorted(RECIPES))})")
    module, attr = RECIPES[name].split(":")
    return getattr(importlib.import_module(module), attr)


def plain(value: Any) -> Any:
    """Dataclasses, tuples -> dicts and lists (YAML/JSON ready)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


@dataclass
class Stage:
    """One stage of a recipe.

    Args:
        name: its folder under the run folder.
        run: ``run(run_state) -> dict`` trains it (resuming from its folder when ``run_state.resume``) and returns
            its summary entry (metrics, paths).
        ddp: the stage supports ``torchrun`` (several processes).
        description: one line for ``--dry-run``.
    """

    name: str
    run: Callable[[RunState], dict[str, Any]]
    ddp: bool = False
    description: str = ""


@dataclass
class RunState:
    """What the stages of one run share: the config, the recipe's settings, the run folder, and ``shared``, the
    objects a stage hands to the next (trained networks, the data split)."""

    config: TrainingConfig
    settings: Any
    out: Path
    resume: bool = False
    overwrite: bool = False
    summary: dict[str, Any] = field(default_factory=dict)
    shared: dict[str, Any] = field(default_factory=dict)

    def folder(self, stage: str) -> Path:
        return self.out / stage

    def done(self, stage: str) -> dict[str, Any] | None:
        """The summary entry of ``stage`` when a resumed run had finished it, else None."""
        entry = self.summary.get("stages", {}).get(stage)
        return entry if self.resume and entry and entry.get("status") == "done" else None

    def write_summary(self) -> None:
        atomic_write_json(self.out / "summary.json", self.summary)


@dataclass
class NetworkInfo:
    """A network of the plan: the stage that trains it, its registry name and its parameter count."""

    stage: str
    name: str
    parameters: int


@dataclass
class Plan:
    """What ``--dry-run`` prints: stages, networks, data found, augmentation."""

    recipe: str
    stages: list[Stage]
    networks: list[NetworkInfo]
    data: list[str]
    augmentation: list[str]

    def format(self) -> str:
        lines = [f"recipe {self.recipe}: {len(self.stages)} stage(s)"]
        for i, stage in enumerate(self.stages, 1):
            ddp = "torchrun ok" if stage.ddp else "one process"
            lines.append(f"  {i}. {stage.name} ({ddp}){': ' + stage.description if stage.description else ''}")
        lines.append("networks:")
        lines += [f"  {n.stage}: {n.name}, {n.parameters:,} parameters" for n in self.networks]
        lines.append("data:")
        lines += [f"  {line}" for line in self.data]
        lines.append("augmentation:")
        lines += [f"  {line}" for line in self.augmentation] or ["  none"]
        return "\n".join(lines)


class Recipe:
    """Base of the recipes: settings dataclass, stages, dry-run plan, and what to do after the last stage."""

    name: str = ""
    settings_cls: type | None = None  # dataclass of ``recipe.config``; None: the recipe takes no settings
    bundle: bool = False  # the recipe writes RUN/<name>-<version>.pt itself (else ``export`` makes it)
    fine_tunes: bool = False  # the recipe starts from ``--init-from``'s weights (else it refuses the option)

    def settings(self, config: TrainingConfig) -> Any:
        """``recipe.config`` as the recipe's dataclass (unknown keys and bad types name ``recipe.config.KEY``)."""
        if self.settings_cls is None:
            if config.recipe.config:
                raise UserError(f"recipe {self.name} takes no recipe.config (got {', '.join(config.recipe.config)})")
            return None
        return build_section(self.settings_cls, config.recipe.config, "recipe.config.", None)

    def check(self, config: TrainingConfig, settings: Any) -> None:
        """Refuse a config this recipe cannot train (wrong task...) with a UserError."""

    def stages(self, config: TrainingConfig, settings: Any) -> list[Stage]:
        raise NotImplementedError

    def plan(self, config: TrainingConfig, settings: Any) -> Plan:
        raise NotImplementedError

    def finish(self, run: RunState) -> dict[str, Any]:
        """After the last stage: summary entries (e.g. the bundle written)."""
        return {}


def resolve(config: TrainingConfig) -> tuple[Recipe, Any]:
    """The config's recipe and its settings; ``config.recipe.config`` is filled with every default, so the saved
    config shows all of them and ``--set recipe.config.a.b=v`` reaches keys the YAML leaves out."""
    recipe = get_recipe(config.recipe.name)
    settings = recipe.settings(config)
    if settings is not None:
        config.recipe.config = plain(settings)
    if config.init_from and not recipe.fine_tunes:
        raise UserError(f"recipe {recipe.name} cannot start from a bundle (--init-from); it trains from scratch")
    recipe.check(config, settings)
    return recipe, settings


def count_parameters(build: Callable[[], Any]) -> int:
    """Parameters of the network ``build()`` makes, built on the meta device (no memory for the weights)."""
    import torch

    try:
        with torch.device("meta"):
            model = build()
    except (RuntimeError, NotImplementedError, TypeError):  # a net that computes with tensors while building
        model = build()
    return sum(p.numel() for p in model.parameters())
