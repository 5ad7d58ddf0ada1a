"""Data of the Skinny Trees experiments (specs/other-papers.md §1.6): the 64/16/20 split, the synthetic regression
generator, scikit-learn's bundled breast-cancer set, the paper's 14 real sets fetched at full scale, and the vendored
churn logs.

- ``split(X, y, seed=8, stratify=True)``: ``train_test_split`` test 20 %, then validation 20 % of the rest.
- ``synthetic_regression(p, k, n_train, n_test, rho, noise, seed)``: ``Σ_ij = ρ^|i−j|``, true features at
  ``p/(2k) + m·p/k``, ``y = Σ_{j∈S} x_j + N(0, noise²)``; ``n_train`` rows split 80/20 train/val, then ``n_test``
  test rows; draws in the order train, val, test, then the noises in the same order (numpy ``default_rng(seed)``).
- ``DATASETS``: the one table of the real sets (name → :class:`Source`: kind, files under the data root
  ``data/raw``, fetch rule ``skinny_fetch_<name with - → _, lower case>``), read by ``workflow/rules/skinny.smk``
  (one fetch rule per entry), by ``fetch(name, root)`` and by ``load(name, root, seed)``:

  - PMLB ``churn, satimage, texture`` → ``pmlb/<name>/<name>.tsv.gz`` + ``metadata.yaml`` from the PMLB repository
    (plain urllib; the ``pmlb`` package is not needed); continuous/ordinal → median imputation + standardisation,
    categorical/binary/nominal → constant imputation + one-hot (fitted on the training part only) [V-code].
  - OpenML ``mice-protein`` (data id 40966), ``isolet`` (300) [U: ids from the spec] →
    ``openml/<name>/description.json`` (``https://www.openml.org/api/v1/json/data/<id>``) and ``<name>.arff``
    (the description's ``url``, checked against its ``md5_checksum``). The target is
    ``default_target_attribute``; ``row_id_attribute`` and ``ignore_attribute`` are dropped, as scikit-learn's
    ``fetch_openml`` (which the official code used) does; numeric → continuous, nominal → one-hot. Read by a small
    dense-ARFF reader (``scipy.io.arff`` rejects the string attribute ``MouseID``).
  - NIPS-2003 ``arcene, gisette, madelon, dorothea`` → ``nips2003/<name>/<name>_{train,valid}.{data,labels}`` from
    the UCI archive: ``<base>/<NAME>/<name>_train.data``, ``<base>/<NAME>/<name>_train.labels``,
    ``<base>/<NAME>/<name>_valid.data`` and ``<base>/<name>_valid.labels`` with
    ``base = https://archive.ics.uci.edu/ml/machine-learning-databases/<name>`` — these paths are from memory
    ([U]; the validation labels were released after the challenge, beside the folder). The official validation
    split is the test set, the official train split is split 80/20 (stratified, ``seed``) into train/val [V-code];
    dense sets are whitespace-separated integers (all continuous: median imputation + standardisation),
    dorothea's lines are the 1-based indices of its active features out of 100 000 and it is used raw (binary).
  - ASU scikit-feature ``SMK-CAN-187, CLL-SUB-111, GLI-85, lung, TOX-171`` → ``asu/<name>/<name>.mat`` from
    ``https://jundongl.github.io/scikit-feature/files/datasets/<name>.mat`` [U]: MATLAB files with ``X`` (n × p)
    and ``Y`` (n × 1) [V-code: the official loader reads these keys], all continuous, split 64/16/20.

  The official loader [V-code] read private preprocessed copies (NIPS-2003 as ``.mat`` conversions with
  ``Xtrain/ytrain/Xvalid/yvalid``); these loaders read the public originals into the same split and preprocessing.
  Labels are label-encoded. A missing file raises ``ReproError`` naming it and its fetch rule. Loading time on the
  real files is not measured (no network here); the unit tests' tiny files load in milliseconds.
- ``churn_logs()``: the vendored trial table of the official churn tuning logs (``data/README.md``).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from reprise.io import ReproError, load_yaml

log = logging.getLogger(__name__)

DATA_DIR = Path(__file__).parent / "data"
CHURN_LOGS = DATA_DIR / "churn_tuning_logs.csv"
PMLB_BASE = "https://github.com/EpistasisLab/pmlb/raw/master/datasets"
OPENML_API = "https://www.openml.org/api/v1/json/data"
NIPS_BASE = "https://archive.ics.uci.edu/ml/machine-learning-databases"  # [U] layout, see the module docstring
ASU_BASE = "https://jundongl.github.io/scikit-feature/files/datasets"  # [U]
DATA_ROOT = "data/raw"


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


# --------------------------------------------------------------------------- the real sets (full scale)

@dataclass(frozen=True)
class Source:
    """One real dataset: its ``kind`` (pmlb | openml | nips2003 | asu), the files the loader reads (relative to the
    data root) and, for OpenML, the data id; dorothea's ``n_features`` (sparse lines do not give p)."""
    name: str
    kind: str
    files: tuple[str, ...]
    openml_id: int | None = None
    n_features: int | None = None
    spec_p: int | None = None

    @property
    def rule(self) -> str:
        return "skinny_fetch_" + self.name.lower().replace("-", "_")

    @property
    def folder(self) -> str:
        return f"{self.kind}/{self.name}"

    @property
    def record(self) -> str:
        return f"{self.folder}/fetch.json"

    def paths(self, root=DATA_ROOT) -> list[Path]:
        return [Path(root) / f for f in self.files]


