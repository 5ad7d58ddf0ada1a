"""Loaders of sMTL's real data on tiny files in the layout the official scripts read
(sub_samp2500 with R row-name columns, Channel and pH; breastCancer_data with Study and Y_* columns)."""
import zipfile

import numpy as np
import pandas as pd
import pytest

from reprise.io import ReproError
from reprise.mtl.real import breast_cancer_replicate, fscv_replicate, load_breast_cancer, load_fscv


def _fscv_frame(rng, n_per=20, electrodes=(1, 2, 3, 4, 5), p=12):
    rows = []
    for e in electrodes:
        for _ in range(n_per):
            rows.append([e, rng.uniform(0.1, 2.0)] + rng.normal(size=p).tolist())
    body = pd.DataFrame(rows, columns=["Electrode", "DA"] + [f"V{j}" for j in range(p)])
    # R's write.csv row names read back as X, X.1, X.2; Channel and pH are dropped by the scripts
    n = len(body)
    front = pd.DataFrame({"X.2": np.arange(n), "X.1": np.arange(n), "X": np.arange(n)})
    out = pd.concat([front, body.iloc[:, :1], pd.DataFrame({"Channel": 1, "pH": 7.4}, index=body.index),
                     body.iloc[:, 1:]], axis=1)
    return body, out


def test_load_fscv_csv_and_zip_layout(tmp_path):
    rng = np.random.default_rng(0)
    body, raw = _fscv_frame(rng)
    csv = tmp_path / "sub_samp2500"
    raw.to_csv(csv, index=False)
    table = load_fscv(csv)
    assert table.features == [f"V{j}" for j in range(12)] and table.outcomes == ["DA"]
    np.testing.assert_allclose(table.X, body.iloc[:, 2:].to_numpy())
    np.testing.assert_allclose(table.Y[:, 0], body["DA"].to_numpy())
    Xs, ys = table.per_study()
    assert len(Xs) == 5 and all(X.shape == (20, 12) for X in Xs)
    np.testing.assert_allclose(ys[2], body.loc[body.Electrode == 3, "DA"].to_numpy())
    # the OSF zip with the CSV inside a folder
    archive = tmp_path / "fscv.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(csv, "data/sub_samp2500")
    np.testing.assert_array_equal(load_fscv(archive).X, table.X)


def test_fscv_replicate_protocol(tmp_path):
    rng = np.random.default_rng(1)
    _, raw = _fscv_frame(rng)
    raw.to_csv(tmp_path / "f.csv", index=False)
    table = load_fscv(tmp_path / "f.csv")
    data = fscv_replicate(table, seed=3, K=4, n_k=6, col_sub=5)
    assert len(data.Xs) == 4 and all(X.shape == (6, 3) for X in data.Xs)   # columns 0, 5, 10
    assert all(X.shape == (10, 3) for X in data.Xs_test)                   # the other half
    for y in data.ys:                                                       # standardised log outcome
        assert abs(y.mean()) < 1e-12 and abs(y.std() - 1) < 1e-12
    # training and test rows of one electrode are disjoint rows of the file
    e = data.info["tasks"][0]
    rows = table.X[table.study == e][:, [0, 5, 10]]
    tr = {tuple(r) for r in data.Xs[0]}
    te = {tuple(r) for r in data.Xs_test[0]}
    assert not tr & te and tr | te <= {tuple(r) for r in rows}
    with pytest.raises(ReproError, match="electrodes"):
        fscv_replicate(table, seed=0, K=9)


def test_breast_cancer_loader_and_protocol(tmp_path):
    rng = np.random.default_rng(2)
    n_studies, n_per, p, m = 18, 4, 15, 6
    study = np.repeat(np.arange(1, n_studies + 1), n_per)
    X = rng.normal(size=(len(study), p))
    X[:, 3] = 1.0                                                           # a constant gene
    Y = rng.normal(size=(len(study), m))
    df = pd.DataFrame({"Study": study, **{f"Y_G{j}": Y[:, j] for j in range(m)},
                       **{f"G{j}": X[:, j] for j in range(p)}})
    df.to_csv(tmp_path / "breastCancer_data", index=False)
    table = load_breast_cancer(tmp_path / "breastCancer_data")
    assert table.outcomes == [f"Y_G{j}" for j in range(m)] and len(table.features) == p
    np.testing.assert_allclose(table.X, X)
    data = breast_cancer_replicate(table, seed=21, K=3, p=p)
    assert data.info["test_study"] == 3                                     # 21 mod 18
    assert len(data.Xs) == 3 and data.Xs[0] is data.Xs[1]                   # one shared design
    assert data.Xs[0].shape == ((n_studies - 1) * n_per, p - 1)             # constant gene dropped
    assert data.Xs_test[0].shape[0] == n_per
    assert breast_cancer_replicate(table, seed=18, K=1, p=2).info["test_study"] == 18  # 18 mod 18 = 0 -> 18
    np.testing.assert_allclose(data.Xs[0].mean(axis=0), 0, atol=1e-12)


