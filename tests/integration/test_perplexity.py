"""The one perplexity function against a direct full-model computation (GPTQ protocol)."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from conftest import FAMILIES, tiny_model, token_batch
from reprise.io import ReproError
from reprise.llm.eval import perplexity


@pytest.mark.parametrize("family", FAMILIES)
def test_blockwise_perplexity_equals_full_forward(family):
    model = tiny_model(family)
    windows = token_batch(5, 32)
    with torch.no_grad():
        logits = model(input_ids=windows).logits.double()
    per_window = torch.stack([F.cross_entropy(logits[i, :-1], windows[i, 1:]) for i in range(5)])
    expected = math.exp(float((per_window * 32).sum() / (5 * 32)))  # NLL weighted by L, as the GPTQ code
    got = perplexity(model, windows, 32, batch_size=2, chunk_windows=3)
    assert got["n_windows"] == 5 and got["seqlen"] == 32
    assert got["ppl"] == pytest.approx(expected, rel=1e-5)


def test_seqlen_is_checked():
    model = tiny_model("opt")
    with pytest.raises(ReproError, match=r"\[n, 16\]"):
        perplexity(model, token_batch(2, 32), 16)
    with pytest.raises(ReproError, match="no test windows"):
        perplexity(model, torch.zeros(0, 16, dtype=torch.long), 16)


def test_perplexity_of_real_model_is_sane(smollm2_dir):
    """SmolLM2 on real text is far better than uniform guessing over its vocabulary."""
    from reprise.llm.data import DEFAULT_REGISTRY, fetch_raw, load_registry, make_tokens
    from reprise.llm.models import load_local

    model, tok = load_local(smollm2_dir)
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        fetch_raw("enwiki-gensim", load_registry(DEFAULT_REGISTRY), d + "/raw")
        windows, _ = make_tokens({"test_set": "enwiki-gensim", "seqlen": 128, "max_windows": 2}, tok, d + "/raw")
    ppl = perplexity(model, windows, 128)["ppl"]
    assert 5 < ppl < 0.01 * len(tok)
