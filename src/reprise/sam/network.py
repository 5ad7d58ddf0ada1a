"""Neural-network pieces of the SAM statistics paper (specs/other-papers.md §5.2 last item, §5.3 items 4–5).

- :func:`teacher_student_data` / :func:`train_teacher_student`: a one-hidden-layer ReLU teacher
  ``y = Σ_k a_k relu(w_kᵀx) + σξ`` and a wider ReLU student trained by full-batch GD or SAM (the shared
  :class:`reprise.sam.SAM` over ``torch.optim.SGD``), test error recorded along the iterations;
- :func:`top_hessian_eigenvalue`: the sharpness, the largest-magnitude eigenvalue of the loss Hessian by power
  iteration on Hessian-vector products (double backward), started from a seeded random vector;
- :func:`train_digits_mlp`: the reduced-size stand-in of the deep-network figure (scikit-learn's bundled
  ``load_digits``, an MLP, mini-batch SGD vs SAM), test accuracy per epoch.

Every random draw comes from a local ``torch.Generator`` seeded explicitly; the global RNGs are never touched.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch

from reprise.io import ReproError
from reprise.sam.optim import SAM

__all__ = ["top_hessian_eigenvalue", "TeacherStudentData", "teacher_student_data", "train_teacher_student",
           "train_digits_mlp", "TrainTrace"]

DTYPE = torch.float64


#: stream tags, so that data, init and power-iteration draws from the same integer seed are independent
DATA_STREAM, INIT_STREAM, POWER_STREAM = 0xDA7, 0x1417, 0x90E


def _generator(seed: int, stream: int) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded from ``SeedSequence([stream, seed])``."""
    g = torch.Generator(device="cpu")
    g.manual_seed(int(np.random.SeedSequence([int(stream), int(seed)]).generate_state(1, np.uint64)[0] >> 1))
    return g


def top_hessian_eigenvalue(loss_fn: Callable[[], torch.Tensor], params: Sequence[torch.Tensor], iters: int = 100,
                           tol: float = 1e-6, seed: int = 0) -> float:
    """Largest-magnitude eigenvalue of ``∇²loss_fn()`` w.r.t. ``params`` by power iteration on Hessian-vector products.

    Stops when the Rayleigh quotient changes by less than ``tol`` relative to its size, or after ``iters`` products.
    Near a minimum the Hessian's dominant eigenvalue is its top (positive) one, the usual sharpness measure.
    """
    params = [p for p in params if p.requires_grad]
    if not params:
        raise ReproError("top_hessian_eigenvalue: no parameter requires grad")
    g = _generator(seed, POWER_STREAM)
    v = [torch.randn(p.shape, generator=g, dtype=p.dtype).to(p.device) for p in params]  # a CPU generator
    norm = torch.sqrt(sum((x * x).sum() for x in v))
    v = [x / norm for x in v]
    with torch.enable_grad():
        loss = loss_fn()
        grads = torch.autograd.grad(loss, params, create_graph=True, allow_unused=True)
        # a gradient without a graph (a parameter the loss is at most linear in) has a zero Hessian block
        live = [i for i, gr in enumerate(grads) if gr is not None and gr.requires_grad]
        if not live:
            return 0.0
        value = None
        for _ in range(int(iters)):
            parts = torch.autograd.grad([grads[i] for i in live], params, grad_outputs=[v[i] for i in live],
                                        retain_graph=True, allow_unused=True)
            Hv = [torch.zeros_like(p) if h is None else h for h, p in zip(parts, params)]
            new = float(sum((h * x).sum() for h, x in zip(Hv, v)))
            norm = torch.sqrt(sum((h * h).sum() for h in Hv))
            if float(norm) == 0.0:
                return 0.0
            v = [h.detach() / norm for h in Hv]
            if value is not None and abs(new - value) <= tol * max(abs(new), 1e-30):
                return new
            value = new
    return float(value)


