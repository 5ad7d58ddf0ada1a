"""Loaders and replicate protocols of sMTL's real data (Figs 5-8; full scale only).

What the official scripts read (gloewing/sMTL@98c0382, read for facts only):

* FSCV (OSF tb8fx): ``sMTL_Paper_2024/Figures/Figure6/fscv_multiStudy_IHT_cf_MT.R`` and
  ``Figure5/Support PreFilter IHT 12-4-23.R`` call ``read.csv(".../sub_samp2500")``: a CSV with no
  extension, one row per voltammogram. They drop the columns ``X.2, X.1, X, Channel, pH`` (R's names
  for written row-name columns, and two unused covariates); the first remaining column is the
  electrode (task) id, the second the dopamine concentration (the outcome, renamed ``Y_DA``), the
  rest are the 1000 current points of the voltammogram (Fig 5 uses ``p = 1000``).
* Breast cancer (OSF k6ynp): ``Figure7/sparse_MT_breast_random.R`` reads
  ``read.csv(".../breastCancer_data")`` (``breastCancer_data_full`` for all 10,107 genes): first
  column ``Study`` (18 studies), columns whose names start with ``Y_`` are the outcome genes, every
  other column a covariate gene. Tasks are outcome genes on **one shared design**.

Both files are plain CSV as the scripts read them; no R-only format (.rds/.RData) is involved. The
fetch rules download each OSF project as a zip; the loaders take the CSV itself or that zip (and
then open the member named like the script's file). The OSF contents were not seen here (no
network): if the zip holds the data in another form (e.g. an .rds), the loader says which member
it expected and what to convert it to.

Replicate protocols, as the scripts do them:

* :func:`fscv_replicate` (Fig 6): K = 4 electrodes drawn at random; log(y + 1e-6) (``dataPro = 2``);
  every ``col_sub``-th covariate; a random half of each electrode's rows for training
  (``multiTaskSplit``), the other half for testing; ``n_k`` training rows per electrode; the
  outcome standardised per task by its training mean and (population) sd (``Yscale``); covariates
  are standardised inside the estimators.
* :func:`breast_cancer_replicate` (Fig 7): ``p`` random covariate genes and ``K`` random outcome
  genes; study ``seed mod 18`` (18 when 0) held out for testing, the other 17 studies pooled for
  training; zero-variance training columns dropped; covariates and outcomes standardised by the
  training mean and population sd.
"""
from __future__ import annotations

import io
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from reprise.io import ReproError
from reprise.mtl._core import check_int
from reprise.mtl.data import MultiTaskData

#: file names the official scripts read
FSCV_FILE = "sub_samp2500"
BREAST_CANCER_FILE = "breastCancer_data"
BREAST_CANCER_FULL_FILE = "breastCancer_data_full"
#: columns the FSCV scripts drop besides row-name columns
FSCV_DROPPED = ("Channel", "pH")
#: the FSCV outcome transform of ``dataPro = 2``
LOG_OFFSET = 1e-6

_ROWNAME = re.compile(r"^(X(\.\d+)?|Unnamed: \d+|)$")


@dataclass
class RealTable:
    """One table as the scripts read it: rows, study ids, outcome(s), covariates."""

    X: np.ndarray              # (n, p) covariates
    Y: np.ndarray              # (n, m) outcomes (m = 1 for FSCV)
    study: np.ndarray          # (n,) study / electrode id
    features: list[str]
    outcomes: list[str]
    source: str

    def tasks(self) -> list:
        """Sorted distinct study ids."""
        return sorted(np.unique(self.study).tolist())

    def per_study(self) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """(X_k, y_k) per study (FSCV: the electrodes are the tasks; first outcome column)."""
        Xs, ys = [], []
        for t in self.tasks():
            rows = self.study == t
            Xs.append(self.X[rows])
            ys.append(self.Y[rows, 0])
        return Xs, ys


