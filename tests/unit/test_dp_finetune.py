"""reprise.dp.finetune: SPARTA's phases keep frozen weights bit-identical, masks have the requested row density,
the mask epoch is counted by the accountant; the baselines train what they should; experiment params fail early."""
from __future__ import annotations

import math

import pytest
import torch

from reprise.dp.engine import epsilon_for
from reprise.dp.finetune import FinetuneConfig, finetune
from reprise.dp.models import DigitsCNN, masked_modules
from reprise.io import ReproError

N, BATCH, EPOCHS = 120, 30, 4     # q = 1/4; the engine test's budget (ε = 4, δ = 1e-3), so σ is calibrated once
BUDGET = dict(epsilon=4.0, delta=1e-3, batch_size=BATCH, physical_batch=16, lr=0.5, classifier_lr=0.5, warm_up=0.1)


def _setup(seed=0):
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(N + 40, 1, 8, 8, generator=g), torch.randint(0, 5, (N + 40,), generator=g)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = DigitsCNN(num_classes=5, width=4)
    return net, (x[:N], y[:N]), (x[N:], y[N:])


def _weights(net):
    return {"conv1": net.conv1.weight.detach(), "conv2": net.conv2.weight.detach()}


@pytest.mark.parametrize("method", ["sparta", "sparta_weighted", "random_rows", "optim_weights_noisy_grads",
                                    "optim_averaged_clipped_grads"])
def test_sparta_phases(method):
    net, train, test = _setup()
    # E = 4 with the mask epoch second (index 1) and 2 epochs (2 after E₀) of sparse fine-tuning
    cfg = FinetuneConfig(method=method, epochs=EPOCHS, mask_epoch=1, density=0.5, accountant="prv", **BUDGET)
    out = finetune(net, train, test, cfg)
    pre = _weights(net)
    mods = masked_modules(out.model)
    assert set(mods) == {"conv1", "conv2"}  # the head stays a plain Linear
    for name, m in mods.items():
        # head warm-up (masks 0) and the mask epoch (lr 0) leave the body exactly at the pretrained weights
        assert torch.equal(out.weights_after_mask[name], pre[name])
        if method.startswith("optim_"):  # unstructured: entries, not rows
            assert int(m.mask.sum()) == m.mask.numel() - int(m.mask.numel() * 0.5)
        else:
            rows = m.mask.reshape(m.mask.shape[0], -1)
            assert torch.all(rows == rows[:, :1])
            kept = int(rows[:, 0].sum())
            assert math.floor(0.5 * rows.shape[0]) <= kept <= math.ceil(0.5 * rows.shape[0])
        frozen = m.mask == 0
        w = m.effective_weight().detach()
        assert torch.equal(w[frozen], pre[name][frozen])          # frozen rows bit-identical after training
        assert not torch.equal(w[~frozen], pre[name][~frozen])     # the kept rows did train
        assert torch.all(m.delta.detach()[frozen] == 0)
    steps = EPOCHS * math.ceil(N / BATCH)  # the mask epoch counts
    assert out.metrics["steps"] == steps
    assert out.metrics["spent_epsilon"] == pytest.approx(
        epsilon_for("prv", out.metrics["sigma"], 1 / math.ceil(N / BATCH), steps, 1e-3), rel=1e-12)
    assert out.metrics["spent_epsilon"] <= 4.0


def test_mp_weights_freezes_the_small_pretrained_weights():
    net, train, test = _setup(1)
    out = finetune(net, train, test, FinetuneConfig(method="mp_weights", epochs=2, density=0.2, accountant="rdp",
                                                    **BUDGET))
    for name, m in masked_modules(out.model).items():
        w0 = _weights(net)[name]
        keep = m.mask.bool()
        assert int(keep.sum()) == w0.numel() - int(w0.numel() * 0.8)
        assert float(w0.abs()[keep].min()) >= float(w0.abs()[~keep].max())
        assert torch.equal(m.effective_weight().detach()[~keep], w0[~keep])


@pytest.mark.parametrize("method, moved", [
    ("linear_probing", {"linear.weight", "linear.bias"}),
    ("lp_gn", {"linear.weight", "linear.bias", "bn1.weight", "bn1.bias", "bn2.weight", "bn2.bias"}),
    ("dp_bitfit", {"linear.weight", "linear.bias", "bn1.weight", "bn1.bias", "bn2.weight", "bn2.bias"}),
    ("all_layers", {"linear.weight", "linear.bias", "bn1.weight", "bn1.bias", "bn2.weight", "bn2.bias",
                    "conv1.weight", "conv2.weight"}),
])
def test_baselines_train_exactly_their_parameters(method, moved):
    net, train, test = _setup(2)
    out = finetune(net, train, test, FinetuneConfig(method=method, epochs=1, accountant="rdp", **BUDGET))
    before, after = dict(net.named_parameters()), dict(out.model.named_parameters())
    changed = {n for n in before if not torch.equal(before[n], after[n])}
    assert changed == moved
    assert 0 < out.metrics["trainable_fraction"] <= 1


