"""``enwiki-cloze``: an offline multiple-choice cloze task for smoke-scale zero-shot evaluation.

From held-out text (the ``test`` part of ``enwiki-gensim``, never used for calibration) take
sentences ending in a lowercase content word of at least four letters, blank that word, and
offer it with three distractors drawn from words of similar corpus frequency. The model scores
``context + " " + choice`` for each choice (lm-eval ``multiple_choice``; acc and acc_norm).
Deterministic for a given seed. The lm-eval task layout (``dataset_path: json`` with a local
``data_files.test``) is the one verified offline in specs/offline-assets.md §5.
"""
from __future__ import annotations

import json
import random
import re
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

from reprise.io import ReproError, atomic_path

TASK_NAME = "enwiki-cloze"
_WORD = re.compile(r"[A-Za-z]+")
_TARGET = re.compile(r"^[a-z]{4,}$")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")
# Function words that would make a poor blank (frequent, syntactic rather than topical).
STOPWORDS = frozenset("""
about above after again against also although among another anything around because been before
being below between both could does doing down during each either else ever every from further
have having here hers herself himself however into itself just least less many more most much
must neither never none often once only other others ours ourselves over same several should
since some such than that their theirs them themselves then there these they this those though
through thus together too toward towards under until upon very were what whatever when where
whether which while whom whose will with within without would your yours yourself yourselves
""".split())


def _sentences(doc: str):
    for line in doc.split("\n"):
        line = line.strip()
        if not line or line.startswith("="):
            continue
        yield from _SENTENCE_END.split(line)


def _vocabulary(docs: Sequence[str]) -> Counter:
    counts: Counter = Counter()
    for doc in docs:
        counts.update(w for w in _WORD.findall(doc) if _TARGET.match(w) and w not in STOPWORDS)
    return counts


def cloze_items(docs: Sequence[str], n_items: int = 1000, seed: int = 0, min_items: int = 500,
                n_choices: int = 4, band: int = 25, min_words: int = 8, max_words: int = 60,
                exclude: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Items ``{"context", "choices", "answer", "target"}``; raises if fewer than ``min_items`` exist.

    Distractors come from the ``2·band`` words nearest the target in the corpus frequency ranking
    (content words seen at least twice), so frequency alone does not give the answer away.
    Sentences that also occur in ``exclude`` (the calibration part: Wikipedia articles quote
    each other) are skipped.
    """
    excluded = {sent for doc in exclude for sent in _sentences(doc)}
    rng = random.Random(seed)
    counts = _vocabulary(docs)
    # Ties in frequency are broken by a seeded shuffle, not alphabetically (which would hand
    # out distractors sharing the target's first letters).
    ranked = sorted(w for w, c in counts.items() if c >= 2)
    rng.shuffle(ranked)
    ranked.sort(key=lambda w: -counts[w])
    rank = {w: i for i, w in enumerate(ranked)}
    candidates = []
    for doc in docs:
        for sent in _sentences(doc):
            if not sent.endswith(".") or sent.endswith("..") or sent in excluded:
                continue
            words = sent[:-1].split(" ")
            if not min_words <= len(words) <= max_words or words[-1] not in rank:
                continue
            context = " ".join(words[:-1]).rstrip()
            if context:
                candidates.append((context, words[-1]))
    # One item per distinct context, in corpus order, before any sampling.
    seen, unique = set(), []
    for context, target in candidates:
        if context not in seen:
            seen.add(context)
            unique.append((context, target))
    if len(unique) < min_items:
        raise ReproError(f"{TASK_NAME}: only {len(unique)} usable sentences in the held-out text, "
                         f"fewer than the {min_items} required")
    picked = rng.sample(unique, min(n_items, len(unique)))
    items = []
    for context, target in picked:
        r = rank[target]
        pool = [w for w in ranked[max(0, r - band): r + band + 1] if w != target]
        choices = rng.sample(pool, n_choices - 1)
        answer = rng.randrange(n_choices)
        choices.insert(answer, target)
        items.append({"context": context, "choices": choices, "answer": answer, "target": target})
    return items


def task_yaml(jsonl_path: str | Path, task: str = TASK_NAME, version: float = 1.0) -> dict[str, Any]:
    """The lm-eval task definition for a cloze JSONL file (absolute path; no hub access)."""
    return {
        "task": task,
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(Path(jsonl_path).resolve())}},
        "test_split": "test",
        "output_type": "multiple_choice",
        "doc_to_text": "{{context}}",
        "doc_to_choice": "{{choices}}",
        "doc_to_target": "answer",
        "target_delimiter": " ",
        "metric_list": [{"metric": m, "aggregation": "mean", "higher_is_better": True} for m in ("acc", "acc_norm")],
        "metadata": {"version": version},
    }


def write_cloze_task(docs: Sequence[str], out_dir: str | Path, task: str = TASK_NAME, n_items: int = 1000,
                     seed: int = 0, min_items: int = 500, exclude: Sequence[str] = ()) -> dict[str, Any]:
    """Write ``<task>.jsonl`` and ``<task>.yaml`` into ``out_dir`` (atomically); return a summary."""
    import yaml

    items = cloze_items(docs, n_items=n_items, seed=seed, min_items=min_items, exclude=exclude)
    out_dir = Path(out_dir)
    jsonl, spec = out_dir / f"{task}.jsonl", out_dir / f"{task}.yaml"
    with atomic_path(jsonl, suffix=".jsonl") as tmp:
        tmp.write_text("".join(json.dumps(it, ensure_ascii=False) + "\n" for it in items), encoding="utf-8")
    with atomic_path(spec, suffix=".yaml") as tmp:
        tmp.write_text(yaml.safe_dump(task_yaml(jsonl, task), sort_keys=False))
    return {"task": task, "n_items": len(items), "seed": seed, "jsonl": str(jsonl), "yaml": str(spec)}


def build_enwiki_cloze(raw_dir: str | Path, out_dir: str | Path, n_items: int = 1000, seed: int = 0) -> dict[str, Any]:
    """The task from a fetched ``enwiki-gensim`` raw directory: ``test`` part, minus sentences in ``train``."""
    from .sources import read_split

    docs, digest = read_split(raw_dir, "test")
    train, train_digest = read_split(raw_dir, "train")
    summary = write_cloze_task(docs, out_dir, n_items=n_items, seed=seed, exclude=train)
    return {**summary, "raw_sha256": {"test": digest, "train": train_digest}}
