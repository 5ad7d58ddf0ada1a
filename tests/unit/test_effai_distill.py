"""reprise.effai.distill: the losses against closed forms, their gradients, on-policy sampling."""
import math

import numpy as np
import pytest
import torch

from reprise.effai.distill import forward_kl, on_policy_distill, sample_answers, sft_loss, shift, train
from reprise.io import ReproError


def _kl_closed_form(t_logits, s_logits, T):
    """KL(softmax(t/T) || softmax(s/T)) per row, by hand in float64."""
    out = []
    for t, s in zip(t_logits, s_logits):
        pt = np.exp(t / T - np.log(np.exp(t / T).sum()))
        ls = s / T - np.log(np.exp(s / T).sum())
        out.append(float((pt * (np.log(pt) - ls)).sum()))
    return np.array(out)


@pytest.mark.parametrize("T", [1.0, 2.0, 0.5])
def test_forward_kl_matches_closed_form_on_masked_positions(T):
    rng = np.random.default_rng(0)
    t = rng.normal(size=(2, 3, 5)) * 2
    s = rng.normal(size=(2, 3, 5)) * 2
    mask = np.array([[True, False, True], [False, False, True]])
    expected = T ** 2 * _kl_closed_form(t[mask], s[mask], T).mean()
    got = forward_kl(torch.tensor(s), torch.tensor(t), torch.tensor(mask), temperature=T)
    assert float(got) == pytest.approx(expected, rel=1e-6)


def test_forward_kl_is_the_forward_direction():
    # KL is asymmetric: swapping teacher and student must give KL(student || teacher) instead
    t = torch.tensor([[3.0, 0.0, -1.0]])
    s = torch.tensor([[0.0, 1.0, 0.5]])
    fwd = _kl_closed_form(t.numpy().astype(float), s.numpy().astype(float), 1.0)[0]
    rev = _kl_closed_form(s.numpy().astype(float), t.numpy().astype(float), 1.0)[0]
    assert abs(fwd - rev) > 1e-2
    assert float(forward_kl(s, t)) == pytest.approx(fwd, rel=1e-6)


def test_forward_kl_vanishes_with_zero_gradient_when_student_equals_teacher():
    logits = torch.randn(4, 6, 7, dtype=torch.float64)
    student = logits.clone().requires_grad_(True)
    loss = forward_kl(student, logits, torch.ones(4, 6, dtype=torch.bool), temperature=2.0)
    loss.backward()
    assert float(loss.detach()) == pytest.approx(0.0, abs=1e-12)
    assert float(student.grad.abs().max()) < 1e-12


def test_forward_kl_gradient_is_the_softmax_difference():
    # d/ds [T² KL(p_t || softmax(s/T))] = T (softmax(s/T) - p_t) for one position
    T = 1.5
    t = torch.randn(1, 5, dtype=torch.float64)
    s = torch.randn(1, 5, dtype=torch.float64, requires_grad=True)
    forward_kl(s, t, temperature=T).backward()
    expected = T * (torch.softmax(s.detach() / T, -1) - torch.softmax(t / T, -1))
    assert torch.allclose(s.grad, expected, atol=1e-12)


def test_forward_kl_masked_out_positions_get_no_gradient():
    s = torch.randn(1, 3, 4, requires_grad=True)
    t = torch.randn(1, 3, 4)
    forward_kl(s, t, torch.tensor([[True, False, False]])).backward()
    assert float(s.grad[0, 1:].abs().max()) == 0.0 and float(s.grad[0, 0].abs().max()) > 0


def test_sft_loss_is_the_masked_cross_entropy():
    logits = torch.tensor([[[2.0, 0.0], [0.0, 1.0]]])
    targets = torch.tensor([[0, 0]])
    mask = torch.tensor([[False, True]])
    expected = -math.log(math.exp(0.0) / (math.exp(0.0) + math.exp(1.0)))
    assert float(sft_loss(logits, targets, mask)) == pytest.approx(expected, rel=1e-6)


