"""Sparse + low-rank checkpoints (HASSLE-free, OATS; spec §5.2 "Storage"): the dense directory still
loads as a plain model, S is stored exactly on its mask, and the low-rank part is a peft LoRA
adapter that, on a base holding only S, gives the dense model's logits."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from conftest import tiny_model, token_batch
from reprise import pipeline
from reprise.io import ReproError
from reprise.llm.data import save_tokens
from reprise.llm.driver import DriverConfig, compress_model, sequential
from reprise.llm.export import load_masks, load_sparse_lowrank, save_compressed
from reprise.llm.methods import get_method

FAST = {"am_iters": 2, "gd_iters": 5}
CONFIGS = {
    "fixed-rank-2:4": {"nm": "2:4", "rank": 4, **FAST},
    "budget-2:8": {"compression": 0.5, "nm": "2:8", **FAST},  # per-layer ranks (spec §5.2): 8, 5 and 10 here
}
DRIVER = {"device": "cpu", "batch_size": 4}


def _logits(model, ids=None):
    with torch.no_grad():
        return model(input_ids=token_batch(2, 16, seed=3) if ids is None else ids).logits


def _dense(model_dir):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(model_dir).eval()


def _linears(model, blocks=(0, 1)):
    """``{<block>.<layer>: nn.Linear}`` of the compressed blocks (the tiny Llama's adapter names)."""
    from reprise.llm.models.adapters import adapter_for, blocks_of, get_submodule

    arch = adapter_for(model)
    return {f"{b}.{n}": get_submodule(blocks_of(model, arch)[b], n) for b in blocks for n in arch.linear_names}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("lowrank")
    tiny_model("llama").save_pretrained(root / "base")
    save_tokens(root / "calib.pt", token_batch(8, 32, seed=5), {"windows_sha256": "test"})
    return root


@pytest.fixture(scope="module")
def runs(inputs):
    """One pipeline run per config: ``{name: model dir}``."""
    out = {}
    for name, config in CONFIGS.items():
        pipeline.compress(inputs / "base", inputs / "calib.pt", "hassle-free", config, inputs / name, driver=DRIVER)
        out[name] = inputs / name / "model"
    return out


def test_dense_reload_is_the_in_memory_model_and_the_pipeline_writes_the_same(inputs, runs):
    from reprise.llm.data import load_tokens
    from reprise.llm.models import load_local

    model, _ = load_local(inputs / "base")
    calib, _ = load_tokens(inputs / "calib.pt")
    config = CONFIGS["budget-2:8"]
    res = compress_model(model, calib, "hassle-free", config, DriverConfig(**DRIVER), progress=False)
    rng = torch.random.get_rng_state()
    save_compressed(model, None, inputs / "direct", {"method": "hassle-free"}, res.extras)
    assert torch.equal(rng, torch.random.get_rng_state())  # library code leaves the global RNG alone
    assert torch.equal(_logits(model), _logits(_dense(inputs / "direct")))
    # the pipeline's run is the same solve: the same dense weights, extras and adapter, bit for bit
    for f in ("model.safetensors", "compression.safetensors", "lora/adapter_model.safetensors"):
        a, b = load_file(str(inputs / "direct" / f)), load_file(str(runs["budget-2:8"] / f))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), f
    assert not any(p.name.startswith(".") for p in inputs.iterdir())  # no temporary directory left


@pytest.mark.parametrize("name", list(CONFIGS))
def test_sparse_base_plus_adapter_has_the_dense_logits(runs, name):
    dense = _dense(runs[name])
    rng = torch.random.get_rng_state()
    peft_model = load_sparse_lowrank(runs[name])
    assert torch.equal(rng, torch.random.get_rng_state())
    from peft import PeftModel

    assert isinstance(peft_model, PeftModel)
    ids = token_batch(3, 20, seed=11)
    torch.testing.assert_close(_logits(peft_model, ids), _logits(dense, ids), rtol=0, atol=1e-5)
    # without the adapter the base alone (S) is a different model: the low-rank part matters
    with peft_model.disable_adapter():
        assert (_logits(peft_model, ids) - _logits(dense, ids)).abs().max() > 1e-3


