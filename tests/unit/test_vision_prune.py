"""reprise.vision.prune: unfolded-conv Grams, masking vs physical shrinking, parameter budgets, errors."""
from __future__ import annotations

import copy
import urllib.error

import pytest
import torch
import torch.nn as nn

from reprise.io import ReproError
from reprise.vision import data as vdata
from reprise.vision.models import (PRETRAINED, RANDOM_LABEL, build_model, digits_resnet, reset_bn_statistics,
                                   weights_cache_path)
from reprise.vision.prune import (budget, conv_gram_accumulator, count_flops, count_params, expected_params,
                                  mask_channels, prune_channels, shrink_channels, unfold_inputs, units_of)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _random_kept(model: nn.Module, sparsity: float, seed: int = 0) -> dict[str, torch.Tensor]:
    g = _gen(seed)
    return {u.name: torch.randperm(u.channels, generator=g)[:budget(u.channels, sparsity)] for u in units_of(model)}


def _same_output(a: nn.Module, b: nn.Module, x: torch.Tensor) -> None:
    """Masked and shrunk compute the same function: compared in fp64 (no float-rounding slack),
    on outputs that are not degenerate."""
    with torch.no_grad():
        ya, yb = copy.deepcopy(a).double()(x.double()), copy.deepcopy(b).double()(x.double())
    assert float(ya.abs().max()) > 1e-3
    torch.testing.assert_close(yb, ya, atol=1e-5, rtol=0)


# ------------------------------------------------------------------------------------------ Gram

def _im2col(x: torch.Tensor, kh: int, kw: int, stride: tuple[int, int], pad: tuple[int, int],
            dil: tuple[int, int]) -> torch.Tensor:
    """Brute-force patches: one row per (image, output position), columns (channel, ki, kj)."""
    n, c, h, w = x.shape
    xp = torch.zeros(n, c, h + 2 * pad[0], w + 2 * pad[1], dtype=x.dtype)
    xp[:, :, pad[0]:pad[0] + h, pad[1]:pad[1] + w] = x
    oh = (h + 2 * pad[0] - dil[0] * (kh - 1) - 1) // stride[0] + 1
    ow = (w + 2 * pad[1] - dil[1] * (kw - 1) - 1) // stride[1] + 1
    rows = []
    for b in range(n):
        for i in range(oh):
            for j in range(ow):
                rows.append([float(xp[b, ch, i * stride[0] + ki * dil[0], j * stride[1] + kj * dil[1]])
                             for ch in range(c) for ki in range(kh) for kj in range(kw)])
    return torch.tensor(rows, dtype=torch.float64)


@pytest.mark.parametrize("kernel,stride,padding,dilation", [((3, 3), (1, 1), (1, 1), (1, 1)),
                                                           ((3, 2), (2, 1), (1, 0), (2, 1)),
                                                           ((1, 1), (2, 2), (0, 0), (1, 1))])