def test_losses_refuse_bad_inputs():
    with pytest.raises(ReproError, match="differ in shape"):
        forward_kl(torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(ReproError, match="temperature"):
        forward_kl(torch.zeros(2, 3), torch.zeros(2, 3), temperature=0.0)
    with pytest.raises(ReproError, match="selects no position"):
        forward_kl(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2, dtype=torch.bool))


class _Bigram(torch.nn.Module):
    """A tiny causal LM (next-token logits from the current token only) with a .logits output."""

    def __init__(self, vocab=6, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.table = torch.nn.Parameter(torch.randn(vocab, vocab, generator=g))

    def forward(self, input_ids):
        return type("Out", (), {"logits": self.table[input_ids]})()


def test_shift_aligns_logits_with_the_next_token():
    ids = torch.tensor([[1, 2, 3]])
    logits = torch.arange(3.0).reshape(1, 3, 1)
    lg, tg, m = shift(logits, ids, torch.tensor([[False, False, True]]))
    assert lg[0, :, 0].tolist() == [0.0, 1.0] and tg.tolist() == [[2, 3]] and m.tolist() == [[False, True]]


def test_distillation_moves_the_student_to_the_teacher_at_answer_positions():
    teacher, student = _Bigram(seed=1), _Bigram(seed=2)
    ids = torch.randint(0, 6, (64, 4), generator=torch.Generator().manual_seed(0))
    mask = torch.zeros_like(ids, dtype=torch.bool)
    mask[:, -1] = True
    def gap():
        with torch.no_grad():
            return float(forward_kl(student(ids).logits[:, :-1], teacher(ids).logits[:, :-1], mask[:, 1:]))

    before = gap()
    losses = train(student, ids, mask, teacher=teacher, epochs=30, batch_size=16, lr=0.05)
    after = gap()
    assert after < 0.1 * before and losses[-1] < losses[0]


def test_sample_answers_greedy_is_argmax_and_keeps_the_prompt():
    model = _Bigram(seed=3)
    prompts = torch.tensor([[0, 1], [2, 3]])
    out = sample_answers(model, prompts, 2, temperature=0.0)
    assert torch.equal(out[:, :2], prompts)
    first = model.table[prompts[:, -1]].argmax(-1)
    assert torch.equal(out[:, 2], first) and torch.equal(out[:, 3], model.table[first].argmax(-1))


def test_on_policy_trains_on_the_students_own_samples():
    # the teacher maps every token to 4 and 4 to 5; the data's answers are 0 0. Offline distillation
    # on the data never visits the position after a 4, so only the on-policy student learns 4 -> 5.
    teacher = _Bigram(seed=4)
    with torch.no_grad():
        teacher.table[:] = -10.0
        teacher.table[:, 4] = 10.0
        teacher.table[4, :] = -10.0
        teacher.table[4, 5] = 10.0
    ids = torch.zeros(32, 4, dtype=torch.long)
    mask = torch.zeros_like(ids, dtype=torch.bool)
    mask[:, 2:] = True
    offline, online = _Bigram(seed=5), _Bigram(seed=5)
    train(offline, ids, mask, teacher=teacher, epochs=40, batch_size=8, lr=0.1)
    on_policy_distill(online, teacher, ids, mask, epochs=40, batch_size=8, lr=0.1, fraction=1.0,
                      sample_temperature=1.0)
    gen_on = sample_answers(online, ids[:, :2], 2, temperature=0.0)
    gen_off = sample_answers(offline, ids[:, :2], 2, temperature=0.0)
    assert (gen_on[:, 2] == 4).all() and (gen_on[:, 3] == 5).all()
    assert (gen_off[:, 2] == 4).all() and not (gen_off[:, 3] == 5).all()  # row 4 untouched offline


def test_on_policy_refuses_a_ragged_answer_mask():
    m = _Bigram()
    ids = torch.zeros(2, 4, dtype=torch.long)
    mask = torch.tensor([[False, False, True, True], [False, True, True, True]])
    with pytest.raises(ReproError, match="trailing answer positions"):
        on_policy_distill(m, m, ids, mask)
