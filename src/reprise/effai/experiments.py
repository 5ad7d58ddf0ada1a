"""Efficient AI in Practice (arXiv 2502.14305, Behdin et al., LinkedIn): method replication on public data.

The paper's data and models are proprietary (spec other-papers.md §8.3), so nothing here is the
paper's numbers. ``effai.sub_kd`` is the smoke substitute of spec §8.5 in one job: it trains a
teacher, distils students, prunes and quantizes one of them, and returns every row; the manifest
renders them three times (``sub_kd``, ``sub_prune``, ``sub_quant`` by ``where: {study: ...}``).

Pipeline (all models real transformers ``LlamaForCausalLM`` built from a seeded config,
:func:`reprise.effai.tasks.tiny_llama`; the task is :class:`reprise.effai.tasks.ClickTask`):

1. *teacher* (``teacher_hidden`` 64, ``teacher_intermediate`` 256, 2 layers) trained by SFT on
   ``n_train`` examples, each serialised at random in the direct or the reason format;
2. *students* (``student_hidden`` 32, ``student_intermediate`` 128) on the first ``n_student``
   of those examples, direct format: ``sft`` (hard labels) vs ``fkl`` (forward KL to the teacher's
   logits at the answer position, ``temperature``), same epochs, optimiser and init;
3. *generative variant* (``generative``): students in the reason format, single-stage (offline FKL
   for ``gen_epochs + onpolicy_epochs`` epochs) vs two-stage (offline FKL ``gen_epochs``, then
   on-policy FKL ``onpolicy_epochs`` on student-sampled answers, ``onpolicy_fraction``,
   ``sample_temperature``); scored free-running (the model generates its reason greedily, then the
   click token is read), with the reason's accuracy;
4. *pruning*: each of ``prune_sparsities`` of the FKL student's MLP neurons removed by each of
   ``prune_methods`` (``osscar``; ``mp``, magnitude, as the OSSCAR paper's baseline) through the
   structured driver (:func:`reprise.llm.driver.structured.prune_structured`, calibration: the
   first ``n_calib`` training sequences), the model shrunk physically
   (:func:`reprise.llm.export.shrink_model`), saved and reloaded (``reload_max_abs_diff``), then
   re-distilled ``redistill_epochs`` from the teacher; the dense student gets the same extra
   epochs as a control (``dense / redistilled``), since re-distillation is also more training;
5. *quantization*: the FKL student's block linears by each of ``quant`` (``"<method>/w<bits>"``:
   ``rtn`` or ``quantease``, per-row grids) through :func:`reprise.llm.driver.compress_model`.

Rows (one per model): ``experiment, seed, study (kd|gen|prune|quant), model (oracle|teacher|student),
method, setting (s50: 50% of the neurons removed; w4: 4-bit weights; else -), stage, params,
weight_bits, size_kib, auc, reason_accuracy, reload_max_abs_diff, seconds``.
``auc`` is the test AUC of ``p(click) / (p(click) + p(no-click))`` at the answer position
(``oracle``: of the true click probabilities, the Bayes AUC of the test set). ``size_kib``: fp32
parameters, except quantized block linears at ``weight_bits`` plus an fp16 scale and zero per row.

Params (defaults = smoke): ``n_items=48, n_categories=4, history=8, p_favourite=0.6, slope=10.0,
popularity=0.5, world_seed=0`` (the task), ``n_train=3000, n_student=1000, n_test=2000,
n_calib=128, teacher_hidden=64, teacher_intermediate=256, student_hidden=32,
student_intermediate=128, layers=2, heads=4, teacher_epochs=8, student_epochs=10, batch_size=32,
lr=1e-3, temperature=1.0, generative=true, gen_epochs=8, onpolicy_epochs=4,
onpolicy_fraction=1.0, sample_temperature=0.85, prune_sparsities=[0.5, 0.9], prune_methods=[mp, osscar],
redistill_epochs=1, redistill_lr=1e-3, quant=[rtn/w8, rtn/w4, quantease/w4, rtn/w2, quantease/w2],
device="auto"``
(CUDA when available). ``seed`` draws the data and every init.

Measured (OMP_NUM_THREADS=1, the shared 2-core machine, defaults): 20-30 CPU seconds for the whole
job (teacher about 40% of it; pruning and quantization under 5 s together); the results are in
config/papers/effai.yaml's notes. ``full`` (20,000 examples, 20 epochs) is about 15x the smoke
work, a few CPU minutes per seed.
"""
from __future__ import annotations

