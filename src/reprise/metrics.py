"""Metric names, one spelling everywhere (DESIGN.md "Metrics")."""
from __future__ import annotations

import math


def ppl_metric(testset: str, seqlen: int) -> str:
    """``<set>_ppl@<seqlen>``, e.g. ``wikitext2_ppl@2048``, ``enwiki-gensim_ppl@256``."""
    return f"{testset}_ppl@{int(seqlen)}"


def zeroshot_metric(task: str, metric: str) -> str:
    """``<task>/<metric>``, e.g. ``piqa/acc_norm``."""
    return f"{task}/{metric}"


def rel_err(objective: float, ref_energy: float) -> float:
    """‖XΔW‖_F / ‖XW‖_F = sqrt(objective / tr(W G Wᵀ))."""
    return math.sqrt(objective / ref_energy) if ref_energy > 0 else 0.0


def eval_stem(metric: str) -> str:
    """File stem (under a run's ``eval/`` and ``benchmark/``) of the job that measures ``metric``:
    one perplexity job per metric, one zero-shot job per task."""
    if "_ppl@" in metric:
        return metric
    return f"zeroshot-{metric.split('/')[0]}"
