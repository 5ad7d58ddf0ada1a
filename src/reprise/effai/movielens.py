"""``effai.sub_kd_movielens``: SFT vs forward-KL distillation of public LLMs on MovieLens-1M (mini/full).

Method replication on public data (spec other-papers.md §8.5 ``effai/sub_kd``), not the paper's
numbers: the paper's task is LinkedIn ranking with a 100B+ internal teacher. Here the task is
"will the user rate the next movie 4 or more", serialised as text from the user's rating history.

Data (:func:`load_movielens`, the GroupLens ``ml-1m.zip``, fetched by ``snakemake fetch_movielens``):
``ratings.dat`` (``UserID::MovieID::Rating::Timestamp``) and ``movies.dat`` (``MovieID::Title::Genres``,
latin-1). Per user (:func:`user_examples`), the ratings sorted by time (ties by movie id): the last
one is the target (label ``rating >= threshold``), the ``history`` before it, oldest first, are the
prompt (:func:`serialise`)::

    User watched: Toy Story (1995) (4), Heat (1995) (3); Will the user rate Casino (1995) 4 or more? Answer:

and the answer is one token, `` Yes`` or `` No`` (:func:`answer_token_ids` fails if either is not a
single token of the tokenizer). Users are split 80/10/10 (train/validation/test) under ``seed``.

Pipeline: the *teacher* (registry key or model directory, default ``qwen2.5-1.5b-instruct``) is first
fine-tuned by SFT on the training users' answer token; two copies of the *student* (default
``qwen2.5-0.5b``) are trained on the same users for the same epochs and learning rate, one by SFT on
the hard labels and one by forward KL to the fine-tuned teacher's logits at the answer position
(:mod:`reprise.effai.distill`). Every model (also before training: ``zero_shot``) is scored by the AUC
of ``p(Yes) / (p(Yes) + p(No))`` at the answer position on the validation and test users. Two
non-LLM reference rows: the mean of the history's ratings, and the target movie's mean rating over
the training users' ratings.

Rows: ``experiment, seed, model (teacher|student|baseline), method (zero_shot|sft|fkl|history_mean|
item_mean), params, epochs, train_users, test_users, positive_rate (test), val_auc, auc (test),
seconds``.

Params (defaults = full): ``data="data/raw/movielens/ml-1m.zip", history=10, threshold=4,
teacher="qwen2.5-1.5b-instruct", student="qwen2.5-0.5b", registry="config/models.yaml",
teacher_epochs=2, student_epochs=2, batch_size=8, teacher_lr=1e-5, student_lr=2e-5, temperature=1.0,
max_users=None (all), device="auto", precision="auto"`` (bf16 autocast on CUDA, fp32 on the CPU;
weights and optimiser state stay fp32). A model directory is e.g. ``models/qwen2.5-0.5b`` made by
the workflow's ``prepare_model`` rule, so the job itself needs no network.

The zip comes from :data:`URL` through :func:`fetch_movielens` (the workflow's ``fetch_movielens`` rule).

Measured: the unit test's run (60 users, tiny random Llama teacher/student with SmolLM2's 49,152-token
vocabulary, 1 epoch each) takes about 10 s on one thread of the shared 2-core machine. The full job
(6,040 users, a 1.5B teacher and two 0.5B students, 2 epochs each) has not been run (no GPU or hub
access on the development machine); it is planned at one GPU for up to an hour per seed.
"""
from __future__ import annotations

import contextlib
import copy
import logging
import time
import zipfile
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from reprise.effai import distill
from reprise.effai.experiments import _auc, _device
from reprise.experiments import check_seed, choice, experiment, integer, optional, params as _validate, real
from reprise.io import ReproError

log = logging.getLogger("reprise.effai")

URL = "https://files.grouplens.org/datasets/movielens/ml-1m.zip"
YES, NO = " Yes", " No"
COLUMNS = ["experiment", "seed", "model", "method", "params", "epochs", "train_users", "test_users", "positive_rate",
           "val_auc", "auc", "seconds"]
