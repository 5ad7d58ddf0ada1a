"""The sequential driver on tiny random-weight models of every supported family."""
from __future__ import annotations

import pytest
import torch

from conftest import FAMILIES, tiny_model, token_batch
from reprise.llm.driver import DriverConfig, compress_model
from reprise.llm.models import adapter_for, blocks_of, linears_of


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("true_sequential", [False, True])
def test_identity_through_driver_keeps_logits(family, true_sequential):
    model = tiny_model(family)
    ids = token_batch(3, 32)
    with torch.no_grad():
        before = model(input_ids=ids).logits
    res = compress_model(model, token_batch(4, 32, seed=1), "identity", {},
                         DriverConfig(device="cpu", true_sequential=true_sequential, batch_size=2), progress=False)
    with torch.no_grad():
        after = model(input_ids=ids).logits
    assert torch.equal(before, after)
    n_linears = len(blocks_of(model, adapter_for(model))) * len(adapter_for(model).linear_names)
    assert len(res.rows) == n_linears
    assert all(r["objective"] == 0.0 and r["n_tokens"] == 4 * 32 for r in res.rows)


@pytest.mark.parametrize("family", FAMILIES)
def test_rtn_changes_every_linear_and_logs_it(family):
    model = tiny_model(family)
    res = compress_model(model, token_batch(4, 32), "rtn", {"bits": 3}, DriverConfig(device="cpu"), progress=False)
    assert {r["layer"] for r in res.rows} == set(adapter_for(model).linear_names)
    for r in res.rows:
        assert r["objective"] > 0 and 0 < r["rel_err"] < 1
        assert r["seconds"] >= 0 and r["peak_mem_mb"] > 0
    # every linear now holds at most 2^3 distinct values per row
    for block in blocks_of(model, adapter_for(model)):
        for lin in linears_of(block, adapter_for(model)).values():
            assert max(len(torch.unique(row)) for row in lin.weight.data) <= 8


def test_blocks_slice_compresses_only_that_slice():
    model = tiny_model("llama", num_hidden_layers=3)
    ref = tiny_model("llama", num_hidden_layers=3)
    res = compress_model(model, token_batch(2, 16), "magnitude", {"sparsity": 0.5},
                         DriverConfig(device="cpu", blocks=(1, 2)), progress=False)
    assert {r["block"] for r in res.rows} == {1}
    blocks, ref_blocks = blocks_of(model, adapter_for(model)), blocks_of(ref, adapter_for(ref))
    for b in (0, 2):
        for (n, p), (_, q) in zip(blocks[b].named_parameters(), ref_blocks[b].named_parameters()):
            assert torch.equal(p, q), n
    assert (blocks[1].mlp.down_proj.weight == 0).float().mean() >= 0.5


def test_nonfinite_gram_names_the_layer():
    from reprise.io import ReproError

    model = tiny_model("opt")
    with torch.no_grad():  # a NaN before the first linear poisons its inputs, hence its Gram
        blocks_of(model, adapter_for(model))[0].self_attn_layer_norm.weight[0] = float("nan")
    with pytest.raises(ReproError, match=r"block 0 self_attn\.k_proj.*Gram.*(NaN|finite)"):
        compress_model(model, token_batch(2, 16), "gptq", {"bits": 4}, DriverConfig(device="cpu"), progress=False)


def test_bad_blocks_and_calibration_are_refused():
    from reprise.io import ReproError

    model = tiny_model("opt")
    with pytest.raises(ReproError, match="exceeds"):
        compress_model(model, token_batch(2, 16), "rtn", {"bits": 4}, DriverConfig(blocks=(0, 9)), progress=False)
    with pytest.raises(ReproError, match="integer tensor"):
        compress_model(model, torch.zeros(2, 16), "rtn", {"bits": 4}, DriverConfig(), progress=False)
    with pytest.raises(ReproError, match="unknown method"):
        compress_model(model, token_batch(2, 16), "gptqq", {}, DriverConfig(), progress=False)


@pytest.mark.parametrize("family", FAMILIES)
def test_declared_shared_inputs_are_really_shared(family):
    """A wrong adapter table would hand a layer another layer's Gram: check the inputs are identical."""
    model = tiny_model(family)
    adapter = adapter_for(model)
    block = blocks_of(model, adapter)[0]
    seen = {}
    handles = [lin.register_forward_hook(lambda _m, inp, _o, n=name: seen.__setitem__(n, inp[0]))
               for name, lin in linears_of(block, adapter).items()]
    with torch.no_grad():
        model(input_ids=token_batch(2, 16))
    for h in handles:
        h.remove()
    for shared in adapter.shared_inputs:
        for name in shared[1:]:
            assert torch.equal(seen[name], seen[shared[0]]), (family, name)


