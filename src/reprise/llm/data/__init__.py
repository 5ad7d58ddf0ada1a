"""Datasets: the registry, raw fetching, calibration/test token windows, the offline cloze task.

Layout (DESIGN.md): ``data/raw/<dataset-key>/`` from :func:`fetch_raw`, then
``data/tokens/<tokenizer-key>/<dataset-key>/<file>`` from :func:`make_tokens` + :func:`save_tokens`,
with ``<file>`` from :func:`spec_file_name` (or :func:`token_file_name`).
"""
from .cloze import TASK_NAME as CLOZE_TASK, build_enwiki_cloze, cloze_items, task_yaml, write_cloze_task
from .protocols import (
    CALIBRATION_PROTOCOLS,
    TEST_PROTOCOLS,
    TEST_SETS,
    c4_new_test,
    contiguous_calibration,
    cut_windows,
    document_windows,
    encode,
    gptq_c4_calibration,
    joined_test,
    lab_c4_calibration,
    lab_c4_test,
    load_tokens,
    make_tokens,
    overlap_report,
    resolve_spec,
    save_tokens,
    spec_file_name,
    token_file_name,
    window_overlap,
)
from .registry import DEFAULT_REGISTRY, DatasetEntry, dataset_key, get_entry, load_registry
from .sources import fetch_raw, hub_offline, read_manifest, read_split, sha256_file
from .wiki import holdout_split, read_wiki_articles

__all__ = [
    "CALIBRATION_PROTOCOLS", "CLOZE_TASK", "DEFAULT_REGISTRY", "DatasetEntry", "TEST_PROTOCOLS", "TEST_SETS",
    "build_enwiki_cloze", "c4_new_test", "cloze_items", "contiguous_calibration", "cut_windows", "dataset_key",
    "document_windows", "encode", "fetch_raw", "get_entry", "gptq_c4_calibration", "holdout_split", "hub_offline",
    "joined_test", "lab_c4_calibration", "lab_c4_test", "load_registry", "load_tokens", "make_tokens",
    "overlap_report", "read_manifest", "read_split", "read_wiki_articles", "resolve_spec", "save_tokens",
    "sha256_file", "spec_file_name", "task_yaml", "token_file_name", "window_overlap", "write_cloze_task",
]
