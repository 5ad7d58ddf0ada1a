"""Data of the Skinny Trees experiments (specs/other-papers.md §1.6): the 64/16/20 split, the synthetic regression
generator, scikit-learn's bundled breast-cancer set, PMLB files fetched at full scale, and the vendored churn logs.

- ``split(X, y, seed=8, stratify=True)``: ``train_test_split`` test 20 %, then validation 20 % of the rest.
- ``synthetic_regression(p, k, n_train, n_test, rho, noise, seed)``: ``Σ_ij = ρ^|i−j|``, true features at
  ``p/(2k) + m·p/k``, ``y = Σ_{j∈S} x_j + N(0, noise²)``; ``n_train`` rows split 80/20 train/val, then ``n_test``
  test rows; draws in the order train, val, test, then the noises in the same order (numpy ``default_rng(seed)``).
- ``pmlb_url(name)`` / ``fetch_pmlb(name, out_dir)``: the PMLB repository's ``<name>.tsv.gz`` and ``metadata.yaml``
  (plain urllib; the ``pmlb`` package is not needed); ``load_pmlb(dir)`` reads them back and preprocesses:
  continuous/ordinal → median imputation + standardisation, categorical/binary/nominal → constant imputation +
  one-hot (fitted on the training part only), labels label-encoded.
- ``churn_logs()``: the vendored trial table of the official churn tuning logs (``data/README.md``).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from reprise.io import ReproError

DATA_DIR = Path(__file__).parent / "data"
CHURN_LOGS = DATA_DIR / "churn_tuning_logs.csv"
PMLB_BASE = "https://github.com/EpistasisLab/pmlb/raw/master/datasets"


@dataclass
class Split:
    X_train: np.ndarray
    y_train: np.ndarray
    X_valid: np.ndarray
    y_valid: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray

    @property
    def n_features(self) -> int:
        return self.X_train.shape[1]


def split(X, y, seed: int = 8, stratify: bool = True) -> tuple[np.ndarray, ...]:
    """Indices (train, valid, test): test 20 %, then validation 20 % of the remainder (64/16/20)."""
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(y))
    rest, test = train_test_split(idx, test_size=0.2, random_state=seed, stratify=y if stratify else None)
    train, valid = train_test_split(rest, test_size=0.2, random_state=seed,
                                    stratify=np.asarray(y)[rest] if stratify else None)
    return train, valid, test


def standardised(X, y, seed: int = 8) -> Split:
    """The 64/16/20 stratified split of an all-numeric ``X``, standardised with the training part's mean and std."""
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y)
    tr, va, te = split(X, y, seed)
    mu, sd = X[tr].mean(0), X[tr].std(0)
    sd[sd == 0] = 1.0
    z = (X - mu) / sd
    return Split(z[tr], y[tr], z[va], y[va], z[te], y[te])


def breast_cancer(seed: int = 8) -> Split:
    """scikit-learn's bundled breast-cancer set (569 × 30, 2 classes), standardised 64/16/20 split."""
    from sklearn.datasets import load_breast_cancer

    d = load_breast_cancer()
    return standardised(d.data, d.target, seed)


def true_support(p: int, k: int) -> np.ndarray:
    """The synthetic generator's true features ``p/(2k) + m·p/k``, ``m = 0 … k−1``."""
    if p % (2 * k):
        raise ReproError(f"synthetic_regression: p={p} must be a multiple of 2k={2 * k} "
                         "(the true features sit at p/(2k) + m p/k)")
    return np.array([p // (2 * k) + m * (p // k) for m in range(k)])


def synthetic_regression(p: int, k: int, n_train: int, n_test: int, rho: float, noise: float = 0.5,
                         seed: int = 1) -> tuple[Split, np.ndarray]:
    """The §1.6 generator; returns the split (train/val 80/20 of ``n_train``) and the true support."""
    support = true_support(p, k)
    rng = np.random.default_rng(seed)
    cov = rho ** np.abs(np.subtract.outer(np.arange(p), np.arange(p)))
    n_tr = int(round(0.8 * n_train))
    sizes = (n_tr, n_train - n_tr, n_test)
    Xs = [rng.multivariate_normal(np.zeros(p), cov, size=m) for m in sizes]
    ys = [X[:, support].sum(1) + noise * rng.standard_normal(X.shape[0]) for X in Xs]
    return Split(Xs[0], ys[0], Xs[1], ys[1], Xs[2], ys[2]), support


# --------------------------------------------------------------------------- PMLB (full scale)

def pmlb_url(name: str, what: str = "data") -> str:
    """The PMLB repository's file of dataset ``name``: ``data`` → ``<name>.tsv.gz``, ``metadata`` → metadata.yaml."""
    return f"{PMLB_BASE}/{name}/{name}.tsv.gz" if what == "data" else f"{PMLB_BASE}/{name}/metadata.yaml"


def _download(url: str, path: Path, sha256: str | None) -> str:
    from reprise.io import download

    return download(url, path, expect={"sha256": sha256} if sha256 else None, what=f"fetch {url}",
                    hint="PMLB is needed at full scale only: run the skinny_fetch_<name> rule where the network is "
                         "reachable")["sha256"]


def fetch_pmlb(name: str, out_dir, sha256: str | None = None) -> dict[str, str]:
    """Download ``<name>.tsv.gz`` and ``metadata.yaml`` into ``out_dir``; returns their sha256 digests."""
    out = Path(out_dir)
    return {"data": _download(pmlb_url(name), out / f"{name}.tsv.gz", sha256),
            "metadata": _download(pmlb_url(name, "metadata"), out / "metadata.yaml", None)}


def require(path, fetch_rule: str) -> Path:
    """``path`` if it exists, else a ReproError naming it and the rule that fetches it."""
    path = Path(path)
    if not path.exists():
        raise ReproError(f"dataset file {path} is missing; fetch it on a connected machine with "
                         f"`snakemake {fetch_rule}` (full scale only)")
    return path


def load_pmlb(data_file, metadata_file, seed: int = 8) -> Split:
    """A fetched PMLB set, split 64/16/20 (stratified, ``seed``) and preprocessed as the official code does."""
    import pandas as pd
    import yaml
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import LabelEncoder, OneHotEncoder, StandardScaler

    df = pd.read_csv(data_file, sep="\t")
    meta = yaml.safe_load(Path(metadata_file).read_text())
    types = {str(f["name"]): f.get("type", "continuous") for f in meta.get("features", [])}
    if "target" not in df.columns:
        raise ReproError(f"{data_file}: no 'target' column (columns: {', '.join(df.columns[:10])} …)")
    y = LabelEncoder().fit_transform(df.pop("target"))
    num = [c for c in df.columns if types.get(str(c), "continuous") in ("continuous", "ordinal")]
    cat = [c for c in df.columns if c not in num]
    pre = ColumnTransformer([
        ("num", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), num),
        ("cat", make_pipeline(SimpleImputer(strategy="constant", fill_value=-1),
                              OneHotEncoder(handle_unknown="ignore", sparse_output=False)), cat),
    ])
    tr, va, te = split(df, y, seed)
    Xtr = pre.fit_transform(df.iloc[tr])
    return Split(Xtr, y[tr], pre.transform(df.iloc[va]), y[va], pre.transform(df.iloc[te]), y[te])


def churn_logs():
    """The vendored table of the 10 official churn tuning logs (one row per Optuna trial)."""
    import pandas as pd

    if not CHURN_LOGS.is_file():
        raise ReproError(f"{CHURN_LOGS} is missing from the package; reinstall reprise")
    return pd.read_csv(CHURN_LOGS)