@pytest.mark.parametrize("family", ["opt", "llama"])
def test_collected_grams_equal_xtx_of_the_dense_model(family):
    from reprise.llm.driver import collect_layer_grams

    model = tiny_model(family, num_hidden_layers=3)
    adapter = adapter_for(model)
    ids = token_batch(4, 16)
    seen = {}
    blocks = blocks_of(model, adapter)
    handles = [lin.register_forward_hook(lambda _m, inp, _o, key=(b, name): seen.setdefault(key, []).append(inp[0]))
               for b in (0, 2) for name, lin in linears_of(blocks[b], adapter).items()]
    with torch.no_grad():
        model(input_ids=ids)
    for h in handles:
        h.remove()
    got = collect_layer_grams(model, ids, [0, 2], DriverConfig(device="cpu", batch_size=2))
    assert set(got) == set(seen)
    for key, xs in seen.items():
        X = torch.cat(xs).reshape(-1, xs[0].shape[-1]).double()
        assert got[key]["n_tokens"] == X.shape[0]
        torch.testing.assert_close(got[key]["G"].double(), X.T @ X / X.shape[0], rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(got[key]["x_mean"].double(), X.mean(0), rtol=1e-4, atol=1e-5)
        assert got[key]["x_mean"].device.type == "cpu" and got[key]["role"] == adapter.role(key[1])
        assert torch.equal(got[key]["W"], linears_of(blocks[key[0]], adapter)[key[1]].weight.float())


@pytest.mark.parametrize("family", ["opt", "llama"])
def test_dsnot_runs_end_to_end_and_keeps_wandas_mask_on_the_mlp(family):
    """DSnoT's default skip_layer="mlp": the MLP linears keep the plain Wanda mask, the attention
    linears are refined. With one dense pass per block, block 0's Grams are the same in both runs."""
    from reprise.llm.driver import unpack_mask

    ids = token_batch(4, 32, seed=2)
    driver = DriverConfig(device="cpu", true_sequential=False)
    dsnot_model, wanda_model = tiny_model(family), tiny_model(family)
    with torch.no_grad():  # OPT: shifted LayerNorm biases give the inputs clearly non-zero means
        for block in blocks_of(dsnot_model, adapter_for(dsnot_model)):
            for ln in (m for m in block.modules() if isinstance(m, torch.nn.LayerNorm) and m.bias is not None):
                ln.bias.normal_(0, 0.5, generator=torch.Generator().manual_seed(0))
        wanda_model.load_state_dict(dsnot_model.state_dict())
    res = compress_model(dsnot_model, ids, "dsnot", {"sparsity": 0.5}, driver, progress=False)
    ref = compress_model(wanda_model, ids, "wanda", {"sparsity": 0.5}, driver, progress=False)
    adapter = adapter_for(dsnot_model)
    assert len(res.rows) == len(ref.rows) and all(0.45 <= r["zero_frac"] for r in res.rows)
    same = {}
    for name in adapter.linear_names:
        a = unpack_mask(res.extras[f"0.{name}.mask"], res.extras[f"0.{name}.mask_shape"])
        b = unpack_mask(ref.extras[f"0.{name}.mask"], ref.extras[f"0.{name}.mask_shape"])
        same[name] = torch.equal(a, b)
    assert all(same[n] for n in adapter.linear_names if adapter.role(n) == "mlp"), same
    assert not all(same[n] for n in adapter.linear_names if adapter.role(n) == "attn"), same


def test_driver_passes_the_activation_mean_to_methods_that_need_it():
    from reprise.llm.methods import get_method

    seen = []
    method = get_method("dsnot")
    real = method.fn

    def spy(W, G, cfg, *, x_mean):
        seen.append((x_mean.shape, W.shape[1], cfg.max_cycles))
        return real(W, G, cfg, x_mean=x_mean)

    object.__setattr__(method, "fn", spy)  # Method is a frozen dataclass
    try:
        model = tiny_model("llama")
        compress_model(model, token_batch(2, 16), "dsnot", {"sparsity": 0.5}, DriverConfig(device="cpu"),
                       progress=False)
    finally:
        object.__setattr__(method, "fn", real)
    adapter = adapter_for(model)
    assert len(seen) == len(blocks_of(model, adapter)) * len(adapter.linear_names)
    assert all(shape == (p,) for shape, p, _ in seen)
    roles = [adapter.role(n) for n in adapter.linear_names] * len(blocks_of(model, adapter))
    assert [c for _, _, c in seen] == [0 if r == "mlp" else 50 for r in roles]


@pytest.mark.parametrize("family", FAMILIES)
def test_every_linear_has_a_role(family):
    adapter = adapter_for(tiny_model(family))
    roles = [adapter.role(n) for n in adapter.linear_names]
    assert set(roles) == {"attn", "mlp"} and roles == sorted(roles)  # attention first, then the MLP
