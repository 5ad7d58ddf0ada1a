"""Distillation of causal LMs: SFT on hard labels, forward-KL logit distillation, on-policy distillation.

The losses of "Efficient AI in Practice" (spec other-papers.md §8.2, from secondary summaries
[2nd]), as plain PyTorch on any model whose forward returns ``.logits`` (a transformers causal LM):

- ``sft_loss``: cross-entropy of the next token against the data's tokens at the answer positions;
- ``forward_kl``: white-box logit distillation, ``T² · KL(p_teacher^T ‖ p_student^T)`` per position
  over the whole vocabulary (the *forward* direction: the teacher's distribution weights the log
  ratio, so the student must cover every token the teacher gives mass to), averaged over the
  answer positions; ``p^T = softmax(logits / T)``, and ``T²`` keeps the gradient scale independent
  of ``T`` (Hinton et al.);
- ``on_policy_distill``: the second stage of the two-stage recipe: the *student* samples the
  answer (temperature ``sample_temperature``, 0.8-0.9 in the summaries), the teacher scores the
  student's own sequence and the student is trained by forward KL at the generated positions; a
  ``fraction`` of each batch is student-generated, the rest keeps the data's answers.

``train`` runs SFT (``teacher=None``) or offline forward-KL distillation (with a teacher; ``kd_weight``
mixes in the hard-label loss as ``kd_weight·FKL + (1 - kd_weight)·CE``), AdamW over shuffled
mini-batches, one log line per epoch. Positions follow the causal-LM convention: the logits at
position ``t`` predict token ``t + 1`` (``shift``).
"""
from __future__ import annotations

import logging
import torch
import torch.nn as nn
import torch.nn.functional as F

from reprise.io import ReproError

log = logging.getLogger("reprise.effai")


def shift(logits: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor):
    """Next-token alignment: the logits at ``t`` with the token and mask at ``t + 1``."""
    return logits[:, :-1], ids[:, 1:], mask[:, 1:]


def _up(x: torch.Tensor) -> torch.Tensor:
    """Half-precision logits in float32 for the softmax; float32/float64 stay as they are."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def _masked_mean(per_pos: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    if mask is None:
        return per_pos.mean()
    mask = mask.to(per_pos.dtype)
    n = mask.sum()
    if n == 0:
        raise ReproError("distillation loss: the mask selects no position")
    return (per_pos * mask).sum() / n


def forward_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, mask: torch.Tensor | None = None,
               temperature: float = 1.0) -> torch.Tensor:
    """``T² · mean over masked positions of KL(softmax(t/T) ‖ softmax(s/T))``; logits ``[..., V]``,
    ``mask`` of the leading shape (None: every position). The teacher is detached."""
    if student_logits.shape != teacher_logits.shape:
        raise ReproError(f"forward_kl: student logits {tuple(student_logits.shape)} and teacher logits "
                         f"{tuple(teacher_logits.shape)} differ in shape (same vocabulary and positions needed)")
    if not temperature > 0:
        raise ReproError(f"forward_kl: temperature={temperature} must be > 0")
    log_p_t = F.log_softmax(_up(teacher_logits.detach()) / temperature, dim=-1)
    log_p_s = F.log_softmax(_up(student_logits) / temperature, dim=-1)
    kl = (log_p_t.exp() * (log_p_t - log_p_s)).sum(dim=-1)
    return temperature ** 2 * _masked_mean(kl, mask)


def sft_loss(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy of ``targets`` under ``logits`` (``[..., V]``), averaged over the masked positions."""
    ce = F.cross_entropy(_up(logits).reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="none")
    return _masked_mean(ce.reshape(targets.shape), mask)


def _batches(n: int, batch_size: int, generator: torch.Generator) -> list[torch.Tensor]:
    return list(torch.randperm(n, generator=generator).split(batch_size))


def _kd_loss(student: nn.Module, teacher: nn.Module | None, ids: torch.Tensor, mask: torch.Tensor,
             kd_weight: float, temperature: float) -> torch.Tensor:
    s_logits, targets, m = shift(student(input_ids=ids).logits, ids, mask)
    if teacher is None:
        return sft_loss(s_logits, targets, m)
    with torch.no_grad():
        t_logits = teacher(input_ids=ids).logits[:, :-1]
    loss = kd_weight * forward_kl(s_logits, t_logits, m, temperature)
    if kd_weight < 1.0:
        loss = loss + (1.0 - kd_weight) * sft_loss(s_logits, targets, m)
    return loss


