"""Compressed checkpoints reload with the same logits; a killed solve (SIGTERM or SIGKILL) resumes
bitwise-equal from its last finished block."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import REPO, tiny_model, token_batch
from reprise.llm.data import save_tokens
from reprise.llm.driver import DriverConfig, compress_model
from reprise.llm.export import load_compressed, load_masks, save_compressed


@pytest.mark.parametrize("family", ["opt", "llama", "bloom", "falcon"])
def test_compress_save_reload_same_logits(tmp_path, family):
    model = tiny_model(family)
    res = compress_model(model, token_batch(4, 32), "sparsegpt", {"nm": "2:4"}, DriverConfig(device="cpu"),
                         progress=False)
    save_compressed(model, None, tmp_path / "ckpt", {"method": "sparsegpt"}, res.extras)
    from transformers import AutoModelForCausalLM

    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "ckpt").eval()
    ids = token_batch(2, 24, seed=3)
    with torch.no_grad():
        assert torch.equal(model(input_ids=ids).logits, reloaded(input_ids=ids).logits)
    masks = load_masks(tmp_path / "ckpt")
    assert len(masks) == len(res.rows)
    for key, mask in masks.items():  # the stored mask is the 2:4 pattern and matches the zeros
        groups = mask.reshape(mask.shape[0], -1, 4)
        assert torch.all(groups.sum(-1) == 2), key
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())  # no temporary leftovers


def _prepare(tmp_path: Path) -> tuple[Path, Path]:
    model = tiny_model("llama", num_hidden_layers=8, hidden_size=192, intermediate_size=512, num_attention_heads=6,
                       num_key_value_heads=2)
    model_dir = tmp_path / "model"
    model.save_pretrained(model_dir)
    calib = tmp_path / "calib.pt"
    save_tokens(calib, token_batch(32, 64, seed=5), {"windows_sha256": "test"})
    return model_dir, calib


_RUN = """
import sys
from reprise import pipeline
pipeline.setup(threads=1)
pipeline.compress(sys.argv[1], sys.argv[2], "gptq", {"bits": 3}, sys.argv[3], driver={"device": "cpu"},
                  resume_dir=sys.argv[4])
"""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_killed_solve_resumes_bitwise_equal(tmp_path, sig):
    model_dir, calib = _prepare(tmp_path)
    from reprise import pipeline

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the same thread count as the killed process: same reduction order
    try:
        pipeline.compress(model_dir, calib, "gptq", {"bits": 3}, tmp_path / "straight", driver={"device": "cpu"})
    finally:
        torch.set_num_threads(threads)

    resume = tmp_path / "resume"
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.Popen([sys.executable, "-c", _RUN, str(model_dir), str(calib), str(tmp_path / "killed"),
                             str(resume)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    finished: list[int] = []
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        state = resume / "state.json"
        if state.is_file():
            try:
                finished = json.loads(state.read_text())["finished"]
            except (json.JSONDecodeError, KeyError):
                finished = []
            if len(finished) >= 2:
                os.kill(proc.pid, sig)
                break
        time.sleep(0.01)
    _, stderr = proc.communicate(timeout=60)
    if sig == signal.SIGTERM:  # SLURM's time limit: a clean exit with the shell's code, reason logged
        assert proc.returncode == 143, stderr[-2000:]
        assert "received signal 15" in stderr
    else:
        assert proc.returncode == -signal.SIGKILL, "the solve finished before it could be killed mid-way"
    assert 2 <= len(finished) < 8
    killed = tmp_path / "killed"
    assert not (killed / "provenance.json").exists()  # nothing that looks finished
    if sig == signal.SIGTERM:  # the handler removed every temporary file of the interrupted writes
        leftovers = [p for d in (killed, resume) if d.exists() for p in d.rglob(".*")]
        assert not leftovers, leftovers

    torch.set_num_threads(1)
    try:
        summary = pipeline.compress(model_dir, calib, "gptq", {"bits": 3}, tmp_path / "killed",
                                    driver={"device": "cpu"}, resume_dir=resume)
    finally:
        torch.set_num_threads(threads)
    assert summary["resumed_blocks"] == sorted(summary["resumed_blocks"]) and len(summary["resumed_blocks"]) >= 2
    a = load_file(str(tmp_path / "straight" / "model" / "model.safetensors"))
    b = load_file(str(tmp_path / "killed" / "model" / "model.safetensors"))
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    log_a = (tmp_path / "straight" / "solve_log.csv").read_text().splitlines()
    log_b = (tmp_path / "killed" / "solve_log.csv").read_text().splitlines()
    col = log_a[0].split(",").index("objective")
    assert [r.split(",")[col] for r in log_a] == [r.split(",")[col] for r in log_b]
    assert not resume.exists()  # cleaned once finished


def test_fingerprint_mismatch_starts_fresh(tmp_path, caplog):
    model_dir, calib = _prepare(tmp_path)
    from reprise import pipeline

    resume = tmp_path / "resume"
    resume.mkdir()
    (resume / "state.json").write_text(json.dumps({"fingerprint": "stale", "finished": [0, 1], "rows": []}))
    with caplog.at_level("WARNING"):
        summary = pipeline.compress(model_dir, calib, "rtn", {"bits": 4}, tmp_path / "out", driver={"device": "cpu"},
                                    resume_dir=resume)
    assert summary["resumed_blocks"] == []
    assert "RESUME STATE IGNORED" in caplog.text


def test_reload_through_load_compressed(tmp_path):
    model_dir, calib = _prepare(tmp_path)
    from reprise import pipeline

    pipeline.compress(model_dir, calib, "wanda", {"sparsity": 0.5}, tmp_path / "out", driver={"device": "cpu"})
    model, _, info = load_compressed(tmp_path / "out" / "model")
    assert info["method"] == "wanda" and info["config"]["sparsity"] == 0.5
    zero = [(m.weight == 0).float().mean().item() for n, m in model.named_modules() if n.endswith("proj")]
    assert min(zero) >= 0.5


def test_outlier_masks_are_saved_bit_packed_and_reload(tmp_path):
    """quantease-outlier through the driver: the outlier positions of every linear are saved
    one bit per weight, hold the budget exactly, and the rest of each weight is on its grid."""
    from reprise.llm.methods.quant_grid import decode, encode

    model = tiny_model("llama")
    res = compress_model(model, token_batch(8, 32), "quantease-outlier", {"bits": 3, "outlier": 0.05, "iters": 4},
                         DriverConfig(device="cpu"), progress=False)
    save_compressed(model, None, tmp_path / "ckpt", {"method": "quantease-outlier"}, res.extras)
    outliers = load_masks(tmp_path / "ckpt", "outlier_mask")
    assert load_masks(tmp_path / "ckpt") == {}  # no keep-mask: quantization prunes nothing
    assert len(outliers) == len(res.rows)
    quant = load_file(str(tmp_path / "ckpt" / "compression.safetensors"))
    weights = {n: m.weight.data for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    for key, mask in outliers.items():
        assert int(mask.sum()) == round(0.05 * mask.numel())
        block, layer = key.split(".", 1)
        w = weights[f"model.layers.{block}.{layer}"]
        record = {f: quant[f"{key}.{f}"] for f in ("scales", "zeros", "g_idx", "bits")}
        on_grid = torch.isclose(decode(record, encode(record, w)), w, atol=1e-6)
        assert bool(on_grid[~mask].all())
    from transformers import AutoModelForCausalLM

    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "ckpt").eval()
    ids = token_batch(2, 16, seed=3)
    with torch.no_grad():
        assert torch.equal(model(input_ids=ids).logits, reloaded(input_ids=ids).logits)
