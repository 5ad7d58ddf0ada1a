"""reprise.effai: the click task, pruning/quantization through the LLM driver, the sub_kd experiment."""
import numpy as np
import pytest
import torch

from reprise.effai.experiments import prune_mlp, quantize, sub_kd
from reprise.effai.tasks import ASK, BOS, CLICK, NOCLICK, SEP, WHY, ClickTask, tiny_llama
from reprise.experiments import get_experiment
from reprise.io import ReproError


def test_task_layout_and_answer_mask():
    task = ClickTask(n_items=12, n_categories=3, history=5)
    data = task.sample(50, np.random.default_rng(0))
    ids, mask = task.encode(data, "direct")
    P = task.prompt_len()
    assert ids.shape == (50, task.seq_len("direct")) and P == 5 + 5
    assert (ids[:, 0] == BOS).all() and (ids[:, 3] == SEP).all() and (ids[:, P - 1] == ASK).all()
    assert torch.equal(ids[:, 1] - task.first_category, torch.as_tensor(data.candidate % 3))
    assert torch.equal(ids[:, 2] - task.first_item, torch.as_tensor(data.candidate))
    assert torch.equal(ids[:, 4:4 + 5] - task.first_category, torch.as_tensor(data.history % 3))
    assert torch.equal(ids[:, -1] == CLICK, torch.as_tensor(data.label == 1))
    assert mask[:, P:].all() and not mask[:, :P].any()
    rids, rmask = task.encode(data, "reason")
    assert (rids[:, P - 1] == WHY).all() and torch.equal(rids[:, P] - task.first_category, torch.as_tensor(data.reason))
    assert set(rids[:, -1].tolist()) <= {CLICK, NOCLICK} and rmask[:, P:].all() and int(rmask.sum()) == 100
    assert int(ids.max()) < task.vocab and int(rids.max()) < task.vocab


def test_task_draws_follow_the_generative_model():
    task = ClickTask(n_items=40, n_categories=4, history=8, p_favourite=0.6, slope=10.0)
    d = task.sample(20000, np.random.default_rng(1))
    C = task.n_categories
    # labels are Bernoulli(click_prob): the click rate matches the mean probability (4 standard errors)
    assert abs(d.label.mean() - d.click_prob.mean()) < 4 * np.sqrt(0.25 / len(d))
    # the true probability is increasing in the affinity: same-item candidates, more matches, higher p
    affinity = (d.history % C == (d.candidate % C)[:, None]).mean(axis=1)
    same = d.candidate == d.candidate[0]
    order = np.argsort(affinity[same])
    assert np.all(np.diff(d.click_prob[same][order]) >= -1e-12)
    # the reason is the history's majority category, lowest index on ties
    counts = np.stack([(d.history % C == c).sum(1) for c in range(C)], 1)
    assert np.array_equal(d.reason, counts.argmax(1))
    assert ((d.history >= 0) & (d.history < task.n_items)).all()


def test_task_refuses_bad_settings():
    with pytest.raises(ReproError, match="n_categories"):
        ClickTask(n_categories=1)
    with pytest.raises(ReproError, match="fmt"):
        ClickTask().encode(ClickTask().sample(2, np.random.default_rng(0)), "chat")


def _model_and_calib():
    task = ClickTask()
    ids, _ = task.encode(task.sample(64, np.random.default_rng(0)), "direct")
    return tiny_llama(task.vocab, 32, 64, layers=2, heads=4, seed=0), ids


def test_osscar_pruned_model_shrinks_and_reloads_with_equal_logits(tmp_path):
    from transformers import LlamaForCausalLM

    from reprise.llm.export import parameter_count

    model, calib = _model_and_calib()
    dense = parameter_count(model)
    prune_mlp(model, calib, 0.5, "osscar")
    cfg = model.config
    assert cfg.intermediate_size == 32
    # each block loses 32 neurons: a row of gate_proj and up_proj and a column of down_proj each
    assert dense - parameter_count(model) == cfg.num_hidden_layers * 3 * cfg.hidden_size * 32
    model.save_pretrained(tmp_path)
    again = LlamaForCausalLM.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        assert torch.equal(model(input_ids=calib).logits, again(input_ids=calib).logits)


def test_rtn_through_the_driver_puts_every_block_row_on_a_4bit_grid():
    model, calib = _model_and_calib()
    embed = model.model.embed_tokens.weight.detach().clone()
    quantize(model, calib, "rtn", 4)
    for block in model.model.layers:
        for lin in block.modules():
            if isinstance(lin, torch.nn.Linear):
                assert max(len(torch.unique(row)) for row in lin.weight.detach()) <= 16
    assert torch.equal(model.model.embed_tokens.weight, embed)  # only the blocks' linears are quantized


SMALL = {"n_train": 120, "n_student": 60, "n_test": 80, "n_calib": 16, "teacher_hidden": 16,
         "teacher_intermediate": 32, "student_hidden": 8, "student_intermediate": 16, "teacher_epochs": 1,
         "student_epochs": 1, "gen_epochs": 1, "onpolicy_epochs": 1, "prune_sparsities": [0.5],
         "quant": ["rtn/w8", "quantease/w4"], "device": "cpu"}


def test_sub_kd_rows_cover_every_study():
    from sklearn.metrics import roc_auc_score

    frame = get_experiment("effai.sub_kd")(SMALL, 3)
    assert set(frame.study) == {"kd", "gen", "prune", "quant"}
    kd = frame[frame.study == "kd"]
    assert set(kd.method) == {"true_probability", "sft", "fkl"}
    task = ClickTask()
    rng = np.random.default_rng([3, 18])
    task.sample(SMALL["n_train"], rng)
    test = task.sample(SMALL["n_test"], rng)
    oracle = float(kd[kd.model == "oracle"].auc.iloc[0])
    assert oracle == pytest.approx(roc_auc_score(test.label, test.click_prob))
    prune = frame[frame.study == "prune"]
    dense = int(prune[prune.method == "dense"].params.iloc[0])
    shrunk = prune[prune.method != "dense"]
    assert (shrunk.params < dense).all() and (shrunk.reload_max_abs_diff.dropna() == 0).all()
    assert set(shrunk.stage) == {"one_shot", "redistilled"}
    quant = frame[frame.study == "quant"]
    q4 = quant[quant.setting == "w4"]
    assert int(q4.weight_bits.iloc[0]) == 4 and (q4.size_kib < quant[quant.method == "dense"].size_kib.iloc[0]).all()
    assert frame.auc.between(0, 1).all()


@pytest.mark.parametrize("bad, key", [({"n_student": 500}, "n_student"), ({"quant": ["gptq/w4"]}, "quant"),
                                      ({"epochs": 3}, "epochs"), ({"student_hidden": 30}, "student_hidden"),
                                      ({"device": "tpu"}, "device")])
def test_sub_kd_rejects_bad_params_naming_the_key(bad, key):
    with pytest.raises(ReproError, match=key):
        sub_kd({**SMALL, **bad}, 0)
