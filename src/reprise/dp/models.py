"""Models and the masked parametrisation ``W = W_init + m ⊙ Δ`` of SPARTA (specs/other-papers.md §3.2–3.4).

- ``MaskedLinear`` / ``MaskedConv2d``: the frozen ``weight_init`` and the 0/1 ``mask`` are buffers, the
  trainable ``delta`` (and ``bias``) are parameters; ``effective_weight()`` is ``W_init + m ⊙ Δ``. A frozen
  coordinate (m = 0) therefore keeps its ``W_init`` bit for bit whatever happens to ``Δ``. Their per-sample
  gradients are registered with Opacus (the mask applied, so a frozen coordinate's per-sample gradient is 0).
- ``masked(model, head)``: a copy of ``model`` with every ``nn.Linear``/``nn.Conv2d`` except the head replaced
  (the eligible tensors of the official code: ResNet ``conv``/``shortcut``, DeiT ``blocks``/``patch_embed``
  linears and convolutions; the head excluded [V-code]); ``fold(model)`` sets ``W_init ← W_init + m ⊙ Δ``,
  ``Δ ← 0``.
- ``DigitsCNN``: the smoke model (§3.10), a two-convolution GroupNorm CNN for 8 × 8 digits (names as the
  official ResNet: ``conv*``, ``bn*``, head ``linear``).
- ``deit(hub_id, num_classes)``: ``transformers``' ``DeiTForImageClassification`` from the hub (full scale only;
  the classifier is new, cls token and position embeddings frozen as the official code does).
- ``head_name(model)``: the classifier, by default the model's last ``nn.Linear``.
- ``select_trainable(model, method, head)``: which parameters train under the baselines of §3.4.
"""
from __future__ import annotations

import copy

import torch
import torch.nn as nn
import torch.nn.functional as F
from opacus.grad_sample import register_grad_sampler
from opacus.utils.tensor_utils import unfold2d

from reprise.io import ReproError

__all__ = ["DigitsCNN", "MaskedConv2d", "MaskedLinear", "deit", "fold", "head_name", "masked", "masked_modules",
           "select_trainable", "trainable_fraction"]

#: parameter names that never train (DeiT's class token and position embeddings, official code) [V-code]
ALWAYS_FROZEN = ("cls_token", "position_embeddings", "pos_embed", "distillation_token", "mask_token")


class _Masked(nn.Module):
    # W_init and m are frozen parameters, not buffers: Opacus refuses trainable layers with buffers (it cannot
    # tell them from BatchNorm's running statistics), and they must follow .to(device) and the state dict
    def _init_masked(self, weight: torch.Tensor, bias: torch.Tensor | None):
        self.weight_init = nn.Parameter(weight.detach().clone(), requires_grad=False)
        self.mask = nn.Parameter(torch.ones_like(weight), requires_grad=False)
        self.delta = nn.Parameter(torch.zeros_like(weight))
        self.bias = None if bias is None else nn.Parameter(bias.detach().clone())

    def effective_weight(self) -> torch.Tensor:
        return self.weight_init + self.mask * self.delta

    @property
    def weight(self) -> torch.Tensor:
        """``W_init + m ⊙ Δ`` (read-only; model code such as transformers' DeiT reads ``.weight.dtype``)."""
        return self.effective_weight()


class MaskedLinear(_Masked):
    def __init__(self, layer: nn.Linear):
        super().__init__()
        self.in_features, self.out_features = layer.in_features, layer.out_features
        self._init_masked(layer.weight, layer.bias)

    def forward(self, x):
        return F.linear(x, self.effective_weight(), self.bias)


class MaskedConv2d(_Masked):
    def __init__(self, layer: nn.Conv2d):
        super().__init__()
        if layer.groups != 1 or layer.padding_mode != "zeros" or isinstance(layer.padding, str):
            raise ReproError(f"MaskedConv2d supports groups=1 with numeric zero padding, got {layer}")
        self.in_channels, self.out_channels = layer.in_channels, layer.out_channels
        self.kernel_size, self.stride = layer.kernel_size, layer.stride
        self.padding, self.dilation = layer.padding, layer.dilation
        self._init_masked(layer.weight, layer.bias)

    def forward(self, x):
        return F.conv2d(x, self.effective_weight(), self.bias, self.stride, self.padding, self.dilation)


@register_grad_sampler(MaskedLinear)
def _linear_grad_sample(layer: MaskedLinear, activations, backprops):
    a = activations[0].to(backprops.dtype)
    out = {}
    if layer.delta.requires_grad:
        out[layer.delta] = torch.einsum("n...i,n...j->nij", backprops, a) * layer.mask
    if layer.bias is not None and layer.bias.requires_grad:
        out[layer.bias] = torch.einsum("n...k->nk", backprops)
    return out


@register_grad_sampler(MaskedConv2d)
def _conv_grad_sample(layer: MaskedConv2d, activations, backprops):
    a = activations[0].to(backprops.dtype)
    n = a.shape[0]
    out = {}
    if layer.delta.requires_grad:
        cols = unfold2d(a, kernel_size=layer.kernel_size, padding=layer.padding, stride=layer.stride,
                        dilation=layer.dilation)                                  # n × (c·kh·kw) × L
        g = torch.einsum("nol,npl->nop", backprops.reshape(n, backprops.shape[1], -1), cols)
        out[layer.delta] = g.view(n, *layer.delta.shape) * layer.mask
    if layer.bias is not None and layer.bias.requires_grad:
        out[layer.bias] = backprops.reshape(n, backprops.shape[1], -1).sum(dim=2)
    return out


