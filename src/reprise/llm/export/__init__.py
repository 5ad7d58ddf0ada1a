"""Compressed checkpoints that ``transformers`` reloads with ``from_pretrained``."""
from reprise.llm.export.checkpoint import load_compressed, load_masks, save_compressed
from reprise.llm.export.lowrank import load_sparse_lowrank, lowrank_ranks, write_lora_adapter
from reprise.llm.export.shrink import (
    ShrinkPlan, mask_model, normalize_keep, parameter_count, plan_shrink, save_shrunk, shrink_model, structure_units,
    unit_layout,
)

__all__ = ["load_compressed", "load_masks", "save_compressed"]
__all__ += ["load_sparse_lowrank", "lowrank_ranks", "write_lora_adapter"]
__all__ += ["ShrinkPlan", "mask_model", "normalize_keep", "parameter_count", "plan_shrink", "save_shrunk",
            "shrink_model", "structure_units", "unit_layout"]