import copy
import logging
import re
import tempfile
import time
from typing import Any, Mapping

import numpy as np
import torch

from reprise.effai import distill
from reprise.effai.tasks import ASK, CLICK, NOCLICK, ClickTask, tiny_llama
from reprise.experiments import boolean, check_seed, choice, experiment, integer, list_of, params as _validate, real
from reprise.io import ReproError

log = logging.getLogger("reprise.effai")

COLUMNS = ["experiment", "seed", "study", "model", "method", "setting", "stage", "params", "weight_bits", "size_kib",
           "auc", "reason_accuracy", "reload_max_abs_diff", "seconds"]
_QUANT = re.compile(r"^(rtn|quantease)/w([2-8])$")


def _quant_setting(where: str, v: Any) -> str:
    if not isinstance(v, str) or not _QUANT.match(v):
        raise ReproError(f"{where}={v!r} must be '<method>/w<bits>' with method rtn or quantease and bits 2-8, "
                         "e.g. 'quantease/w4'")
    return v


def _device(where: str, v: Any) -> str:
    if not isinstance(v, str) or not re.match(r"^(auto|cpu|cuda(:\d+)?)$", v):
        raise ReproError(f"{where}={v!r} must be 'auto', 'cpu', 'cuda' or 'cuda:N'")
    return v


SPEC = {
    "n_items": (48, integer(2)), "n_categories": (4, integer(2)), "history": (8, integer(1, 48)),
    "p_favourite": (0.6, real(0.0, high=1.0)), "slope": (10.0, real()), "popularity": (0.5, real(0.0)),
    "world_seed": (0, integer(0)),
    "n_train": (3000, integer(10)), "n_student": (1000, integer(10)), "n_test": (2000, integer(10)),
    "n_calib": (128, integer(1)),
    "teacher_hidden": (64, integer(4)), "teacher_intermediate": (256, integer(2)),
    "student_hidden": (32, integer(4)), "student_intermediate": (128, integer(2)),
    "layers": (2, integer(1)), "heads": (4, integer(1)),
    "teacher_epochs": (8, integer(1)), "student_epochs": (10, integer(1)), "batch_size": (32, integer(1)),
    "lr": (1e-3, real(0.0, strict=True)), "temperature": (1.0, real(0.0, strict=True)),
    "generative": (True, boolean), "gen_epochs": (8, integer(1)), "onpolicy_epochs": (4, integer(1)),
    "onpolicy_fraction": (1.0, real(0.0, high=1.0)), "sample_temperature": (0.85, real(0.0)),
    "prune_sparsities": ([0.5, 0.9], list_of(real(0.0, strict=True, high=0.95), scalar=True)),
    "prune_methods": (["mp", "osscar"], list_of(choice("mp", "osscar", "mp-plus", "ziplm"), non_empty=False)),
    "redistill_epochs": (1, integer(0)), "redistill_lr": (1e-3, real(0.0, strict=True)),
    "quant": (["rtn/w8", "rtn/w4", "quantease/w4", "rtn/w2", "quantease/w2"], list_of(_quant_setting, non_empty=False)),
    "device": ("auto", _device),
}


def _auc(labels: np.ndarray, scores) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(labels, np.asarray(scores, dtype=np.float64)))