def train(student: nn.Module, ids: torch.Tensor, mask: torch.Tensor, *, teacher: nn.Module | None = None,
          epochs: int = 1, batch_size: int = 64, lr: float = 3e-3, weight_decay: float = 0.0,
          kd_weight: float = 1.0, temperature: float = 1.0, seed: int = 0, device: torch.device | str = "cpu",
          name: str = "student") -> list[float]:
    """SFT (``teacher=None``) or offline forward-KL distillation of ``student`` on ``ids`` ``[n, L]`` with
    answer ``mask`` ``[n, L]``; returns the mean training loss per epoch."""
    if ids.shape != mask.shape or ids.ndim != 2:
        raise ReproError(f"train: ids {tuple(ids.shape)} and mask {tuple(mask.shape)} must be the same [n, L]")
    if not 0.0 <= kd_weight <= 1.0:
        raise ReproError(f"train: kd_weight={kd_weight} must be in [0, 1]")
    device = torch.device(device)
    student.to(device).train()
    if teacher is not None:
        teacher.to(device).eval()
    ids, mask = ids.to(device), mask.to(device)
    opt = torch.optim.AdamW(student.parameters(), lr=lr, weight_decay=weight_decay)
    gen = torch.Generator().manual_seed(seed)
    history = []
    for epoch in range(epochs):
        total, count = 0.0, 0
        for idx in _batches(len(ids), batch_size, gen):
            idx = idx.to(device)
            loss = _kd_loss(student, teacher, ids[idx], mask[idx], kd_weight, temperature)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total, count = total + float(loss.detach()) * len(idx), count + len(idx)
        history.append(total / count)
        log.info("%s epoch %d/%d %s loss %.4f", name, epoch + 1, epochs, "fkl" if teacher is not None else "sft",
                 history[-1])
    student.eval()
    return history


@torch.no_grad()
def sample_answers(model: nn.Module, prompts: torch.Tensor, n_new: int, temperature: float = 1.0,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """``prompts`` ``[n, P]`` extended by ``n_new`` tokens sampled from ``model`` at ``temperature``
    (0: greedy). Returns ``[n, P + n_new]``."""
    was_training = model.training
    model.eval()
    ids = prompts
    for _ in range(n_new):
        logits = model(input_ids=ids).logits[:, -1].float()
        if temperature == 0:
            nxt = logits.argmax(dim=-1)
        else:
            probs = F.softmax(logits / temperature, dim=-1)
            nxt = torch.multinomial(probs.cpu(), 1, generator=generator).squeeze(1).to(ids.device)
        ids = torch.cat([ids, nxt[:, None]], dim=1)
    model.train(was_training)
    return ids


def on_policy_distill(student: nn.Module, teacher: nn.Module, ids: torch.Tensor, mask: torch.Tensor, *,
                      epochs: int = 1, batch_size: int = 64, lr: float = 1e-3, fraction: float = 1.0,
                      sample_temperature: float = 0.85, temperature: float = 1.0, seed: int = 0,
                      device: torch.device | str = "cpu", name: str = "student") -> list[float]:
    """On-policy forward-KL distillation: per batch, ``fraction`` of the rows get their answer (the
    masked tail of ``ids``, equal length in every row) replaced by the student's own sample; the
    teacher's distributions on the resulting sequences are the targets at the answer positions."""
    if not 0.0 <= fraction <= 1.0:
        raise ReproError(f"on_policy_distill: fraction={fraction} must be in [0, 1]")
    answer_cols = mask.any(dim=0).nonzero().flatten()
    if len(answer_cols) == 0 or not bool(mask[:, answer_cols].all()) or int(answer_cols[-1]) != ids.shape[1] - 1 \
            or len(answer_cols) != ids.shape[1] - int(answer_cols[0]):
        raise ReproError("on_policy_distill: the mask must select the same trailing answer positions in every row")
    p = int(answer_cols[0])
    device = torch.device(device)
    student.to(device).train()
    teacher.to(device).eval()
    ids, mask = ids.to(device), mask.to(device)
    opt = torch.optim.AdamW(student.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    history = []
    for epoch in range(epochs):
        total, count = 0.0, 0
        for idx in _batches(len(ids), batch_size, gen):
            batch = ids[idx.to(device)]
            n_on = int(round(fraction * len(batch)))
            if n_on:
                sampled = sample_answers(student, batch[:n_on, :p], ids.shape[1] - p, sample_temperature, gen)
                batch = torch.cat([sampled, batch[n_on:]], dim=0)
            student.train()
            loss = _kd_loss(student, teacher, batch, mask[: len(batch)], 1.0, temperature)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total, count = total + float(loss.detach()) * len(batch), count + len(batch)
        history.append(total / count)
        log.info("%s on-policy epoch %d/%d fkl %.4f", name, epoch + 1, epochs, history[-1])
    student.eval()
    return history


@torch.no_grad()
def token_scores(model: nn.Module, prompts: torch.Tensor, positive: int, negative: int,
                 batch_size: int = 512) -> torch.Tensor:
    """``log p(positive) - log p(negative)`` of the next token after each prompt ``[n, P]`` (a monotone
    transform of ``p(positive) / (p(positive) + p(negative))``, so its AUC is that probability's)."""
    model.eval()
    out = []
    for batch in prompts.split(batch_size):
        logits = model(input_ids=batch).logits[:, -1].float()
        out.append(logits[:, positive] - logits[:, negative])
    return torch.cat(out).cpu()

