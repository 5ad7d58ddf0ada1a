"""The structured-pruning driver end to end: OSSCAR prunes every block's attention units and FFN
neurons as consumer input groups, the pruned model shrinks physically and reloads with the same
logits, and OSSCAR's per-layer error is no worse than MP+'s."""
from __future__ import annotations

import copy

import pytest
import torch

from conftest import tiny_model, token_batch
from reprise.io import ReproError
from reprise.llm.driver import DriverConfig
from reprise.llm.driver.structured import prune_structured
from reprise.llm.export import parameter_count, save_shrunk, shrink_model, unit_layout


@pytest.mark.parametrize("family, overrides", [("opt", {}),
                                               ("llama", {"num_attention_heads": 8, "num_key_value_heads": 4})])
def test_osscar_prunes_the_budget_and_the_shrunk_model_reloads_with_the_same_logits(tmp_path, family, overrides):
    model = tiny_model(family, seed=1, **overrides)
    layout = unit_layout(model)
    calib = token_batch(8, 32, seed=4)
    res = prune_structured(model, calib, "osscar", {"heads_sparsity": 0.5, "neurons_sparsity": 0.25},
                           layout, DriverConfig(device="cpu", batch_size=4))
    n_blocks = model.config.num_hidden_layers
    assert sorted(res.keep) == list(range(n_blocks))
    for b, keep in res.keep.items():
        assert len(keep["heads"]) == int(layout["heads"]["units"] * 0.5)
        assert len(keep["neurons"]) == int(layout["neurons"]["units"] * 0.75)
        # the consumer's dropped columns are exactly zero in the pruned model
        block = model.model.decoder.layers[b] if family == "opt" else model.model.layers[b]
        fc = block.get_submodule(layout["neurons"]["consumer"]).weight
        dropped = sorted(set(range(layout["neurons"]["units"])) - set(keep["neurons"].tolist()))
        assert not fc[:, dropped].any()
    assert {r["kind"] for r in res.rows} == {"heads", "neurons"} and len(res.rows) == 2 * n_blocks
    ids = token_batch(2, 20, seed=5)
    with torch.no_grad():
        pruned_logits = model(input_ids=ids).logits
    before = parameter_count(model)
    shrink_model(model, res.keep)
    assert parameter_count(model) < before
    from transformers import AutoModelForCausalLM

    reloaded = AutoModelForCausalLM.from_pretrained(save_shrunk(model, None, tmp_path / "m")).eval()
    with torch.no_grad():
        assert torch.allclose(reloaded(input_ids=ids).logits, pruned_logits, atol=1e-5)


def test_osscar_per_layer_error_is_no_worse_than_mp_plus():
    base = tiny_model("llama", seed=2)
    calib = token_batch(8, 32, seed=6)
    out = {}
    for method in ("osscar", "mp-plus", "mp"):
        m = copy.deepcopy(base)
        r = prune_structured(m, calib, method, {"sparsity": 0.5}, unit_layout(m), DriverConfig(device="cpu"),
                             kinds=("neurons",))
        out[method] = [row["objective"] for row in r.rows]
    # block 0 sees the same inputs for every method: the comparison is exact there
    assert out["osscar"][0] <= out["mp-plus"][0] * (1 + 1e-6) <= out["mp"][0] * (1 + 1e-6)


def test_unknown_kind_or_non_structured_method_fails_clearly():
    model = tiny_model("llama", seed=0)
    calib = token_batch(2, 16)
    with pytest.raises(ReproError, match="unknown unit kind"):
        prune_structured(model, calib, "osscar", {"sparsity": 0.5}, unit_layout(model), kinds=("experts",))
    with pytest.raises(ReproError, match="group_size|unknown key"):
        prune_structured(model, calib, "wanda", {"sparsity": 0.5}, unit_layout(model))