_FETCH = "run `snakemake fetch_movielens` where the network is reachable (full scale only)"


def _member(archive: zipfile.ZipFile, name: str, path) -> str:
    found = [m for m in archive.namelist() if m.rsplit("/", 1)[-1] == name]
    if not found:
        raise ReproError(f"MovieLens archive {path} has no {name} (members: {archive.namelist()[:6]}); "
                         f"expected the GroupLens ml-1m.zip: {_FETCH}")
    return found[0]


def _read(archive: zipfile.ZipFile, member: str, columns: list[str], encoding: str, path):
    import pandas as pd

    text = archive.read(member).decode(encoding)
    # the fields are '::'-separated; titles may hold single ':' but never '::'
    rows = [line.split("::") for line in text.splitlines() if line.strip()]
    bad = next((i for i, r in enumerate(rows) if len(r) != len(columns)), None)
    if bad is not None:
        raise ReproError(f"MovieLens {path}:{member} line {bad + 1} has {len(rows[bad])} '::' fields, expected "
                         f"{len(columns)} ({'::'.join(columns)})")
    return pd.DataFrame(rows, columns=columns)


def load_movielens(path) -> tuple[Any, Any]:
    """``(ratings, movies)`` DataFrames from the ml-1m zip: ratings ``user, movie, rating, timestamp``
    (ints), movies ``movie, title, genres``."""
    path = Path(path)
    if not path.is_file():
        raise ReproError(f"MovieLens archive {path} not found: {_FETCH}")
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile as exc:
        raise ReproError(f"MovieLens archive {path} is not a zip file ({exc}): {_FETCH}") from None
    with archive:
        ratings = _read(archive, _member(archive, "ratings.dat", path), ["user", "movie", "rating", "timestamp"],
                        "ascii", path)
        movies = _read(archive, _member(archive, "movies.dat", path), ["movie", "title", "genres"], "latin-1", path)
    try:
        ratings = ratings.astype({c: np.int64 for c in ratings.columns})
        movies = movies.astype({"movie": np.int64})
    except ValueError as exc:
        raise ReproError(f"MovieLens {path}: a non-integer id, rating or timestamp ({exc})") from None
    unknown = set(ratings.movie) - set(movies.movie)
    if unknown:
        raise ReproError(f"MovieLens {path}: ratings.dat names movies missing from movies.dat: {sorted(unknown)[:5]}")
    return ratings, movies


def fetch_movielens(dest, *, url: str = URL, sha256: str | None = None, timeout: float = 300.0) -> dict[str, str]:
    """Download ml-1m.zip to ``dest`` through :func:`reprise.io.download` (streamed, atomic), checking
    ``sha256`` when pinned; returns the ``md5`` and ``sha256`` of the file. An existing file is kept
    when it matches the pin (or when nothing is pinned)."""
    from reprise.io import download, file_digest

    if sha256 is not None and not (isinstance(sha256, str) and len(sha256) == 64
                                   and all(c in "0123456789abcdefABCDEF" for c in sha256)):
        raise ReproError(f"fetch_movielens: sha256={sha256!r} must be 64 hexadecimal characters (or None)")
    target = Path(dest)
    if target.is_file():
        have = file_digest(target)
        if sha256 is None or have == sha256.lower():
            return {"md5": file_digest(target, "md5"), "sha256": have}
    return download(url, target, expect={"sha256": sha256} if sha256 else None, timeout=timeout,
                    what="fetch_movielens",
                    hint=f"MovieLens-1M is needed at full scale only: run `snakemake fetch_movielens` where the "
                         f"network is reachable, or place ml-1m.zip from {URL} at {target}")


