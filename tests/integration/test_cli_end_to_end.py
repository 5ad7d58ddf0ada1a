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