def _read_csv(path, names: tuple[str, ...], what: str, fetch_rule: str) -> tuple[pd.DataFrame, str]:
    path = Path(path)
    if not path.exists():
        raise ReproError(f"{what}: {path} does not exist; run `snakemake {fetch_rule}` (full scale, needs "
                         f"the network) or pass the path of the CSV `{names[0]}` the official scripts read")
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            members = [m for m in zf.namelist() if not m.endswith("/")]
            by_base = {}
            for m in members:
                by_base.setdefault(Path(m).name, m)
            for name in names:
                for cand in (name, name + ".csv"):
                    if cand in by_base:
                        with zf.open(by_base[cand]) as fh:
                            return pd.read_csv(io.BytesIO(fh.read())), f"{path}!{by_base[cand]}"
            r_only = [m for m in members if Path(m).stem in names and m.lower().endswith((".rds", ".rdata", ".rda"))]
            if r_only:
                raise ReproError(f"{what}: {path} holds {r_only[0]} (an R file; no reader is installed): convert it "
                                 f"in R with write.csv(readRDS('{r_only[0]}'), '{names[0]}', row.names = FALSE) "
                                 f"(or load() then write.csv for .RData) and pass that CSV")
            raise ReproError(f"{what}: {path} has no member named {' or '.join(names)} (it has "
                             f"{', '.join(members[:12]) or 'no files'}{' ...' if len(members) > 12 else ''}); "
                             f"pass the CSV the official scripts read ({names[0]})")
    if path.suffix.lower() in (".rds", ".rdata", ".rda"):
        raise ReproError(f"{what}: {path} is an R file and no R reader is installed; convert it in R with "
                         f"write.csv(<object>, '{names[0]}', row.names = FALSE) and pass the CSV")
    try:
        return pd.read_csv(path), str(path)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ReproError(f"{what}: {path} is not a readable CSV ({exc}); the scripts read `{names[0]}` "
                         f"with read.csv") from None


def _numeric(df: pd.DataFrame, cols: list[str], what: str, src: str) -> np.ndarray:
    bad = [c for c in cols if not pd.api.types.is_numeric_dtype(df[c])]
    if bad:
        raise ReproError(f"{what}: {src}: columns {bad[:5]} are not numeric; expected numeric covariates "
                         f"and outcomes as in the official scripts")
    arr = df[cols].to_numpy(dtype=float)
    if not np.all(np.isfinite(arr)):
        raise ReproError(f"{what}: {src} has missing or infinite values in {what}'s numeric columns")
    return arr


def load_fscv(path, *, study_col: str | None = None, outcome_col: str | None = None) -> RealTable:
    """Read the FSCV table ``sub_samp2500`` (a CSV, or the OSF zip holding it).

    Row-name columns (R's ``X``, ``X.1``, ..., pandas' ``Unnamed: i``) and ``Channel``, ``pH`` are
    dropped as in the scripts; then the first column is the electrode id and the second the
    dopamine outcome unless ``study_col`` / ``outcome_col`` name them. Use
    :meth:`RealTable.per_study` for the per-electrode (X_k, y_k) lists."""
    df, src = _read_csv(path, (FSCV_FILE,), "load_fscv", "smtl_fetch_fscv")
    keep = [c for c in df.columns if not _ROWNAME.match(str(c)) and c not in FSCV_DROPPED]
    for name, col in (("study_col", study_col), ("outcome_col", outcome_col)):
        if col is not None and col not in keep:
            raise ReproError(f"load_fscv: {name}={col!r} is not a column of {src} (columns: {keep[:6]} ...)")
    if len(keep) < 3:
        raise ReproError(f"load_fscv: {src} has {len(keep)} usable columns; expected the electrode id, the "
                         f"dopamine outcome and the voltammogram covariates")
    study_col = keep[0] if study_col is None else study_col
    rest = [c for c in keep if c != study_col]
    outcome_col = rest[0] if outcome_col is None else outcome_col
    features = [c for c in rest if c != outcome_col]
    X = _numeric(df, features, "load_fscv", src)
    Y = _numeric(df, [outcome_col], "load_fscv", src)
    return RealTable(X=X, Y=Y, study=df[study_col].to_numpy(), features=[str(c) for c in features],
                     outcomes=[str(outcome_col)], source=src)


def load_breast_cancer(path, *, full: bool = False, study_col: str = "Study") -> RealTable:
    """Read ``breastCancer_data`` (``breastCancer_data_full`` with ``full``), a CSV or the OSF zip
    holding it: ``study_col`` (default ``Study``; the first column when absent, as the script
    indexes it), outcomes = columns named ``Y_*``, covariates = the rest (R row-name columns dropped)."""
    names = (BREAST_CANCER_FULL_FILE,) if full else (BREAST_CANCER_FILE,)
    df, src = _read_csv(path, names, "load_breast_cancer", "smtl_fetch_breast_cancer")
    cols = [c for c in df.columns if not _ROWNAME.match(str(c))]
    if study_col not in cols:
        if not cols:
            raise ReproError(f"load_breast_cancer: {src} has no columns")
        study_col = cols[0]
    outcomes = [c for c in cols if str(c).startswith("Y_")]
    features = [c for c in cols if c != study_col and c not in outcomes]
    if not outcomes or not features:
        raise ReproError(f"load_breast_cancer: {src} has {len(outcomes)} outcome columns (named Y_*) and "
                         f"{len(features)} covariates; the script needs both")
    return RealTable(X=_numeric(df, features, "load_breast_cancer", src),
                     Y=_numeric(df, outcomes, "load_breast_cancer", src), study=df[study_col].to_numpy(),
                     features=[str(c) for c in features], outcomes=[str(c) for c in outcomes], source=src)


