"""Skinny Trees' full-scale real-data loaders on tiny files written here in each source's format (ARFF + OpenML
description, NIPS-2003 dense and sparse text, ASU .mat), offline; and the one dataset table that both the fetch
rules and the manifest's full-scale inputs come from."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from reprise.experiments import run_experiment
from reprise.io import ReproError
from reprise.papers import load_manifest
from reprise.trees import datasets

ROOT = Path(__file__).resolve().parents[2]


def _write_openml(root: Path, name: str, n: int = 100, rng=None) -> tuple[np.ndarray, np.ndarray]:
    """A mice-protein-like set: a string row id, 3 numeric features (one with missing values), a nominal feature
    the description ignores, and the nominal target."""
    rng = rng or np.random.default_rng(0)
    folder = root / "openml" / name
    folder.mkdir(parents=True)
    X = rng.normal(3.0, 2.0, (n, 3))
    X[::7, 1] = np.nan
    y = rng.choice(["c-CS-m", "t SC s"], n)
    lines = ["% a comment", "@RELATION 'toy'", "@ATTRIBUTE MouseID STRING", "@ATTRIBUTE DYRK1A_N NUMERIC",
             "@ATTRIBUTE 'ITSN1 N' REAL", "@attribute pERK_N integer", "@ATTRIBUTE Genotype {Control,Ts65Dn}",
             "@ATTRIBUTE class {c-CS-m,'t SC s'}", "", "@DATA"]
    for i in range(n):
        vals = ["?" if np.isnan(v) else repr(float(v)) for v in X[i]]
        lines.append(",".join([f"'{i}_1'", *vals, "Control" if i % 2 else "Ts65Dn", f"'{y[i]}'"]))
    (folder / f"{name}.arff").write_text("\n".join(lines) + "\n")
    desc = {"data_set_description": {"id": "40966", "file_id": "1", "url": "https://example.invalid/x.arff",
                                     "default_target_attribute": "class", "row_id_attribute": "MouseID",
                                     "ignore_attribute": ["Genotype"], "md5_checksum": "0" * 32}}
    (folder / "description.json").write_text(json.dumps(desc))
    return X, y


def test_openml_arff_drops_row_id_and_ignored_attributes_and_standardises(tmp_path, caplog):
    X, y = _write_openml(tmp_path, "mice-protein")
    with caplog.at_level("WARNING", logger="reprise.trees.datasets"):
        s = datasets.load("mice-protein", tmp_path, seed=8)
    assert "p = 3 after preprocessing, the spec's table says 77" in caplog.text  # the toy is not the real set
    assert s.n_features == 3  # MouseID (row id) and Genotype (ignored) are gone, the class is the target
    assert (len(s.y_train), len(s.y_valid), len(s.y_test)) == (64, 16, 20)
    assert not np.isnan(s.X_train).any() and not np.isnan(s.X_test).any()
    assert np.allclose(s.X_train.mean(0), 0, atol=1e-12) and np.allclose(s.X_train.std(0), 1)
    assert set(np.unique(s.y_train)) == {0, 1}
    # the numeric values survive the reader: column 0 is an affine image of the raw column (rows matched by value)
    raw = np.sort(X[:, 0])
    got = np.sort(np.concatenate([s.X_train[:, 0], s.X_valid[:, 0], s.X_test[:, 0]]))
    assert abs(np.corrcoef(raw, got)[0, 1] - 1) < 1e-12
    # labels: the encoded class counts equal the raw ones (LabelEncoder's sorted order: c-CS-m → 0)
    y_all = np.concatenate([s.y_train, s.y_valid, s.y_test])
    assert (y_all == 0).sum() == (y == "c-CS-m").sum()


def test_arff_fields_respect_quotes():
    assert datasets._arff_fields("'a,b',1.5,?,\"x y\"") == ["a,b", "1.5", "?", "x y"]


def _nips_files(root: Path, name: str, sparse_p: int | None, rng) -> dict:
    folder = root / "nips2003" / name
    folder.mkdir(parents=True)
    out = {}
    for part, n in (("train", 50), ("valid", 20)):
        y = np.where(np.arange(n) % 2, 1, -1)
        if sparse_p is None:
            X = rng.integers(0, 1000, (n, 6))
            text = "\n".join(" ".join(map(str, r)) + " " for r in X) + "\n"  # the official files end lines in a space
        else:
            X = np.zeros((n, sparse_p))
            lines = []
            for i in range(n):
                idx = np.sort(rng.choice(sparse_p, 3, replace=False)) + 1  # 1-based active features
                X[i, idx - 1] = 1
                lines.append(" ".join(map(str, idx)) + " ")
            text = "\n".join(lines) + "\n"
        (folder / f"{name}_{part}.data").write_text(text)
        (folder / f"{name}_{part}.labels").write_text("\n".join(map(str, y)) + "\n")
        out[part] = (X, y)
    return out


def test_nips_dense_uses_the_validation_split_as_test_and_splits_train_80_20(tmp_path):
    raw = _nips_files(tmp_path, "madelon", None, np.random.default_rng(1))
    s = datasets.load("madelon", tmp_path, seed=8)
    assert (len(s.y_train), len(s.y_valid), len(s.y_test)) == (40, 10, 20) and s.n_features == 6
    assert np.allclose(s.X_train.mean(0), 0, atol=1e-12) and np.allclose(s.X_train.std(0), 1)
    assert np.array_equal(s.y_test, (raw["valid"][1] + 1) // 2)  # -1/+1 → 0/1, test rows in file order
    # the test block is the validation file standardised with the train part's statistics
    Xv = raw["valid"][0]
    ratio = (s.X_test[1:] - s.X_test[:-1]) / np.where(Xv[1:] == Xv[:-1], np.nan, Xv[1:] - Xv[:-1])
    assert np.allclose(np.nanstd(ratio, 0), 0, atol=1e-9)
    assert abs(s.y_train.mean() - 0.5) < 1e-12 and abs(s.y_valid.mean() - 0.5) < 1e-12  # stratified


def test_nips_sparse_dorothea_is_raw_binary_with_p_from_the_table(tmp_path, monkeypatch):
    monkeypatch.setitem(datasets.DATASETS, "dorothea",
                        datasets._source("dorothea", "nips2003", n_features=40))  # 40 stands in for 100 000
    raw = _nips_files(tmp_path, "dorothea", 40, np.random.default_rng(2))
    s = datasets.load("dorothea", tmp_path, seed=8)
    assert s.n_features == 40 and np.array_equal(s.X_test, raw["valid"][0])
    assert set(np.unique(s.X_train)) == {0.0, 1.0} and (s.X_train.sum(1) == 3).all()
    # train + valid are the training file's rows, unchanged
    both = np.vstack([s.X_train, s.X_valid])
    assert sorted(map(tuple, both)) == sorted(map(tuple, raw["train"][0]))
    (tmp_path / "nips2003" / "dorothea" / "dorothea_valid.data").write_text("1 41\n")
    with pytest.raises(ReproError, match="outside 1..40"):
        datasets.load("dorothea", tmp_path)


def test_asu_mat_reads_X_and_Y(tmp_path):
    from scipy.io import savemat

    rng = np.random.default_rng(3)
    X = rng.normal(size=(50, 12))
    Y = np.repeat([1, 2, 3, 4, 5], 10).reshape(-1, 1)  # column vector of class codes, as the ASU files hold
    (tmp_path / "asu" / "lung").mkdir(parents=True)
    savemat(tmp_path / "asu" / "lung" / "lung.mat", {"X": X, "Y": Y})
    s = datasets.load("lung", tmp_path, seed=8)
    assert s.n_features == 12 and (len(s.y_train), len(s.y_valid), len(s.y_test)) == (32, 8, 10)
    assert set(np.unique(s.y_train)) == set(range(5)) and np.allclose(s.X_train.std(0), 1)
    (row,) = run_experiment("trees.datasets", {"datasets": ["lung"], "data_dir": str(tmp_path), "synthetic": False},
                            0).to_dict("records")  # the datasets table reads the same loader
    assert (row["n"], row["n_train"], row["p"], row["classes"], row["budget_features"]) == (50, 32, 12, 5, 3)
    savemat(tmp_path / "asu" / "lung" / "lung.mat", {"data": X})
    with pytest.raises(ReproError, match="expected variables X and Y"):
        datasets.load("lung", tmp_path)


def test_every_full_input_is_a_fetch_rule_output_and_missing_files_name_the_rule(tmp_path):
    """The manifest's full-scale inputs are exactly the table's files (the rules' outputs), every listed dataset is
    in the table, the rule file builds its rules from the same table, and a missing file names its rule."""
    m = load_manifest(ROOT / "config" / "papers" / "skinny.yaml")
    tab2 = m.experiments["tab2"]
    names = tab2.params["full"]["datasets"]
    table = {f"{tab2.params['full']['data_dir']}/{f}": s.rule for s in datasets.DATASETS.values() for f in s.files}
    assert sorted(names) == sorted(datasets.DATASETS) and len(names) == 14
    assert sorted(tab2.inputs_at("full")) == sorted(table)
    for name in names:  # split per dataset (split_by): each part's job waits only for its own files
        assert sorted(tab2.inputs_at("full", name)) == sorted(f"data/raw/{f}" for f in datasets.DATASETS[name].files)
    assert m.experiments["tab_datasets"].inputs_at("full") == tab2.inputs_at("full")
    assert m.experiments["tab_datasets"].params["full"]["datasets"] == names
    assert set(m.experiments["fig5"].inputs["full"]) <= set(table)
    rules = (ROOT / "workflow" / "rules" / "skinny.smk").read_text()
    assert re.search(r"for _src in SKINNY_DATASETS\.values\(\):", rules) and "_src.rule" in rules
    assert len({s.rule for s in datasets.DATASETS.values()}) == 14
    assert all(re.fullmatch(r"skinny_fetch_[a-z0-9_]+", s.rule) for s in datasets.DATASETS.values())
    params = {**tab2.params["full"], "data_dir": str(tmp_path)}
    _write_openml(tmp_path, "mice-protein")  # present, but later sets are missing: fails before any training
    with pytest.raises(ReproError, match=r"churn\.tsv\.gz is missing.*snakemake skinny_fetch_churn"):
        run_experiment("trees.tab2", params, 0)
    with pytest.raises(ReproError, match=r"SMK-CAN-187\.mat is missing.*snakemake skinny_fetch_smk_can_187"):
        run_experiment("trees.tab2", {**params, "datasets": ["mice-protein", "SMK-CAN-187"]}, 0)
    with pytest.raises(ReproError, match=r"unknown Skinny Trees dataset 'leukemia'"):
        run_experiment("trees.tab2", {"datasets": ["leukemia"]}, 0)


def test_urls_follow_each_sources_layout():
    u = datasets.urls("arcene")
    base = "https://archive.ics.uci.edu/ml/machine-learning-databases/arcene"
    assert u["nips2003/arcene/arcene_train.data"] == f"{base}/ARCENE/arcene_train.data"
    assert u["nips2003/arcene/arcene_valid.labels"] == f"{base}/arcene_valid.labels"
    assert datasets.urls("isolet") == {"openml/isolet/description.json": "https://www.openml.org/api/v1/json/data/300"}
    assert datasets.urls("GLI-85")["asu/GLI-85/GLI-85.mat"].endswith("/scikit-feature/files/datasets/GLI-85.mat")


def test_fetch_reads_the_openml_description_then_the_arff_with_its_md5(tmp_path, monkeypatch):
    calls = []

    def fake_download(url, target, expect=None, **kw):
        calls.append((url, Path(target).name, expect))
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        if url.endswith("/40966"):
            Path(target).write_text(json.dumps({"data_set_description": {
                "url": "https://api.example/MiceProtein.arff", "file_id": 7, "md5_checksum": "ab" * 16,
                "default_target_attribute": "class"}}))
        return {"sha256": "s" + Path(target).name, "md5": ""}

    monkeypatch.setattr("reprise.io.download", fake_download)
    rec = datasets.fetch("mice-protein", tmp_path, pins={"mice-protein.arff": "ff" * 32})
    assert [c[0] for c in calls] == ["https://www.openml.org/api/v1/json/data/40966",
                                     "https://api.example/MiceProtein.arff"]
    assert calls[1][2] == {"md5": "ab" * 16, "sha256": "ff" * 32}
    assert rec["openml/mice-protein/mice-protein.arff"]["openml_file_id"] == "7"
    with pytest.raises(ReproError, match="not files of mice-protein"):
        datasets.fetch("mice-protein", tmp_path, pins={"wrong.arff": "00"})
