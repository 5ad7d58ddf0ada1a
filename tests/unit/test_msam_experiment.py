"""mSAM (paper msam): the training step against per-shard SAM gradients computed by hand with torch.func,
BatchNorm statistics per micro-batch, and the sam.msam_grid experiment (rows, params, lockstep runs)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.func import functional_call, grad

from reprise.experiments import get_experiment, run_experiment
from reprise.io import ReproError
from reprise.sam import SAM
from reprise.sam.msam import COLUMNS, bag_of_embeddings, token_data, train_step
from reprise.sam.network import digits_data

F64 = torch.float64
CE = torch.nn.functional.cross_entropy


def _mlp(seed=0):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3)).to(F64)


def _batch(n=24, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 6, generator=g, dtype=F64), torch.randint(0, 3, (n,), generator=g)


def _hand_msam_gradient(model, params, x, y, m, rho):
    """(1/m) Σ_k ∇L_k(w + ρ ∇L_k(w)/‖∇L_k(w)‖), shards = consecutive slices, by torch.func (no SAM class)."""
    def loss(p, xb, yb):
        return CE(functional_call(model, p, (xb,)), yb)

    total = {k: torch.zeros_like(v) for k, v in params.items()}
    for xb, yb in zip(x.chunk(m), y.chunk(m)):
        g = grad(loss)(params, xb, yb)
        norm = torch.sqrt(sum((v ** 2).sum() for v in g.values()))
        moved = {k: params[k] + rho * g[k] / norm for k in params}
        for k, v in grad(loss)(moved, xb, yb).items():
            total[k] += v / m
    return total


@pytest.mark.parametrize("m", [1, 2, 4])
def test_train_step_is_the_average_of_per_shard_sam_gradients(m):
    """Two SGD-momentum steps of mSAM (m = 1: SAM) through the experiment's step equal the hand computation."""
    rho, lr, mom = 0.1, 0.3, 0.9
    model = _mlp()
    x, y = _batch()
    w = {k: v.detach().clone() for k, v in model.named_parameters()}
    buf = None
    opt = SAM(model.parameters(), torch.optim.SGD, rho=rho, micro_batches=m, lr=lr, momentum=mom)
    for step in range(2):
        xb, yb = x[12 * step:12 * step + 12], y[12 * step:12 * step + 12]
        g = _hand_msam_gradient(model, w, xb, yb, m, rho)
        loss_at_w = float(CE(functional_call(model, w, (xb,)), yb))
        buf = g if buf is None else {k: mom * buf[k] + g[k] for k in g}
        w = {k: w[k] - lr * buf[k] for k in w}
        assert train_step(model, opt, CE, xb, yb, m) == pytest.approx(loss_at_w, rel=1e-12)  # the loss at w
    for k, v in model.named_parameters():
        torch.testing.assert_close(v.detach(), w[k], rtol=0, atol=1e-10)


def test_msam_differs_from_sam_and_rho_zero_is_sgd():
    x, y = _batch(16, 3)
    ends = {}
    for name, m, rho in (("sgd", 1, None), ("sam0", 4, 0.0), ("sam", 1, 0.2), ("msam", 4, 0.2)):
        model = _mlp(5)
        opt = torch.optim.SGD(model.parameters(), lr=0.2, momentum=0.9) if rho is None else \
            SAM(model.parameters(), torch.optim.SGD, rho=rho, micro_batches=m, lr=0.2, momentum=0.9)
        for _ in range(3):
            train_step(model, opt, CE, x, y, m)
        ends[name] = torch.cat([p.detach().flatten() for p in model.parameters()])
    torch.testing.assert_close(ends["sam0"], ends["sgd"], rtol=0, atol=1e-12)
    assert (ends["msam"] - ends["sam"]).abs().max() > 1e-4


def test_batchnorm_running_statistics_come_from_the_unperturbed_micro_batches():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.BatchNorm1d(5, momentum=0.3), torch.nn.Linear(5, 2))
    model = model.to(F64)
    x, y = torch.randn(8, 4, dtype=F64), torch.tensor([0, 1] * 4)
    first = model[0]
    with torch.no_grad():
        h = [first(s) for s in x.chunk(2)]  # the shards' pre-norm activations at w (unperturbed)
    r = model[1].running_mean.clone()
    for hk in h:
        r = 0.7 * r + 0.3 * hk.mean(0)
    opt = SAM(model.parameters(), torch.optim.SGD, rho=0.5, micro_batches=2, lr=0.1)
    train_step(model, opt, CE, x, y, 2)
    torch.testing.assert_close(model[1].running_mean, r, rtol=0, atol=1e-12)
    assert model[1].momentum == 0.3
    with pytest.raises(ReproError, match="equal micro-batches"):
        train_step(model, opt, CE, x[:7], y[:7], 2)


