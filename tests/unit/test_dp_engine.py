"""reprise.dp.engine: the reported ε is Opacus' accountant for the steps taken, per-sample clipping to C (checked
against our own torch.func per-sample gradients, masked layers included), budget errors before training."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn
from opacus.accountants.utils import get_noise_multiplier

from reprise.dp.engine import check_budget, epsilon_for, make_private, noise_multiplier, train_epoch
from reprise.dp.models import DigitsCNN, masked, masked_modules, select_trainable
from reprise.io import ReproError


def _data(n=120, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, 8, 8, generator=g), torch.randint(0, 5, (n,), generator=g)


def _model(seed=0):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return DigitsCNN(num_classes=5, width=4)


@pytest.mark.parametrize("accountant", ["rdp", "prv"])
def test_reported_epsilon_is_the_accountant_for_the_steps_taken(accountant):
    x, y = _data()
    net = masked(_model())
    select_trainable(net, "sparse", "linear")
    opt = torch.optim.SGD([p for p in net.parameters() if p.requires_grad], lr=0.1)
    epochs, batch, eps, delta = 2, 30, 4.0, 1e-3  # the budget of test_dp_finetune too (σ calibrated once)
    priv = make_private(net, opt, x, y, batch_size=batch, epsilon=eps, delta=delta, epochs=epochs, max_grad_norm=1.0,
                        accountant=accountant, seed=3)
    for _ in range(epochs):
        train_epoch(priv, physical_batch=8)  # physical batches smaller than the logical one
    q, steps = 1 / math.ceil(len(y) / batch), epochs * math.ceil(len(y) / batch)  # Poisson: one step per 1/q
    assert priv.sample_rate == q and priv.optimizer.steps_taken == steps
    sigma = get_noise_multiplier(target_epsilon=eps, target_delta=delta, sample_rate=q, epochs=epochs,
                                 accountant=accountant)
    assert priv.sigma == sigma == priv.optimizer.noise_multiplier
    if accountant == "rdp":  # and it is what make_private_with_epsilon itself picks for this loader
        from opacus import PrivacyEngine
        from torch.utils.data import DataLoader, TensorDataset

        ref = masked(_model())
        _, ref_opt, _ = PrivacyEngine(accountant=accountant).make_private_with_epsilon(
            module=ref, optimizer=torch.optim.SGD(ref.parameters(), lr=0.1),
            data_loader=DataLoader(TensorDataset(x, y), batch_size=batch), target_epsilon=eps, target_delta=delta,
            epochs=epochs, max_grad_norm=1.0)
        assert ref_opt.noise_multiplier == priv.sigma
    spent = priv.epsilon()
    assert spent == pytest.approx(epsilon_for(accountant, sigma, q, steps, delta), rel=1e-12, abs=0)
    assert 0 < spent <= eps


class _Strided(nn.Module):
    """Stride-2 and 1 x 1 (shortcut-like) convolutions and a body Linear on tokens: the layouts of ResNet/DeiT."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, stride=2, padding=1)
        self.shortcut = nn.Conv2d(1, 4, 1, stride=2, bias=False)
        self.norm = nn.GroupNorm(2, 4)
        self.mix = nn.Linear(4, 4)
        self.linear = nn.Linear(4, 5)

    def forward(self, x):
        h = self.norm(self.conv(x) + self.shortcut(x))            # n × 4 × 4 × 4
        t = self.mix(h.flatten(2).transpose(1, 2))                 # n × 16 tokens × 4
        return self.linear(t.mean(1))


