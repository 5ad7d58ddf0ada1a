"""The per-block resume state both drivers share: a block is on disk whole or not at all, and a
state written for another fingerprint is discarded."""
from __future__ import annotations

import json

import pytest
import torch

from reprise.llm.driver import checkpoint
from reprise.llm.driver.checkpoint import ResumeState


def _block(i: int) -> tuple[dict, dict, list]:
    g = torch.Generator().manual_seed(i)
    tensors = {"mlp.down_proj.weight": torch.randn(4, 6, generator=g), "norm.weight": torch.ones(4)}
    extras = {f"{i}.neurons": torch.tensor([0, 2, 5]), f"{i}.mlp.down_proj.mask": torch.tensor([7], dtype=torch.uint8)}
    return tensors, extras, [{"block": i, "layer": "mlp.down_proj", "objective": 0.1 * (i + 1)}]


def test_finished_blocks_round_trip(tmp_path):
    state = ResumeState(tmp_path / "r", "fp")
    for i in range(2):
        state.save_block(i, *_block(i))
    again = ResumeState(tmp_path / "r", "fp")
    assert again.finished == [0, 1] and again.rows == [r for i in range(2) for r in _block(i)[2]]
    for i in range(2):
        tensors, extras = again.block_tensors(i)
        want_t, want_e, _ = _block(i)
        assert tensors.keys() == want_t.keys() and all(torch.equal(tensors[k], want_t[k]) for k in want_t)
        assert extras.keys() == want_e.keys() and all(torch.equal(extras[k], want_e[k]) for k in want_e)


def test_a_block_killed_while_written_is_not_finished(tmp_path, monkeypatch):
    state = ResumeState(tmp_path / "r", "fp")
    state.save_block(0, *_block(0))

    def dies_half_way(tensors, path):
        with open(path, "wb") as f:
            f.write(b"\0" * 100)  # a partial file
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint, "save_file", dies_half_way)
    with pytest.raises(KeyboardInterrupt):
        state.save_block(1, *_block(1))
    assert state.finished == [0]  # not marked finished in memory either
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == ["block_0000.safetensors", "state.json"]
    monkeypatch.undo()
    again = ResumeState(tmp_path / "r", "fp")
    assert again.finished == [0] and len(again.rows) == 1


def test_other_fingerprint_starts_fresh(tmp_path, caplog):
    ResumeState(tmp_path / "r", "fp-a").save_block(0, *_block(0))
    with caplog.at_level("WARNING"):
        state = ResumeState(tmp_path / "r", "fp-b")
    assert state.finished == [] and not (tmp_path / "r").exists()
    assert "RESUME STATE IGNORED" in caplog.text


def test_listed_block_with_missing_file_fails_clearly(tmp_path):
    state = ResumeState(tmp_path / "r", "fp")
    state.save_block(0, *_block(0))
    (tmp_path / "r" / "block_0000.safetensors").unlink()
    from reprise.io import ReproError

    with pytest.raises(ReproError, match="block_0000.safetensors is missing"):
        ResumeState(tmp_path / "r", "fp").block_tensors(0)
    assert json.loads((tmp_path / "r" / "state.json").read_text())["finished"] == [0]
