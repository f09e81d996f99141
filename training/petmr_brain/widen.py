"""Function-preserving 2x widening of a trained dual 3D UX-Net (``feature_size`` f -> 2f), Net2WiderNet-style.

Why: the CPU-trained demo (f = 6) ends in 6 features for 46 classes and is too narrow to learn the small
structures, but training a wider network from scratch costs the hours the narrow one already had. Widening keeps
what it learned: every channel c of the narrow network becomes the channel pair (2c, 2c + 1) of the wide one, so
the wide network computes exactly the narrow one's output, and training goes on from there.

Rules, per weight dimension that doubles:
- an output dimension copies channel c into 2c and 2c + 1 (biases, norm affines and layer scales likewise);
- an input dimension that sums over the pair splits channel c's weight into (1/2 + e, 1/2 - e) of it, with a random
  e per pair: the sum, hence the output, is unchanged, but the two copies now get different gradients (with an even
  split they would stay identical forever);
- grouped and depthwise convolutions keep their per-group inputs (no split); the UX block's expanding pointwise
  convolution keeps its 4 outputs per group together;
- concatenations and chunks (a cross-attention's K|V, a fusion's CA1|CA2, an up-block's upsampled|skip input) are
  widened segment by segment, so that each segment keeps its place.

LayerNorm and GroupNorm(1, C) see the same mean and variance over duplicated channels, InstanceNorm works per
channel, and a channel attention head covers the duplicates of the same old channels, so all of them are exact.

    python -m training.petmr_brain.widen --bundle petmr-brain-demo-0.5.0.pt --out widened.pt
    python -m training fit --config training/configs/petmr-brain.yaml --init-from widened.pt ...
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import torch
from multimodalseg.bundles import load_bundle, save_bundle
from multimodalseg.errors import UserError
from multimodalseg.nets import build_network
from torch import nn

# Parameter names whose dimension (0 = output, 1 = input) is a concatenation of equal segments.
SEGMENTS: tuple[tuple[str, int, int], ...] = (
    (r"\.to_kv\.[01]\.weight$", 0, 2),           # K | V, chunked after the convolutions
    (r"^fusions\.\d+\.fuse\.0\.weight$", 1, 2),  # cat[CA1(P, M), CA2(M, P)]
    (r"^up\d\.conv_block\.conv[13]\.conv\.weight$", 1, 2),  # cat[upsampled, skip]
)
EXPANDING = re.compile(r"\.pwconv1\.(weight|bias)$")  # C -> 4C, groups = C: 4 outputs per input channel


def source_index(new_size: int, old_size: int, segments: int = 1, group: int = 1) -> torch.Tensor:
    """For each index of a doubled dimension, the old index it copies (pairs 2c, 2c + 1 within each segment;
    blocks of ``group`` consecutive outputs move together)."""
    if new_size != 2 * old_size or old_size % (segments * group):
        raise ValueError(f"cannot double a dimension of {old_size} into {new_size} ({segments} segments)")
    j = torch.arange(new_size)
    seg_new, seg_old = new_size // segments, old_size // segments
    seg, within = j // seg_new, j % seg_new
    block, offset = within // group, within % group
    return seg * seg_old + (block // 2) * group + offset


def split_factors(new_size: int, generator: torch.Generator, spread: float) -> torch.Tensor:
    """1/2 + e for the first index of each pair and 1/2 - e for the second (e uniform in [-spread, spread])."""
    e = (torch.rand(new_size // 2, generator=generator) * 2 - 1) * spread
    return torch.stack([0.5 + e, 0.5 - e], 1).flatten()


def widen_parameter(name: str, old: torch.Tensor, new_shape: torch.Size, *, input_dim: int | None,
                    generator: torch.Generator, spread: float) -> torch.Tensor:
    """The widened tensor of one parameter (see the module docstring for the rules)."""
    if old.ndim != len(new_shape):
        raise ValueError(f"{name}: {tuple(old.shape)} cannot become {tuple(new_shape)}")
    out = old
    for dim, (o, n) in enumerate(zip(old.shape, new_shape)):
        if o == n:
            continue
        segments = next((s for pattern, d, s in SEGMENTS if d == dim and re.search(pattern, name)), 1)
        group = 4 if dim == 0 and EXPANDING.search(name) else 1
        out = out.index_select(dim, source_index(n, o, segments, group))
        if dim == input_dim:
            shape = [1] * out.ndim
            shape[dim] = n
            out = out * split_factors(n, generator, spread).view(shape).to(out.dtype)
    if out.shape != new_shape:
        raise ValueError(f"{name}: {tuple(old.shape)} cannot become {tuple(new_shape)}")
    return out.contiguous()


def summing_input_dims(model: nn.Module) -> dict[str, int]:
    """Weight name -> the dimension that sums over input channels (ungrouped convolutions and linear layers)."""
    dims: dict[str, int] = {}
    for prefix, module in model.named_modules():
        if isinstance(module, nn.modules.conv._ConvTransposeNd) and module.groups == 1:
            dims[f"{prefix}.weight"] = 0
        elif isinstance(module, nn.modules.conv._ConvNd) and module.groups == 1 or isinstance(module, nn.Linear):
            dims[f"{prefix}.weight"] = 1
    return dims


def widen_state_dict(narrow: nn.Module, wide: nn.Module, *, seed: int = 0, spread: float = 0.2) -> dict:
    """The weights of ``wide`` (same class, every width doubled) that compute what ``narrow`` computes."""
    generator = torch.Generator().manual_seed(seed)
    inputs = summing_input_dims(wide)
    old = narrow.state_dict()
    widened = {}
    for name, target in wide.state_dict().items():
        if name not in old:
            raise ValueError(f"{name} is not in the narrow network")
        widened[name] = widen_parameter(name, old[name], target.shape, input_dim=inputs.get(name),
                                        generator=generator, spread=spread)
    return widened


def widen_bundle(path: str | Path, out: str | Path, *, seed: int = 0) -> str:
    """Write a bundle whose network has twice the feature size of ``path``'s and computes the same output; returns
    its sha256 (apply it twice for 4x)."""
    bundle = load_bundle(path)
    spec = bundle.meta["network"]
    if spec["name"] != "dual_uxnet":
        raise UserError(f"widening is written for dual_uxnet networks, the bundle holds {spec['name']}", path)
    config = dict(spec.get("config", {}))
    config["feature_size"] = 2 * int(config.get("feature_size", 48))
    if config.get("hidden_size") is not None:
        config["hidden_size"] = 2 * int(config["hidden_size"])
    wide = build_network(spec["name"], **config)
    state = widen_state_dict(bundle.build_model(), wide, seed=seed)
    meta = {**bundle.meta, "network": {**spec, "config": config},
            "widened_from": {"id": bundle.id, "version": str(bundle.meta.get("version")), "sha256": bundle.sha256}}
    return save_bundle(out, state, meta)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.petmr_brain.widen", description=__doc__.split("\n")[0])
    p.add_argument("--bundle", required=True, help="the narrow model bundle (.pt)")
    p.add_argument("--out", required=True, help="where to write the widened bundle")
    p.add_argument("--seed", type=int, default=0, help="seed of the split factors")
    args = p.parse_args(argv)
    if Path(args.out).exists():
        print(f"error: {args.out}: exists; choose another --out", file=sys.stderr)
        return 2
    try:
        digest = widen_bundle(args.bundle, args.out, seed=args.seed)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"{args.out}  sha256 {digest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