SMALL = dict(epochs=2, shards=[1, 2, 4], sharpness_iters=5, n_train=256, n_test=128, hidden=16)


def test_grid_rows_record_shards_and_shard_size_and_share_the_initial_weights():
    rows = run_experiment("sam.msam_grid", SMALL, 0)
    assert list(rows.columns) == COLUMNS
    assert set(rows.task) == {"digits", "tokens"} and set(rows.domain) == {"image", "text"}
    assert (rows.shard_size * rows.num_shards == rows.batch_size).all()
    assert set(zip(rows.method, rows.num_shards)) == {("sgd", 1), ("sam", 1), ("msam", 2), ("msam", 4)}
    assert rows[["train_loss", "test_loss", "test_accuracy"]].notna().all().all()
    assert np.isfinite(rows[["train_loss", "test_loss"]].to_numpy()).all()
    for task, part in rows.groupby("task"):
        start = part[part.epoch == 0]
        assert start.test_loss.nunique() == 1 and start.train_loss.nunique() == 1  # same init for all configs
        last = part[part.epoch == 2]
        assert last.sharpness.notna().all() and (last.sharpness > 0).all()
        assert part[part.epoch < 2].sharpness.isna().all()
        assert (last[last.method == "sam"].sharpness_vs_sam == 1.0).all()
        np.testing.assert_allclose(last.sharpness_vs_sam, last.sharpness / last[last.method == "sam"].sharpness.iloc[0])
        assert (last[last.method == "sgd"].time_ratio == 1.0).all() and (last.epoch_seconds > 0).all()
        assert part[part.epoch == 2].timed.all() and not part[part.epoch < 2].timed.any()
        assert (last.test_accuracy > 0.55).all()  # above chance (10 or 2 classes)
    assert rows.note.str.contains("stand-in").all()
    again = run_experiment("sam.msam_grid", SMALL, 0)
    cols = ["train_loss", "test_loss", "test_accuracy", "sharpness"]
    np.testing.assert_array_equal(again[cols].to_numpy(), rows[cols].to_numpy())  # seeded


def test_grid_with_msam_rho_zero_tracks_sgd():
    """Equal shards: mean of the shard means is the batch mean, so mSAM(ρ = 0) is SGD up to rounding."""
    rows = run_experiment("sam.msam_grid", dict(SMALL, tasks=["digits"], msam_rho=0.0, shards=[4],
                                                sharpness_iters=0), 1)
    sgd, msam = rows[rows.method == "sgd"], rows[rows.method == "msam"]
    np.testing.assert_allclose(msam.train_loss.to_numpy(), sgd.train_loss.to_numpy(), rtol=1e-5)
    assert msam.rho.eq(0).all() and rows.sharpness.isna().all()


def test_token_data_carries_the_label_in_its_lexicons():
    X, y = token_data(100, 32, 2000, 0)
    assert X.shape == (2000, 32) and X.min() >= 0 and X.max() < 100
    own = ((X < 20).sum(1) - ((X >= 20) & (X < 40)).sum(1)).float()
    # class 0 draws lexicon 0 three times as often as lexicon 1 (5 % labels flipped)
    assert ((own > 0) == (y == 0)).float().mean() > 0.8
    net = bag_of_embeddings(100, 8)
    assert net(X[:5]).shape == (5, 2)


@pytest.mark.parametrize("params,match", [
    ({"shards": [3]}, r"shards'\]\[0\]=3 does not divide batch_size=64"),
    ({"tasks": ["mnist"]}, r"tasks'\]\[0\]='mnist' is unknown"),
    ({"tasks": ["cifar10_resnet18"], "data_dir": "/nonexistent"}, r"cifar-10-python.tar.gz.*snakemake fetch_cifar10"),
    ({"shards": [2, 2]}, "repeated"),
    ({"batch_size": 4096, "shards": [1]}, "exceeds"),
    ({"rho": -1}, r"rho'\]=-1"),
    ({"wat": 1}, "unknown params 'wat'"),
])
def test_bad_params_name_the_key_and_the_fix(params, match):
    with pytest.raises(ReproError, match=match):
        get_experiment("sam.msam_grid")(dict(SMALL, **params), 0)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_cuda_requested_without_cuda_is_a_clear_error():
    with pytest.raises(ReproError, match="CUDA is not available"):
        run_experiment("sam.msam_grid", dict(SMALL, device="cuda"), 0)


