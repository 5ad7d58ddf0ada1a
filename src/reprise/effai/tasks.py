"""A synthetic "user history -> click" token task: recommendation serialised as text.

It stands in for the proprietary LinkedIn ranking data of "Efficient AI in Practice" (spec
other-papers.md §8.5 smoke): a member's history of items is written as tokens, followed by a
candidate item and a question token; the answer is a ``click`` / ``no-click`` token. Nothing here
is LinkedIn data.

The world (fixed by ``ClickTask.world_seed``): ``n_items`` items, item ``i`` in category
``i % n_categories``, each with a popularity bias ``b_i ~ N(0, popularity²)``. A user draws a
favourite category ``f``; each of the ``history`` items comes from ``f`` with probability
``p_favourite`` and from a uniformly drawn category otherwise. A candidate item is drawn uniformly,
its affinity ``a`` is the fraction of history items in its category, and the click is
``Bernoulli(sigmoid(slope · (a - 1/n_categories) + b_candidate))``. The true click probability is
returned too, so the Bayes AUC of a test set is known (``oracle`` rows).

Two serialisations (token ids are laid out in ``ClickTask.vocab``):

- ``"direct"`` (the predictive task): ``BOS c(cand) cand SEP c(h_1) … c(h_H) ASK label``, one answer
  token; a history item is written as its category token (the feature text a serialised profile
  carries), the candidate as its category token and its item token;
- ``"reason"`` (the small generative variant): ``BOS c(cand) cand SEP c(h_1) … c(h_H) WHY reason label``: the
  answer is two tokens, first the majority category of the history (ties: lowest index), then the
  label. A model that generates its own reason conditions the label on it, which is what on-policy
  distillation trains for.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from reprise.io import ReproError

BOS, SEP, ASK, WHY, CLICK, NOCLICK = range(6)
FORMATS = ("direct", "reason")


@dataclass(frozen=True)
class ClickData:
    """Users and candidates drawn from the task's world (numpy arrays, one row per example)."""

    history: np.ndarray  # [n, H] item ids
    candidate: np.ndarray  # [n]
    reason: np.ndarray  # [n] majority category of the history
    click_prob: np.ndarray  # [n] true click probability
    label: np.ndarray  # [n] 0/1

    def __len__(self) -> int:
        return len(self.label)


@dataclass(frozen=True)
class ClickTask:
    n_items: int = 48
    n_categories: int = 4
    history: int = 8
    p_favourite: float = 0.6
    slope: float = 10.0
    popularity: float = 0.5
    world_seed: int = 0

    def __post_init__(self):
        if self.n_categories < 2 or self.n_items < self.n_categories or self.history < 1:
            raise ReproError(f"ClickTask: need n_categories >= 2, n_items >= n_categories and history >= 1, got "
                             f"{self.n_categories}, {self.n_items}, {self.history}")
        if not 0.0 <= self.p_favourite <= 1.0:
            raise ReproError(f"ClickTask: p_favourite={self.p_favourite} must be in [0, 1]")

    # token layout: 6 special tokens, then the category tokens, then the items
    @property
    def first_category(self) -> int:
        return 6

    @property
    def first_item(self) -> int:
        return 6 + self.n_categories

    @property
    def vocab(self) -> int:
        return self.first_item + self.n_items

    def seq_len(self, fmt: str) -> int:
        return self.history + (6 if fmt == "direct" else 7)

    def _world(self) -> np.ndarray:
        return np.random.default_rng(self.world_seed).normal(0.0, self.popularity, self.n_items)

    def sample(self, n: int, rng: np.random.Generator) -> ClickData:
        """``n`` users with one candidate each, drawn with ``rng`` (the world stays fixed)."""
        C, H = self.n_categories, self.history
        bias = self._world()
        fav = rng.integers(0, C, n)
        from_fav = rng.random((n, H)) < self.p_favourite
        cats = np.where(from_fav, fav[:, None], rng.integers(0, C, (n, H)))
        per_cat = self.n_items // C + (np.arange(C) < self.n_items % C)  # items in each category
        within = np.floor(rng.random((n, H)) * per_cat[cats]).astype(np.int64)
        history = cats + C * within  # item i has category i % C
        candidate = rng.integers(0, self.n_items, n)
        affinity = (history % C == (candidate % C)[:, None]).mean(axis=1)
        logit = self.slope * (affinity - 1.0 / C) + bias[candidate]
        prob = 1.0 / (1.0 + np.exp(-logit))
        label = (rng.random(n) < prob).astype(np.int64)
        counts = np.stack([(history % C == c).sum(axis=1) for c in range(C)], axis=1)
        reason = counts.argmax(axis=1)  # argmax takes the lowest index on ties
        return ClickData(history=history, candidate=candidate, reason=reason, click_prob=prob, label=label)

    def encode(self, data: ClickData, fmt: str = "direct") -> tuple[torch.Tensor, torch.Tensor]:
        """Token ids ``[n, L]`` and the answer mask ``[n, L]`` (True at the answer tokens)."""
        if fmt not in FORMATS:
            raise ReproError(f"ClickTask.encode: fmt={fmt!r}; use one of {FORMATS}")
        n, H = len(data), self.history
        label_tok = np.where(data.label == 1, CLICK, NOCLICK)
        C = self.n_categories
        cols = [np.full(n, BOS), data.candidate % C + self.first_category, data.candidate + self.first_item,
                np.full(n, SEP), *(data.history.T % C + self.first_category)]
        if fmt == "direct":
            cols += [np.full(n, ASK), label_tok]
        else:
            cols += [np.full(n, WHY), data.reason + self.first_category, label_tok]
        ids = torch.as_tensor(np.stack(cols, axis=1), dtype=torch.long)
        mask = torch.zeros_like(ids, dtype=torch.bool)
        mask[:, self.prompt_len():] = True  # the answer: after BOS, 2 candidate tokens, SEP, H history tokens, ASK/WHY
        return ids, mask

    def prompt_len(self) -> int:
        """Tokens before the first answer token (both formats)."""
        return self.history + 5


def tiny_llama(vocab: int, hidden: int, intermediate: int, layers: int = 2, heads: int = 4, seed: int = 0,
               max_positions: int = 64):
    """A real transformers ``LlamaForCausalLM`` from a config with its weights drawn under ``seed``,
    so the repository's LLM plumbing (driver, OSSCAR, shrinking, quantization) applies unchanged.
    Untied head (the shrink/quantize paths then treat embedding and head as separate tensors)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    if hidden % heads:
        raise ReproError(f"tiny_llama: hidden={hidden} must be a multiple of heads={heads}")
    cfg = LlamaConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=intermediate, num_hidden_layers=layers,
                      num_attention_heads=heads, num_key_value_heads=heads, max_position_embeddings=max_positions,
                      tie_word_embeddings=False, bos_token_id=BOS, eos_token_id=None, pad_token_id=None)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(cfg)
    return model.eval()
