"""Conditional instance normalisation (METHODS §D.2-D.5) in MAUNet and MONAI UNet / UNETR / SwinUNETR."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from monai.inferers import sliding_window_inference
from multimodalseg.nets import build_network
from multimodalseg.nets.cin import (
    ConditionalInstanceNorm,
    ModalityConditioned,
    cin_swinunetr,
    cin_unet,
    cin_unetr,
    resolve_modality,
    unet_is_encoder,
)
from multimodalseg.nets.maunet import DEMO_CONFIG, MAUNet

# Small ViT for the CPU tests: UNETR's 12 blocks at hidden size 48 (the real one is 768).
SMALL_VIT = {"img_size": 32, "feature_size": 12, "hidden_size": 48, "mlp_dim": 96, "num_heads": 4}
SMALL_SWIN = {"feature_size": 12, "depths": (2, 2, 2, 2), "num_heads": (1, 1, 2, 2)}


def cins(net: torch.nn.Module) -> list[ConditionalInstanceNorm]:
    return [m for m in net.modules() if isinstance(m, ConditionalInstanceNorm)]


def randomise_affines(net: torch.nn.Module, seed: int = 0) -> None:
    """Distinct γ, β per modality, as training on CT and MR gives them (they start equal)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in cins(net):
            m.weight.copy_(1 + 0.5 * torch.randn(m.weight.shape, generator=g))
            m.bias.copy_(0.5 * torch.randn(m.bias.shape, generator=g))


def share_affines(net: torch.nn.Module, source: int = 1, target: int = 0) -> None:
    with torch.no_grad():
        for m in cins(net):
            m.weight[target] = m.weight[source]
            m.bias[target] = m.bias[source]


def test_cin_matches_its_definition_channels_first_and_last():
    torch.manual_seed(0)
    norm = ConditionalInstanceNorm(6, 2)
    randomise_affines(norm)
    x, m = torch.randn(3, 6, 4, 5, 6), torch.tensor([1, 0, 1])
    mean, var = x.mean((2, 3, 4), keepdim=True), x.var((2, 3, 4), unbiased=False, keepdim=True)
    expected = (x - mean) / torch.sqrt(var + 1e-5) * norm.weight[m][..., None, None, None] \
        + norm.bias[m][..., None, None, None]
    assert torch.allclose(norm(x, m), expected, atol=1e-5)
    # ViT tokens (B, N, C): each channel normalised over the tokens (MI-Seg's C-ViT), not over C like LayerNorm.
    tokens = ConditionalInstanceNorm(6, 2, channels_last=True)
    tokens.load_state_dict(norm.state_dict())
    t = x.flatten(2).transpose(1, 2)
    assert torch.allclose(tokens(t, m), expected.flatten(2).transpose(1, 2), atol=1e-5)
    with pytest.raises(ValueError, match="shape"):
        norm(x, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="more than one position"):
        norm(torch.randn(2, 6, 1, 1, 1), torch.tensor([0, 1]))
    with pytest.raises(RuntimeError, match="without a modality"):
        norm(x)


def test_resolve_modality_rules():
    assert resolve_modality(1, 3, 2).tolist() == [1, 1, 1]
    assert resolve_modality(torch.tensor([0]), 2, 2).tolist() == [0, 0]
    assert resolve_modality(torch.tensor([1, 1]), 4, 2).tolist() == [1, 1, 1, 1]  # all equal: every window
    assert resolve_modality([0, 1, 0], 3, 2).tolist() == [0, 1, 0]
    slices = [(slice(1, 2), slice(None)), (slice(0, 1), slice(None)), (slice(1, 2), slice(None))]
    assert resolve_modality(torch.tensor([0, 1]), 3, 2, window_slices=slices).tolist() == [1, 0, 1]
    with pytest.raises(ValueError, match="conditioned on the modality"):
        resolve_modality(None, 2, 2)
    with pytest.raises(ValueError, match="with_coord"):
        resolve_modality(torch.tensor([0, 1]), 3, 2)
    with pytest.raises(ValueError, match=r"0\.\.1"):
        resolve_modality(2, 1, 2)


def test_conditional_maunet_differs_only_through_gamma_and_beta():
    torch.manual_seed(0)
    net = MAUNet(3, 1, 8, **DEMO_CONFIG, conditional_modality=True, conditional_scope="all").eval()
    assert not any(isinstance(m, torch.nn.InstanceNorm3d) for m in net.modules())
    randomise_affines(net)
    x = torch.randn(1, 1, 16, 16, 16)
    with torch.no_grad():
        ct, mr = net(x, modality=0), net(x, modality=1)
        assert (ct - mr).abs().max() > 1e-2  # only the flag changed
        share_affines(net)
        assert torch.equal(net(x, modality=0), net(x, modality=1))  # nothing else depends on it