@dataclass(frozen=True)
class TeacherStudentData:
    X: torch.Tensor
    y: torch.Tensor
    X_test: torch.Tensor
    f_test: torch.Tensor  # noise-free teacher outputs on the test points


def _relu_net(X: torch.Tensor, W: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return torch.relu(X @ W.T) @ v


def teacher_student_data(d: int, n: int, n_test: int, teacher_width: int, noise: float,
                         seed: int) -> TeacherStudentData:
    """``x ~ N(0, I_d)``; teacher rows ``w_k`` uniform on the unit sphere, ``a_k = ±1/√k``; noise ``N(0, σ²)``."""
    g = _generator(seed, DATA_STREAM)
    W = torch.randn(teacher_width, d, generator=g, dtype=DTYPE)
    W = W / W.norm(dim=1, keepdim=True)
    a = (torch.randint(0, 2, (teacher_width,), generator=g) * 2 - 1).to(DTYPE) / np.sqrt(teacher_width)
    X = torch.randn(n, d, generator=g, dtype=DTYPE)
    X_test = torch.randn(n_test, d, generator=g, dtype=DTYPE)
    y = _relu_net(X, W, a) + noise * torch.randn(n, generator=g, dtype=DTYPE)
    return TeacherStudentData(X, y, X_test, _relu_net(X_test, W, a))


@dataclass
class TrainTrace:
    iterations: list[int] = field(default_factory=list)
    metrics: dict[str, list[float]] = field(default_factory=dict)
    sharpness: float | None = None

    def record(self, t: int, **values: float) -> None:
        self.iterations.append(int(t))
        for k, val in values.items():
            self.metrics.setdefault(k, []).append(float(val))


def train_teacher_student(data: TeacherStudentData, width: int, lr: float, steps: int, rho: float, seed: int,
                          record_at: Sequence[int], ascent: str = "normalised", power_iters: int = 100) -> TrainTrace:
    """Full-batch GD (``rho = 0``) or SAM on ``½ mean((f(x) − y)²)``, student ``f(x) = vᵀrelu(Wx)``.

    Init: ``W ~ N(0, 1/d)``, ``v ~ N(0, 1/width)`` from ``seed`` (the same init for every method of one seed).
    Records ``test_mse`` (against the noise-free teacher) and ``train_loss`` at ``record_at``; the final sharpness is
    the top eigenvalue of the training loss's Hessian.
    """
    if ascent not in ("normalised", "unnormalised"):
        raise ReproError(f"ascent = {ascent!r}; choose normalised or unnormalised")
    d = data.X.shape[1]
    g = _generator(seed, INIT_STREAM)
    W = (torch.randn(width, d, generator=g, dtype=DTYPE) / np.sqrt(d)).requires_grad_(True)
    v = (torch.randn(width, generator=g, dtype=DTYPE) / np.sqrt(width)).requires_grad_(True)
    params = [W, v]
    if rho > 0:
        opt = SAM(params, torch.optim.SGD, rho=rho, unnormalised=(ascent == "unnormalised"), lr=lr)
    else:
        opt = torch.optim.SGD(params, lr=lr)

    def loss_fn():
        return 0.5 * ((_relu_net(data.X, W, v) - data.y) ** 2).mean()

    def closure():
        opt.zero_grad(set_to_none=True)
        loss = loss_fn()
        loss.backward()
        return loss

    marks = set(int(t) for t in record_at)
    trace = TrainTrace()
    for t in range(int(steps) + 1):
        if t in marks:
            with torch.no_grad():
                test = float(((_relu_net(data.X_test, W, v) - data.f_test) ** 2).mean())
                train = float(loss_fn())
            if not np.isfinite(train):
                raise ReproError(f"teacher-student training diverged at step {t} (lr = {lr}, rho = {rho}); lower lr")
            trace.record(t, test_mse=test, train_loss=train)
        if t == steps:
            break
        opt.step(closure)
    trace.sharpness = top_hessian_eigenvalue(loss_fn, params, iters=power_iters, seed=seed)
    return trace


def digits_data(split_seed: int, test_fraction: float):
    """``load_digits`` as float32 (pixels / 16, then one mean and standard deviation of the training pixels) and a
    stratified split. One global scale, not per pixel: four pixels are constant in the training part, and a
    per-pixel standardisation would blow their test values up (to ~6e4, which inflated the test loss)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    X, y = load_digits(return_X_y=True)
    Xtr, Xte, ytr, yte = train_test_split(X / 16.0, y, test_size=test_fraction, random_state=split_seed, stratify=y)
    mean, std = Xtr.mean(), Xtr.std()
    f = lambda a: torch.as_tensor((a - mean) / std, dtype=torch.float32)  # noqa: E731
    return f(Xtr), torch.as_tensor(ytr), f(Xte), torch.as_tensor(yte)


def train_digits_mlp(rho: float, epochs: int, batch_size: int, lr: float, momentum: float, hidden: int, seed: int,
                     split_seed: int = 0, test_fraction: float = 0.25, weight_decay: float = 0.0,
                     ascent: str = "normalised") -> TrainTrace:
    """64 → hidden → hidden → 10 ReLU MLP on ``load_digits`` by mini-batch SGD-momentum (``rho = 0``) or SAM over it.

    The split (stratified, ``split_seed``) is the same for every seed; ``seed`` drives the init and the batch order.
    Records ``test_accuracy``, ``test_loss`` and ``train_loss`` (mean over the epoch's batches) at epochs 0..epochs.
    """
    Xtr, ytr, Xte, yte = digits_data(split_seed, test_fraction)
    g = _generator(seed, INIT_STREAM)
    skip = torch.nn.utils.skip_init  # no draw from the global RNG; the init below uses the local generator
    torch_model = torch.nn.Sequential(skip(torch.nn.Linear, 64, hidden), torch.nn.ReLU(),
                                      skip(torch.nn.Linear, hidden, hidden), torch.nn.ReLU(),
                                      skip(torch.nn.Linear, hidden, 10))
    with torch.no_grad():  # PyTorch's default Linear init (uniform ±1/√fan_in), drawn from the local generator
        for layer in torch_model:
            if isinstance(layer, torch.nn.Linear):
                bound = 1.0 / np.sqrt(layer.in_features)
                layer.weight.uniform_(-bound, bound, generator=g)
                layer.bias.uniform_(-bound, bound, generator=g)
    params = list(torch_model.parameters())
    base = dict(lr=lr, momentum=momentum, weight_decay=weight_decay)
    opt = (SAM(params, torch.optim.SGD, rho=rho, unnormalised=(ascent == "unnormalised"), **base) if rho > 0
           else torch.optim.SGD(params, **base))
    ce = torch.nn.CrossEntropyLoss()
    trace = TrainTrace()

    def evaluate(epoch: int, train_loss: float):
        with torch.no_grad():
            logits = torch_model(Xte)
            trace.record(epoch, test_accuracy=float((logits.argmax(1) == yte).float().mean()),
                         test_loss=float(ce(logits, yte)), train_loss=train_loss)

    with torch.no_grad():
        evaluate(0, float(ce(torch_model(Xtr), ytr)))
    n = Xtr.shape[0]
    for epoch in range(1, int(epochs) + 1):
        order = torch.randperm(n, generator=g)
        total, count = 0.0, 0
        for start in range(0, n, batch_size):
            idx = order[start:start + batch_size]
            xb, yb = Xtr[idx], ytr[idx]

            def closure():
                opt.zero_grad(set_to_none=True)
                loss = ce(torch_model(xb), yb)
                loss.backward()
                return loss

            loss = opt.step(closure)
            total += float(torch.as_tensor(loss).detach()) * len(idx)
            count += len(idx)
        if not np.isfinite(total):
            raise ReproError(f"digits MLP training diverged in epoch {epoch} (lr = {lr}, rho = {rho})")
        evaluate(epoch, total / count)
    return trace
