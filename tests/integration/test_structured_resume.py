"""Per-block resume of the structured-pruning driver (OSSCAR): a run killed after block k and
restarted with the same resume directory gives exactly the keep-sets, weights, log and logits of an
uninterrupted run, solving only the blocks that were not finished; a changed config or calibration
starts over; through ``pipeline.compress`` the resumed blocks are recorded and the state cleared."""
from __future__ import annotations

import json
import logging

import pytest
import torch
from safetensors.torch import load_file

from conftest import tiny_model, token_batch
from reprise.llm.driver import DriverConfig
from reprise.llm.driver import structured
from reprise.llm.driver.structured import prune_structured
from reprise.llm.export import unit_layout

N_BLOCKS, KILL_AT = 4, 2
ARCH = {"num_hidden_layers": N_BLOCKS, "num_attention_heads": 8, "num_key_value_heads": 4}
CONFIG = {"heads_sparsity": 0.5, "neurons_sparsity": 0.25}
DRIVER = DriverConfig(device="cpu", batch_size=4)
SOLVE_BLOCK = structured._solve_block  # the real per-block solve, wrapped by _watch


class Killed(RuntimeError):
    """Stands for SIGKILL/SIGTERM arriving while block ``KILL_AT`` is being solved."""


def _watch(monkeypatch, kill_at: int | None = None) -> list[int]:
    """Record the blocks the driver actually solves; raise ``Killed`` on block ``kill_at``."""
    solved: list[int] = []

    def solve_block(b, *args, **kwargs):
        if b == kill_at:
            raise Killed(f"killed while solving block {b}")
        solved.append(b)
        return SOLVE_BLOCK(b, *args, **kwargs)

    monkeypatch.setattr(structured, "_solve_block", solve_block)
    return solved


def _run(calib, config=CONFIG, resume_dir=None):
    model = tiny_model("llama", seed=3, **ARCH)
    res = prune_structured(model, calib, "osscar", config, unit_layout(model), DRIVER, resume_dir=resume_dir,
                           progress=False)
    return model, res


def _logits(model):
    with torch.no_grad():
        return model(input_ids=token_batch(2, 24, seed=9)).logits


def _assert_same_run(a, b):
    (model_a, res_a), (model_b, res_b) = a, b
    assert sorted(res_a.keep) == sorted(res_b.keep) == list(range(N_BLOCKS))
    for blk in res_a.keep:
        assert res_a.keep[blk].keys() == res_b.keep[blk].keys()
        for kind in res_a.keep[blk]:
            assert torch.equal(res_a.keep[blk][kind], res_b.keep[blk][kind]), (blk, kind)
    sa, sb = model_a.state_dict(), model_b.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    assert [(r["block"], r["kind"], r["kept"], r["objective"]) for r in res_a.rows] == \
           [(r["block"], r["kind"], r["kept"], r["objective"]) for r in res_b.rows]
    assert torch.equal(_logits(model_a), _logits(model_b))


def test_killed_structured_run_resumes_to_the_uninterrupted_result(tmp_path, monkeypatch, caplog):
    calib = token_batch(8, 32, seed=4)
    straight = _run(calib)
    assert straight[1].resumed_blocks == []

    resume = tmp_path / "resume"
    _watch(monkeypatch, kill_at=KILL_AT)
    with pytest.raises(Killed):
        _run(calib, resume_dir=resume)
    state = json.loads((resume / "state.json").read_text())
    assert state["finished"] == list(range(KILL_AT))
    assert len(state["rows"]) == 2 * KILL_AT  # heads and neurons of each finished block
    assert sorted(p.name for p in resume.iterdir()) == ["block_0000.safetensors", "block_0001.safetensors",
                                                        "state.json"]  # no temporary or partial block file

    solved = _watch(monkeypatch)
    with caplog.at_level(logging.INFO, logger="reprise.driver"):
        resumed = _run(calib, resume_dir=resume)
    assert resumed[1].resumed_blocks == list(range(KILL_AT))
    assert solved == list(range(KILL_AT, N_BLOCKS))  # finished blocks are restored, not solved again
    assert f"blocks {list(range(KILL_AT))} already compressed" in caplog.text
    for b in range(KILL_AT):
        assert f"block {b:2d} restored from the resume state" in caplog.text
    assert "RESUME STATE IGNORED" not in caplog.text
    assert resumed[1].fingerprint == straight[1].fingerprint
    _assert_same_run(straight, resumed)


