"""reprise.mtl data: simulation designs, the FSCV-like substitute, OSF fetchers' checks."""
import hashlib
import os

import numpy as np
import pytest

from reprise.io import ReproError
from reprise.mtl import fetch_breast_cancer, fetch_fscv, fscv_like, simulate_demo, simulate_fig1, simulate_multitask
from reprise.mtl.data import osf_zip_url


def test_simulation_is_reproducible_from_its_seed_and_leaves_global_rng_alone():
    state = np.random.get_state()[1].copy()
    a = simulate_multitask(3, K=3, p=40, n=20, q=8, r=8)
    b = simulate_multitask(3, K=3, p=40, n=20, q=8, r=8)
    c = simulate_multitask(4, K=3, p=40, n=20, q=8, r=8)
    for x, y in zip(a.Xs + a.ys, b.Xs + b.ys):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a.ys[0], c.ys[0])
    np.testing.assert_array_equal(np.random.get_state()[1], state)


def test_q_controls_support_heterogeneity_as_in_the_scripts():
    K, p, r_card = 4, 60, 5
    disjoint = simulate_multitask(0, K=K, p=p, n=10, q=0, r=r_card, r_p=1.0).support
    assert np.all(disjoint.sum(axis=1) == r_card) and np.all(disjoint.sum(axis=0) <= 1)
    assert not disjoint[:, 1::2].any()  # every other feature only
    shared = simulate_multitask(0, K=K, p=p, n=10, q=r_card, r=r_card, r_p=1.0).support
    assert np.all(shared == shared[0]) and shared[0].sum() == r_card
    mixed = simulate_multitask(0, K=K, p=p, n=10, q=12, r=r_card, r_p=1.0).support
    assert np.all(mixed.sum(axis=1) == r_card) and mixed.any(axis=0).sum() <= 12
    assert np.flatnonzero(mixed.any(axis=0)).max() <= 2 * 11
    with pytest.raises(ReproError, match="q=0 .* needs p >="):
        simulate_multitask(0, K=K, p=30, n=10, q=0, r=r_card, r_p=1.0)
    with pytest.raises(ReproError, match="r_p"):
        simulate_multitask(0, r_p=0.0)


def test_simulation_noise_coefficients_and_correlation():
    d = simulate_multitask(1, K=5, p=50, n=4000, n_test=10, q=10, r=20, r_p=0.5, rho=0.5)
    X = d.Xs[0]
    assert np.corrcoef(X[:, 10], X[:, 11])[0, 1] == pytest.approx(0.5, abs=0.05)
    assert np.corrcoef(X[:, 10], X[:, 12])[0, 1] == pytest.approx(0.25, abs=0.05)
    assert np.all((d.noise_sd ** 2 >= 0.5) & (d.noise_sd ** 2 <= 2.0))
    resid = [y - X_ @ b for X_, y, b in zip(d.Xs, d.ys, d.coef)]
    np.testing.assert_allclose([r.std() for r in resid], d.noise_sd, rtol=0.1)
    assert len(d.Xs_test[0]) == 10 and np.array_equal(d.Xs[0], d.Xs[1])  # one shared design


def test_demo_design_matches_the_exact_solver_demo():
    d = simulate_demo(0, K=3, p=20, n=400, s_true=4, q=1, snr_db=20.0)
    Z = d.support
    assert np.all(Z[:, :3]) and not Z[:, 3].any()
    assert [list(np.flatnonzero(Z[k, 4:]) + 4) for k in range(3)] == [[4], [5], [6]]
    np.testing.assert_allclose(np.linalg.norm(d.coef, axis=1), 1.0)
    for X, y, b, b0, sd in zip(d.Xs, d.ys, d.coef, d.intercept, d.noise_sd):
        assert abs(y.mean()) < 1e-12
        noise = y - b0 - X @ b
        assert np.linalg.norm(X @ b) / np.linalg.norm(noise) == pytest.approx(10.0, rel=1e-9)


def test_fig1_toy_and_fscv_like_substitute():
    d = simulate_fig1(0, K=3, p=30, n=40, q=0, r_card=2, common_size=2)
    assert np.all(d.support[:, [0, 2]]) and np.all(d.support.sum(axis=1) == 4)
    assert set(np.unique(d.coef[0][d.support[0]])) == {1.0} and set(np.unique(d.coef[1][d.support[1]])) == {-1.0}
    f = fscv_like(0, n=3000, n_test=5)
    assert f.info["generator"] == "fscv_like" and len(f.Xs) == 4 and f.Xs[0].shape == (3000, 100)
    assert np.corrcoef(f.Xs[0][:, 50], f.Xs[0][:, 51])[0, 1] == pytest.approx(0.95, abs=0.01)
    assert not np.array_equal(f.Xs[0], f.Xs[1])
    assert np.all(f.support.sum(axis=1) == 10)


def test_fetchers_check_their_arguments(tmp_path):
    with pytest.raises(ReproError, match="sha256"):
        fetch_fscv(tmp_path / "x.zip", sha256="abc")
    with pytest.raises(ReproError, match="url"):
        fetch_fscv(tmp_path / "x.zip", url="ftp://example.org/x")
    with pytest.raises(ReproError, match="dest"):
        fetch_breast_cancer(None)
    assert osf_zip_url("tb8fx").startswith("https://files.osf.io/v1/resources/tb8fx/")


def test_fetch_checksum_mismatch_keeps_nothing_and_a_match_is_written(tmp_path):
    src = tmp_path / "src.zip"
    src.write_bytes(b"not really a zip but bytes all the same")
    good = hashlib.sha256(src.read_bytes()).hexdigest()
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(ReproError, match="checksum mismatch"):
        fetch_fscv(out / "fscv.zip", url=src.as_uri(), sha256="0" * 64)
    assert os.listdir(out) == []
    got = fetch_breast_cancer(out, url=src.as_uri(), sha256=good)
    assert got == out / "breast_cancer_osf_k6ynp.zip" and got.read_bytes() == src.read_bytes()
    # an existing file with the right checksum is kept without a download
    assert fetch_breast_cancer(got, url="file:///nonexistent/path", sha256=good) == got
    with pytest.raises(ReproError, match="could not download"):
        fetch_fscv(out / "other.zip", url=(tmp_path / "missing.zip").as_uri())
    assert sorted(os.listdir(out)) == ["breast_cancer_osf_k6ynp.zip"]