def _size_kib(model, bits: int | None = None) -> float:
    """fp32 parameters; with ``bits``, the blocks' linear weights at ``bits`` plus fp16 scale+zero per row."""
    from reprise.llm.export import parameter_count

    total_bits = 32.0 * parameter_count(model)
    if bits is not None:
        for block in model.model.layers:
            for lin in block.modules():
                if isinstance(lin, torch.nn.Linear):
                    out_f, in_f = lin.weight.shape
                    total_bits += (bits - 32.0) * out_f * in_f + 32.0 * out_f
    return total_bits / 8 / 1024


def _row(study: str, model_name: str, method: str, stage: str, model=None, auc: float = float("nan"),
         bits: int | None = None, seconds: float = 0.0, setting: str = "-", **extra: Any) -> dict[str, Any]:
    from reprise.llm.export import parameter_count

    return {"study": study, "model": model_name, "method": method, "setting": setting, "stage": stage,
            "params": parameter_count(model) if model is not None else None,
            "weight_bits": bits if bits is not None else (32 if model is not None else None),
            "size_kib": round(_size_kib(model, bits), 3) if model is not None else None,
            "auc": auc, "reason_accuracy": extra.get("reason_accuracy"),
            "reload_max_abs_diff": extra.get("reload_max_abs_diff"), "seconds": round(seconds, 3)}


def _direct_auc(model, prompts: torch.Tensor, labels: np.ndarray) -> float:
    return _auc(labels, distill.token_scores(model, prompts, CLICK, NOCLICK))


def _free_running(model, task: ClickTask, reason_prompts: torch.Tensor, data) -> tuple[float, float]:
    """Generate the reason greedily, then score the click token after it: (AUC, reason accuracy)."""
    with torch.no_grad():
        with_reason = distill.sample_answers(model, reason_prompts, 1, temperature=0.0)
    reason = (with_reason[:, -1].cpu().numpy() - task.first_category)
    return _direct_auc(model, with_reason, data.label), float((reason == data.reason).mean())


def _reload_diff(model, prompts: torch.Tensor) -> float:
    """Save ``model`` with save_pretrained, reload it with from_pretrained, max |logit difference|."""
    from transformers import LlamaForCausalLM

    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp)
        again = LlamaForCausalLM.from_pretrained(tmp).to(prompts.device).eval()
    with torch.no_grad():
        return float((model(input_ids=prompts).logits - again(input_ids=prompts).logits).abs().max())


def prune_mlp(model, calib_ids: torch.Tensor, sparsity: float, method: str = "osscar", device: str = "cpu",
              batch_size: int = 64):
    """Remove ``sparsity`` of every block's MLP neurons with the registered structured ``method``
    through the repository's structured driver, then shrink the model physically (in place)."""
    from reprise.llm.driver import DriverConfig
    from reprise.llm.driver.structured import prune_structured
    from reprise.llm.export import shrink_model, unit_layout

    driver = DriverConfig(device=device, batch_size=batch_size, offload=False)
    result = prune_structured(model, calib_ids, method, {"neurons_sparsity": sparsity}, unit_layout(model), driver,
                              kinds=("neurons",))
    shrink_model(model, result.keep)
    return result


def quantize(model, calib_ids: torch.Tensor, method: str, bits: int, device: str = "cpu", batch_size: int = 64):
    """Quantize every block linear of ``model`` (in place) with the registered ``method`` at ``bits``."""
    from reprise.llm.driver import DriverConfig, compress_model

    driver = DriverConfig(device=device, batch_size=batch_size, offload=False)
    return compress_model(model, calib_ids, method, {"bits": bits, "group_size": -1}, driver, progress=False)


