"""Calibration and test token windows, following the papers' sampling code.

Every sampler is a pure function of (tokenizer, documents, sizes, seed): randomness comes from
its own ``random.Random(seed)``, never the global RNG, and ``random.Random(s)`` draws exactly
what the papers' ``random.seed(s); random.randint(...)`` draws. Facts from
specs/llm-compression.md §1.4–§1.5 (tagged [CODE] there unless noted).

Calibration protocols (output ``[n, L]`` LongTensor):

* ``contiguous`` / ``contiguous-space`` (A): join the split with ``"\\n\\n"`` (QuantEase, ALPS,
  OSSCAR) or ``" "`` (HASSLE-free), tokenize once, ``n`` draws of ``i = randint(0, T-L-1)``.
* ``lab-c4`` (B): per draw, pick documents uniformly until one tokenized alone (default
  special tokens) is long enough, then an offset ``randint(0, len-L-1)``. ``accept="gt"`` keeps
  documents with ``len > L`` (= ``len >= L+1``, ALPS and the lab calibration code), ``"ge"``
  keeps ``len >= L`` (QuantEase/OSSCAR C4 test sets).
* ``gptq-c4`` (C): the same draw over C4 train shard 0 with ``len > L``; HASSLE-free fixes the
  seed at 0 whatever ``--seed`` says, so ``make_tokens`` uses 0 unless told otherwise.

Test protocols (non-overlapping windows, remainder dropped, optional cap on the count, spread evenly):

* ``windows`` / ``windows-space``: join with ``"\\n\\n"`` / ``" "``, tokenize once, cut.
* ``lab-c4-test``: the lab's C4 test set, 256 windows drawn as in (B) with seed 0 and
  ``accept="ge"`` (ALPS uses ``"gt"``).
* ``c4-new``: GPTQ's ``" ".join`` of the first 1100 documents, truncated to ``256·L`` tokens.
"""
from __future__ import annotations

import hashlib
import random
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from reprise.io import ReproError, atomic_path

from .sources import read_manifest, read_split

ACCEPT = ("gt", "ge")
CALIBRATION_PROTOCOLS = ("contiguous", "contiguous-space", "lab-c4", "gptq-c4")
TEST_PROTOCOLS = ("windows", "windows-space", "lab-c4-test", "c4-new")

#: Named perplexity test sets → (dataset, split, protocol, fixed options). Metric names use the key.
TEST_SETS: dict[str, dict[str, Any]] = {
    "wikitext2": {"dataset": "wikitext2", "split": "test", "protocol": "windows"},
    "ptb": {"dataset": "ptb", "split": "validation", "protocol": "windows"},
    "ptb-new": {"dataset": "ptb", "split": "test", "protocol": "windows-space"},
    "c4": {"dataset": "c4-val", "split": "validation", "protocol": "lab-c4-test", "accept": "ge"},
    "c4-new": {"dataset": "c4-val", "split": "validation", "protocol": "c4-new"},
    "enwiki-gensim": {"dataset": "enwiki-gensim", "split": "test", "protocol": "windows"},
    "lee-gensim": {"dataset": "lee-gensim", "split": "test", "protocol": "windows"},
}


def encode(tokenizer: Any, text: str) -> list[int]:
    """Token ids of ``text`` with the tokenizer's default special tokens (OPT/LLaMA add BOS)."""
    ids = tokenizer(text)["input_ids"]
    if hasattr(ids, "tolist"):
        ids = ids.tolist()
    if ids and isinstance(ids[0], list):  # a batch of one
        ids = ids[0]
    return list(ids)


def _check_sizes(n: int, seqlen: int) -> None:
    if int(n) < 1 or int(seqlen) < 1:
        raise ReproError(f"window count and length must be positive (got n={n}, seqlen={seqlen})")