def test_lora_trains_adapters_head_and_biases_only():
    net, train, test = _setup(3)
    out = finetune(net, train, test, FinetuneConfig(method="lora", epochs=1, accountant="rdp", **BUDGET))
    trainable = {n for n, p in out.model.named_parameters() if p.requires_grad}
    assert trainable and all(("lora_" in n) or n.endswith("bias") or ".linear." in n for n in trainable)
    assert any("conv1" in n and "lora_A" in n for n in trainable)
    base = {n: p for n, p in out.model.named_parameters() if n.endswith("conv1.base_layer.weight")}
    assert torch.equal(next(iter(base.values())), net.conv1.weight)


def test_experiment_params_fail_early(monkeypatch):
    import reprise.dp.finetune
    import reprise.dp.pretrain
    from reprise.experiments import run_experiment

    def no_training(*a, **k):
        raise AssertionError("training started before the bad input was caught")

    monkeypatch.setattr(reprise.dp.pretrain, "pretrain", no_training)
    monkeypatch.setattr(reprise.dp.finetune, "finetune", no_training)

    with pytest.raises(ReproError, match="unknown params 'epsilon'"):
        run_experiment("dp.sparta", {"epsilon": 8}, 0)
    with pytest.raises(ReproError, match="mask_epoch"):
        FinetuneConfig(method="sparta", epochs=3, mask_epoch=3)
    grid = dict(dataset_names=["cifar10"], models=["resnet18_gn"], methods=["sparta"], seeds=[0], epsilons=[8.0])
    with pytest.raises(ReproError, match="sparta_pretrain_resnet18_gn"):
        run_experiment("dp.sparta", {**grid, "resnet_checkpoint": "/nonexistent.pt"}, 0)
    with pytest.raises(ReproError, match="fetch_cifar10"):
        run_experiment("dp.sparta", {**grid, "data_dir": "/nonexistent", "models": ["deit_tiny"]}, 0)
    with pytest.raises(ReproError, match="outside the grid of 1 runs"):
        run_experiment("dp.sparta", {**grid, "data_dir": "/nonexistent"}, 1)
    smoke = dict(dataset_names=["digits"], models=["digits_cnn"], methods=["sparta"], epsilons=[8.0], grid_job=False,
                 epochs=2, mask_epoch=1, batch_size=64)
    with pytest.raises(ReproError, match="delta=0.01 must be in"):  # δ ≥ 1/n for the 672 private digits
        run_experiment("dp.sparta", {**smoke, "delta": 0.01}, 0)
    with pytest.raises(ReproError, match="epsilon=1e-09 .*cannot be met"):
        run_experiment("dp.sparta", {**smoke, "epsilons": [1e-9]}, 0)
    with pytest.raises(ReproError, match="wrn_28_10_gn.*not released"):
        run_experiment("dp.sparta", {**grid, "models": ["wrn_28_10_gn"]}, 0)


def test_launch_grid_order_matches_the_array_index():
    from reprise.dp.experiments import _spec, run_list
    from reprise.experiments import params

    p = params("dp.sparta", {}, _spec())
    runs = run_list(p)
    assert len(runs) == 540
    for idx in (0, 7, 95, 301, 539):  # the launch script's index arithmetic [V-code]
        r = runs[idx]
        assert r["method"] == p["methods"][idx % 6]
        assert r["seed"] == p["seeds"][(idx // 6) % 3]
        assert r["epsilon"] == p["epsilons"][(idx // 18) % 3]
        assert r["dataset"] == p["dataset_names"][(idx // 54) % 2]
        assert r["model"] == p["models"][(idx // 108) % 5]


def test_deit_architecture_runs_sparta_offline():
    """A tiny random DeiT (transformers' DeiTForImageClassification from a config, no hub) through SPARTA: masks on
    the blocks' linears and the patch convolution, class token and position embeddings frozen."""
    from transformers import DeiTConfig, DeiTForImageClassification

    from reprise.dp.models import _Logits

    cfg = DeiTConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32, image_size=16,
                     patch_size=8, num_channels=3, num_labels=5, attn_implementation="eager")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = _Logits(DeiTForImageClassification(cfg))
    g = torch.Generator().manual_seed(4)
    x, y = torch.randn(N + 20, 3, 16, 16, generator=g), torch.randint(0, 5, (N + 20,), generator=g)
    out = finetune(net, (x[:N], y[:N]), (x[N:], y[N:]),
                   FinetuneConfig(method="sparta", epochs=2, mask_epoch=1, accountant="prv", **BUDGET))
    mods = masked_modules(out.model)
    assert any("patch_embeddings.projection" in n for n in mods) and any("attention" in n for n in mods)
    assert not any("classifier" in n for n in mods)
    before = dict(net.named_parameters())
    for n, p in out.model.named_parameters():
        if "cls_token" in n or "position_embeddings" in n:
            assert not p.requires_grad and torch.equal(p, before[n])
    assert out.metrics["spent_epsilon"] <= 4.0
