"""Metric names, one spelling everywhere (DESIGN.md "Metrics")."""
from __future__ import annotations

import math


def ppl_metric(testset: str, seqlen: int) -> str:
    """``<set>_ppl@<seqlen>``, e.g. ``wikitext2_ppl@2048``, ``enwiki-gensim_ppl@256``."""
    return f"{testset}_ppl@{int(seqlen)}"


def zeroshot_metric(task: str, metric: str) -> str:
    """``<task>/<metric>``, e.g. ``piqa/acc_norm``."""
    return f"{task}/{metric}"


SPEED_FIELDS = ("speedup", "flop_ratio", "params")  # what one speed job measures (reprise.llm.eval.speed)


def speed_stem(batch: int, seqlen: int) -> str:
    """``speed@b<batch>x<seqlen>``: the stem of the speed job at that input shape."""
    return f"speed@b{int(batch)}x{int(seqlen)}"


def speed_metric(field: str, batch: int, seqlen: int) -> str:
    """``speed@b<batch>x<seqlen>/<field>``, e.g. ``speed@b1x256/speedup`` (dense latency / the model's)."""
    if field not in SPEED_FIELDS:
        raise ValueError(f"speed metric field {field!r}; use one of {', '.join(SPEED_FIELDS)}")
    return f"{speed_stem(batch, seqlen)}/{field}"


def is_speed_metric(metric: str) -> bool:
    return metric.startswith("speed@")


def rel_err(objective: float, ref_energy: float) -> float:
    """‖XΔW‖_F / ‖XW‖_F = sqrt(objective / tr(W G Wᵀ))."""
    return math.sqrt(objective / ref_energy) if ref_energy > 0 else 0.0


def eval_stem(metric: str) -> str:
    """File stem (under a run's ``eval/`` and ``benchmark/``) of the job that measures ``metric``:
    one perplexity job per metric, one zero-shot job per task, one speed job per input shape."""
    if "_ppl@" in metric:
        return metric
    if is_speed_metric(metric):
        return metric.split("/")[0]
    return f"zeroshot-{metric.split('/')[0]}"