@pytest.mark.parametrize("name", list(CONFIGS))
def test_base_holds_exactly_s_on_the_stored_nm_mask(runs, name):
    n, m = map(int, CONFIGS[name]["nm"].split(":"))
    masks = load_masks(runs[name])
    extras = load_file(str(runs[name] / "compression.safetensors"))
    dense = _linears(_dense(runs[name]))
    base = _linears(load_sparse_lowrank(runs[name]).get_base_model())
    assert set(masks) == set(base) == set(dense)
    for key, lin in base.items():
        W, mask = lin.base_layer.weight.data, masks[key]  # every compressed linear carries a LoRA or is rank 0
        assert mask.shape == W.shape
        assert bool((mask.reshape(mask.shape[0], -1, m).sum(-1) == n).all()), key  # the N:M pattern
        assert not bool(W[~mask].any()), key  # exactly sparse: nothing off the mask
        assert torch.equal(W[mask], extras[f"{key}.sparse_values"]), key  # S itself, row-major
        assert extras[f"{key}.sparse_values"].numel() == int(mask.sum())  # one value per kept weight
        # and the dense weight is S + B·A with the factors the solver returned
        BA = extras[f"{key}.lora_B"] @ extras[f"{key}.lora_A"]
        torch.testing.assert_close(dense[key].weight.data, W + BA, rtol=0, atol=1e-6)
        assert bool((dense[key].weight.data != 0).float().mean() > 0.9)  # dense, not sparse


@pytest.mark.parametrize("name", list(CONFIGS))
def test_adapter_ranks_alpha_and_targets_follow_the_budget(runs, name):
    cfg = get_method("hassle-free").Config.from_dict(CONFIGS[name])
    peft_model = load_sparse_lowrank(runs[name])
    info = json.loads((runs[name] / "compression.json").read_text())["lowrank"]
    adapter_cfg = json.loads((runs[name] / "lora" / "adapter_config.json").read_text())
    assert info["adapter"] == "lora" and info["alpha"] == 16 == adapter_cfg["lora_alpha"]
    assert adapter_cfg["peft_type"] == "LORA" and adapter_cfg["lora_dropout"] == 0.0
    expected = {}
    for key, lin in _linears(peft_model.get_base_model()).items():
        r = cfg.layer_rank(lin.out_features, lin.in_features)
        expected[key] = r
        assert lin.r["default"] == r and lin.scaling["default"] == pytest.approx(16 / r), key
        assert lin.lora_A["default"].weight.shape == (r, lin.in_features)
    assert info["ranks"] == expected
    if name == "budget-2:8":
        assert sorted(set(expected.values())) == [5, 8, 10] and adapter_cfg["rank_pattern"]
    # target modules: exactly the compressed linears, nothing else wrapped
    from peft.tuners.lora import LoraLayer

    wrapped = {n for n, mod in peft_model.get_base_model().named_modules() if isinstance(mod, LoraLayer)}
    assert wrapped == {f"model.layers.{k}" for k in expected}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_merge_and_unload_gives_the_dense_weights(runs, name):
    merged = _linears(load_sparse_lowrank(runs[name]).merge_and_unload())
    dense = _linears(_dense(runs[name]))
    for key, lin in merged.items():
        assert type(lin) is torch.nn.Linear
        torch.testing.assert_close(lin.weight.data, dense[key].weight.data, rtol=0, atol=1e-6)


def test_missing_or_mismatched_parts_fail_naming_the_file(runs, tmp_path):
    src = runs["fixed-rank-2:4"]
    no_lora = tmp_path / "no_lora"
    shutil.copytree(src, no_lora)
    shutil.rmtree(no_lora / "lora")
    with pytest.raises(ReproError, match=r"no_lora/lora/adapter_config\.json is missing.*rerun"):
        load_sparse_lowrank(no_lora)
    assert _dense(no_lora) is not None  # the dense model stays loadable on its own

    no_extras = tmp_path / "no_extras"
    shutil.copytree(src, no_extras)
    (no_extras / "compression.safetensors").unlink()
    with pytest.raises(ReproError, match=r"compression\.safetensors is missing"):
        load_sparse_lowrank(no_extras)

    swapped = tmp_path / "swapped"  # the adapter of another run
    shutil.copytree(src, swapped)
    shutil.rmtree(swapped / "lora")
    shutil.copytree(runs["budget-2:8"] / "lora", swapped / "lora")
    with pytest.raises(ReproError, match="rerun"):
        load_sparse_lowrank(swapped)

    dropped = tmp_path / "dropped"  # a sparse part missing from the extras
    shutil.copytree(src, dropped)
    extras = load_file(str(dropped / "compression.safetensors"))
    del extras["1.mlp.up_proj.sparse_values"]
    save_file(extras, str(dropped / "compression.safetensors"))
    with pytest.raises(ReproError, match="compression.safetensors"):
        load_sparse_lowrank(dropped)


