"""Sampling protocols on small local corpora: counts, determinism, acceptance rules, C4 overlap."""
from __future__ import annotations

import json
import random

import pytest
import torch

from reprise.io import ReproError
from reprise.llm.data import (
    c4_new_test, contiguous_calibration, cut_windows, document_windows, fetch_raw, gptq_c4_calibration,
    joined_test, lab_c4_calibration, lab_c4_test, load_tokens, make_tokens, overlap_report, save_tokens,
    spec_file_name, token_file_name, window_overlap,
)
from reprise.llm.data.registry import _check_entry

BOS = 1


class WordTokenizer:
    """Whitespace tokenizer with a growing vocabulary; prepends BOS like OPT/LLaMA by default."""

    def __init__(self, bos: bool = True):
        self.bos, self.vocab = bos, {}

    def __call__(self, text):
        ids = [self.vocab.setdefault(w, len(self.vocab) + 2) for w in text.split()]
        return {"input_ids": ([BOS] if self.bos else []) + ids}


def corpus(n_docs=200, seed=1, lo=2, hi=60):
    """C4-like documents of random lengths (in words), words from a 500-word vocabulary."""
    rng = random.Random(seed)
    return [" ".join(f"w{rng.randrange(500)}" for _ in range(rng.randint(lo, hi))) for _ in range(n_docs)]


def test_contiguous_calibration_shape_determinism_and_bounds():
    docs, tok = corpus(), WordTokenizer()
    a, meta = contiguous_calibration(tok, docs, n=16, seqlen=32, seed=3)
    b, _ = contiguous_calibration(WordTokenizer(), docs, n=16, seqlen=32, seed=3)
    c, _ = contiguous_calibration(WordTokenizer(), docs, n=16, seqlen=32, seed=4)
    assert a.shape == (16, 32) and a.dtype == torch.long
    assert torch.equal(a, b) and not torch.equal(a, c)
    ids = tok("\n\n".join(docs))["input_ids"]
    assert meta["n_tokens"] == len(ids)
    expect = random.Random(3)
    for row, start in zip(a, meta["starts"]):
        assert start == expect.randint(0, len(ids) - 32 - 1)  # randint(0, T-L-1), as random.seed(s) would
        assert row.tolist() == ids[start:start + 32]
    state = random.getstate()
    contiguous_calibration(tok, docs, n=4, seqlen=32, seed=0)
    assert random.getstate() == state  # the global RNG is untouched


