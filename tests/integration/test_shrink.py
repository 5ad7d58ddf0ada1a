"""Physically shrunk models (heads / key-value groups and FFN neurons removed) reload with
``from_pretrained`` and give the masked model's logits; parameter counts follow the budget."""
from __future__ import annotations

import copy

import pytest
import torch

from conftest import tiny_model, token_batch
from reprise.io import ReproError, read_json
from reprise.llm.export import mask_model, parameter_count, plan_shrink, save_shrunk, shrink_model, structure_units


def _keep(n_blocks: int, units: dict[str, int], heads: int, neurons: int, seed: int = 0) -> dict:
    gen = torch.Generator().manual_seed(seed)
    return {b: {"heads": torch.randperm(units["heads"], generator=gen)[:heads],
                "neurons": torch.randperm(units["neurons"], generator=gen)[:neurons]} for b in range(n_blocks)}


def _expected_removed(family: str, cfg: dict, heads_stored: int, neurons: int) -> int:
    """Budget arithmetic from the config alone (independent of shrink.py)."""
    layers, hidden = cfg["num_hidden_layers"], cfg["hidden_size"]
    if family == "opt":  # fc1 row + bias, fc2 column; heads stay masked
        return layers * (cfg["ffn_dim"] - neurons) * (hidden + 1 + hidden)
    mb, ab = int(cfg.get("mlp_bias", False)), int(cfg.get("attention_bias", False))
    heads, kv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd, group = hidden // heads, heads // kv
    per_neuron = 2 * (hidden + mb) + hidden  # gate + up rows (+bias), a down column
    per_group = group * hd * (hidden + ab) + 2 * hd * (hidden + ab) + group * hd * hidden  # q, k+v rows; o columns
    return layers * ((cfg["intermediate_size"] - neurons) * per_neuron + (kv - heads_stored) * per_group)


CASES = {
    # family, config overrides, heads kept, neurons kept, heads stored after padding
    "opt": ("opt", {}, 3, 80, 4),
    "opt-3-blocks": ("opt", {"num_hidden_layers": 3}, 1, 17, 4),
    "llama-gqa": ("llama", {}, 1, 100, 1),
    "llama-gqa-bias": ("llama", {"num_hidden_layers": 3, "num_attention_heads": 8, "num_key_value_heads": 4,
                                 "attention_bias": True, "mlp_bias": True}, 2, 64, 2),
    # MHA with hidden 120, 12 heads of 10: keeping 7 gives 7 heads, 120 % 7 != 0 (LlamaConfig refuses
    # it), so one dropped head is padded back (zeroed) to 8 heads
    "llama-mha-padded": ("llama", {"hidden_size": 120, "num_attention_heads": 12, "num_key_value_heads": 12},
                         7, 90, 8),
}


@pytest.mark.parametrize("case", list(CASES))
def test_shrink_reload_matches_masked_logits(tmp_path, case):
    family, overrides, heads, neurons, stored = CASES[case]
    cfg = {**__import__("conftest").TINY[family], **overrides}
    model = tiny_model(family, seed=1, **overrides)
    units = structure_units(model)
    keep = _keep(cfg["num_hidden_layers"], units, heads, neurons, seed=2)
    ids = token_batch(2, 24, seed=3)

    dense_params = parameter_count(model)
    with torch.no_grad():
        dense = model(input_ids=ids).logits
        masked = mask_model(copy.deepcopy(model), keep)(input_ids=ids).logits
    assert not torch.allclose(dense, masked, atol=1e-4)  # the keep-set really prunes

    shrunk = shrink_model(model, keep)
    assert shrunk is model
    removed = _expected_removed(family, cfg, stored, neurons)
    assert parameter_count(shrunk) == dense_params - removed
    assert shrunk.reprise_shrink.removed_parameters == removed
    out = save_shrunk(shrunk, None, tmp_path / "shrunk", info={"note": case})

    from transformers import AutoModelForCausalLM

    reloaded = AutoModelForCausalLM.from_pretrained(out).eval()
    assert parameter_count(reloaded) == dense_params - removed
    c = reloaded.config
    if family == "opt":
        assert c.ffn_dim == neurons and c.num_attention_heads == cfg["num_attention_heads"]
    else:
        group = cfg["num_attention_heads"] // cfg["num_key_value_heads"]
        assert c.intermediate_size == neurons
        assert c.num_key_value_heads == stored and c.num_attention_heads == stored * group
        assert c.head_dim == cfg["hidden_size"] // cfg["num_attention_heads"]
        assert reloaded.model.layers[0].self_attn.o_proj.in_features == stored * group * c.head_dim
    with torch.no_grad():
        torch.testing.assert_close(shrunk(input_ids=ids).logits, masked, atol=1e-5, rtol=0)
        torch.testing.assert_close(reloaded(input_ids=ids).logits, masked, atol=1e-5, rtol=0)

    info = read_json(out / "compression.json")
    assert info["method"] == "shrink" and info["note"] == case
    summary = info["shrink"]
    assert summary["removed_parameters"] == removed
    assert summary["heads_removed_physically"] == (family != "opt")
    masked_heads = summary["masked_heads"]["0"]
    if family == "opt":  # every dropped head stays masked
        assert len(masked_heads) == cfg["num_attention_heads"] - heads
    else:
        assert len(masked_heads) == stored - heads
        assert sorted(summary["padded_heads"].get("0", [])) == masked_heads