def _source(name: str, kind: str, **kw) -> Source:
    d = f"{kind}/{name}"
    files = {"pmlb": (f"{d}/{name}.tsv.gz", f"{d}/metadata.yaml"),
             "openml": (f"{d}/description.json", f"{d}/{name}.arff"),
             "nips2003": tuple(f"{d}/{name}_{part}" for part in
                               ("train.data", "train.labels", "valid.data", "valid.labels")),
             "asu": (f"{d}/{name}.mat",)}[kind]
    return Source(name, kind, files, **kw)


DATASETS: dict[str, Source] = {s.name: s for s in (
    _source("churn", "pmlb", spec_p=33), _source("satimage", "pmlb", spec_p=36),
    _source("texture", "pmlb", spec_p=40),
    _source("mice-protein", "openml", openml_id=40966, spec_p=77),
    _source("isolet", "openml", openml_id=300, spec_p=617),
    _source("arcene", "nips2003", spec_p=10_000), _source("gisette", "nips2003", spec_p=5000),
    _source("madelon", "nips2003", spec_p=500),
    _source("dorothea", "nips2003", n_features=100_000, spec_p=100_000),
    _source("SMK-CAN-187", "asu", spec_p=19_993), _source("CLL-SUB-111", "asu", spec_p=11_340),
    _source("GLI-85", "asu", spec_p=22_283), _source("lung", "asu", spec_p=3312), _source("TOX-171", "asu", spec_p=5748),
)}


def source(name: str) -> Source:
    if name not in DATASETS:
        raise ReproError(f"unknown Skinny Trees dataset {name!r}; known: breast_cancer (bundled), "
                         f"{', '.join(DATASETS)}")
    return DATASETS[name]


def pmlb_url(name: str, what: str = "data") -> str:
    """The PMLB repository's file of dataset ``name``: ``data`` → ``<name>.tsv.gz``, ``metadata`` → metadata.yaml."""
    return f"{PMLB_BASE}/{name}/{name}.tsv.gz" if what == "data" else f"{PMLB_BASE}/{name}/metadata.yaml"


def urls(name: str) -> dict[str, str]:
    """File (relative to the data root) → URL, for every file of ``name`` whose URL is fixed (OpenML's ARFF URL comes
    from the description and is absent here)."""
    s = source(name)
    if s.kind == "pmlb":
        return dict(zip(s.files, (pmlb_url(name), pmlb_url(name, "metadata"))))
    if s.kind == "openml":
        return {s.files[0]: f"{OPENML_API}/{s.openml_id}"}
    if s.kind == "nips2003":
        up = name.upper()
        remote = [f"{up}/{name}_train.data", f"{up}/{name}_train.labels", f"{up}/{name}_valid.data",
                  f"{name}_valid.labels"]
        return {f: f"{NIPS_BASE}/{name}/{r}" for f, r in zip(s.files, remote)}
    return {s.files[0]: f"{ASU_BASE}/{name}.mat"}


def _download(url: str, path: Path, expect: dict[str, str] | None, rule: str) -> str:
    from reprise.io import download

    return download(url, path, expect=expect or None, what=f"fetch {url}",
                    hint=f"the Skinny Trees real data is needed at full scale only: run `snakemake {rule}` where the "
                         "network is reachable")["sha256"]