def test_unfolded_conv_gram_equals_bruteforce_im2col(kernel, stride, padding, dilation):
    conv = nn.Conv2d(3, 5, kernel, stride=stride, padding=padding, dilation=dilation, bias=False)
    x = torch.randn(2, 3, 7, 6, generator=_gen(1))
    P = _im2col(x, *kernel, stride, padding, dilation)
    acc = conv_gram_accumulator(conv)
    acc.add(unfold_inputs(conv, x))
    torch.testing.assert_close(acc.gram(), P.T @ P / P.shape[0], rtol=1e-10, atol=1e-10)
    # the column order is W.reshape(out, -1)'s: patches times the flattened weight give the conv output
    with torch.no_grad():
        y = conv(x).permute(0, 2, 3, 1).reshape(-1, 5).double()
    torch.testing.assert_close(P @ conv.weight.detach().reshape(5, -1).double().T, y, rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------------------------------ tables

def test_unit_tables_resolve_the_documented_convs():
    r50, mb2 = build_model("resnet50", pretrained=False), build_model("mobilenet_v2", pretrained=False)
    names = [u.name for u in units_of(r50)]
    assert len(names) == 32 and names[:2] == ["layer1.0.conv2", "layer1.0.conv3"]
    assert {u.group_size for u in units_of(r50)} == {9, 1}
    mb = units_of(mb2)
    assert [u.name for u in mb] == [f"features.{i}.conv.2" for i in range(2, 18)]  # features.1 has no expansion
    assert all(u.depthwise is not None and u.group_size == 1 for u in mb)
    assert [u.name for u in units_of(digits_resnet())] == ["blocks.0.conv2", "blocks.1.conv2", "blocks.2.conv2"]


def test_imagenet_models_have_torchvision_parameter_counts_and_names():
    """torchvision's published state dicts load strictly only with its names and shapes; the
    parameter counts are the ones its weight metadata publishes."""
    for key, first, last in (("resnet50", "conv1.weight", "fc.bias"),
                             ("mobilenet_v2", "features.0.0.weight", "classifier.1.bias")):
        m = build_model(key, pretrained=False)
        assert count_params(m) == PRETRAINED[key].params
        sd = list(m.state_dict())
        assert sd[0] == first and sd[-1] == last
    assert "layer4.2.downsample.0.weight" not in build_model("resnet50", pretrained=False).state_dict()
    assert "features.2.conv.1.0.weight" in build_model("mobilenet_v2", pretrained=False).state_dict()


# ------------------------------------------------------------------------------------------ shrink

def test_shrunk_digits_cnn_equals_masked_and_meets_the_parameter_budget():
    m = digits_resnet(seed=3)
    x = torch.randn(16, 1, 8, 8, generator=_gen(2))
    reset_bn_statistics(m, x)
    kept = _random_kept(m, 0.5)
    masked = mask_channels(copy.deepcopy(m), kept)
    shrunk = shrink_channels(copy.deepcopy(masked), kept)
    _same_output(masked, shrunk, x)
    assert [u.channels for u in units_of(shrunk)] == [budget(u.channels, 0.5) for u in units_of(m)]
    assert count_params(shrunk) == expected_params(m, kept) < count_params(m)
    # per unit: conv1 rows (c_in·9), its BN (2), conv2 columns (c_out·9) leave with each channel
    removed = sum((u.channels - budget(u.channels, 0.5)) * (u.producer.in_channels * 9 + 2 + u.consumer.out_channels * 9)
                  for u in units_of(m))
    assert count_params(m) - count_params(shrunk) == removed
    assert count_flops(shrunk, (1, 8, 8)) < count_flops(m, (1, 8, 8))


def test_pruned_digits_cnn_shrinks_to_the_masked_function():
    m = digits_resnet(seed=0)
    x = torch.randn(32, 1, 8, 8, generator=_gen(4))
    reset_bn_statistics(m, x)
    res = prune_channels(m, x, "osscar", 0.5, progress=False)
    assert [r["layer"] for r in res.log] == list(res.kept)
    assert all(r["kept"] == budget(r["channels"], 0.5) and r["objective"] >= 0 for r in res.log)
    shrunk = shrink_channels(copy.deepcopy(res.model), res.kept)
    _same_output(res.model, shrunk, x)
    assert count_params(shrunk) == expected_params(res.model, res.kept)


def test_count_flops_of_one_conv_and_linear():
    net = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.Flatten(), nn.Linear(8 * 4 * 4, 10))
    # conv: 8 maps of 4x4 positions, 3*9 MACs each; linear 128*10 MACs; FLOPs = 2 x MACs
    assert count_flops(net, (3, 8, 8)) == 2 * (8 * 16 * 27 + 128 * 10)


def test_resnet50_random_weights_shape_check_shrunk_equals_masked():
    """random weights: shape check (no accuracy meaning). Every bottleneck's conv2 and conv3 units
    masked and shrunk with random kept sets, plus three units solved by mp-plus."""
    m = build_model("resnet50", pretrained=False)
    x = torch.randn(2, 3, 64, 64, generator=_gen(5))
    reset_bn_statistics(m, x)
    kept = _random_kept(m, 0.5)
    masked = mask_channels(copy.deepcopy(m), kept)
    shrunk = shrink_channels(copy.deepcopy(masked), kept)
    _same_output(masked, shrunk, x)
    assert count_params(shrunk) == expected_params(m, kept)
    assert shrunk.layer2.get_submodule("0.conv2").weight.shape == (64, 64, 3, 3)
    assert shrunk.layer2.get_submodule("0.conv3").weight.shape == (512, 64, 1, 1)

    only = ["layer1.0.conv2", "layer1.0.conv3", "layer4.2.conv3"]
    res = prune_channels(m, x, "mp-plus", 0.5, only=only, progress=False)
    assert list(res.kept) == only
    _same_output(res.model, shrink_channels(copy.deepcopy(res.model), res.kept), x)


