"""Inference speed of a shrunk model against dense (reprise.llm.eval.speed): the FLOP count agrees
with torch's own matmul counter, the ratios follow the parameter counts, and the speed job writes
its metrics under the names the tables read."""
from __future__ import annotations

import json

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from conftest import tiny_model
from reprise.io import ReproError
from reprise.llm.eval.speed import forward_flops, measure_speed
from reprise.llm.export.shrink import parameter_count, shrink_model, structure_units


def _half_ffn(model):
    units = structure_units(model)
    keep = {}
    for b in range(model.config.num_hidden_layers):
        keep[b] = {k: torch.arange(n // 2 if k == "neurons" else n) for k, n in units.items()}
    return shrink_model(model, keep)


@pytest.mark.parametrize("family", ["llama", "opt"])
def test_flops_match_torch_counter(family):
    model = tiny_model(family, seed=0, tie_word_embeddings=True).eval()
    model.set_attn_implementation("eager")  # explicit matmuls, which the counter sees (SDPA it may not)
    ids = torch.randint(0, 512, (2, 32), generator=torch.Generator().manual_seed(0))
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(input_ids=ids, use_cache=False)
    counted = counter.get_total_flops()
    # ours counts 2 x every parameter per token (the tied embedding once; norms and biases are a
    # handful of non-matmul parameters) plus the two attention products; torch counts the matmuls only
    ours = forward_flops(model, 2, 32)
    assert counted > 0 and abs(ours - counted) / counted < 0.02, (ours, counted)


def test_measure_speed_ratios_follow_the_shrunk_model():
    dense = tiny_model("llama", seed=0).eval()
    shrunk = _half_ffn(tiny_model("llama", seed=0)).eval()
    res = measure_speed(shrunk, dense, batch=1, seqlen=32, warmup=1, repeats=3)
    assert res["params"] == parameter_count(shrunk) < res["dense_params"] == parameter_count(dense)
    assert res["flop_ratio"] == pytest.approx(forward_flops(dense, 1, 32) / forward_flops(shrunk, 1, 32))
    assert res["flop_ratio"] > 1
    assert res["speedup"] == pytest.approx(res["dense_latency_ms"] / res["latency_ms"])
    assert res["batch_size"] == 1 and res["seqlen"] == 32 and res["threads"] == torch.get_num_threads()
    assert res["device"] == "cpu"
    same = measure_speed(dense, dense, batch=1, seqlen=16, warmup=0, repeats=1)
    assert same["flop_ratio"] == 1 and same["params"] == same["dense_params"]


def test_measure_speed_rejects_bad_shapes():
    dense = tiny_model("llama", seed=0)
    with pytest.raises(ReproError, match="eval.speed"):
        measure_speed(dense, dense, batch=0, seqlen=32)


def test_pipeline_speed_job_writes_named_metrics(tmp_path):
    from reprise.pipeline import evaluate_speed

    dense = tiny_model("llama", seed=0)
    dense.save_pretrained(tmp_path / "dense")
    shrunk = _half_ffn(tiny_model("llama", seed=0))
    shrunk.save_pretrained(tmp_path / "shrunk")
    out = tmp_path / "eval" / "speed@b1x32.json"
    metrics = evaluate_speed(tmp_path / "shrunk", tmp_path / "dense", out, batch_size=1, seqlen=32, warmup=0,
                             repeats=2, device="cpu")
    assert set(metrics) == {"speed@b1x32/speedup", "speed@b1x32/flop_ratio", "speed@b1x32/params"}
    saved = json.loads(out.read_text())
    assert saved["metrics"] == metrics and saved["details"]["repeats"] == 2
    assert metrics["speed@b1x32/params"] == parameter_count(shrunk)