def fetch(name: str, root=DATA_ROOT, pins: dict[str, str] | None = None) -> dict[str, dict[str, str]]:
    """Download every file of ``name`` under ``root``; ``pins`` maps a file's base name to its expected sha256.
    Returns file → ``{url, sha256}`` (the fetch record's content)."""
    s, pins = source(name), dict(pins or {})
    unknown = set(pins) - {Path(f).name for f in s.files}
    if unknown:
        raise ReproError(f"{s.rule}: params.sha256 pins {sorted(unknown)}, which are not files of {name} "
                         f"({', '.join(Path(f).name for f in s.files)})")
    out: dict[str, dict[str, str]] = {}

    def get(rel: str, url: str, expect: dict[str, str] | None = None) -> None:
        base = Path(rel).name
        want = {**(expect or {}), **({"sha256": pins[base]} if base in pins else {})}
        out[rel] = {"url": url, "sha256": _download(url, Path(root) / rel, want, s.rule)}

    for rel, url in urls(name).items():
        get(rel, url)
    if s.kind == "openml":
        desc = _openml_description(Path(root) / s.files[0])
        get(s.files[1], desc["url"], {"md5": desc["md5_checksum"]} if desc.get("md5_checksum") else None)
        out[s.files[1]]["openml_file_id"] = str(desc.get("file_id"))
    return out


def require(path, fetch_rule: str) -> Path:
    """``path`` if it exists, else a ReproError naming it and the rule that fetches it."""
    path = Path(path)
    if not path.exists():
        raise ReproError(f"dataset file {path} is missing; fetch it on a connected machine with "
                         f"`snakemake {fetch_rule}` (full scale only)")
    return path


def load(name: str, root=DATA_ROOT, seed: int = 8) -> Split:
    """The real set ``name`` read from ``root`` (files of ``DATASETS[name]``), split and preprocessed (§1.6)."""
    s = source(name)
    files = [require(p, s.rule) for p in s.paths(root)]
    if s.kind == "pmlb":
        out = load_pmlb(*files, seed=seed)
    elif s.kind == "openml":
        out = load_openml(*files, seed=seed)
    elif s.kind == "nips2003":
        out = load_nips2003(*files, seed=seed, sparse_features=s.n_features)
    else:
        out = load_asu(files[0], seed=seed)
    if s.spec_p is not None and out.n_features != s.spec_p:
        log.warning("%s: p = %d after preprocessing, the spec's table says %d (source changed?)",
                    name, out.n_features, s.spec_p)
    log.info("%s: %d train / %d valid / %d test rows, p = %d", name, len(out.y_train), len(out.y_valid),
             len(out.y_test), out.n_features)
    return out