def test_rank_zero_stores_only_the_sparse_part(inputs):
    pipeline.compress(inputs / "base", inputs / "calib.pt", "hassle-free", {"nm": "2:4", "rank": 0, **FAST},
                      inputs / "rank0", driver=DRIVER)
    model_dir = inputs / "rank0" / "model"
    extras = load_file(str(model_dir / "compression.safetensors"))
    assert not (model_dir / "lora").exists()
    assert "lowrank" not in json.loads((model_dir / "compression.json").read_text())
    assert not any(k.endswith((".lora_A", ".lora_B")) for k in extras)
    dense = _linears(_dense(model_dir))
    masks = load_masks(model_dir)
    for key, lin in dense.items():  # S is the whole weight
        assert torch.equal(lin.weight.data[masks[key]], extras[f"{key}.sparse_values"])
    with pytest.raises(ReproError, match=r"compression\.json records no low-rank adapter"):
        load_sparse_lowrank(model_dir)


class Killed(RuntimeError):
    pass


def test_resumed_run_writes_the_same_files(inputs, runs, monkeypatch):
    config, resume = CONFIGS["budget-2:8"], inputs / "resume"
    real = sequential._compress_block

    def killed_at_block_1(b, *args, **kwargs):
        if b == 1:
            raise Killed("killed while solving block 1")
        return real(b, *args, **kwargs)

    monkeypatch.setattr(sequential, "_compress_block", killed_at_block_1)
    with pytest.raises(Killed):
        pipeline.compress(inputs / "base", inputs / "calib.pt", "hassle-free", config, inputs / "resumed",
                          driver=DRIVER, resume_dir=resume)
    assert not (inputs / "resumed" / "model").exists()  # no partial model directory
    saved = load_file(str(resume / "block_0000.safetensors"))
    assert {"extras.0.self_attn.q_proj.lora_A", "extras.0.self_attn.q_proj.sparse_values"} <= set(saved)
    monkeypatch.undo()
    summary = pipeline.compress(inputs / "base", inputs / "calib.pt", "hassle-free", config, inputs / "resumed",
                                driver=DRIVER, resume_dir=resume)
    assert summary["resumed_blocks"] == [0]
    straight, resumed = runs["budget-2:8"], inputs / "resumed" / "model"
    for f in ("model.safetensors", "compression.safetensors", "lora/adapter_model.safetensors"):
        a, b = load_file(str(straight / f)), load_file(str(resumed / f))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), f
    assert (straight / "lora/adapter_config.json").read_bytes() == (resumed / "lora/adapter_config.json").read_bytes()
    info = [json.loads((d / "compression.json").read_text())["lowrank"] for d in (straight, resumed)]
    assert info[0] == info[1]


@pytest.mark.parametrize("layers,blocks,config", [
    (4, [0, 3], {"sparsity": 0.5, "rank": 3, "iters": 3}),  # a slice: block 3 stays dense, without LoRA
    (3, None, {"compression": 0.5, "nm": "2:8", "iters": 3}),  # all blocks, per-layer ranks
], ids=["slice", "all-blocks-budget"])
def test_oats_writes_an_adapter(tmp_path, layers, blocks, config):
    # 21 targets: from 20 on, peft rewrites the target list to the shortest suffixes that match the same set
    tiny_model("llama", num_hidden_layers=layers).save_pretrained(tmp_path / "base")
    save_tokens(tmp_path / "calib.pt", token_batch(8, 32, seed=5), {"windows_sha256": "test"})
    pipeline.compress(tmp_path / "base", tmp_path / "calib.pt", "oats", config, tmp_path / "oats",
                      driver={**DRIVER, "blocks": blocks})
    model_dir = tmp_path / "oats" / "model"
    info = json.loads((model_dir / "compression.json").read_text())["lowrank"]
    cfg = get_method("oats").Config.from_dict(config)
    peft_model = load_sparse_lowrank(model_dir)
    torch.testing.assert_close(_logits(peft_model), _logits(_dense(model_dir)), rtol=0, atol=1e-5)
    from peft.tuners.lora import LoraLayer

    wrapped = {n for n, mod in peft_model.get_base_model().named_modules() if isinstance(mod, LoraLayer)}
    assert len(info["ranks"]) == 21 and wrapped == {f"model.layers.{k}" for k in info["ranks"]}
    masks = load_masks(model_dir)
    for key, lin in _linears(peft_model.get_base_model(), blocks=(0, 1, 2)).items():
        assert lin.r["default"] == info["ranks"][key] == cfg.layer_rank(lin.out_features, lin.in_features)
        assert not bool(lin.base_layer.weight.data[~masks[key]].any())
        assert float(masks[key].float().mean()) == (0.5 if "sparsity" in config else 0.25)
