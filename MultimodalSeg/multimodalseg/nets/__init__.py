"""Networks by name, so task specs and bundles can name them without importing torch.

Every network takes ``spatial_dims, in_channels, out_channels`` first (like MONAI's ``networks/nets``) and
returns logits from ``forward``. Paper networks live one per file in this package; standard ones come
from MONAI.

Example:
    >>> net = build_network("basic_unet", spatial_dims=3, in_channels=4, out_channels=3, features=(8, 8, 16, 32, 64, 8))
"""

from __future__ import annotations

import importlib
from typing import Any

# name -> "module:attribute"; the attribute is a class or a factory function taking the network's arguments.
NETWORKS: dict[str, str] = {
    "basic_unet": "monai.networks.nets:BasicUNet",
    "unet": "monai.networks.nets:UNet",
    "segresnet": "monai.networks.nets:SegResNet",
    "dmfnet": "multimodalseg.nets.dmfnet:DMFNet",
    "uxnet": "multimodalseg.nets.uxnet:UXNet",
    "dual_uxnet": "multimodalseg.nets.dual_uxnet:DualUXNet",
    "cddfuse": "multimodalseg.nets.cddfuse:CDDFuse",
    "mcf": "multimodalseg.nets.mcf:MCFNet",
    "maunet": "multimodalseg.nets.maunet:MAUNet",
    "maunet_scn": "multimodalseg.nets.scn:MAUNetSCN",
    "scn": "multimodalseg.nets.scn:SCN",
    "heart_localization": "multimodalseg.nets.heart_localization:HeartLocalizationNet",
    "heart_cascade": "multimodalseg.nets.heart_cascade:HeartCascade",
    "cin_unet": "multimodalseg.nets.cin:cin_unet",
    "cin_unetr": "multimodalseg.nets.cin:cin_unetr",
    "cin_swinunetr": "multimodalseg.nets.cin:cin_swinunetr",
}


def register_network(name: str, target: str) -> None:
    """Add a network under ``name``; ``target`` is ``"module:attribute"``."""
    NETWORKS[name] = target


def build_network(name: str, **config: Any):
    """Instantiate the network ``name`` with ``config`` (``spatial_dims``, ``in_channels``, ``out_channels``, ...)."""
    if name not in NETWORKS:
        raise ValueError(f"unknown network '{name}' (known: {', '.join(sorted(NETWORKS))})")
    module_name, attr = NETWORKS[name].split(":")
    factory = getattr(importlib.import_module(module_name), attr)
    return factory(**config)
