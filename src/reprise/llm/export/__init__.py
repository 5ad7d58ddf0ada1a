"""Compressed checkpoints that ``transformers`` reloads with ``from_pretrained``."""
from reprise.llm.export.checkpoint import load_compressed, load_masks, save_compressed

__all__ = ["load_compressed", "load_masks", "save_compressed"]