def test_joined_test_windows_are_exact_and_non_overlapping():
    docs, tok = corpus(), WordTokenizer()
    w, meta = joined_test(tok, docs, seqlen=50)
    T = meta["n_tokens"]
    assert w.shape == (T // 50, 50)
    assert w.flatten().tolist() == tok("\n\n".join(docs))["input_ids"][: (T // 50) * 50]
    capped, _ = joined_test(tok, docs, seqlen=50, max_windows=3)  # spread over the stream, ends included
    assert len(w) > 3 and torch.equal(capped[0], w[0]) and torch.equal(capped[-1], w[-1])
    assert torch.equal(capped, w[torch.linspace(0, len(w) - 1, 3).round().long()])
    spaced, m2 = joined_test(tok, docs, seqlen=50, joiner=" ")
    assert m2["joiner"] == " "
    with pytest.raises(ReproError, match="fewer than one window"):
        cut_windows(list(range(10)), 11)


@pytest.mark.parametrize("accept, min_len", [("gt", 33), ("ge", 32)])
def test_document_windows_acceptance_rule(accept, min_len):
    # Documents of exactly 31 words give 32 tokens with BOS: accepted only by the ">= L" rule.
    docs = [" ".join(["x"] * k) for k in (5, 31, 31, 40, 10)]
    tok = WordTokenizer()
    w, st = document_windows(tok, docs, n=12, seqlen=32, seed=0, accept=accept)
    assert w.shape == (12, 32) and st["min_len"] == min_len
    lengths = [len(tok(docs[i])["input_ids"]) for i, _ in st["picked"]]
    assert min(lengths) >= min_len
    assert (32 in lengths) == (accept == "ge")
    for (idx, start), row in zip(st["picked"], w):
        assert row.tolist() == tok(docs[idx])["input_ids"][start:start + 32]


def test_lab_c4_draws_match_the_reference_loop():
    """The lab code: random.seed(s); loop { i = randint(0, n-1); accept len >= L+1 }; randint(0, len-L-1)."""
    docs, tok, L = corpus(), WordTokenizer(), 40
    w, _ = lab_c4_calibration(tok, docs, n=10, seqlen=L, seed=7)
    rng, ref = random.Random(7), []
    for _ in range(10):
        while True:
            ids = tok(docs[rng.randint(0, len(docs) - 1)])["input_ids"]
            if len(ids) >= L + 1:
                break
        j = rng.randint(0, len(ids) - L - 1)
        ref.append(ids[j:j + L])
    assert w.tolist() == ref


def test_gptq_c4_windows_and_too_short_corpus():
    docs, tok = corpus(), WordTokenizer()
    w, st = gptq_c4_calibration(tok, docs, n=8, seqlen=30)
    again, _ = gptq_c4_calibration(WordTokenizer(), docs, n=8, seqlen=30)
    assert w.shape == (8, 30) and torch.equal(w, again) and st["accept"] == "gt"
    with pytest.raises(ReproError, match="too few documents"):
        document_windows(tok, ["a b c"], n=1, seqlen=30, seed=0, max_draws=50)


def test_c4_new_truncates_to_256_windows():
    docs, tok = corpus(n_docs=1200, lo=1, hi=5), WordTokenizer()
    w, meta = c4_new_test(tok, docs, seqlen=4)
    assert w.shape == (256, 4)
    assert w.flatten().tolist() == tok(" ".join(docs[:1100]))["input_ids"][:1024]
    assert c4_new_test(tok, docs, seqlen=4, max_windows=5)[0].shape == (5, 4)


def test_lab_c4_test_defaults_and_cap():
    docs, tok = corpus(), WordTokenizer()
    full, st = lab_c4_test(tok, docs, seqlen=20)
    assert full.shape == (256, 20) and st["accept"] == "ge"
    capped = lab_c4_test(tok, docs, seqlen=20, max_windows=8)[0]
    assert torch.equal(capped, full[torch.linspace(0, 255, 8).round().long()])


def test_c4_calibration_test_overlap_on_a_synthetic_corpus(tmp_path):
    """§1.5: with seed 0 and the same acceptance rule, lab calibration windows ARE the first test windows."""
    path = tmp_path / "c4-like.jsonl"
    path.write_text("".join(json.dumps({"text": d}) + "\n" for d in corpus(n_docs=300)))
    reg = {"c4-like": _check_entry("c4-like", {"kind": "local-file", "files": {"validation": str(path)}}, "t")}
    fetch_raw("c4-like", reg, tmp_path / "raw")
    tok = WordTokenizer()
    common = {"dataset": "c4-like", "split": "validation", "seqlen": 24}
    calib, cmeta = make_tokens({**common, "role": "calibration", "protocol": "lab-c4", "n": 16, "seed": 0},
                               tok, tmp_path / "raw")
    test_alps, _ = make_tokens({**common, "test_set": "c4", "accept": "gt"}, tok, tmp_path / "raw")
    test_qe, _ = make_tokens({**common, "test_set": "c4"}, tok, tmp_path / "raw")  # QuantEase rule: >= L
    assert test_alps.shape == (256, 24) and cmeta["n_windows"] == 16
    report = overlap_report(calib, test_alps, "c4 calibration", "c4 test")
    assert report["identical"] == 16 and report["same_position"] == 16
    assert torch.equal(calib, test_alps[:16]) and "contaminated" in report["finding"]
    assert window_overlap(calib, test_qe) >= 12  # rules differ only on documents of exactly L tokens
    other, _ = make_tokens({**common, "role": "calibration", "protocol": "lab-c4", "n": 16, "seed": 1},
                           tok, tmp_path / "raw")
    assert window_overlap(other, test_alps) < 16
    # Calibrating on another source (GPTQ's clean variant) removes the overlap.
    clean, _ = gptq_c4_calibration(tok, corpus(n_docs=300, seed=99), n=16, seqlen=24)
    assert overlap_report(clean, test_alps)["identical"] == 0


def test_make_tokens_meta_and_files(tmp_path):
    path = tmp_path / "wiki.txt"
    path.write_text("\n".join(corpus(n_docs=100)) + "\n")
    reg = {"toy": _check_entry("toy", {"kind": "local-file", "file": str(path), "holdout_every": 5}, "t")}
    manifest = fetch_raw("toy", reg, tmp_path / "raw")
    tok = WordTokenizer()
    spec = {"dataset": "toy", "role": "calibration", "split": "train", "protocol": "contiguous",
            "n": 4, "seqlen": 16, "seed": 2}
    t, meta = make_tokens(spec, tok, tmp_path / "raw")
    assert t.shape == (4, 16)
    assert meta["raw_sha256"] == {"train": manifest["splits"]["train"]["sha256"]}
    assert meta["tokenizer"] == "WordTokenizer" and meta["protocol"] == "contiguous" and meta["n_windows"] == 4
    assert meta["n_tokens"] > 0 and meta["dataset_key"] == "local-toy"
    test, tmeta = make_tokens({"dataset": "toy", "role": "test", "split": "test", "protocol": "windows",
                               "seqlen": 16, "max_windows": 3}, tok, tmp_path / "raw")
    assert test.shape == (3, 16) and tmeta["role"] == "test"
    out = tmp_path / "tokens" / spec_file_name(spec)
    save_tokens(out, t, meta)
    back, bmeta = load_tokens(out)
    assert torch.equal(back, t) and bmeta == meta
    gspec = {**spec, "protocol": "gptq-c4", "seed": 42}
    g42, gmeta = make_tokens(gspec, tok, tmp_path / "raw")
    g0, _ = make_tokens({**gspec, "seed": 0}, tok, tmp_path / "raw")
    g42free, _ = make_tokens({**gspec, "fix_seed_zero": False}, tok, tmp_path / "raw")
    assert gmeta["seed"] == 42 and gmeta["seed_used"] == 0 and torch.equal(g42, g0)  # HASSLE-free's quirk
    assert not torch.equal(g42free, g0)
    with pytest.raises(ReproError, match="unknown key"):
        make_tokens({**spec, "sead": 1}, tok, tmp_path / "raw")
    with pytest.raises(ReproError, match="holds 'toy'"):
        make_tokens({**spec, "dataset": "other"}, tok, tmp_path / "raw")
    with pytest.raises(ReproError, match="not a calibration protocol"):
        make_tokens({**spec, "protocol": "windows"}, tok, tmp_path / "raw")


def test_gptq_c4_seed_is_fixed_at_zero_unless_asked():
    spec = {"role": "calibration", "split": "train", "protocol": "gptq-c4", "n": 2, "seqlen": 8}
    assert spec_file_name({**spec, "seed": 42}) == "train.gptq-c4_2x8_s42.pt"


def test_file_names():
    assert token_file_name("train", 128, 2048, 0) == "train_128x2048_s0.pt"
    assert token_file_name("validation", 128, 2048, 3, "lab-c4") == "validation.lab-c4_128x2048_s3.pt"
    assert spec_file_name({"test_set": "wikitext2", "seqlen": 2048}) == "wikitext2_allx2048_s0.pt"
    assert spec_file_name({"test_set": "c4-new", "seqlen": 256, "max_windows": 8}) == "c4-new_8x256_s0.pt"
    assert spec_file_name({"test_set": "c4", "seqlen": 256}) != spec_file_name({"test_set": "c4-new", "seqlen": 256})