def serialise(titles, ratings, target: str, threshold: int = 4) -> str:
    """The prompt of one user: the rated history (oldest first) and the question; the answer follows."""
    watched = ", ".join(f"{t} ({int(r)})" for t, r in zip(titles, ratings))
    return f"User watched: {watched}; Will the user rate {target} {threshold} or more? Answer:"


def user_examples(ratings, movies, history: int = 10, threshold: int = 4):
    """One example per user with at least two ratings: columns ``user, prompt, label, rating, movie,
    history_mean`` (the mean of the history's ratings, a reference score)."""
    import pandas as pd

    title = dict(zip(movies.movie, movies.title))
    ordered = ratings.sort_values(["user", "timestamp", "movie"], kind="stable")
    rows = []
    for user, group in ordered.groupby("user", sort=True):
        if len(group) < 2:
            continue
        past, last = group.iloc[:-1].tail(history), group.iloc[-1]
        rows.append({"user": int(user), "movie": int(last.movie), "rating": int(last.rating),
                     "label": int(last.rating >= threshold), "history_mean": float(past.rating.mean()),
                     "prompt": serialise([title[m] for m in past.movie], past.rating, title[int(last.movie)],
                                         threshold)})
    if not rows:
        raise ReproError("MovieLens: no user has two ratings; nothing to predict")
    return pd.DataFrame(rows)