def test_encoder_scope_keeps_plain_norms_in_the_decoder():
    net = MAUNet(3, 1, 8, **DEMO_CONFIG, conditional_modality=True)  # encoder-only is the default (MI-Seg)
    names = [n for n, m in net.named_modules() if isinstance(m, ConditionalInstanceNorm)]
    assert names and all(n.startswith("encoders.") for n in names)
    assert any(isinstance(m, torch.nn.InstanceNorm3d) for m in net.decoders.modules())
    unet = cin_unet(3, 1, 8, channels=(8, 16, 32), strides=(2, 2))
    names = [n for n, m in unet.named_modules() if isinstance(m, ConditionalInstanceNorm)]
    # Down path ``model.0``, ``submodule.0`` and the bottom; the up path ``.2`` keeps InstanceNorm3d.
    assert names and all(unet_is_encoder(n.removeprefix("net.")) for n in names)
    assert any(isinstance(m, torch.nn.InstanceNorm3d) for m in unet.net.model[2].modules())
    assert len(cins(cin_unet(3, 1, 8, channels=(8, 16, 32), strides=(2, 2), scope="all"))) > len(names)


def test_absent_modality_gets_no_gradient():
    torch.manual_seed(0)
    net = cin_unet(3, 1, 8, channels=(8, 16, 32), strides=(2, 2))
    net(torch.randn(2, 1, 16, 16, 16), modality=torch.tensor([0, 0])).square().mean().backward()
    for m in cins(net):
        assert m.weight.grad[0].abs().sum() > 0 and m.weight.grad[1].abs().sum() == 0


def test_unetr_with_conditional_vit_through_sliding_windows():
    torch.manual_seed(0)
    net = build_network("cin_unetr", spatial_dims=3, in_channels=1, out_channels=8, **SMALL_VIT)
    assert isinstance(net, ModalityConditioned)
    vit = [n for n, m in net.named_modules() if isinstance(m, ConditionalInstanceNorm) and ".vit." in f".{n}"]
    # CIN before attention and MLP in the 12 blocks plus the final norm; the unused cross-attention norm stays.
    assert len(vit) == 25 and all(cins(net)[0].context is m.context for m in cins(net))
    assert not any(n.endswith("norm_cross_attn") for n in vit)
    assert not any(isinstance(m, torch.nn.LayerNorm) for n, m in net.named_modules()
                   if n.startswith("net.vit.") and not n.endswith("norm_cross_attn"))
    conditional = [n for n, m in net.named_modules() if isinstance(m, ConditionalInstanceNorm)]
    assert any(".encoder1." in n for n in conditional) and not any(".decoder" in n for n in conditional)
    randomise_affines(net)
    x, modality = torch.randn(2, 1, 32, 32, 32), torch.tensor([1, 0])
    y = net(x, modality=modality)  # no dropout or batch norm: the training-mode output is the eval output
    assert y.shape == (2, 8, 32, 32, 32)
    y.square().mean().backward()
    block = net.net.vit.blocks[5]
    for norm in (block.norm1, block.norm2):
        assert norm.weight.grad[0].abs().sum() > 0 and norm.weight.grad[1].abs().sum() > 0
    with torch.no_grad():
        windows = sliding_window_inference(x, 32, 2, net.eval(), with_coord=True, modality=modality)
        flipped = sliding_window_inference(x, 32, 2, net, with_coord=True, modality=1 - modality)
    assert torch.allclose(windows, y.detach(), atol=1e-5)
    assert (windows - flipped).abs().amax((1, 2, 3, 4)).min() > 1e-2  # each image's flag matters
    plain = cin_unetr(3, 1, 8, **SMALL_VIT, conditional_vit=False)
    assert not any(isinstance(m, ConditionalInstanceNorm) for m in plain.net.vit.modules())