def test_digits_data_keeps_test_pixels_on_the_training_scale():
    Xtr, ytr, Xte, yte = digits_data(0, 0.25)
    assert Xtr.shape == (1347, 64) and Xte.shape == (450, 64)
    assert abs(float(Xtr.mean())) < 1e-5 and float(Xtr.std()) == pytest.approx(1.0, rel=1e-3)
    # raw pixels are 0..16: one affine map for all pixels keeps every test value within the training range
    assert float(Xte.max()) <= float(Xtr.max()) + 1e-6 and float(Xte.min()) >= float(Xtr.min()) - 1e-6
    share = torch.bincount(ytr, minlength=10) / (torch.bincount(ytr, minlength=10) + torch.bincount(yte, minlength=10))
    assert float((share - 0.75).abs().max()) < 0.01  # stratified


def test_cifar_task_reads_the_tarball_and_trains_with_augmentation(tmp_path, monkeypatch):
    """The full-scale path on a 64-image tarball in the real layout, with a tiny net standing in for ResNet-18."""
    import io
    import pickle
    import tarfile

    import reprise.vision.resnet_gn as nets
    from reprise.vision.cifar import CIFAR_ARCHIVES

    spec = CIFAR_ARCHIVES["cifar10"]
    rng = np.random.default_rng(0)
    with tarfile.open(tmp_path / spec["filename"], "w:gz") as tar:
        for member in spec["train"] + spec["test"]:
            blob = pickle.dumps({b"data": rng.integers(0, 256, (16, 3072), dtype=np.uint8),
                                 b"labels": rng.integers(0, 10, 16).tolist()})
            info = tarfile.TarInfo(f"{spec['folder']}/{member}")
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    built = []

    def tiny(num_classes, norm, groups):
        built.append((num_classes, norm, groups))
        return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, 2), nets.make_norm(norm, 4, 2), torch.nn.ReLU(),
                                   torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, num_classes))

    monkeypatch.setattr(nets, "resnet18", tiny)
    rows = run_experiment("sam.msam_grid", dict(tasks=["cifar10_resnet18"], epochs=1, batch_size=16, shards=[1, 2],
                                                sharpness_n=8, sharpness_iters=2, data_dir=str(tmp_path),
                                                norm="batch", groups=2, schedule="cosine", lr=0.1), 0)
    assert built == [(10, "batch", 2)] * 3 and set(rows.norm) == {"batch"} and set(rows.model) == {"resnet18"}
    assert len(rows) == 6 and rows.train_loss.notna().all() and rows[rows.epoch == 1].sharpness.notna().all()
    assert set(rows.device) == {"cpu"} and (rows.note == "").all()  # the real data: no stand-in note


@pytest.mark.parametrize("unnormalised", [False, True])
def test_vectorised_msam_step_equals_the_loop(unnormalised):
    from reprise.sam.msam import vmap_msam_step

    x, y = _batch(32, 7)
    ends = []
    for step in (train_step, vmap_msam_step):
        model = _mlp(2)
        opt = SAM(model.parameters(), torch.optim.SGD, rho=0.1, micro_batches=4, unnormalised=unnormalised, lr=0.2,
                  momentum=0.9, weight_decay=1e-3)
        losses = [step(model, opt, CE, x[16 * i:16 * i + 16], y[16 * i:16 * i + 16], 4) for i in (0, 1, 0)]
        ends.append((torch.cat([p.detach().flatten() for p in model.parameters()]), losses))
    torch.testing.assert_close(ends[1][0], ends[0][0], rtol=0, atol=1e-12)
    np.testing.assert_allclose(ends[1][1], ends[0][1], rtol=1e-12)
    bn = torch.nn.Sequential(torch.nn.Linear(6, 4), torch.nn.BatchNorm1d(4)).to(F64)
    with pytest.raises(ReproError, match="BatchNorm"):
        vmap_msam_step(bn, SAM(bn.parameters(), torch.optim.SGD, lr=0.1, micro_batches=2), CE, x, y, 2)


def test_a_device_the_power_iteration_cannot_use_fails_before_training():
    # "meta" stands in for a GPU here: top_hessian_eigenvalue draws its start vector on the CPU
    with pytest.raises(ReproError, match="fails on meta.*start vector"):
        run_experiment("sam.msam_grid", dict(SMALL, device="meta"), 0)


def test_vectorised_grid_trains_the_same_models():
    P = dict(SMALL, tasks=["digits", "tokens"], shards=[1, 4], sharpness_iters=0, epochs=1)
    loop = run_experiment("sam.msam_grid", P, 3)
    vec = run_experiment("sam.msam_grid", dict(P, vectorised=True), 3)
    np.testing.assert_allclose(vec.train_loss.to_numpy(), loop.train_loss.to_numpy(), rtol=1e-4)
    np.testing.assert_allclose(vec.test_accuracy.to_numpy(), loop.test_accuracy.to_numpy(), atol=0.01)