@pytest.mark.parametrize("arch", ["cnn", "strided"])
def test_per_sample_gradients_are_clipped_to_the_norm(arch):
    x, y = _data(n=16, seed=1)
    x = x * 5.0  # large gradients, so most examples are clipped
    if arch == "cnn":
        net = _model(1)
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(1)
            net = _Strided()
    net = masked(net)
    select_trainable(net, "sparse", "linear")
    for m in masked_modules(net).values():  # a partial mask: frozen coordinates must have zero gradient
        m.mask.data[: m.mask.shape[0] // 2] = 0.0
        m.delta.data.normal_(0, 0.1, generator=torch.Generator().manual_seed(0))
    params = {n: p for n, p in net.named_parameters() if p.requires_grad}
    frozen = {n: b for n, b in net.named_parameters() if not b.requires_grad}
    C = 0.5

    # our own reference: per-sample gradients by torch.func, then flat clipping over all trainable tensors
    def loss_one(p, xi, yi):
        out = torch.func.functional_call(net, {**frozen, **p}, (xi[None],))
        return nn.functional.cross_entropy(out, yi[None])

    per = torch.func.vmap(torch.func.grad(loss_one), in_dims=(None, 0, 0))({k: v.detach() for k, v in params.items()},
                                                                          x, y)
    norms = torch.sqrt(sum(g.reshape(len(y), -1).pow(2).sum(1) for g in per.values()))
    factor = (C / (norms + 1e-6)).clamp(max=1.0)
    assert bool((norms > C).any()), "the test needs examples above the clipping norm"
    clipped_norms = norms * factor
    assert float(clipped_norms.max()) <= C + 1e-6

    opt = torch.optim.SGD(list(params.values()), lr=0.0)
    priv = make_private(net, opt, x, y, batch_size=16, epsilon=8.0, delta=1e-3, epochs=1, max_grad_norm=C,
                        accountant="rdp")
    loss = nn.functional.cross_entropy(priv.module(x), y)
    loss.backward()
    # Opacus' per-sample gradients (through our masked layers' grad samplers) equal torch.func's
    opacus_norms = torch.sqrt(sum(p.grad_sample.reshape(len(y), -1).pow(2).sum(1) for p in params.values()))
    # (Opacus undoes the mean reduction: grad_sample is each example's own gradient)
    torch.testing.assert_close(opacus_norms, norms, rtol=1e-4, atol=1e-6)
    priv.optimizer.clip_and_accumulate()
    for name, p in params.items():
        ref = torch.einsum("i,i...->...", factor, per[name])
        torch.testing.assert_close(p.summed_grad, ref, rtol=1e-4, atol=1e-7)
    for m in masked_modules(net).values():
        assert torch.all(m.delta.summed_grad[m.mask == 0] == 0)


def test_budgets_that_cannot_be_met_fail_before_training():
    x, y = _data(n=100)
    with pytest.raises(ReproError, match="epsilon"):
        check_budget(0.0, 1e-5, 100)
    with pytest.raises(ReproError, match="delta"):
        check_budget(8.0, 0.01, 100)  # δ = 1/n
    with pytest.raises(ReproError, match="delta"):
        check_budget(8.0, 0.0, 100)
    with pytest.raises(ReproError, match="epsilon=1e-09.*cannot be met"):
        noise_multiplier(1e-9, 1e-5, 0.25, 2, "prv")
    net = _model()
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    before = [p.detach().clone() for p in net.parameters()]
    with pytest.raises(ReproError, match="epsilon"):
        make_private(net, opt, x, y, batch_size=10, epsilon=-1.0, delta=1e-5, epochs=1, max_grad_norm=1.0)
    with pytest.raises(ReproError, match="accountant"):
        make_private(net, opt, x, y, batch_size=10, epsilon=1.0, delta=1e-5, epochs=1, max_grad_norm=1.0,
                     accountant="gdp-typo")
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters()))


def test_mask_epoch_score_is_abs_of_the_clipped_sum_plus_noise_over_b():
    """One logical step in scoring mode: score += (|Σ_i clip(g_i)| + N(0, σ²C²)) / B, the official add_noise rule."""
    x, y = _data(n=12, seed=2)
    net = masked(_model(2))
    select_trainable(net, "sparse", "linear")
    params = [p for p in net.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=0.0)
    priv = make_private(net, opt, x, y, batch_size=12, epsilon=8.0, delta=1e-3, epochs=1, max_grad_norm=1.0,
                        accountant="rdp")
    dp = priv.optimizer
    deltas = [m.delta for m in masked_modules(net).values()]

    def one_step(sigma):
        dp.noise_multiplier = sigma
        dp.scores = {id(d): torch.zeros_like(d) for d in deltas}
        nn.functional.cross_entropy(priv.module(x), y).backward()
        dp.clip_and_accumulate()
        summed = {id(d): d.summed_grad.detach().clone() for d in deltas}
        dp.zero_grad()
        nn.functional.cross_entropy(priv.module(x), y).backward()
        dp.step()
        dp.zero_grad()
        return summed, dp.scores

    summed, scores = one_step(0.0)  # no noise: exactly |G| / B
    for d in deltas:
        torch.testing.assert_close(scores[id(d)], summed[id(d)].abs() / dp.expected_batch_size)
    summed, scores = one_step(5.0)  # noise after the absolute value: scores below 0 appear
    assert any(bool((scores[id(d)] < 0).any()) for d in deltas)
    resid = torch.cat([(scores[id(d)] * dp.expected_batch_size - summed[id(d)].abs()).flatten() for d in deltas])
    assert float(resid.std()) == pytest.approx(5.0, rel=0.1)  # N(0, σ²C²) with C = 1
    dp.clipped_scores = True  # the non-private oracle: the signed noise-free G / B whatever σ
    summed, scores = one_step(5.0)
    for d in deltas:
        torch.testing.assert_close(scores[id(d)], summed[id(d)] / dp.expected_batch_size)