@pytest.mark.parametrize("arch", ["unet", "swinunetr_2d"])
def test_sliding_windows_mixing_images_of_both_modalities(arch):
    torch.manual_seed(0)
    if arch == "unet":
        net = cin_unet(3, 1, 8, channels=(8, 16, 32), strides=(2, 2))
        x, roi = torch.randn(2, 1, 24, 16, 16), 16
    else:  # the 3D Swin is slow on CPU; its 2D form runs the same conditional norms on (B, H, W, C) maps
        net = cin_swinunetr(2, 1, 8, **SMALL_SWIN)
        x, roi = torch.randn(2, 1, 80, 64), 64
    randomise_affines(net)
    net.eval()
    with torch.no_grad():
        # 2 windows per image, 3 per batch: batches mix the two images, so each window needs its image's modality.
        mixed = sliding_window_inference(x, roi, 3, net, overlap=0.5, with_coord=True, modality=torch.tensor([1, 0]))
        # One image, one id for all its windows (what the inference engine passes: a tensor or an int).
        first = sliding_window_inference(x[:1], roi, 3, net, overlap=0.5, modality=torch.tensor([1]))
        second = sliding_window_inference(x[1:], roi, 3, net, overlap=0.5, modality=0)
        first_as_ct = sliding_window_inference(x[:1], roi, 3, net, overlap=0.5, modality=0)
        with pytest.raises(ValueError, match="with_coord"):
            sliding_window_inference(x, roi, 3, net, overlap=0.5, modality=torch.tensor([1, 0]))
    assert torch.allclose(mixed, torch.cat([first, second]), atol=1e-5)
    assert (first - first_as_ct).abs().max() > 1e-2  # the flag matters


def test_swinunetr_conditional_3d():
    torch.manual_seed(0)
    net = cin_swinunetr(3, 1, 8, feature_size=12, depths=(1, 1, 1, 1), num_heads=(1, 1, 1, 1))
    names = [n for n, m in net.named_modules() if isinstance(m, ConditionalInstanceNorm)]
    assert sum(".swinViT." in f".{n}" for n in names) == 4 * 2 + 4  # norm1/norm2 of 4 blocks, 4 patch mergings
    assert not any(isinstance(m, torch.nn.LayerNorm) for m in net.net.swinViT.modules())
    stage = torch.randn(2, 12, 4, 4, 4)
    assert torch.allclose(net.net.swinViT.proj_out(stage, True), F.instance_norm(stage))  # parameter-free IN
    randomise_affines(net)
    net.eval()
    # 64³ at least: at 32³ the last patch merging leaves one voxel, nothing to normalise (CIN raises).
    x = torch.randn(1, 1, 64, 64, 64)
    with torch.no_grad():
        ct, mr = net(x, modality=0), net(x, modality=torch.tensor([1]))
    assert ct.shape == (1, 8, 64, 64, 64) and (ct - mr).abs().max() > 1e-2


def test_bundles_without_a_scope_keep_all_and_new_bundles_record_theirs(tmp_path):
    from multimodalseg.bundles import load_bundle, save_bundle, sha256_file
    from multimodalseg.nets.cin import pin_legacy_scope

    nested = {"roi": {"maunet": {"channels": [8, 16], "conditional_modality": True}}, "plain": {"channels": [4]}}
    pinned = pin_legacy_scope(nested)
    assert pinned["roi"]["maunet"]["conditional_scope"] == "all" and "conditional_scope" not in pinned["plain"]
    assert pin_legacy_scope({"conditional_modality": True, "conditional_scope": "encoder"})["conditional_scope"] \
        == "encoder"
    config = {"spatial_dims": 3, "in_channels": 1, "out_channels": 3, "channels": [4, 8], "conditional_modality": True}
    legacy = MAUNet(**config, conditional_scope="all")  # how pre-0.3 bundles were trained
    path = tmp_path / "old.pt"
    save_bundle(path, legacy.state_dict(), {"id": "old", "version": "0.1.0", "task": "whole-heart",
                                            "network": {"name": "maunet", "config": config}, "labels": {},
                                            "preprocessing": {}})
    import torch as _torch  # rewrite the meta as an old writer did: no scope recorded
    payload = _torch.load(path, weights_only=True)
    assert payload["meta"]["network"]["config"]["conditional_scope"] == "encoder"  # the writer records it
    del payload["meta"]["network"]["config"]["conditional_scope"]
    _torch.save(payload, path)
    bundle = load_bundle(path, sha256=sha256_file(path))
    net = bundle.build_model()  # strict load: fails if the missing scope read as "encoder"
    assert any(n.startswith("decoders.") for n in cins_named(net))


def cins_named(net):
    return [n for n, m in net.named_modules() if isinstance(m, ConditionalInstanceNorm)]