def test_opt_masked_heads_may_differ_per_block(tmp_path):
    """OPT heads are only masked, so unequal head counts are fine; the neurons must still agree."""
    model = tiny_model("opt")
    keep = {0: {"heads": torch.tensor([0, 2]), "neurons": torch.arange(64)},
            1: {"heads": torch.tensor([3]), "neurons": torch.arange(64, 128)}}
    ids = token_batch(1, 16, seed=4)
    with torch.no_grad():
        masked = mask_model(copy.deepcopy(model), keep)(input_ids=ids).logits
        torch.testing.assert_close(shrink_model(model, keep)(input_ids=ids).logits, masked, atol=1e-5, rtol=0)
    out_proj = model.model.decoder.layers[1].self_attn.out_proj.weight
    assert torch.all(out_proj[:, :48] == 0) and torch.any(out_proj[:, 48:] != 0)


def test_missing_blocks_and_kinds_keep_everything():
    model = tiny_model("llama")
    plan = plan_shrink(model, {})
    assert plan.removed_parameters == 0
    assert all(e["heads"].tolist() == [0, 1] and e["neurons"].numel() == 128 for e in plan.keep.values())


@pytest.mark.parametrize("family,kind", [("opt", "neurons"), ("llama", "neurons"), ("llama", "heads")])
def test_unequal_counts_name_the_block(family, kind):
    model = tiny_model(family)
    n = structure_units(model)[kind]  # llama: 2 key-value groups, 128 neurons
    keep = {0: {kind: torch.arange(n)}, 1: {kind: torch.arange(n // 2)}}
    before = [p.clone() for p in model.parameters()]
    with pytest.raises(ReproError, match=rf"block 1 keeps \d+ {kind} but block 0 keeps"):
        shrink_model(model, keep)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))  # nothing changed


@pytest.mark.parametrize("entry,match", [
    ({"neurons": torch.tensor([0, 128])}, r"block 0 'neurons': indices \[128\] out of range \[0, 128\)"),
    ({"neurons": torch.tensor([-1, 3])}, r"indices \[-1\] out of range"),
    ({"heads": torch.tensor([1, 1])}, r"block 0 'heads': duplicated indices \[1\]"),
    ({"heads": torch.tensor([], dtype=torch.long)}, r"keeps no unit"),
    ({"neurons": torch.tensor([0.0, 1.0])}, r"integer indices"),
    ({"neurons": torch.tensor([[0, 1]])}, r"1-D tensor"),
    ({"rows": torch.tensor([0])}, r"unknown keys \['rows'\]"),
])
def test_bad_keep_sets_fail_clearly(entry, match):
    model = tiny_model("llama")
    with pytest.raises(ReproError, match=match):
        shrink_model(model, {0: entry})
    with pytest.raises(ReproError, match=match):
        mask_model(model, {0: entry})


def test_bad_block_and_unsupported_family():
    with pytest.raises(ReproError, match=r"block 2 out of range: the model has blocks 0..1"):
        plan_shrink(tiny_model("opt"), {2: {"neurons": torch.arange(4)}})
    with pytest.raises(ReproError, match=r"not declared for family 'bloom'"):
        plan_shrink(tiny_model("bloom"), {})
    with pytest.raises(ReproError, match=r"needs a model returned by shrink_model"):
        save_shrunk(tiny_model("opt"), None, "/nonexistent/never")


def test_smollm2_shrinks_and_reloads(tmp_path, smollm2_dir):
    """The real SmolLM2-135M (576 hidden, 9 heads in 3 key-value groups of 3, 1536 neurons): drop one
    group and a third of the neurons in every block; the shrunk checkpoint reloads with the tokenizer
    and gives the masked model's logits."""
    from transformers import AutoModelForCausalLM

    from reprise.llm.models import load_local

    model, tokenizer = load_local(smollm2_dir)
    model.config.use_cache = False
    units = structure_units(model)
    assert units == {"heads": 3, "neurons": 1536}
    keep = _keep(model.config.num_hidden_layers, units, 2, 1024, seed=5)
    ids = token_batch(1, 32, vocab=model.config.vocab_size, seed=6)
    dense_params = parameter_count(model)
    with torch.no_grad():
        masked = mask_model(copy.deepcopy(model), keep)(input_ids=ids).logits
    shrink_model(model, keep)
    removed = model.config.num_hidden_layers * (512 * 3 * 576 + (3 * 64 * 576 + 2 * 64 * 576 + 3 * 64 * 576))
    assert parameter_count(model) == dense_params - removed
    out = save_shrunk(model, tokenizer, tmp_path / "shrunk")
    reloaded = AutoModelForCausalLM.from_pretrained(out).eval()
    assert (reloaded.config.num_attention_heads, reloaded.config.num_key_value_heads,
            reloaded.config.head_dim, reloaded.config.intermediate_size) == (6, 2, 64, 1024)
    with torch.no_grad():
        logits = reloaded(input_ids=ids).logits
        assert torch.equal(logits, model(input_ids=ids).logits)  # the checkpoint holds the shrunk weights
    # 30 fp32 blocks summed in a different order: float noise only, far below the pruning's effect
    assert masked.abs().max() > 5
    torch.testing.assert_close(logits, masked, atol=1e-3, rtol=1e-4)
    assert (out / "tokenizer.json").is_file()
