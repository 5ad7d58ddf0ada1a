"""Shared fixtures: tiny random-weight models of each family (fixed seed), built from configs."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]

TINY = {
    "opt": {"hidden_size": 64, "ffn_dim": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
            "max_position_embeddings": 256, "word_embed_proj_dim": 64, "vocab_size": 512},
    "llama": {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
              "num_key_value_heads": 2, "max_position_embeddings": 256, "vocab_size": 512},
    "bloom": {"hidden_size": 64, "n_layer": 2, "n_head": 4, "vocab_size": 512},
    "falcon": {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "new_decoder_architecture": False,
               "multi_query": True, "alibi": False, "parallel_attn": True, "bias": False, "vocab_size": 512},
}
FAMILIES = tuple(TINY)


def tiny_model(family: str, seed: int = 0, **overrides):
    from reprise.llm.models import ModelSpec, build_tiny

    spec = ModelSpec(key=f"tiny-{family}", source="tiny", family=family, seed=seed, config={**TINY[family], **overrides})
    model = build_tiny(spec)
    model.config.use_cache = False
    return model


def token_batch(n: int, length: int, vocab: int = 512, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, vocab, (n, length), generator=torch.Generator().manual_seed(seed))


@pytest.fixture
def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")