def contiguous_calibration(tokenizer: Any, docs: Sequence[str], n: int, seqlen: int, seed: int,
                           joiner: str = "\n\n") -> tuple[torch.Tensor, dict[str, Any]]:
    """(A) ``n`` random windows of one joined, once-tokenized split."""
    _check_sizes(n, seqlen)
    ids = encode(tokenizer, joiner.join(docs))
    if len(ids) < seqlen + 1:
        raise ReproError(f"calibration text has {len(ids)} tokens, fewer than seqlen+1 = {seqlen + 1}")
    rng = random.Random(seed)
    starts = [rng.randint(0, len(ids) - seqlen - 1) for _ in range(n)]
    windows = torch.tensor([ids[i:i + seqlen] for i in starts], dtype=torch.long)
    return windows, {"n_tokens": len(ids), "joiner": joiner, "starts": starts}


def document_windows(tokenizer: Any, docs: Sequence[str], n: int, seqlen: int, seed: int,
                     accept: str = "gt", max_draws: int | None = None) -> tuple[torch.Tensor, dict[str, Any]]:
    """(B)/(C) and the lab C4 test set: one window from each of ``n`` accepted random documents."""
    _check_sizes(n, seqlen)
    if accept not in ACCEPT:
        raise ReproError(f"accept must be one of {ACCEPT}, got {accept!r}")
    if not docs:
        raise ReproError("no documents to sample from")
    min_len = seqlen + 1 if accept == "gt" else seqlen
    max_draws = max_draws or max(1000 * n, 100_000)
    rng = random.Random(seed)
    cache: dict[int, list[int]] = {}
    rows, picked, draws, exact = [], [], 0, 0
    for _ in range(n):
        while True:
            draws += 1
            if draws > max_draws:
                raise ReproError(f"gave up after {max_draws} draws: too few documents have >= {min_len} "
                                 f"tokens (found {len(rows)} of {n}); lower seqlen or use another corpus")
            idx = rng.randint(0, len(docs) - 1)
            if idx not in cache:
                cache[idx] = encode(tokenizer, docs[idx])
            if len(cache[idx]) >= min_len:
                break
        ids = cache[idx]
        if len(ids) == seqlen:
            # Only under accept="ge": the papers' randint(0, -1) would raise here [INF]; take the
            # whole document without a draw and record it.
            start, exact = 0, exact + 1
        else:
            start = rng.randint(0, len(ids) - seqlen - 1)
        rows.append(ids[start:start + seqlen])
        picked.append((idx, start))
    stats = {"accept": accept, "min_len": min_len, "draws": draws, "exact_length_docs": exact,
             "n_tokens": sum(len(v) for v in cache.values()), "picked": picked}
    return torch.tensor(rows, dtype=torch.long), stats


def lab_c4_calibration(tokenizer, docs, n, seqlen, seed, accept="gt"):
    """(B) the lab's C4 calibration from validation shard 0."""
    return document_windows(tokenizer, docs, n, seqlen, seed, accept=accept)


def gptq_c4_calibration(tokenizer, docs, n, seqlen, seed=0):
    """(C) GPTQ/HASSLE-free C4 calibration from train shard 0 (``len > L``; seed 0 in the paper's code)."""
    return document_windows(tokenizer, docs, n, seqlen, seed, accept="gt")


def spread_cap(windows: torch.Tensor, max_windows: int | None) -> torch.Tensor:
    """At most ``max_windows`` windows, evenly spaced over the whole stream (first and last included).

    A cap exists only for small scales; taking the first windows would test one article of a
    corpus (measured here: the first 8 enwiki-gensim test windows are one list-like article, with
    2.3x the perplexity of windows spread over all ten). Without a cap every window is used, as in
    the GPTQ protocol.
    """
    if max_windows is None or int(max_windows) >= len(windows):
        return windows
    index = torch.linspace(0, len(windows) - 1, int(max_windows)).round().long()
    return windows[index].clone()


def cut_windows(ids: Sequence[int] | torch.Tensor, seqlen: int, max_windows: int | None = None) -> torch.Tensor:
    """Non-overlapping windows ``[k·L, (k+1)·L)`` from the start (remainder dropped), capped by ``spread_cap``."""
    ids = torch.as_tensor(ids, dtype=torch.long).flatten()
    count = ids.numel() // seqlen
    if count < 1:
        raise ReproError(f"test text has {ids.numel()} tokens, fewer than one window of {seqlen}")
    return spread_cap(ids[: count * seqlen].reshape(count, seqlen), max_windows).clone()