@experiment("effai.sub_kd")
def sub_kd(params: Mapping[str, Any], seed: int):
    """Teacher, SFT vs FKL students, two-stage distillation, OSSCAR pruning and quantization (module doc)."""
    import pandas as pd
    from reprise.llm.models.blockwise import pick_device

    name = "effai.sub_kd"
    p = _validate(name, params, SPEC)
    seed = check_seed(name, seed)
    if p["n_student"] > p["n_train"]:
        raise ReproError(f"{name}: params['n_student']={p['n_student']} exceeds n_train={p['n_train']}; "
                         "students train on a subset of the teacher's data")
    for key in ("teacher_hidden", "student_hidden"):
        if p[key] % p["heads"]:
            raise ReproError(f"{name}: params[{key!r}]={p[key]} must be a multiple of heads={p['heads']}")
    device = pick_device(p["device"])
    task = ClickTask(n_items=p["n_items"], n_categories=p["n_categories"], history=p["history"],
                     p_favourite=p["p_favourite"], slope=p["slope"], popularity=p["popularity"],
                     world_seed=p["world_seed"])
    rng = np.random.default_rng([seed, 18])
    train, test = task.sample(p["n_train"], rng), task.sample(p["n_test"], rng)
    P = task.prompt_len()
    ids_d, mask_d = task.encode(train, "direct")
    ids_r, mask_r = task.encode(train, "reason")
    test_d = task.encode(test, "direct")[0][:, :P].to(device)
    test_r = task.encode(test, "reason")[0][:, :P].to(device)
    # the teacher sees each training example once per epoch in one of the two formats, at random
    pick = torch.as_tensor(rng.random(p["n_train"]) < 0.5)
    ids_mix = torch.where(pick[:, None], torch.nn.functional.pad(ids_d, (0, 1), value=ASK), ids_r)
    mask_mix = torch.where(pick[:, None], torch.nn.functional.pad(mask_d, (0, 1), value=False), mask_r)
    # the direct rows carry one pad token after their label: it is never a target (mask False), and
    # causal attention keeps it from influencing any earlier position
    lr, bs, T = p["lr"], p["batch_size"], p["temperature"]
    rows = [_row("kd", "oracle", "true_probability", "bayes", auc=_auc(test.label, test.click_prob))]

    def new(hidden: int, inter: int, tag: int):
        return tiny_llama(task.vocab, hidden, inter, p["layers"], p["heads"], seed=seed * 1000 + tag,
                          max_positions=task.seq_len("reason") + 4).to(device)

    t0 = time.perf_counter()
    teacher = new(p["teacher_hidden"], p["teacher_intermediate"], 1)
    distill.train(teacher, ids_mix, mask_mix, epochs=p["teacher_epochs"], batch_size=bs, lr=lr, seed=seed,
                  device=device, name="teacher")
    rows.append(_row("kd", "teacher", "sft", "trained", teacher, _direct_auc(teacher, test_d, test.label),
                     seconds=time.perf_counter() - t0))
    if p["generative"]:
        auc, acc = _free_running(teacher, task, test_r, test)
        rows.append(_row("gen", "teacher", "sft", "free_running", teacher, auc, reason_accuracy=acc))

    ns, se = p["n_student"], p["student_epochs"]
    students = {}
    for method, teach in (("sft", None), ("fkl", teacher)):
        t0 = time.perf_counter()
        student = new(p["student_hidden"], p["student_intermediate"], 2)  # same init for both
        distill.train(student, ids_d[:ns], mask_d[:ns], teacher=teach, epochs=se, batch_size=bs, lr=lr,
                      temperature=T, seed=seed + 1, device=device, name=f"student-{method}")
        students[method] = student
        rows.append(_row("kd", "student", method, "trained", student, _direct_auc(student, test_d, test.label),
                         seconds=time.perf_counter() - t0))

    if p["generative"]:
        ge, oe = p["gen_epochs"], p["onpolicy_epochs"]
        for method in ("single_stage", "two_stage"):
            t0 = time.perf_counter()
            student = new(p["student_hidden"], p["student_intermediate"], 3)
            epochs = ge + (oe if method == "single_stage" else 0)  # same total epochs for both recipes
            distill.train(student, ids_r[:ns], mask_r[:ns], teacher=teacher, epochs=epochs, batch_size=bs, lr=lr,
                          temperature=T, seed=seed + 2, device=device, name=f"gen-{method}")
            if method == "two_stage":
                distill.on_policy_distill(student, teacher, ids_r[:ns], mask_r[:ns], epochs=oe, batch_size=bs, lr=lr,
                                          fraction=p["onpolicy_fraction"], sample_temperature=p["sample_temperature"],
                                          temperature=T, seed=seed + 3, device=device, name="gen-two_stage")
            auc, acc = _free_running(student, task, test_r, test)
            rows.append(_row("gen", "student", method, "free_running", student, auc,
                             seconds=time.perf_counter() - t0, reason_accuracy=acc))

    base = students["fkl"]
    calib = ids_d[: p["n_calib"]].to(device)
    dev = str(device)
    base_auc = _direct_auc(base, test_d, test.label)
    if p["prune_methods"]:
        rows.append(_row("prune", "student", "dense", "fkl", base, base_auc))
        if p["redistill_epochs"]:  # the control: the same extra distillation without pruning
            t0 = time.perf_counter()
            more = copy.deepcopy(base)
            distill.train(more, ids_d[:ns], mask_d[:ns], teacher=teacher, epochs=p["redistill_epochs"], batch_size=bs,
                          lr=p["redistill_lr"], temperature=T, seed=seed + 4, device=device, name="dense-redistill")
            rows.append(_row("prune", "student", "dense", "redistilled", more, _direct_auc(more, test_d, test.label),
                             seconds=time.perf_counter() - t0))
    for sparsity in p["prune_sparsities"] if p["prune_methods"] else []:
        setting = f"s{round(100 * sparsity)}"
        for method in p["prune_methods"]:
            log.info("pruning %s of the student's MLP neurons with %s", setting, method)
            t0 = time.perf_counter()
            pruned = copy.deepcopy(base)
            prune_mlp(pruned, calib, sparsity, method, dev, bs)
            seconds = time.perf_counter() - t0
            diff = _reload_diff(pruned, test_d[:256])
            rows.append(_row("prune", "student", method, "one_shot", pruned, _direct_auc(pruned, test_d, test.label),
                             seconds=seconds, setting=setting, reload_max_abs_diff=diff))
            if p["redistill_epochs"]:
                t0 = time.perf_counter()
                distill.train(pruned, ids_d[:ns], mask_d[:ns], teacher=teacher, epochs=p["redistill_epochs"],
                              batch_size=bs, lr=p["redistill_lr"], temperature=T, seed=seed + 4, device=device,
                              name=f"{method}-{setting}-redistill")
                rows.append(_row("prune", "student", method, "redistilled", pruned,
                                 _direct_auc(pruned, test_d, test.label), seconds=time.perf_counter() - t0,
                                 setting=setting))

    if p["quant"]:
        rows.append(_row("quant", "student", "dense", "fp32", base, base_auc))
    for setting in p["quant"]:
        method, bits = _QUANT.match(setting).groups()
        log.info("quantizing the student's block linears: %s", setting)
        t0 = time.perf_counter()
        q = copy.deepcopy(base)
        quantize(q, calib, method, int(bits), dev, bs)
        rows.append(_row("quant", "student", method, "quantized", q, _direct_auc(q, test_d, test.label), bits=int(bits),
                         seconds=time.perf_counter() - t0, setting=f"w{bits}"))

    frame = pd.DataFrame(rows)
    frame.insert(0, "seed", seed)
    frame.insert(0, "experiment", name)
    return frame[COLUMNS]


# the full-scale MovieLens version registers itself on import (it reuses this module's helpers)
from reprise.effai import movielens as _movielens  # noqa: E402,F401