# --------------------------------------------------------------------------- replicate protocols

def _standardise(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mu = train.mean(axis=0)
    sd = train.std(axis=0)          # population form, as the scripts' "mle formula"
    sd = np.where(sd > 0, sd, 1.0)
    return (train - mu) / sd, (test - mu) / sd


def fscv_replicate(table: RealTable, seed: int, *, K: int = 4, n_k: int = 100, col_sub: int = 1,
                   split: float = 0.5, log_outcome: bool = True) -> MultiTaskData:
    """One Fig 6 replicate (module docstring). ``coef`` is unknown (NaN): only RMSE and supports
    can be reported, as in the paper."""
    tasks = table.tasks()
    K = check_int("K", K, 1, len(tasks), f"the file has {len(tasks)} electrodes")
    n_k = check_int("n_k", n_k, 2)
    col_sub = check_int("col_sub", col_sub, 1, table.X.shape[1])
    rng = np.random.default_rng(seed)
    chosen = sorted(rng.choice(len(tasks), size=K, replace=False).tolist())
    cols = np.arange(0, table.X.shape[1], col_sub)
    Xs, ys, Xt, yt = [], [], [], []
    for i in chosen:
        rows = np.flatnonzero(table.study == tasks[i])
        order = rng.permutation(rows)
        n_train = int(round(len(rows) * split))
        tr, te = order[:n_train], order[n_train:]
        tr = tr[:min(n_k, len(tr))]
        if len(tr) < 2 or len(te) < 1:
            raise ReproError(f"fscv_replicate: electrode {tasks[i]} has {len(rows)} rows; too few to split")
        y = table.Y[:, 0]
        if log_outcome:
            if np.any(y[rows] + LOG_OFFSET <= 0):
                raise ReproError("fscv_replicate: the outcome has values <= -1e-6; log(y + 1e-6) is undefined "
                                 "(pass log_outcome=False)")
            y = np.log(y + LOG_OFFSET)
        y_tr, y_te = _standardise(y[tr][:, None], y[te][:, None])
        Xs.append(table.X[np.ix_(tr, cols)])
        Xt.append(table.X[np.ix_(te, cols)])
        ys.append(y_tr[:, 0])
        yt.append(y_te[:, 0])
    p = len(cols)
    info = dict(data="FSCV (osf.io/tb8fx)", tasks=[tasks[i] for i in chosen], n_k=n_k, col_sub=col_sub,
                features=[table.features[j] for j in cols])
    return MultiTaskData(Xs, ys, Xt, yt, np.full((K, p), np.nan), np.full(K, np.nan), np.full(K, np.nan), info)


def breast_cancer_replicate(table: RealTable, seed: int, *, K: int = 4, p: int = 100) -> MultiTaskData:
    """One Fig 7 replicate (module docstring): K outcome genes as tasks on one shared design."""
    studies = table.tasks()
    K = check_int("K", K, 1, table.Y.shape[1], f"the file has {table.Y.shape[1]} outcome genes")
    p = check_int("p", p, 1, table.X.shape[1], f"the file has {table.X.shape[1]} covariate genes")
    rng = np.random.default_rng(seed)
    feats = rng.choice(table.X.shape[1], size=p, replace=False)
    outs = rng.choice(table.Y.shape[1], size=K, replace=False)
    # the script's test study: iterNum mod (number of studies), with 0 read as the last
    test_study = studies[(seed % len(studies)) - 1]
    te = table.study == test_study
    tr = ~te
    if tr.sum() < 2 or te.sum() < 1:
        raise ReproError(f"breast_cancer_replicate: study {test_study} leaves too few rows to train or test")
    X_tr, X_te = table.X[np.ix_(tr, feats)], table.X[np.ix_(te, feats)]
    keep = X_tr.std(axis=0) > 0
    X_tr, X_te = _standardise(X_tr[:, keep], X_te[:, keep])
    Y_tr, Y_te = _standardise(table.Y[np.ix_(tr, outs)], table.Y[np.ix_(te, outs)])
    p_kept = int(keep.sum())
    info = dict(data="breast cancer (curatedBreastData via osf.io/k6ynp)", test_study=test_study,
                outcomes=[table.outcomes[j] for j in outs], features=[table.features[j] for j in feats[keep]])
    return MultiTaskData([X_tr] * K, [Y_tr[:, k] for k in range(K)], [X_te] * K, [Y_te[:, k] for k in range(K)],
                         np.full((K, p_kept), np.nan), np.full(K, np.nan), np.full(K, np.nan), info)