def joined_test(tokenizer, docs, seqlen, joiner="\n\n", max_windows=None):
    """WikiText-2 / PTB style: join, tokenize once, cut into windows."""
    ids = encode(tokenizer, joiner.join(docs))
    return cut_windows(ids, seqlen, max_windows), {"n_tokens": len(ids), "joiner": joiner}


def lab_c4_test(tokenizer, docs, seqlen, n=256, seed=0, accept="ge", max_windows=None):
    """The lab's C4 test set: ``n`` document windows drawn with ``seed`` (0 in the papers)."""
    windows, stats = document_windows(tokenizer, docs, n, seqlen, seed, accept=accept)
    return spread_cap(windows, max_windows), stats


def c4_new_test(tokenizer, docs, seqlen, n_docs=1100, n_windows=256, max_windows=None):
    """GPTQ's "c4-new": ``" ".join`` of the first ``n_docs`` documents, first ``n_windows·L`` tokens."""
    ids = encode(tokenizer, " ".join(docs[:n_docs]))[: n_windows * seqlen]
    return cut_windows(ids, seqlen, max_windows), {"n_tokens": len(ids), "joiner": " ", "n_docs": n_docs}


def window_overlap(calib: torch.Tensor, test: torch.Tensor) -> int:
    """How many calibration windows are identical to some test window."""
    if calib.shape[-1] != test.shape[-1]:
        return 0
    seen = {row.numpy().tobytes() for row in test.to(torch.long)}
    return sum(row.numpy().tobytes() in seen for row in calib.to(torch.long))


def overlap_report(calib: torch.Tensor, test: torch.Tensor, calib_name: str = "calibration",
                   test_name: str = "test") -> dict[str, Any]:
    """The §1.5 finding as data: identical windows and how many sit at the same position."""
    identical = window_overlap(calib, test)
    k = min(len(calib), len(test))
    same_pos = int((calib[:k] == test[:k]).all(dim=1).sum()) if calib.shape[-1] == test.shape[-1] else 0
    finding = (f"{identical} of {len(calib)} {calib_name} windows are identical to {test_name} windows "
               f"({same_pos} at the same position)")
    if identical:
        finding += "; the test set is contaminated by the calibration data (specs §1.5)"
    return {"n_calibration": len(calib), "n_test": len(test), "identical": identical,
            "same_position": same_pos, "fraction": identical / max(len(calib), 1), "finding": finding}


def token_file_name(split: str, n: int | None, seqlen: int, seed: int, protocol: str | None = None) -> str:
    """``<split>[.<protocol>]_<n>x<L>_s<seed>.pt``; ``n=None`` (every test window) reads ``all``.

    DESIGN.md's layout has no protocol, but two protocols can read the same split (C4's lab
    test set and c4-new both come from the validation shard), so pass it where that can happen.
    """
    stem = split if protocol is None else f"{split}.{protocol}"
    return f"{stem}_{'all' if n is None else int(n)}x{int(seqlen)}_s{int(seed)}.pt"


_SPEC_KEYS = {"dataset", "role", "split", "protocol", "n", "seqlen", "seed", "accept", "test_set",
              "max_windows", "fix_seed_zero"}


def resolve_spec(spec: Mapping[str, Any]) -> dict[str, Any]:
    """Fill a token spec's defaults (a ``test_set`` names dataset, split and protocol)."""
    unknown = sorted(set(spec) - _SPEC_KEYS)
    if unknown:
        raise ReproError(f"token spec has unknown key(s) {', '.join(unknown)} "
                         f"(allowed: {', '.join(sorted(_SPEC_KEYS))})")
    out = dict(spec)
    if out.get("test_set"):
        if out["test_set"] not in TEST_SETS:
            raise ReproError(f"unknown test set {out['test_set']!r}; known: {', '.join(TEST_SETS)}")
        out = {**TEST_SETS[out["test_set"]], "role": "test", **out}
    out.setdefault("role", "calibration")
    out.setdefault("seed", 0)
    for key in ("split", "protocol", "seqlen"):
        if key not in out:
            raise ReproError(f"token spec lacks {key!r}: {dict(spec)}")
    known = CALIBRATION_PROTOCOLS if out["role"] == "calibration" else TEST_PROTOCOLS
    if out["role"] not in ("calibration", "test") or out["protocol"] not in known:
        raise ReproError(f"token spec: protocol {out['protocol']!r} is not a {out['role']} protocol "
                         f"(known: {', '.join(known)})")
    if out["role"] == "calibration" and "n" not in out:
        raise ReproError(f"token spec lacks 'n' (number of calibration windows): {dict(spec)}")
    return out


