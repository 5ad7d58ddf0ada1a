"""Per-block resume state for a long solve, kept outside the job's declared outputs.

After each finished block, the tensors that block's solve changed (a layer-wise block's whole
state dict, a structured block's consumer weights) and its extras (masks, quantization metadata,
kept units) go into one ``block_NNNN.safetensors`` by one atomic rename, and only then is the
block listed in ``state.json`` (rewritten atomically, with the log rows so far). A block file that
``state.json`` does not list is never trusted: a kill between the two writes redoes that block.
A restarted solve whose fingerprint (model, data, method config, driver config, code) matches
reloads those blocks and recomputes the propagated activations by a plain forward pass, which is
deterministic, so the resumed result equals an uninterrupted run. Both drivers (layer-wise and
structured) use this one class through ``reprise.llm.driver.sequential.drive_blocks``.
"""
from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any, Mapping

import torch
from safetensors.torch import load_file, save_file

from reprise.io import ReproError, atomic_path, read_json, write_json

log = logging.getLogger("reprise.driver")

_WEIGHTS, _EXTRAS = "weights.", "extras."


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

    def _block_file(self, index: int) -> Path:
        assert self.dir is not None
        return self.dir / f"block_{index:04d}.safetensors"

    def block_tensors(self, index: int) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """(the block's saved tensors by block-local name, extras) of a finished block."""
        path = self._block_file(index)
        if not path.is_file():
            raise ReproError(f"resume state {self.dir} lists block {index} as finished but {path.name} is missing; "
                             f"delete {self.dir} to start the solve afresh")
        stored = load_file(str(path))
        tensors = {k[len(_WEIGHTS):]: v for k, v in stored.items() if k.startswith(_WEIGHTS)}
        extras = {k[len(_EXTRAS):]: v for k, v in stored.items() if k.startswith(_EXTRAS)}
        return tensors, extras

    def save_block(self, index: int, tensors: Mapping[str, torch.Tensor], extras: Mapping[str, torch.Tensor],
                   rows: list[dict[str, Any]]) -> None:
        """Record block ``index`` as finished: ``tensors`` (block-local names) and ``extras`` in one
        file, written atomically, then ``state.json``."""
        finished, all_rows = [*self.finished, index], [*self.rows, *rows]
        if self.dir is not None:
            self.dir.mkdir(parents=True, exist_ok=True)
            stored = {f"{_WEIGHTS}{k}": v.detach().to("cpu").contiguous() for k, v in tensors.items()}
            stored.update({f"{_EXTRAS}{k}": v.detach().to("cpu").contiguous() for k, v in extras.items()})
            with atomic_path(self._block_file(index), ".safetensors") as tmp:
                save_file(stored, str(tmp))
            write_json(self.dir / "state.json", {"fingerprint": self.fingerprint, "finished": finished,
                                                 "rows": all_rows})
        self.finished, self.rows = finished, all_rows  # only once the block is on disk

    def clear(self) -> None:
        if self.dir is not None and self.dir.exists():
            shutil.rmtree(self.dir)
