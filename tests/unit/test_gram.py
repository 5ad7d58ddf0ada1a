"""The Gram accumulator and the damping policy."""
import logging

import pytest
import torch

from reprise.io import ReproError
from reprise.llm.gram import GramAccumulator, damped_cholesky, damped_inverse_cholesky


def _acts(seed=0, shape=(3, 10, 12)):
    g = torch.Generator().manual_seed(seed)
    mix = torch.eye(shape[-1]) + 0.5 * torch.randn(shape[-1], shape[-1], generator=g)
    return torch.randn(*shape, generator=g) @ mix


def test_accumulator_equals_full_gram_over_batches():
    X = _acts()
    acc = GramAccumulator(12)
    for batch in X.split(1):  # (1, 10, 12) each: leading dims are flattened
        acc.add(batch)
    flat = X.reshape(-1, 12)
    assert acc.n_tokens == flat.shape[0]
    torch.testing.assert_close(acc.gram(), flat.T @ flat / flat.shape[0], rtol=1e-5, atol=1e-5)


def test_accumulator_casts_low_precision_and_supports_fp64():
    X = _acts(1).to(torch.bfloat16)
    acc32, acc64 = GramAccumulator(12), GramAccumulator(12, dtype=torch.float64)
    acc32.add(X)
    acc64.add(X)
    assert acc32.gram().dtype == torch.float32 and acc64.gram().dtype == torch.float64
    ref = X.double().reshape(-1, 12)
    torch.testing.assert_close(acc64.gram(), ref.T @ ref / ref.shape[0])
    torch.testing.assert_close(acc32.gram().double(), acc64.gram(), rtol=1e-5, atol=1e-5)


def test_accumulator_mean_equals_activation_mean_over_batches():
    X = _acts(2) + torch.linspace(-3, 3, 12)  # non-zero means
    acc, acc64 = GramAccumulator(12), GramAccumulator(12, dtype=torch.float64)
    for batch in X.split(1):
        acc.add(batch)
        acc64.add(batch)
    flat = X.reshape(-1, 12)
    assert acc.mean().shape == (12,) and acc.mean().dtype == torch.float32 and acc64.mean().dtype == torch.float64
    torch.testing.assert_close(acc.mean(), flat.mean(0), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(acc64.mean(), flat.double().mean(0))
    with pytest.raises(ReproError, match="no tokens"):
        GramAccumulator(12).mean()


def test_accumulator_rejects_wrong_width_and_empty():
    acc = GramAccumulator(12)
    with pytest.raises(ReproError, match="in_features=12"):
        acc.add(torch.zeros(4, 11))
    with pytest.raises(ReproError, match="no tokens"):
        acc.gram()


def _gram(seed=0, n=64, p=12):
    X = _acts(seed, (n, p))
    return X.T @ X / n


def test_damped_factors_reconstruct_the_damped_gram():
    G = _gram().double()
    L, rec = damped_cholesky(G, rel_damp=0.01)
    H = G + rec.absolute * torch.eye(12, dtype=G.dtype)
    assert rec.retries == 0 and rec.dead == () and rec.relative == 0.01
    assert rec.absolute == pytest.approx(0.01 * float(G.diagonal().mean()))
    torch.testing.assert_close(L @ L.T, H)
    U, rec2 = damped_inverse_cholesky(G, rel_damp=0.01)
    assert rec2 == rec
    assert torch.equal(U, U.triu()) and bool((U.diagonal() > 0).all())
    torch.testing.assert_close(U.T @ U, torch.linalg.inv(H))


def test_zero_damping_on_singular_gram_retries_and_logs(caplog):
    X = _acts(2, (4, 16))  # 4 tokens, 16 features: rank 4
    G = X.T @ X / 4
    with caplog.at_level(logging.WARNING, logger="reprise.damping"):
        U, rec = damped_inverse_cholesky(G, rel_damp=0.0)
    assert rec.retries > 0 and rec.absolute > 0
    assert bool(torch.isfinite(U).all())
    assert any(r.name == "reprise.damping" for r in caplog.records)


def test_dead_inputs_reported_and_factor_finite():
    X = _acts(3, (32, 8))
    X[:, [2, 5]] = 0
    G = X.T @ X / 32
    U, rec = damped_inverse_cholesky(G)
    assert rec.dead == (2, 5)
    assert bool(torch.isfinite(U).all())


def test_non_finite_or_hopeless_gram_raises():
    G = _gram()
    G[0, 1] = float("nan")
    with pytest.raises(ReproError, match="NaN/Inf"):
        damped_cholesky(G)
    indefinite = torch.tensor([[1.0, 2.0], [2.0, 1.0]])  # eigenvalues -1 and 3
    with pytest.raises(ReproError, match="Cholesky failed 2 times"):
        damped_cholesky(indefinite, rel_damp=0.01, max_tries=2)
