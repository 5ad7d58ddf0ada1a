"""mSAM (Behdin et al., arXiv 2212.04343 / 2302.09693; specs/other-papers.md §4): one experiment ``sam.msam_grid``.

One job trains, for every task of ``tasks``, vanilla SGD-momentum, SAM (``num_shards = 1``) and mSAM
(``num_shards = m > 1``: the batch is cut into ``m`` equal micro-batches, each perturbed by its own normalised
gradient, the ``m`` perturbed gradients averaged; :class:`reprise.sam.SAM` with ``micro_batches = m``) from the
same initial weights and over the same batch order, **in lockstep**: epoch ``e`` of every configuration runs before
epoch ``e + 1`` of any, so the per-epoch seconds of SGD, SAM and mSAM are measured interleaved in one process and
``time_ratio`` divides each by SGD's seconds of the same epoch. At the end, the sharpness (top eigenvalue of the
training loss's Hessian, power iteration on Hessian-vector products, :func:`reprise.sam.top_hessian_eigenvalue`)
on the first ``sharpness_n`` training examples, model in eval mode.

Rows (one per task × configuration × epoch, epoch 0 = the initial weights):
``experiment, seed, task, domain (image|text), model, norm, method (sgd|sam|msam), rho, num_shards, shard_size,
batch_size, epoch, train_loss (mean over the epoch's batches; epoch 0: full training set), test_loss,
test_accuracy, epoch_seconds, time_ratio, timed (epoch ≥ 2: the first epoch's warm-up is not timed), sharpness
and sharpness_vs_sam (its ratio to SAM's of the same task and seed; last epoch only), device, note``.
``num_shards`` is the number of micro-batches and ``shard_size = batch_size / num_shards`` the micro-batch size
(Foret et al.'s "m" is the latter, Behdin et al.'s the former: §4.2).

Tasks:

- ``digits``: scikit-learn's bundled ``load_digits`` (stratified split 1347 / 450, :func:`reprise.sam.network.digits_data`),
  a 64 → hidden → hidden → 10 ReLU MLP — the smoke stand-in for CIFAR-10;
- ``tokens``: synthetic two-class token sequences (offline stand-in for GLUE): each of ``seq_len`` tokens is drawn
  from the label's 20-token lexicon with probability 0.15, from the other label's with 0.05, else uniformly from the
  rest of ``vocab``; 5 % label noise; a bag-of-embeddings classifier (embeddings initialised N(0, 0.1²), summed
  over the sequence), dimension ``dim``;
- ``cifar10_resnet18``, ``cifar10_wrn28_10``, ``cifar100_resnet18``, ``cifar100_wrn28_10`` (full scale):
  :mod:`reprise.vision.cifar` read from ``data_dir`` (``snakemake fetch_cifar10``), normalised, random crop + flip
  each batch; :mod:`reprise.vision.resnet_gn` with ``norm`` (GroupNorm with ``groups`` groups by default: no batch
  statistics, so mSAM's micro-batches are exactly independent; with ``norm="batch"`` every micro-batch normalises
  with its own statistics, and the running statistics are updated by the first (unperturbed) pass only).

Params (defaults = smoke): ``tasks=["digits", "tokens"], epochs=5, batch_size=64, lr=0.05, momentum=0.9,
weight_decay=0.0, schedule="constant"`` (or ``"cosine"``, per epoch), ``rho=0.05`` (SAM), ``msam_rho=None``
(mSAM's ρ; None: ``rho``), ``shards=[1, 2, 4, 8]`` (1 = SAM; each must divide ``batch_size``), ``vanilla=true``,
``vectorised=false`` (true: SAM/mSAM steps by :func:`vmap_msam_step`, the micro-batches in one batched pass; not
with BatchNorm), ``sharpness_iters=20, sharpness_n=2048, hidden=64, test_fraction=0.25, split_seed=0, vocab=200,
seq_len=32, n_train=1024, n_test=512, dim=16, norm="group", groups=16, data_dir="data/raw/cifar", device="auto"``.
``seed`` drives the initial weights and the batch order (the same for every configuration of one seed); the data
split and the synthetic tokens are fixed by ``split_seed``.

Measured (OMP_NUM_THREADS=1, the shared 2-core machine under load): the smoke defaults take 4-6 s per seed (digits
about 3 s, tokens 2 s, sharpness < 1 s); a workflow job (imports included) 5.1 CPU-s.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Callable, Mapping

import numpy as np

from reprise.experiments import boolean, choice, experiment, integer, list_of, optional, params as _validate, real
from reprise.io import ReproError
from reprise.sam.network import digits_data

log = logging.getLogger(__name__)

NAME = "sam.msam_grid"
COLUMNS = ["experiment", "seed", "task", "domain", "model", "norm", "method", "rho", "num_shards", "shard_size",
           "batch_size", "epoch", "train_loss", "test_loss", "test_accuracy", "epoch_seconds", "time_ratio", "timed",
           "sharpness", "sharpness_vs_sam", "device", "note"]
TASKS = ("digits", "tokens", "cifar10_resnet18", "cifar10_wrn28_10", "cifar100_resnet18", "cifar100_wrn28_10")
NOTES = {"digits": "smoke stand-in: load_digits MLP for the paper's CIFAR-10/100 networks",
         "tokens": "stand-in: synthetic token sequences, bag-of-embeddings classifier, for the paper's GLUE tasks"}
_integer = partial(integer, whole_floats=True)


def _str(where, v):
    if not isinstance(v, str) or not v:
        raise ReproError(f"{where}={v!r} must be a non-empty string")
    return v


SPEC = dict(tasks=(["digits", "tokens"], list_of(choice(*TASKS))), epochs=(5, _integer(1)),
            batch_size=(64, _integer(1)), lr=(0.05, real(0.0, strict=True)), momentum=(0.9, real(0.0)),
            weight_decay=(0.0, real(0.0)), schedule=("constant", choice("constant", "cosine")),
            rho=(0.05, real(0.0)), msam_rho=(None, optional(real(0.0))),
            shards=([1, 2, 4, 8], list_of(_integer(1))), vanilla=(True, boolean), vectorised=(False, boolean),
            sharpness_iters=(20, _integer(0)), sharpness_n=(2048, _integer(1)), hidden=(64, _integer(1)),
            test_fraction=(0.25, real(0.0, strict=True, high=0.9)), split_seed=(0, _integer(0)),
            vocab=(200, _integer(41)), seq_len=(32, _integer(1)), n_train=(1024, _integer(2)),
            n_test=(512, _integer(1)), dim=(16, _integer(1)), norm=("group", choice("group", "batch")),
            groups=(16, _integer(1)), data_dir=("data/raw/cifar", _str), device=("auto", _str))


# --------------------------------------------------------------------------------------------------------- the step
def _batchnorms(model):
    import torch

    return [mod for mod in model.modules() if isinstance(mod, torch.nn.modules.batchnorm._BatchNorm)]


def train_step(model, opt, loss_fn: Callable, xb, yb, num_shards: int):
    """One step of SGD (``opt`` a plain optimizer) or SAM/mSAM (``opt`` a :class:`reprise.sam.SAM`); the loss at
    ``w`` on the batch. mSAM's micro-batches are ``num_shards`` equal consecutive slices of the batch.

    BatchNorm layers: the perturbed (second) pass of each micro-batch leaves the running statistics unchanged
    (momentum 0 for that pass), so they average the unperturbed micro-batch statistics."""
    from reprise.sam.optim import SAM

    if not isinstance(opt, SAM):
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(xb), yb)
        loss.backward()
        opt.step()
        return float(loss.detach())
    if len(xb) % num_shards:
        raise ReproError(f"batch of {len(xb)} does not split into {num_shards} equal micro-batches")
    xs, ys = xb.chunk(num_shards), yb.chunk(num_shards)
    bns = _batchnorms(model)
    saved = [bn.momentum for bn in bns]
    calls = [0]

    def closure(k: int = 0):
        perturbed = calls[0] % 2 == 1  # SAM.step calls closure(k) at w, then at w + ε_k
        calls[0] += 1
        for bn, mom in zip(bns, saved):
            bn.momentum = 0.0 if perturbed else mom
        loss = loss_fn(model(xs[k]), ys[k])
        loss.backward()
        return loss

    try:
        loss = opt.step(closure)
    finally:
        for bn, mom in zip(bns, saved):
            bn.momentum = mom
    return float(loss)


def vmap_msam_step(model, opt, loss_fn: Callable, xb, yb, num_shards: int):
    """The mSAM step of :func:`train_step` with the ``m`` micro-batches in one vectorised pass each
    (``torch.func.vmap`` over the shards: per-shard gradients at ``w``, then at the ``m`` perturbed weights), the
    averaged gradient handed to ``opt``'s base optimizer. Same update as the loop, in 2 batched passes instead of
    ``2m`` small ones. Normalised or un-normalised ascent with one ``rho`` for all groups; no BatchNorm (a batch
    statistic inside ``vmap`` would be per shard, but its running-statistics update cannot be)."""
    import torch
    from torch.func import functional_call, grad, vmap

    from reprise.sam.optim import _EPS, SAM

    if not isinstance(opt, SAM):
        raise ReproError("vmap_msam_step needs a reprise.sam.SAM optimizer")
    if _batchnorms(model):
        raise ReproError("vmap_msam_step: the model has BatchNorm layers; use train_step (the loop over shards)")
    groups = opt.param_groups
    if len({(g["rho"], g["unnormalised"]) for g in groups}) != 1 or any(g["adaptive"] for g in groups):
        raise ReproError("vmap_msam_step: needs one rho and ascent for all parameter groups and no adaptive ascent")
    if len(xb) % num_shards:
        raise ReproError(f"batch of {len(xb)} does not split into {num_shards} equal micro-batches")
    rho, unnormalised = groups[0]["rho"], groups[0]["unnormalised"]
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    params = {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}
    buffers = dict(model.named_buffers())
    xs = xb.reshape(num_shards, -1, *xb.shape[1:])
    ys = yb.reshape(num_shards, -1, *yb.shape[1:])

    def shard_loss(w, x, y):
        return loss_fn(functional_call(model, (w, buffers), (x,)), y)

    g1 = vmap(grad(shard_loss), in_dims=(None, 0, 0))(params, xs, ys)
    with torch.no_grad():
        losses = vmap(shard_loss, in_dims=(None, 0, 0))(params, xs, ys)
        if unnormalised:
            first = params[names[0]]
            scale = torch.full((num_shards,), rho, dtype=first.dtype, device=first.device)
        else:
            norm = torch.sqrt(sum(g1[n].flatten(1).pow(2).sum(1) for n in names))
            scale = rho / (norm + _EPS)
        moved = {n: params[n].unsqueeze(0) + scale.view(-1, *[1] * params[n].dim()) * g1[n] for n in names}
    g2 = vmap(grad(shard_loss), in_dims=(0, 0, 0))(moved, xs, ys)
    for n, p in model.named_parameters():
        if p.requires_grad:
            p.grad = g2[n].mean(0)
    opt.base_optimizer.step()
    return float(losses.mean())


# --------------------------------------------------------------------------------------------------------- the tasks
@dataclass
class Task:
    name: str
    domain: str
    model_name: str
    Xtr: Any
    ytr: Any
    Xte: Any
    yte: Any
    build: Callable[[], Any]  # a fresh model (the caller fixes the RNG)
    augment: bool = False
    norm: str = "none"


def _digits_task(P, device) -> Task:
    import torch

    Xtr, ytr, Xte, yte = digits_data(P["split_seed"], P["test_fraction"])
    h = P["hidden"]

    def build():
        return torch.nn.Sequential(torch.nn.Linear(64, h), torch.nn.ReLU(), torch.nn.Linear(h, h), torch.nn.ReLU(),
                                   torch.nn.Linear(h, 10))

    return Task("digits", "image", f"mlp{h}", Xtr.to(device), ytr.to(device), Xte.to(device), yte.to(device), build)


def token_data(vocab: int, seq_len: int, n: int, seed: int):
    """Synthetic two-class token sequences (see the module docstring): (tokens n × seq_len int64, labels int64)."""
    import torch

    rng = np.random.default_rng(np.random.SeedSequence([0x70CE, int(seed)]))
    y = rng.integers(0, 2, n)
    lex = [np.arange(0, 20), np.arange(20, 40)]
    kind = rng.choice(3, size=(n, seq_len), p=[0.15, 0.05, 0.80])  # own lexicon, other lexicon, neutral
    own = np.where(y[:, None] == 0, rng.choice(lex[0], (n, seq_len)), rng.choice(lex[1], (n, seq_len)))
    other = np.where(y[:, None] == 0, rng.choice(lex[1], (n, seq_len)), rng.choice(lex[0], (n, seq_len)))
    neutral = rng.integers(40, vocab, (n, seq_len))
    tokens = np.where(kind == 0, own, np.where(kind == 1, other, neutral))
    flip = rng.random(n) < 0.05
    y = np.where(flip, 1 - y, y)
    return torch.as_tensor(tokens, dtype=torch.int64), torch.as_tensor(y, dtype=torch.int64)


def bag_of_embeddings(vocab: int, dim: int, classes: int = 2):
    """Token embeddings (``Embedding(vocab, dim)``) summed over the sequence, then ``Linear(dim, classes)``.

    ``Embedding`` + sum rather than ``EmbeddingBag``: the Hessian-vector products of the sharpness need a double
    backward, which ``EmbeddingBag`` does not implement."""
    import torch

    class BagOfEmbeddings(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = torch.nn.Embedding(vocab, dim)
            # N(0, 0.1²) rather than N(0, 1): the sum over seq_len tokens then starts at O(1), not O(√seq_len)
            torch.nn.init.normal_(self.embed.weight, std=0.1)
            self.head = torch.nn.Linear(dim, classes)

        def forward(self, tokens):
            return self.head(self.embed(tokens).sum(1))

    return BagOfEmbeddings()


def _tokens_task(P, device) -> Task:
    X, y = token_data(P["vocab"], P["seq_len"], P["n_train"] + P["n_test"], P["split_seed"])
    n = P["n_train"]
    return Task("tokens", "text", f"bag_of_embeddings{P['dim']}", X[:n].to(device), y[:n].to(device),
                X[n:].to(device), y[n:].to(device), lambda: bag_of_embeddings(P["vocab"], P["dim"]))


def _cifar_task(name: str, P, device) -> Task:
    from pathlib import Path

    from reprise.vision.cifar import CIFAR_ARCHIVES, load_cifar, normalise
    from reprise.vision.resnet_gn import resnet18, wide_resnet

    data, arch = name.split("_", 1)
    spec = CIFAR_ARCHIVES[data]
    where = Path(P["data_dir"])
    if not (where / spec["filename"]).is_file() and not (where / spec["folder"]).is_dir():
        raise ReproError(f"{NAME}: task {name!r} needs {where / spec['filename']} (param data_dir): run "
                         f"`snakemake fetch_{data}` first (full scale; needs the network)")
    Xtr, ytr = load_cifar(where, data, "train")
    Xte, yte = load_cifar(where, data, "test")
    k = spec["num_classes"]
    build = (lambda: resnet18(k, norm=P["norm"], groups=P["groups"])) if arch == "resnet18" else \
        (lambda: wide_resnet(28, 10, k, norm=P["norm"], groups=P["groups"]))
    return Task(name, "image", arch, normalise(Xtr, data).to(device), ytr.to(device), normalise(Xte, data).to(device),
                yte.to(device), build, augment=True, norm=P["norm"])


def make_task(name: str, P, device) -> Task:
    if name == "digits":
        return _digits_task(P, device)
    if name == "tokens":
        return _tokens_task(P, device)
    return _cifar_task(name, P, device)


# ------------------------------------------------------------------------------------------------------- the runs
@dataclass
class Run:
    method: str
    num_shards: int
    rho: float
    model: Any = None
    opt: Any = None
    sched: Any = None
    gen: Any = None
    rows: list = field(default_factory=list)


def _synchronise(device):
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _evaluate(model, X, y, batch: int = 1024) -> tuple[float, float]:
    import torch

    model.eval()
    total, correct = 0.0, 0
    with torch.no_grad():
        for s in range(0, len(X), batch):
            logits = model(X[s:s + batch])
            total += float(torch.nn.functional.cross_entropy(logits, y[s:s + batch], reduction="sum"))
            correct += int((logits.argmax(1) == y[s:s + batch]).sum())
    model.train()
    return total / len(X), correct / len(X)


def _make_runs(P, task: Task, seed: int, device):
    import torch
    from reprise.sam.network import INIT_STREAM, _generator
    from reprise.sam.optim import SAM

    configs = ([("sgd", 1, 0.0)] if P["vanilla"] else []) + \
        [("sam" if m == 1 else "msam", m, P["rho"] if m == 1 or P["msam_rho"] is None else P["msam_rho"])
         for m in P["shards"]]
    runs = []
    for method, m, rho in configs:
        with torch.random.fork_rng(devices=[]):  # the same init for every configuration; global RNG untouched
            torch.manual_seed(int(np.random.SeedSequence([INIT_STREAM, seed]).generate_state(1)[0]))
            model = task.build().to(device)
        base = dict(lr=P["lr"], momentum=P["momentum"], weight_decay=P["weight_decay"])
        opt = torch.optim.SGD(model.parameters(), **base) if method == "sgd" else \
            SAM(model.parameters(), torch.optim.SGD, rho=rho, micro_batches=m, **base)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=P["epochs"]) if P["schedule"] == "cosine" \
            else None
        runs.append(Run(method, m, rho, model, opt, sched, _generator(seed, 0xBA7C)))  # same batch order for all
    return runs


def _train_epoch(run: Run, task: Task, P, device) -> tuple[float, float]:
    """(mean training loss over the epoch's batches, seconds); incomplete last batch dropped (equal shards)."""
    import torch

    from reprise.vision.cifar import augment

    ce = torch.nn.functional.cross_entropy
    b, n = P["batch_size"], len(task.Xtr)
    order = torch.randperm(n, generator=run.gen)
    run.model.train()
    _synchronise(device)
    t0 = time.perf_counter()
    total, steps = 0.0, 0
    for s in range(0, n - b + 1, b):
        idx = order[s:s + b].to(device)
        xb, yb = task.Xtr[idx], task.ytr[idx]
        if task.augment:
            xb = augment(xb, run.gen)
        step = vmap_msam_step if P["vectorised"] and run.method != "sgd" else train_step
        total += step(run.model, run.opt, ce, xb, yb, run.num_shards)
        steps += 1
    _synchronise(device)
    seconds = time.perf_counter() - t0
    if run.sched is not None:
        run.sched.step()
    if not np.isfinite(total):
        raise ReproError(f"{NAME}: {task.name} {run.method} (m = {run.num_shards}, rho = {run.rho}) diverged; "
                         f"lower lr or rho")
    return total / steps, seconds


def _sharpness(run: Run, task: Task, P, seed: int) -> float:
    import torch

    from reprise.sam.network import top_hessian_eigenvalue

    if P["sharpness_iters"] == 0:
        return float("nan")
    X, y = task.Xtr[:P["sharpness_n"]], task.ytr[:P["sharpness_n"]]
    run.model.eval()
    try:
        params = [p for p in run.model.parameters() if p.requires_grad]
        return top_hessian_eigenvalue(lambda: torch.nn.functional.cross_entropy(run.model(X), y), params,
                                      iters=P["sharpness_iters"], tol=0.0, seed=seed)
    finally:
        run.model.train()


def _probe_sharpness(device) -> None:
    """Fail before training, not after it, when the power iteration cannot run on ``device``."""
    import torch

    from reprise.sam.network import top_hessian_eigenvalue

    w = torch.ones(3, device=device, requires_grad=True)
    try:
        top_hessian_eigenvalue(lambda: (w ** 4).sum(), [w], iters=2)
    except RuntimeError as exc:
        raise ReproError(f"{NAME}: the sharpness (reprise.sam.network.top_hessian_eigenvalue) fails on {device}: "
                         f"{exc}; its start vector must be created on the parameters' device "
                         f"(or set sharpness_iters: 0)") from None


def _check(P):
    for i, m in enumerate(P["shards"]):
        if P["batch_size"] % m:
            raise ReproError(f"{NAME}: params['shards'][{i}]={m} does not divide batch_size={P['batch_size']}; "
                             f"mSAM needs equal micro-batches")
    if len(set(P["shards"])) != len(P["shards"]):
        raise ReproError(f"{NAME}: params['shards']={P['shards']} has repeated values")
    if len(set(P["tasks"])) != len(P["tasks"]):
        raise ReproError(f"{NAME}: params['tasks']={P['tasks']} has repeated values")


def _rows_of_task(P, task: Task, seed: int, device) -> list[dict]:
    runs = _make_runs(P, task, seed, device)
    b = P["batch_size"]

    def row(run, epoch, train_loss, seconds):
        test_loss, acc = _evaluate(run.model, task.Xte, task.yte)
        return dict(experiment=NAME, seed=int(seed), task=task.name, domain=task.domain, model=task.model_name,
                    norm=task.norm, method=run.method, rho=run.rho, num_shards=run.num_shards,
                    shard_size=b // run.num_shards, batch_size=b, epoch=epoch, train_loss=train_loss,
                    test_loss=test_loss, test_accuracy=acc, epoch_seconds=seconds, time_ratio=np.nan,
                    timed=epoch >= 2, sharpness=np.nan, sharpness_vs_sam=np.nan, device=str(device),
                    note=NOTES.get(task.name, ""))

    for run in runs:
        run.rows.append(row(run, 0, _evaluate(run.model, task.Xtr, task.ytr)[0], np.nan))
    for epoch in range(1, P["epochs"] + 1):
        for run in runs:  # lockstep: one epoch of every configuration, timed interleaved
            loss, seconds = _train_epoch(run, task, P, device)
            run.rows.append(row(run, epoch, loss, seconds))
        sgd = runs[0].rows[-1]["epoch_seconds"] if runs[0].method == "sgd" else np.nan
        for run in runs:
            run.rows[-1]["time_ratio"] = run.rows[-1]["epoch_seconds"] / sgd
        log.info("%s epoch %d/%d: %s", task.name, epoch, P["epochs"], ", ".join(
            f"{r.method}{r.num_shards} acc {r.rows[-1]['test_accuracy']:.3f} {r.rows[-1]['epoch_seconds']:.2f}s"
            for r in runs))
    for run in runs:
        run.rows[-1]["sharpness"] = _sharpness(run, task, P, seed)
    sam = [run.rows[-1]["sharpness"] for run in runs if run.method == "sam"]
    for run in runs:
        run.rows[-1]["sharpness_vs_sam"] = run.rows[-1]["sharpness"] / sam[0] if sam else np.nan
    return [r for run in runs for r in run.rows]


@experiment(NAME)
def msam_grid(params: Mapping[str, Any], seed: int):
    """Vanilla SGD / SAM / mSAM(m) trained in lockstep on each task: per-epoch metrics, seconds, final sharpness."""
    import pandas as pd

    from reprise.experiments import check_seed
    from reprise.llm.models.blockwise import pick_device

    seed = check_seed(NAME, seed)
    P = _validate(NAME, params, SPEC)
    _check(P)
    import torch

    try:
        device = pick_device(P["device"])
    except RuntimeError as exc:
        raise ReproError(f"{NAME}: params['device']={P['device']!r} ({exc}); use 'auto', 'cpu' or 'cuda'") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ReproError(f"{NAME}: params['device']={P['device']!r} but CUDA is not available; use 'auto' or 'cpu'")
    if P["sharpness_iters"] and device.type != "cpu":
        _probe_sharpness(device)
    rows = []
    for name in P["tasks"]:
        task = make_task(name, P, device)
        if P["batch_size"] > len(task.Xtr):
            raise ReproError(f"{NAME}: params['batch_size']={P['batch_size']} exceeds the {len(task.Xtr)} "
                             f"training examples of task {name!r}")
        rows += _rows_of_task(P, task, seed, device)
    return pd.DataFrame(rows, columns=COLUMNS)