@pytest.mark.parametrize("change", ["config", "calibration"])
def test_changed_config_or_calibration_does_not_reuse_the_state(tmp_path, monkeypatch, caplog, change):
    calib = token_batch(8, 32, seed=4)
    resume = tmp_path / "resume"
    _watch(monkeypatch, kill_at=KILL_AT)
    with pytest.raises(Killed):
        _run(calib, resume_dir=resume)
    assert json.loads((resume / "state.json").read_text())["finished"] == list(range(KILL_AT))

    config = {**CONFIG, "neurons_sparsity": 0.5} if change == "config" else CONFIG
    calib2 = token_batch(8, 32, seed=5) if change == "calibration" else calib
    solved = _watch(monkeypatch)
    with caplog.at_level(logging.INFO, logger="reprise.driver"):
        fresh = _run(calib2, config=config, resume_dir=resume)
    assert fresh[1].resumed_blocks == [] and solved == list(range(N_BLOCKS))
    assert "RESUME STATE IGNORED" in caplog.text and "restored from the resume state" not in caplog.text
    if change == "config":
        assert {len(k["neurons"]) for k in fresh[1].keep.values()} == {64}  # the new budget, 128 FFN units
    monkeypatch.undo()
    _assert_same_run(_run(calib2, config=config), fresh)


def test_pipeline_records_resumed_blocks_and_clears_the_state(tmp_path, monkeypatch):
    from reprise import pipeline
    from reprise.llm.data import save_tokens

    model_dir = tmp_path / "model"
    tiny_model("llama", seed=3, **ARCH).save_pretrained(model_dir)
    calib = tmp_path / "calib.pt"
    save_tokens(calib, token_batch(8, 32, seed=4), {"windows_sha256": "test"})
    args = (model_dir, calib, "osscar", CONFIG)
    driver = {"device": "cpu", "batch_size": 4}

    pipeline.compress(*args, tmp_path / "straight", driver=driver)
    resume = tmp_path / "resume"
    _watch(monkeypatch, kill_at=KILL_AT)
    with pytest.raises(Killed):
        pipeline.compress(*args, tmp_path / "killed", driver=driver, resume_dir=resume)
    assert not (tmp_path / "killed" / "provenance.json").exists()  # nothing that looks finished
    assert json.loads((resume / "state.json").read_text())["finished"] == list(range(KILL_AT))

    solved = _watch(monkeypatch)
    summary = pipeline.compress(*args, tmp_path / "killed", driver=driver, resume_dir=resume)
    assert summary["resumed_blocks"] == list(range(KILL_AT)) and solved == list(range(KILL_AT, N_BLOCKS))
    assert summary["shrunk"]
    prov = json.loads((tmp_path / "killed" / "provenance.json").read_text())
    info = json.loads((tmp_path / "killed" / "model" / "compression.json").read_text())
    assert prov["resumed_blocks"] == info["resumed_blocks"] == list(range(KILL_AT))
    assert prov["fingerprint"] == json.loads((tmp_path / "straight" / "provenance.json").read_text())["fingerprint"]
    assert not resume.exists()  # cleared once the run is saved

    a = load_file(str(tmp_path / "straight" / "model" / "model.safetensors"))
    b = load_file(str(tmp_path / "killed" / "model" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    log_a = (tmp_path / "straight" / "solve_log.csv").read_text().splitlines()
    log_b = (tmp_path / "killed" / "solve_log.csv").read_text().splitlines()
    col = log_a[0].split(",").index("objective")
    assert [r.split(",")[col] for r in log_a] == [r.split(",")[col] for r in log_b]
