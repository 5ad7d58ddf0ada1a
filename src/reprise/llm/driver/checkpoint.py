"""Per-block resume state for a long solve, kept outside the job's declared outputs.

After each finished block the compressed block's tensors and the log rows so far are written
atomically, then ``state.json``. A restarted solve whose fingerprint (model, data, method config,
driver config, code) matches reloads those blocks and recomputes the propagated activations by a
plain forward pass, which is deterministic, so the resumed result equals an uninterrupted run.
"""
from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from reprise.io import atomic_path, read_json, write_json

log = logging.getLogger("reprise.driver")


class ResumeState:
    def __init__(self, directory: str | Path | None, fingerprint: str):
        self.dir = Path(directory) if directory else None
        self.fingerprint = fingerprint
        self.finished: list[int] = []
        self.rows: list[dict[str, Any]] = []
        if self.dir is None:
            return
        state_file = self.dir / "state.json"
        if state_file.is_file():
            state = read_json(state_file)
            if state.get("fingerprint") == fingerprint:
                self.finished = list(state["finished"])
                self.rows = list(state["rows"])
                log.warning("resuming from %s: blocks %s already compressed", self.dir, self.finished)
            else:
                log.warning(
                    "RESUME STATE IGNORED: %s was written for fingerprint %s, this run is %s "
                    "(model, data, config or code changed); starting fresh",
                    self.dir, state.get("fingerprint"), fingerprint,
                )
                shutil.rmtree(self.dir)

    def block_tensors(self, index: int) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """(block state dict, extras such as masks and quantization metadata) of a finished block."""
        assert self.dir is not None
        state = load_file(self.dir / f"block_{index:04d}.safetensors")
        extras_file = self.dir / f"extras_{index:04d}.safetensors"
        extras = load_file(extras_file) if extras_file.is_file() else {}
        return state, extras

    def save_block(self, index: int, block: torch.nn.Module, extras: dict[str, torch.Tensor],
                   rows: list[dict[str, Any]]) -> None:
        self.finished.append(index)
        self.rows.extend(rows)
        if self.dir is None:
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.detach().to("cpu").contiguous() for k, v in block.state_dict().items()}
        with atomic_path(self.dir / f"block_{index:04d}.safetensors", ".safetensors") as tmp:
            save_file(tensors, str(tmp))
        if extras:
            with atomic_path(self.dir / f"extras_{index:04d}.safetensors", ".safetensors") as tmp:
                save_file({k: v.contiguous() for k, v in extras.items()}, str(tmp))
        write_json(self.dir / "state.json", {"fingerprint": self.fingerprint, "finished": self.finished, "rows": self.rows})

    def clear(self) -> None:
        if self.dir is not None and self.dir.exists():
            shutil.rmtree(self.dir)
