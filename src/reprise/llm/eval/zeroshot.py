"""Zero-shot accuracy through lm-eval (``HFLM`` around an in-memory model; no forked harness).

HASSLE-free's protocol [CODE, specs/llm-compression.md §1.9]: ``lm_eval.simple_evaluate`` on an
``HFLM(pretrained=model, tokenizer=tokenizer, batch_size=8)`` with ``num_fewshot=0``. Hub tasks
(piqa, arc_easy, hellaswag, ...) need their datasets from the hub; local tasks (such as
``enwiki-cloze`` from ``reprise.llm.data.cloze``) are found through ``task_dirs``, which go to
``TaskManager(include_path=...)``. Metrics come back as ``<task>/<metric>``.
"""
from __future__ import annotations

import contextlib
import random
from pathlib import Path
from typing import Any, Iterator, Sequence

from reprise.io import ReproError

#: lm-eval task YAMLs shipped with the package (a paper's own prompt or metric, as ALPS's LAMBADA)
PACKAGED_TASK_DIR = Path(__file__).resolve().parent / "tasks"


def packaged_tasks() -> dict[str, Path]:
    """``{task name: its directory}`` for the YAMLs in ``PACKAGED_TASK_DIR``."""
    return {f.stem: PACKAGED_TASK_DIR for f in sorted(PACKAGED_TASK_DIR.glob("*.yaml"))}


@contextlib.contextmanager
def _keep_global_rng() -> Iterator[None]:
    """lm-eval seeds Python's, numpy's and torch's global RNGs; put them back afterwards."""
    import numpy as np
    import torch

    saved = (random.getstate(), np.random.get_state(), torch.random.get_rng_state())
    try:
        yield
    finally:
        random.setstate(saved[0])
        np.random.set_state(saved[1])
        torch.random.set_rng_state(saved[2])


def flatten_results(results: dict[str, Any]) -> dict[str, float]:
    """``{"<task>/<metric>": value}`` from lm-eval's ``results`` block (filter ``none`` dropped)."""
    metrics = {}
    for task, values in results.items():
        for key, value in values.items():
            if "," not in key or not isinstance(value, (int, float)):
                continue  # "alias", "samples", ...
            metric, filt = key.split(",", 1)
            name = f"{task}/{metric}" if filt == "none" else f"{task}/{metric}@{filt}"
            metrics[name] = float(value)
    return metrics


def evaluate_zeroshot(model: Any, tokenizer: Any, tasks: Sequence[str], task_dirs: Sequence[str | Path] = (),
                      batch_size: int = 8, limit: int | float | None = None, device: str = "cpu",
                      num_fewshot: int = 0) -> dict[str, Any]:
    """Evaluate ``model`` on lm-eval ``tasks``; return metrics, versions and settings.

    Returns ``{"metrics": {"<task>/<metric>": float, ...}, "versions": {"lm_eval": str,
    "tasks": {task: version}}, "batch_size": int, "limit": limit, "num_fewshot": int,
    "n_samples": {task: {"original": int, "effective": int}}}``. ``*_stderr`` metrics are kept.
    """
    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    if not tasks:
        raise ReproError("evaluate_zeroshot: no tasks given")
    dirs = [str(Path(d).resolve()) for d in task_dirs]
    for d in dirs:
        if not Path(d).is_dir():
            raise ReproError(f"evaluate_zeroshot: task directory {d} does not exist")
    # Indexing lm-eval's ~15k built-in task files takes seconds; skip it when the local
    # directories hold every requested task.
    manager = TaskManager(include_path=dirs, include_defaults=False) if dirs else None
    if manager is None or any(t not in manager.all_tasks for t in tasks):
        manager = TaskManager(include_path=dirs or None)
    unknown = [t for t in tasks if t not in manager.all_tasks]
    if unknown:
        raise ReproError(f"unknown lm-eval task(s) {', '.join(unknown)}; local tasks need their YAML "
                         f"directory in task_dirs (searched: {', '.join(dirs) or 'built-in tasks only'})")
    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size, device=device)
    with _keep_global_rng():
        out = lm_eval.simple_evaluate(model=lm, tasks=list(tasks), task_manager=manager, num_fewshot=num_fewshot,
                                      limit=limit, log_samples=False)
    if out is None:  # only on non-zero ranks of a distributed run
        raise ReproError("lm-eval returned no results (non-zero rank?)")
    return {
        "metrics": flatten_results(out["results"]),
        "versions": {"lm_eval": getattr(lm_eval, "__version__", "unknown"),
                     "tasks": {t: v for t, v in out.get("versions", {}).items()}},
        "batch_size": batch_size, "limit": limit, "num_fewshot": num_fewshot,
        "n_samples": out.get("n-samples", {}),
    }
