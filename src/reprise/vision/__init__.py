"""OSSCAR's vision part (spec §4.1, §4.8): one-shot structured channel pruning of conv nets.

``models`` (a digits ResNet, ResNet-50, MobileNetV2), ``data`` (digits splits, ImageNet folders),
``train`` (the digits CNN in seconds on CPU), ``prune`` (units, Grams, solves, shrinking, FLOPs),
``study`` (``run_channel_study``: rows of accuracy / parameters / FLOPs / latency per method and
sparsity). Depends on ``reprise.llm.methods`` and ``reprise.llm.gram`` only (never on
``reprise.papers``), and not on torchvision (see ``reprise.vision.models``).
"""
from reprise.vision.models import (IMAGENET_MODELS, MOBILENET_NOTE, MODELS, PRETRAINED, RANDOM_LABEL, build_model,
                                   weights_cache_path)
from reprise.vision.prune import (ARCH_TABLES, PruneResult, count_flops, count_params, expected_params,
                                  mask_channels, measure_latency, prune_channels, shrink_channels, units_of)
from reprise.vision.study import COLUMNS, LAYER_COLUMNS, format_table, run_channel_study, write_csv

__all__ = ["ARCH_TABLES", "COLUMNS", "IMAGENET_MODELS", "LAYER_COLUMNS", "MOBILENET_NOTE", "MODELS", "PRETRAINED",
           "PruneResult", "RANDOM_LABEL", "build_model", "count_flops", "count_params", "expected_params",
           "format_table", "mask_channels", "measure_latency", "prune_channels", "run_channel_study",
           "shrink_channels", "units_of", "weights_cache_path", "write_csv"]