def test_mobilenet_v2_random_weights_shape_check_shrunk_equals_masked():
    """random weights: shape check. All 16 projection units pruned by mp-plus; a removed hidden
    channel also leaves the expansion conv and the depthwise conv with their BNs."""
    m = build_model("mobilenet_v2", pretrained=False)
    x = torch.randn(2, 3, 64, 64, generator=_gen(6))
    reset_bn_statistics(m, x)
    res = prune_channels(m, x, "mp-plus", 0.5, progress=False)
    shrunk = shrink_channels(copy.deepcopy(res.model), res.kept)
    _same_output(res.model, shrunk, x)
    assert count_params(shrunk) == expected_params(m, res.kept)
    block = shrunk.features[5].conv
    assert block[0][0].out_channels == block[1][0].groups == block[1][1].num_features == block[2].in_channels == 96
    assert count_flops(shrunk, (3, 224, 224)) < count_flops(m, (3, 224, 224))


def test_shrink_rejects_bad_kept_sets():
    m = digits_resnet()
    with pytest.raises(ReproError, match="distinct indices"):
        shrink_channels(m, {"blocks.0.conv2": torch.tensor([0, 0, 1])})
    with pytest.raises(ReproError, match="distinct indices"):
        mask_channels(m, {"blocks.0.conv2": torch.tensor([], dtype=torch.long)})


def test_prune_rejects_unstructured_methods_and_unknown_units():
    m = digits_resnet()
    x = torch.randn(4, 1, 8, 8, generator=_gen(0))
    with pytest.raises(ReproError, match="not a structured method"):
        prune_channels(m, x, "sparsegpt", 0.5, progress=False)
    with pytest.raises(ReproError, match="no prunable unit 'stem.0'"):
        prune_channels(m, x, "mp", 0.5, only=["stem.0"], progress=False)
    with pytest.raises(ReproError, match="set per unit"):
        prune_channels(m, x, "osscar", 0.5, config={"group_size": 4}, progress=False)
    with pytest.raises(ReproError, match="unknown key"):
        prune_channels(m, x, "osscar", 0.5, config={"swaps": 4}, progress=False)


# ------------------------------------------------------------------------------------------ errors

def test_missing_imagenet_dir_names_the_config_key(tmp_path):
    with pytest.raises(ReproError, match=r"vision\.imagenet_dir is not set"):
        vdata.check_imagenet_dir(None)
    with pytest.raises(ReproError, match=r"vision\.imagenet_dir=.*no such directory"):
        vdata.check_imagenet_dir(tmp_path / "nope")
    (tmp_path / "train" / "n01").mkdir(parents=True)
    with pytest.raises(ReproError, match=r"vision\.imagenet_dir=.*has no val/ subfolder.*train/<wnid>"):
        vdata.check_imagenet_dir(tmp_path)
    (tmp_path / "val").mkdir()
    with pytest.raises(ReproError, match=r"val/ holds no class folders"):
        vdata.check_imagenet_dir(tmp_path)


def test_missing_pretrained_weights_name_the_cache_file(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    path = tmp_path / "hub" / "checkpoints" / "resnet50-0676ba61.pth"
    assert weights_cache_path("resnet50") == path
    with pytest.raises(ReproError) as err:
        build_model("resnet50", pretrained=True, allow_download=False)
    assert str(path) in str(err.value) and "pretrained=False" in str(err.value)

    def offline(*_a, **_k):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(ReproError, match="could not be loaded") as err:
        build_model("mobilenet_v2", pretrained=True)
    assert str(tmp_path / "hub" / "checkpoints" / "mobilenet_v2-b0353104.pth") in str(err.value)
    assert RANDOM_LABEL == "random weights: shape and speed checks only"