def head_name(model: nn.Module) -> str:
    """The classifier's module name: the last ``nn.Linear`` (ResNet ``fc``/``linear``, DeiT ``classifier``)."""
    names = [n for n, m in model.named_modules() if isinstance(m, (nn.Linear, MaskedLinear))]
    if not names:
        raise ReproError(f"{type(model).__name__} has no nn.Linear to use as the classifier head")
    return names[-1]


def _in_head(name: str, head: str) -> bool:
    return name == head or name.startswith(head + ".")


def masked(model: nn.Module, head: str | None = None) -> nn.Module:
    """A copy of ``model`` with every Linear/Conv2d outside ``head`` as its masked version (masks all 1, Δ = 0)."""
    head = head or head_name(model)
    model = copy.deepcopy(model)
    targets = [(n, m) for n, m in model.named_modules()
               if isinstance(m, (nn.Linear, nn.Conv2d)) and not _in_head(n, head)]
    for name, module in targets:
        parent = model.get_submodule(name.rsplit(".", 1)[0]) if "." in name else model
        new = MaskedLinear(module) if isinstance(module, nn.Linear) else MaskedConv2d(module)
        setattr(parent, name.rsplit(".", 1)[-1], new.to(module.weight.device))
    return model


def masked_modules(model: nn.Module) -> dict[str, _Masked]:
    """Name → masked module, in model order."""
    return {n: m for n, m in model.named_modules() if isinstance(m, _Masked)}


@torch.no_grad()
def fold(model: nn.Module) -> None:
    """``W_init ← W_init + m ⊙ Δ`` and ``Δ ← 0`` in every masked module (the output does not change)."""
    for m in masked_modules(model).values():
        m.weight_init.copy_(m.effective_weight())
        m.delta.zero_()


def _is_norm(module: nn.Module) -> bool:
    return isinstance(module, (nn.GroupNorm, nn.LayerNorm))


def select_trainable(model: nn.Module, method: str, head: str) -> None:
    """Set ``requires_grad`` for the baselines of §3.4 [V-code] (and the always-trainable part of SPARTA).

    - ``all_layers``: everything (but the always-frozen embeddings).
    - ``linear_probing``: the head.
    - ``lp_gn``: head and GroupNorm parameters (DeiT has LayerNorm only: head only, as the official code).
    - ``dp_bitfit``: head, GroupNorm parameters and every bias.
    - ``sparse`` (SPARTA, mp_weights, random masks): everything; which weight coordinates move is the masks'
      business, the biases, norms and head always train.
    - ``lora``: the head and every bias (peft's ``bias="all"``) besides the adapters peft marks.
    """
    group_norm = {f"{n}.{p}" if n else p for n, m in model.named_modules() if isinstance(m, nn.GroupNorm)
                  for p, _ in m.named_parameters(recurse=False)}
    for name, p in model.named_parameters():
        in_head = _in_head(name.rsplit(".", 1)[0], head)
        if method in ("all_layers", "sparse"):
            on = True
        elif method == "linear_probing":
            on = in_head
        elif method == "lp_gn":
            on = in_head or name in group_norm
        elif method == "dp_bitfit":
            on = in_head or name in group_norm or name.endswith("bias")
        elif method == "lora":
            on = in_head or name.endswith("bias") or "lora_" in name
        else:
            raise ReproError(f"select_trainable: unknown method {method!r}")
        frozen = any(f in name for f in ALWAYS_FROZEN) or name.endswith((".weight_init", ".mask"))
        p.requires_grad_(bool(on) and not frozen)


def trainable_fraction(model: nn.Module, base_parameters: int) -> float:
    """Trainable coordinates (a masked weight counts its mask's ones) over the pretrained model's parameters."""
    n = 0
    for module in model.modules():
        for pname, p in module.named_parameters(recurse=False):
            if not p.requires_grad:
                continue
            n += int(module.mask.sum().item()) if isinstance(module, _Masked) and pname == "delta" else p.numel()
    return n / float(base_parameters)


class DigitsCNN(nn.Module):
    """Smoke model: conv(1→w) GN ReLU maxpool, conv(w→2w) GN ReLU avgpool, linear head (8 × 8 grey inputs)."""

    def __init__(self, num_classes: int = 5, width: int = 8):
        super().__init__()
        self.conv1 = nn.Conv2d(1, width, 3, padding=1, bias=False)
        self.bn1 = nn.GroupNorm(2, width)
        self.conv2 = nn.Conv2d(width, 2 * width, 3, padding=1, bias=False)
        self.bn2 = nn.GroupNorm(4, 2 * width)
        self.linear = nn.Linear(2 * width, num_classes)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 2)
        x = F.relu(self.bn2(self.conv2(x)))
        return self.linear(x.mean(dim=(2, 3)))


class _Logits(nn.Module):
    """``transformers`` models return an output object; DP training wants the logits tensor."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(pixel_values=x).logits


def deit(hub_id: str, num_classes: int) -> nn.Module:
    """DeiT from the hub (``facebook/deit-{tiny,small,base}-patch16-224``) with a new ``num_classes`` head."""
    from transformers import DeiTForImageClassification

    try:
        net = DeiTForImageClassification.from_pretrained(hub_id, num_labels=int(num_classes),
                                                         ignore_mismatched_sizes=True, attn_implementation="eager")
    except OSError as exc:
        raise ReproError(f"deit: cannot load {hub_id!r} from the Hugging Face hub or its cache ({exc}); "
                         "full scale needs the network or a filled HF cache") from None
    return _Logits(net)