def spec_file_name(spec: Mapping[str, Any]) -> str:
    """File name of a token spec under ``data/tokens/<tokenizer-key>/<dataset-key>/``."""
    s = resolve_spec(spec)
    if s["role"] == "test":
        return token_file_name(s.get("test_set") or s["split"], s.get("max_windows"), s["seqlen"], s["seed"],
                               None if s.get("test_set") else s["protocol"])
    return token_file_name(s["split"], s["n"], s["seqlen"], s["seed"], s["protocol"])


def make_tokens(spec: Mapping[str, Any], tokenizer: Any, raw_dir: str | Path) -> tuple[torch.Tensor, dict[str, Any]]:
    """Build the windows a spec asks for from a fetched raw directory; return them and their meta."""
    s = resolve_spec(spec)
    manifest = read_manifest(raw_dir)
    if s.get("dataset") and s["dataset"] != manifest["dataset"]:
        raise ReproError(f"token spec is for dataset {s['dataset']!r} but {raw_dir} holds {manifest['dataset']!r}")
    docs, digest = read_split(raw_dir, s["split"])
    L, seed, proto, cap = int(s["seqlen"]), int(s["seed"]), s["protocol"], s.get("max_windows")
    seed_used = seed
    if proto in ("contiguous", "contiguous-space"):
        t, st = contiguous_calibration(tokenizer, docs, int(s["n"]), L, seed, "\n\n" if proto == "contiguous" else " ")
    elif proto == "lab-c4":
        t, st = lab_c4_calibration(tokenizer, docs, int(s["n"]), L, seed, s.get("accept", "gt"))
    elif proto == "gptq-c4":
        seed_used = 0 if s.get("fix_seed_zero", True) else seed
        t, st = gptq_c4_calibration(tokenizer, docs, int(s["n"]), L, seed_used)
    elif proto in ("windows", "windows-space"):
        t, st = joined_test(tokenizer, docs, L, "\n\n" if proto == "windows" else " ", cap)
    elif proto == "lab-c4-test":
        t, st = lab_c4_test(tokenizer, docs, L, int(s.get("n", 256)), seed, s.get("accept", "ge"), cap)
    else:  # c4-new
        t, st = c4_new_test(tokenizer, docs, L, max_windows=cap)
    st.pop("picked", None)  # per-window positions are long; the windows' hash identifies them
    st.pop("starts", None)
    meta = {
        "dataset": manifest["dataset"], "dataset_key": manifest["key"], "revision": manifest.get("revision"),
        "pinned": manifest.get("pinned"), "split": s["split"], "role": s["role"], "protocol": proto,
        "test_set": s.get("test_set"), "seqlen": L, "seed": seed, "seed_used": seed_used,
        "raw_sha256": {s["split"]: digest}, "tokenizer": type(tokenizer).__name__,
        "n_windows": int(t.shape[0]), "windows_sha256": hashlib.sha256(t.numpy().tobytes()).hexdigest(),
        **st,
    }
    return t, meta


def save_tokens(path: str | Path, windows: torch.Tensor, meta: Mapping[str, Any]) -> None:
    """Write ``{"input_ids": windows, "meta": meta}`` atomically with ``torch.save``."""
    with atomic_path(path, suffix=".pt") as tmp:
        torch.save({"input_ids": windows, "meta": dict(meta)}, tmp)


def load_tokens(path: str | Path) -> tuple[torch.Tensor, dict[str, Any]]:
    path = Path(path)
    if not path.is_file():
        raise ReproError(f"missing token file {path}: run the data rule that produces it first")
    blob = torch.load(path, weights_only=True)
    return blob["input_ids"], blob["meta"]
