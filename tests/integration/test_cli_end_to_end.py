"""`reprise compress` then `reprise evaluate` on a local model directory, as a user would run them."""
from __future__ import annotations

import json

import pytest
import torch

from conftest import REPO, tiny_model
from reprise.cli import main


@pytest.fixture
def tiny_dir(tmp_path, smollm2_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(smollm2_dir)
    model = tiny_model("llama", vocab_size=len(tok))
    out = tmp_path / "tiny"
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def test_compress_then_evaluate(tmp_path, tiny_dir, monkeypatch, capsys):
    monkeypatch.chdir(REPO)
    out = tmp_path / "gptq4"
    argv = ["compress", "--model", str(tiny_dir), "--method", "gptq", "--bits", "4", "--out", str(out),
            "--calib-n", "4", "--seqlen", "32", "--cache", str(tmp_path / "cache"), "--device", "cpu"]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out.split("\nwrote")[0])
    assert summary["method"] == "gptq" and summary["layers"] == 14 and 0 < summary["mean_rel_err"] < 1
    for name in ("model/model.safetensors", "model/compression.json", "solve_log.csv", "provenance.json"):
        assert (out / name).is_file(), name
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["calibration"]["protocol"] == "contiguous" and prov["packages"]["torch"].startswith("2.13")
    assert not list(tmp_path.glob(".gptq4*"))  # calibration and resume scratch removed

    assert main(["evaluate", "--model", str(out / "model"), "--testsets", "enwiki-gensim", "--seqlen", "32",
                 "--max-windows", "2", "--cache", str(tmp_path / "cache"), "--device", "cpu"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["enwiki-gensim_ppl@32"] > 1

    from transformers import AutoModelForCausalLM

    reloaded = AutoModelForCausalLM.from_pretrained(out / "model")
    q = reloaded.model.layers[0].mlp.down_proj.weight
    assert max(len(torch.unique(row)) for row in q) <= 16  # a 4-bit grid per output channel


def test_structured_compress_shrinks_then_evaluates(tmp_path, tiny_dir, monkeypatch, capsys):
    # OSSCAR through the same command: every block pruned, so the saved model is physically smaller
    monkeypatch.chdir(REPO)
    out = tmp_path / "osscar"
    argv = ["compress", "--model", str(tiny_dir), "--method", "osscar", "--set", "neurons_sparsity=0.5",
            "--set", "heads_sparsity=0.5", "--out", str(out), "--calib-n", "4", "--seqlen", "32",
            "--cache", str(tmp_path / "cache"), "--device", "cpu"]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out.split("\nwrote")[0])
    assert summary["shrunk"] and summary["parameters"] < summary["dense_parameters"]
    assert summary["kept"]["neurons"] == [64] and summary["layers"] == 4  # 2 blocks x (heads, neurons)
    from transformers import AutoModelForCausalLM

    reloaded = AutoModelForCausalLM.from_pretrained(out / "model")
    assert reloaded.config.intermediate_size == 64 and reloaded.config.num_key_value_heads == 1
    assert main(["evaluate", "--model", str(out / "model"), "--testsets", "enwiki-gensim", "--seqlen", "32",
                 "--max-windows", "2", "--cache", str(tmp_path / "cache"), "--device", "cpu"]) == 0
    assert json.loads(capsys.readouterr().out)["enwiki-gensim_ppl@32"] > 1


def test_structured_compress_on_a_block_slice_masks_instead_of_shrinking(tmp_path, tiny_dir, monkeypatch, capsys):
    # one FFN width per config: with only block 0 pruned the model keeps its shapes, units zeroed
    monkeypatch.chdir(REPO)
    out = tmp_path / "mp"
    argv = ["compress", "--model", str(tiny_dir), "--method", "mp-plus", "--sparsity", "0.5", "--blocks", "0:1",
            "--out", str(out), "--calib-n", "4", "--seqlen", "32", "--cache", str(tmp_path / "cache"),
            "--device", "cpu"]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out.split("\nwrote")[0])
    assert not summary["shrunk"] and summary["parameters"] == summary["dense_parameters"]
    info = json.loads((out / "model" / "compression.json").read_text())
    assert "zeroed, not removed" in info["note"]
    from transformers import AutoModelForCausalLM

    m = AutoModelForCausalLM.from_pretrained(out / "model")
    down0, down1 = m.model.layers[0].mlp.down_proj.weight, m.model.layers[1].mlp.down_proj.weight
    assert int((down0.abs().sum(0) == 0).sum()) == down0.shape[1] // 2 and bool((down1.abs().sum(0) > 0).all())