def test_missing_and_r_only_files_name_the_fix(tmp_path):
    with pytest.raises(ReproError, match="smtl_fetch_fscv"):
        load_fscv(tmp_path / "absent")
    with pytest.raises(ReproError, match="smtl_fetch_breast_cancer"):
        load_breast_cancer(tmp_path / "absent")
    archive = tmp_path / "bc.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("breastCancer_data.rds", b"\x1f\x8b")
    with pytest.raises(ReproError, match="write.csv"):
        load_breast_cancer(archive)


# --------------------------------------------------------------------------- the full-scale experiments
_TINY = dict(lambda1_grid=[1e-2, 1e-1], lambda2_grid=[0.1], lambda_z_grid=[0.0, 0.1], sgl_alpha_grid=[0.5],
             n_lambda=4, lambda_ratio=0.05)


def _fscv_file(tmp_path, n_per=24, p=12):
    rng = np.random.default_rng(7)
    body, raw = _fscv_frame(rng, n_per=n_per, p=p)
    path = tmp_path / "sub_samp2500"
    raw.to_csv(path, index=False)
    return path


def test_fscv_experiments_on_a_tiny_file(tmp_path):
    from reprise.experiments import get_experiment
    path = _fscv_file(tmp_path)
    rows = get_experiment("mtl.fscv_rmse")(dict(data_path=str(path), n_k_values=[8], col_sub_values=[3], s=2,
                                                n_folds=2, methods=["l0_independent", "zbar_mtl", "sgl",
                                                                    "pooled_l0", "pooled_ridge"], **_TINY), 1)
    assert set(rows.method) == {"l0_independent", "zbar_mtl", "sgl", "pooled_l0", "pooled_ridge"}
    assert (rows.p == 4).all() and np.isfinite(rows.rmse).all()
    ref = rows.set_index("method").loc["l0_independent"]
    assert ref.rmse_ratio == 1.0 and ref.support_diff == 0.0
    assert rows.set_index("method").loc["l0_independent"].support_size <= 2
    sup = get_experiment("mtl.fscv_supports")(dict(data_path=str(path), s=2, n_folds=2,
                                                   methods=["l0_independent", "gel"], **_TINY), 0)
    assert len(sup) == 2 * 4 * 12 and sup.groupby(["method", "task"]).selected.sum().max() <= 2
    with pytest.raises(ReproError, match="smtl_fetch_fscv"):
        get_experiment("mtl.fscv_rmse")(dict(data_path=str(tmp_path / "none.zip")), 0)
    with pytest.raises(ReproError, match="l0_independent"):
        get_experiment("mtl.fscv_rmse")(dict(data_path=str(path), methods=["sgl"]), 0)


def test_bcancer_and_density_experiments_on_tiny_files(tmp_path):
    from reprise.experiments import get_experiment
    rng = np.random.default_rng(8)
    study = np.repeat(np.arange(1, 19), 5)
    X = rng.normal(size=(len(study), 10))
    Y = X[:, :2] @ rng.normal(size=(2, 4)) + 0.1 * rng.normal(size=(len(study), 4))
    df = pd.DataFrame({"Study": study, **{f"Y_{j}": Y[:, j] for j in range(4)}, **{f"g{j}": X[:, j] for j in range(10)}})
    bc = tmp_path / "breastCancer_data"
    df.to_csv(bc, index=False)
    rows = get_experiment("mtl.bcancer_rmse")(dict(data_path=str(bc), K_values=[2], p_values=[6], s_values=[2, 50],
                                                   n_folds=2, methods=["l0_independent", "gel"], **_TINY), 5)
    assert set(rows.s_max) == {2} and (rows.test_study == 5).all() and np.isfinite(rows.rmse).all()
    dens = get_experiment("mtl.coef_density")(dict(fscv_path=str(_fscv_file(tmp_path)), bcancer_path=str(bc), top=3,
                                                   bcancer_K=2, n_folds=2, lambda1_grid=[1e-2, 1.0]), 0)
    assert set(dens.data) == {"fscv", "breast_cancer"}
    assert len(dens[dens.data == "fscv"]) == 3 * 5 and len(dens[dens.data == "breast_cancer"]) == 3 * 2
    # the ranks follow the mean |coefficient| across tasks
    m = dens[dens.data == "breast_cancer"].groupby("rank").coefficient.apply(lambda c: c.abs().mean())
    assert m.is_monotonic_decreasing