def _preprocess(df, continuous, categorical, tr, va, te):
    """§1.6's column transformer, fitted on the training rows: median imputation + standardisation of the continuous
    columns, constant imputation + one-hot of the categorical ones; returns the three transformed blocks."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    pre = ColumnTransformer([
        ("num", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), list(continuous)),
        ("cat", make_pipeline(SimpleImputer(strategy="constant", fill_value=-1),
                              OneHotEncoder(handle_unknown="ignore", sparse_output=False)), list(categorical)),
    ])
    Xtr = pre.fit_transform(df.iloc[tr])
    return Xtr, pre.transform(df.iloc[va]), pre.transform(df.iloc[te])


def _split_and_encode(df, y_raw, continuous, categorical, seed: int) -> Split:
    from sklearn.preprocessing import LabelEncoder

    y_raw = np.asarray(y_raw)
    tr, va, te = split(df, y_raw, seed)
    enc = LabelEncoder().fit(y_raw)  # all labels: the same codes as fitting on train whenever it has every class
    Xtr, Xva, Xte = _preprocess(df, continuous, categorical, tr, va, te)
    return Split(Xtr, enc.transform(y_raw[tr]), Xva, enc.transform(y_raw[va]), Xte, enc.transform(y_raw[te]))


def load_pmlb(data_file, metadata_file, seed: int = 8) -> Split:
    """A fetched PMLB set, split 64/16/20 (stratified, ``seed``) and preprocessed as the official code does."""
    import pandas as pd

    df = pd.read_csv(data_file, sep="\t")
    meta = load_yaml(Path(metadata_file).read_text())
    types = {str(f["name"]): f.get("type", "continuous") for f in meta.get("features", [])}
    if "target" not in df.columns:
        raise ReproError(f"{data_file}: no 'target' column (columns: {', '.join(df.columns[:10])} …)")
    y = df.pop("target").to_numpy()
    num = [c for c in df.columns if types.get(str(c), "continuous") in ("continuous", "ordinal")]
    cat = [c for c in df.columns if c not in num]
    return _split_and_encode(df, y, num, cat, seed)


# ---- OpenML

def _openml_description(path) -> dict:
    import json

    try:
        d = json.loads(Path(path).read_text())["data_set_description"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ReproError(f"{path}: not an OpenML data description ({exc}); delete it and re-run its fetch rule") \
            from None
    if "url" not in d or "default_target_attribute" not in d:
        raise ReproError(f"{path}: the OpenML description lacks 'url' or 'default_target_attribute'")
    return d


def _arff_fields(line: str) -> list[str]:
    """Split one ARFF data line at commas outside quotes; quotes removed, ``\\`` escapes kept literal."""
    out, cur, quote, i = [], [], None, 0
    while i < len(line):
        c = line[i]
        if quote:
            if c == "\\" and i + 1 < len(line):
                cur.append(line[i + 1])
                i += 1
            elif c == quote:
                quote = None
            else:
                cur.append(c)
        elif c in "'\"":
            quote = c
        elif c == ",":
            out.append("".join(cur).strip())
            cur = []
        else:
            cur.append(c)
        i += 1
    out.append("".join(cur).strip())
    return out


def read_arff(path):
    """A dense ARFF file as (DataFrame, {attribute: 'numeric' | 'nominal' | 'string' | 'date'}); ``?`` → missing.
    Numeric columns are floats, the others strings (sparse ``{...}`` rows are not supported: OpenML serves these
    two sets dense)."""
    import re

    import pandas as pd

    names, types, rows, in_data = [], {}, [], False
    with open(path, encoding="utf-8", errors="replace") as fh:
        for raw in fh:
            line = raw.strip()
            if not line or line.startswith("%"):
                continue
            if not in_data:
                low = line.lower()
                if low.startswith("@attribute"):
                    m = re.match(r"@attribute\s+('(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|\S+)\s+(.+)$", line, re.I)
                    if not m:
                        raise ReproError(f"{path}: cannot parse the attribute line {line[:80]!r}")
                    name, kind = m.group(1).strip("'\""), m.group(2).strip()
                    low_kind = kind.lower()
                    names.append(name)
                    types[name] = ("nominal" if kind.startswith("{") else
                                   "numeric" if low_kind in ("numeric", "real", "integer") else
                                   low_kind.split()[0])
                elif low.startswith("@data"):
                    in_data = True
                continue
            if line.startswith("{"):
                raise ReproError(f"{path}: sparse ARFF rows are not supported")
            fields = _arff_fields(line)
            if len(fields) != len(names):
                raise ReproError(f"{path}: a data row has {len(fields)} values for {len(names)} attributes")
            rows.append(fields)
    if not in_data:
        raise ReproError(f"{path}: no @data section (not an ARFF file?)")
    df = pd.DataFrame(rows, columns=names).replace("?", np.nan)
    for c in names:
        if types[c] == "numeric":
            df[c] = pd.to_numeric(df[c])
    return df, types


def load_openml(description_file, arff_file, seed: int = 8) -> Split:
    """A fetched OpenML set: target ``default_target_attribute``, row-id and ignored attributes dropped, split
    64/16/20; numeric columns continuous, nominal ones one-hot."""
    desc = _openml_description(description_file)
    df, types = read_arff(arff_file)
    target = desc["default_target_attribute"]
    if target not in df.columns:
        raise ReproError(f"{arff_file}: no target attribute {target!r} (from {description_file})")
    drop = desc.get("ignore_attribute") or []
    drop = [drop] if isinstance(drop, str) else list(drop)
    drop += [desc["row_id_attribute"]] if desc.get("row_id_attribute") else []
    y = df.pop(target).to_numpy()
    df = df.drop(columns=[c for c in drop if c in df.columns])
    num = [c for c in df.columns if types[c] == "numeric"]
    cat = [c for c in df.columns if types[c] == "nominal"]
    other = [c for c in df.columns if c not in num and c not in cat]
    if other:
        raise ReproError(f"{arff_file}: attributes {other[:5]} are neither numeric nor nominal and are not listed as "
                         "ignored or row id in the description")
    return _split_and_encode(df, y, num, cat, seed)


# ---- NIPS 2003 feature-selection challenge

def _nips_matrix(path, sparse_features: int | None) -> np.ndarray:
    if sparse_features is None:
        return np.loadtxt(path, dtype=np.float64, ndmin=2)
    lines = Path(path).read_text().splitlines()
    X = np.zeros((len(lines), sparse_features), dtype=np.float64)
    for i, line in enumerate(lines):
        idx = np.array(line.split(), dtype=np.int64)
        if idx.size and (idx.min() < 1 or idx.max() > sparse_features):
            raise ReproError(f"{path}: line {i + 1} has a feature index outside 1..{sparse_features}")
        X[i, idx - 1] = 1.0
    return X


def load_nips2003(train_data, train_labels, valid_data, valid_labels, seed: int = 8,
                  sparse_features: int | None = None) -> Split:
    """A NIPS-2003 set: the official validation split is the test set, the official train split is split 80/20
    (stratified, ``seed``) into train/val. Dense data (``sparse_features=None``) is standardised after median
    imputation (fitted on the train part); sparse binary data (dorothea: 1-based active indices, ``sparse_features``
    = p) is used raw."""
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import LabelEncoder

    X, Xte = _nips_matrix(train_data, sparse_features), _nips_matrix(valid_data, sparse_features)
    y, yte = (np.loadtxt(f, dtype=np.int64, ndmin=1) for f in (train_labels, valid_labels))
    for Xa, ya, fa, fl in ((X, y, train_data, train_labels), (Xte, yte, valid_data, valid_labels)):
        if len(Xa) != len(ya):
            raise ReproError(f"{fa} has {len(Xa)} rows but {fl} has {len(ya)} labels")
    if X.shape[1] != Xte.shape[1]:
        raise ReproError(f"{train_data} has {X.shape[1]} features but {valid_data} has {Xte.shape[1]}")
    tr, va = train_test_split(np.arange(len(y)), test_size=0.2, random_state=seed, stratify=y)
    enc = LabelEncoder().fit(np.concatenate([y, yte]))
    if sparse_features is None:
        import pandas as pd

        df = pd.DataFrame(np.vstack([X, Xte]))
        te = np.arange(len(X), len(X) + len(Xte))
        Xtr, Xva, Xtest = _preprocess(df, df.columns, [], tr, va, te)
    else:
        Xtr, Xva, Xtest = X[tr], X[va], Xte
    return Split(Xtr, enc.transform(y[tr]), Xva, enc.transform(y[va]), Xtest, enc.transform(yte))


# ---- ASU scikit-feature

def load_asu(mat_file, seed: int = 8) -> Split:
    """An ASU scikit-feature ``.mat`` file (``X`` n × p, ``Y`` n × 1): split 64/16/20, all columns continuous."""
    import pandas as pd
    from scipy.io import loadmat

    try:
        d = loadmat(mat_file)
    except (ValueError, NotImplementedError, OSError) as exc:
        raise ReproError(f"{mat_file}: not a MATLAB v5 file scipy can read ({exc})") from None
    if "X" not in d or "Y" not in d:
        found = sorted(k for k in d if not k.startswith("__"))
        raise ReproError(f"{mat_file}: expected variables X and Y, found {found}")
    X = np.asarray(d["X"].toarray() if hasattr(d["X"], "toarray") else d["X"], dtype=np.float64)
    y = np.asarray(d["Y"]).reshape(-1)
    if len(y) != len(X):
        raise ReproError(f"{mat_file}: X has {len(X)} rows but Y has {len(y)} labels")
    df = pd.DataFrame(X)
    return _split_and_encode(df, y, df.columns, [], seed)


def churn_logs():
    """The vendored table of the 10 official churn tuning logs (one row per Optuna trial)."""
    import pandas as pd

    if not CHURN_LOGS.is_file():
        raise ReproError(f"{CHURN_LOGS} is missing from the package; reinstall reprise")
    return pd.read_csv(CHURN_LOGS)