def split_users(users, seed: int, fractions=(0.8, 0.1)) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Seeded train / validation / test partition of ``users`` (80/10/10 by default)."""
    users = np.asarray(sorted(users))
    perm = np.random.default_rng([seed, 18]).permutation(users)  # its own stream, apart from the model seeds
    a = int(round(fractions[0] * len(users)))
    b = a + int(round(fractions[1] * len(users)))
    return perm[:a], perm[a:b], perm[b:]


def answer_token_ids(tokenizer, yes: str = YES, no: str = NO) -> tuple[int, int]:
    """The single token ids of the two answers; a ReproError when either is several tokens."""
    out = []
    for word in (yes, no):
        ids = tokenizer(word, add_special_tokens=False)["input_ids"]
        if len(ids) != 1:
            raise ReproError(f"the answer {word!r} is {len(ids)} tokens ({ids}) under {type(tokenizer).__name__}; "
                             "the AUC reads one answer token, so use a tokenizer with a single-token answer")
        out.append(int(ids[0]))
    if out[0] == out[1]:
        raise ReproError(f"the answers {yes!r} and {no!r} are the same token {out[0]}")
    return out[0], out[1]


def encode(tokenizer, prompts, labels, yes: int, no: int, pad: int = 0):
    """``(ids [n, L], mask [n, L], prompt_lengths [n])``: each prompt's tokens, then its answer token,
    then ``pad`` up to the longest row. Right padding after the answer: causal attention keeps the pads
    from every earlier position, so the answer position sees exactly the unpadded sequence."""
    seqs = [list(s) for s in tokenizer(list(prompts))["input_ids"]]
    joint = list(tokenizer(prompts[0] + YES)["input_ids"])
    if joint != seqs[0] + [yes]:
        raise ReproError(f"the tokenizer merges the answer {YES!r} with the prompt's end ('Answer:'); the answer "
                         "must be its own token after the prompt")
    n, L = len(seqs), max(len(s) for s in seqs) + 1
    ids = torch.full((n, L), pad, dtype=torch.long)
    mask = torch.zeros((n, L), dtype=torch.bool)
    for i, (s, y) in enumerate(zip(seqs, labels)):
        ids[i, : len(s)] = torch.as_tensor(s)
        ids[i, len(s)] = yes if y else no
        mask[i, len(s)] = True
    return ids, mask, torch.as_tensor([len(s) for s in seqs])


def scores(model, ids: torch.Tensor, lengths: torch.Tensor, yes: int, no: int, batch_size: int) -> np.ndarray:
    """``log p(Yes) - log p(No)`` after each prompt (``ids[i, :lengths[i]]``): prompts of one length go
    through :func:`reprise.effai.distill.token_scores` together, so no padding is ever attended."""
    device = next(model.parameters()).device
    out = np.empty(len(ids))
    for length in torch.unique(lengths).tolist():
        rows = (lengths == length).nonzero().flatten()
        out[rows.numpy()] = distill.token_scores(model, ids[rows, :length].to(device), yes, no, batch_size).numpy()
    return out


def _load(name: str, registry_path: str, role: str):
    from reprise.llm.models import load_model, load_model_registry, load_tokenizer, resolve_spec

    if Path(name).is_dir():
        registry = {}
    else:
        if not Path(registry_path).is_file():
            raise ReproError(f"params['registry']={registry_path!r} not found (the model registry config/models.yaml)")
        registry = load_model_registry(registry_path)
        if name not in registry:
            raise ReproError(f"params[{role!r}]={name!r} is neither a key of {registry_path} nor a model directory; "
                             f"name a key, or run `snakemake models/<key>` (prepare_model) and pass that directory")
    spec = resolve_spec(name, registry)
    return load_model(spec, registry, dtype="float32"), load_tokenizer(spec, registry)


def _autocast(device: torch.device, precision: str):
    bf16 = precision == "bf16" or (precision == "auto" and device.type == "cuda")
    return torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()


def _text(what: str):
    def check(where, v):
        if not isinstance(v, str) or not v:
            raise ReproError(f"{where}={v!r} must be {what}")
        return v
    return check


SPEC = {
    "data": ("data/raw/movielens/ml-1m.zip", _text("the path of ml-1m.zip")),
    "history": (10, integer(1)), "threshold": (4, integer(1, 5)),
    "teacher": ("qwen2.5-1.5b-instruct", _text("a key of config/models.yaml or a model directory")),
    "student": ("qwen2.5-0.5b", _text("a key of config/models.yaml or a model directory")),
    "registry": ("config/models.yaml", _text("the path of the model registry")),
    "teacher_epochs": (2, integer(1)), "student_epochs": (2, integer(1)), "batch_size": (8, integer(1)),
    "teacher_lr": (1e-5, real(0.0, strict=True)), "student_lr": (2e-5, real(0.0, strict=True)),
    "temperature": (1.0, real(0.0, strict=True)), "max_users": (None, optional(integer(10))),
    "device": ("auto", _device), "precision": ("auto", choice("auto", "fp32", "bf16")),
}


@experiment("effai.sub_kd_movielens")
def sub_kd_movielens(params: Mapping[str, Any], seed: int):
    """Fine-tuned teacher, SFT vs forward-KL students on MovieLens-1M, test AUC (module doc)."""
    import pandas as pd
    from reprise.llm.export import parameter_count
    from reprise.llm.models.blockwise import pick_device

    name = "effai.sub_kd_movielens"
    p = _validate(name, params, SPEC)
    seed = check_seed(name, seed)
    device = pick_device(p["device"])
    ratings, movies = load_movielens(p["data"])
    examples = user_examples(ratings, movies, p["history"], p["threshold"])
    if p["max_users"] is not None:  # a seeded subset, for quick runs
        keep = np.random.default_rng([seed, 7]).permutation(len(examples))[: p["max_users"]]
        examples = examples.iloc[np.sort(keep)].reset_index(drop=True)
    train_u, val_u, test_u = split_users(examples.user, seed)
    parts = {k: examples[examples.user.isin(u)].reset_index(drop=True)
             for k, u in (("train", train_u), ("val", val_u), ("test", test_u))}
    for k, part in parts.items():
        if part.label.nunique() < 2:
            raise ReproError(f"{name}: the {k} users ({len(part)}) hold one label only; use more users "
                             f"(params['max_users']) or another seed")
    log.info("MovieLens: %d users (train %d, val %d, test %d), history %d, positive rate %.3f", len(examples),
             len(parts["train"]), len(parts["val"]), len(parts["test"]), p["history"], examples.label.mean())

    teacher, tok = _load(p["teacher"], p["registry"], "teacher")
    student0, s_tok = _load(p["student"], p["registry"], "student")
    yes, no = answer_token_ids(tok)
    if answer_token_ids(s_tok) != (yes, no) or s_tok(parts["test"].prompt[0])["input_ids"] != \
            tok(parts["test"].prompt[0])["input_ids"]:
        raise ReproError(f"{name}: teacher {p['teacher']!r} and student {p['student']!r} tokenize differently; "
                         "forward KL needs one tokenizer and vocabulary")
    vocab = {role: m.get_output_embeddings().weight.shape[0]
             for role, m in (("teacher", teacher), ("student", student0))}
    if vocab["teacher"] != vocab["student"]:  # caught before the teacher's fine-tuning, not after it
        raise ReproError(f"{name}: teacher and student output {vocab} logits; forward KL needs one vocabulary")
    pad = tok.pad_token_id if tok.pad_token_id is not None else (tok.eos_token_id or 0)
    enc = {k: encode(tok, list(part.prompt), list(part.label), yes, no, pad) for k, part in parts.items()}
    ids, mask, _ = enc["train"]
    bs, T = p["batch_size"], p["temperature"]
    amp = _autocast(device, p["precision"])
    counts = {"train_users": len(parts["train"]), "test_users": len(parts["test"]),
              "positive_rate": round(float(parts["test"].label.mean()), 4)}
    rows = []

    def score_row(model_name, method, model, epochs, seconds):
        with amp:
            auc = {k: _auc(parts[k].label.to_numpy(), scores(model, enc[k][0], enc[k][2], yes, no, 4 * bs))
                   for k in ("val", "test")}
        rows.append({"model": model_name, "method": method, "params": parameter_count(model), "epochs": epochs,
                     "val_auc": auc["val"], "auc": auc["test"], "seconds": round(seconds, 3), **counts})
        log.info("%s %s: val AUC %.4f, test AUC %.4f (%.1f s)", model_name, method, auc["val"], auc["test"], seconds)

    # references without a language model
    item_mean = ratings[ratings.user.isin(train_u)].groupby("movie").rating.mean()
    for method, score in (("history_mean", lambda d: d.history_mean.to_numpy()),
                          ("item_mean", lambda d: d.movie.map(item_mean).fillna(item_mean.mean()).to_numpy())):
        rows.append({"model": "baseline", "method": method, "params": None, "epochs": 0,
                     "val_auc": _auc(parts["val"].label.to_numpy(), score(parts["val"])),
                     "auc": _auc(parts["test"].label.to_numpy(), score(parts["test"])), "seconds": 0.0, **counts})

    teacher.to(device)
    score_row("teacher", "zero_shot", teacher, 0, 0.0)
    t0 = time.perf_counter()
    with amp:
        distill.train(teacher, ids, mask, epochs=p["teacher_epochs"], batch_size=bs, lr=p["teacher_lr"], seed=seed,
                      device=device, name="teacher")
    score_row("teacher", "sft", teacher, p["teacher_epochs"], time.perf_counter() - t0)

    student0.to(device)
    score_row("student", "zero_shot", student0, 0, 0.0)
    for method in ("sft", "fkl"):
        student = copy.deepcopy(student0)  # same init and batch order for both methods
        t0 = time.perf_counter()
        with amp:
            distill.train(student, ids, mask, teacher=teacher if method == "fkl" else None,
                          epochs=p["student_epochs"], batch_size=bs, lr=p["student_lr"], temperature=T,
                          seed=seed + 1, device=device, name=f"student-{method}")
        score_row("student", method, student, p["student_epochs"], time.perf_counter() - t0)
        del student
        if device.type == "cuda":
            torch.cuda.empty_cache()

    frame = pd.DataFrame(rows)
    frame.insert(0, "seed", seed)
    frame.insert(0, "experiment", name)
    return frame[COLUMNS]

