"""One-shot structured channel pruning of conv nets with the structured solvers (spec §4.1).

**Unit.** A prunable unit is the set of channels of an intermediate feature map *inside one
block*, written by a producer conv (+ its BatchNorm, possibly followed by a depthwise conv + BN)
and read only by a consumer conv with ``groups=1``. Channel ``c`` of the consumer is the group of
``k_h·k_w`` consecutive columns ``c·k_h·k_w … (c+1)·k_h·k_w − 1`` of its unfolded weight
``W.reshape(out, in·k_h·k_w)`` — the channel-major order in which ``F.unfold`` lays out patches —
so the solvers run with ``group_size = k_h·k_w``. The consumer's Gram is ``G = PᵀP / n`` over the
unfolded calibration patches ``P`` (``F.unfold`` with the consumer's kernel, stride, padding and
dilation; ``n`` = images × output positions), accumulated in fp64 by the shared
``GramAccumulator``.

**Which convs are prunable** is the declarative table ``ARCH_TABLES`` (one entry per
architecture, as GPTQModel's module tables): the block class, the containers holding the blocks
in forward order, and per block the units as module paths relative to the block.

- ``digits-resnet`` (``BasicBlock``): consumer ``conv2`` (3×3, κ=9), producer ``conv1``/``bn1``.
- ``resnet50`` (``Bottleneck``, ``layer1``–``layer4``, torchvision's module names): two units per block — consumer
  ``conv2`` (3×3, κ=9) fed by ``conv1``/``bn1``, and consumer ``conv3`` (1×1, κ=1) fed by
  ``conv2``/``bn2``. ``conv1`` reads the block input, which the skip connection also carries, so
  its input channels are not in-block units.
- ``mobilenet_v2`` (``InvertedResidual`` with an expansion layer, ``features.2`` to
  ``features.17``): consumer ``conv.2`` (the 1×1 projection, κ=1), producer the 1×1 expansion
  ``conv.0.0``/``conv.0.1``, through the depthwise ``conv.1.0``/``conv.1.1``: removing a hidden
  channel also removes that channel of the depthwise conv and its BN. ``features.1`` (expansion
  ratio 1) has no in-block producer and is left dense.

**Order: sequential, block by block** (as the LLM driver): the calibration images are run once
to the first block; each block's units are then solved in table order, each consumer's Gram
computed on the block's cached inputs *after* the previous units of the block were pruned and
refit, and the pruned block's outputs become the next block's inputs. The blocks must form a
chain (block ``i``'s output is block ``i+1``'s input), which ``prune_channels`` checks on one
batch before it starts. The model runs in eval mode throughout (BatchNorm uses its running
statistics).

**Masked vs shrunk.** ``prune_channels`` writes the solver's refit weights (removed channels'
columns zero) into the consumer in place: the *masked* model, shapes unchanged. A removed channel
then reaches nothing (ReLU/ReLU6 and BN act per channel, and the consumer ignores it), so
``shrink_channels`` can physically delete it: the consumer's input channel, the producer's output
channel (weight row, bias) and its BN entry, and the depthwise conv's channel with its BN. The
shrunk model computes the masked model's outputs (up to float rounding) with fewer parameters
and FLOPs. Consumer biases and output shapes are untouched.

FLOPs (``count_flops``) are ``2 ×`` the multiply-accumulates of every ``Conv2d`` and ``Linear`` at
the given per-sample input shape (batch 1); BatchNorm, activations, pooling and additions are
not counted. Parameters (``count_params``) are the trainable tensors (BN running statistics are
buffers, not parameters).
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from reprise.io import ReproError
from reprise.llm.gram import GramAccumulator
from reprise.llm.export.shrink import parameter_count
from reprise.llm.methods import get_method
from reprise.llm.methods.osscar import kept_count

STRUCTURED_METHODS = ("mp", "mp-plus", "osscar", "ziplm")


# --------------------------------------------------------------------------- declarative table

@dataclass(frozen=True)
class UnitSpec:
    """Module paths, relative to the block, of one prunable channel set."""

    consumer: str  # groups=1 conv whose input channels are the unit
    producer: str  # groups=1 conv writing them
    producer_bn: str
    depthwise: str | None = None  # depthwise conv between producer and consumer (MobileNetV2)
    depthwise_bn: str | None = None


@dataclass(frozen=True)
class ArchTable:
    block_type: str  # class name of the blocks
    containers: tuple[str, ...]  # modules whose children of block_type are the blocks, in forward order
    units: tuple[UnitSpec, ...]
    applies: Callable[[nn.Module], bool] | None = None  # which blocks of block_type carry the units
    note: str = ""


ARCH_TABLES: dict[str, ArchTable] = {
    "digits-resnet": ArchTable(
        block_type="BasicBlock", containers=("blocks",),
        units=(UnitSpec(consumer="conv2", producer="conv1", producer_bn="bn1"),),
        note="conv2 of every basic block (3x3, group 9)"),
    "resnet50": ArchTable(
        block_type="Bottleneck", containers=("layer1", "layer2", "layer3", "layer4"),
        units=(UnitSpec(consumer="conv2", producer="conv1", producer_bn="bn1"),
               UnitSpec(consumer="conv3", producer="conv2", producer_bn="bn2")),
        note="conv2 (3x3, group 9) and conv3 (1x1, group 1) of every bottleneck"),
    "mobilenet_v2": ArchTable(
        block_type="InvertedResidual", containers=("features",),
        units=(UnitSpec(consumer="conv.2", producer="conv.0.0", producer_bn="conv.0.1",
                        depthwise="conv.1.0", depthwise_bn="conv.1.1"),),
        applies=lambda block: len(block.conv) == 4,
        note="projection conv (1x1, group 1) of every inverted residual with an expansion layer; "
             "a removed hidden channel also leaves the expansion conv, the depthwise conv and their BNs"),
}


def arch_of(model: nn.Module) -> str:
    """The ``ARCH_TABLES`` key of a model, by its classes."""
    from reprise.vision.models import DigitsResNet, MobileNetV2, ResNet50

    for cls, key in ((DigitsResNet, "digits-resnet"), (ResNet50, "resnet50"), (MobileNetV2, "mobilenet_v2")):
        if isinstance(model, cls):
            return key
    name = type(model).__name__
    raise ReproError(f"no channel-pruning table for {name}; known architectures: {', '.join(ARCH_TABLES)} "
                     f"(add an ArchTable to reprise.vision.prune.ARCH_TABLES for another one)")


@dataclass
class Unit:
    """One prunable channel set of a concrete model."""

    block_name: str
    block: nn.Module
    spec: UnitSpec
    consumer: nn.Conv2d
    producer: nn.Conv2d
    producer_bn: nn.BatchNorm2d
    depthwise: nn.Conv2d | None = None
    depthwise_bn: nn.BatchNorm2d | None = None

    @property
    def name(self) -> str:
        return f"{self.block_name}.{self.spec.consumer}"

    @property
    def channels(self) -> int:
        return self.consumer.in_channels

    @property
    def group_size(self) -> int:
        kh, kw = self.consumer.kernel_size
        return kh * kw


def _sub(block: nn.Module, path: str, block_name: str, kind: type) -> Any:
    try:
        m = block.get_submodule(path)
    except AttributeError:
        raise ReproError(f"{block_name}: no submodule {path!r}; ARCH_TABLES does not match this model") from None
    if not isinstance(m, kind):
        raise ReproError(f"{block_name}.{path} is a {type(m).__name__}, expected {kind.__name__}; "
                         f"ARCH_TABLES does not match this model")
    return m


def blocks_of(model: nn.Module, arch: str | None = None) -> list[tuple[str, nn.Module]]:
    """The table's blocks, ``(dotted name, module)`` in forward order."""
    table = ARCH_TABLES[arch or arch_of(model)]
    out = []
    for cname in table.containers:
        container = model.get_submodule(cname)
        for child_name, child in container.named_children():
            if type(child).__name__ == table.block_type:
                out.append((f"{cname}.{child_name}", child))
    if not out:
        raise ReproError(f"no {table.block_type} blocks under {table.containers}; ARCH_TABLES does not match")
    return out


def units_of(model: nn.Module, arch: str | None = None) -> list[Unit]:
    """Every prunable unit of ``model``, in pruning order, with its modules resolved and checked."""
    arch = arch or arch_of(model)
    table = ARCH_TABLES[arch]
    units = []
    for bname, block in blocks_of(model, arch):
        if table.applies is not None and not table.applies(block):
            continue
        for spec in table.units:
            u = Unit(bname, block, spec, consumer=_sub(block, spec.consumer, bname, nn.Conv2d),
                     producer=_sub(block, spec.producer, bname, nn.Conv2d),
                     producer_bn=_sub(block, spec.producer_bn, bname, nn.BatchNorm2d))
            if spec.depthwise:
                u.depthwise = _sub(block, spec.depthwise, bname, nn.Conv2d)
                u.depthwise_bn = _sub(block, spec.depthwise_bn, bname, nn.BatchNorm2d)
            _check_unit(u)
            units.append(u)
    return units


def _check_unit(u: Unit) -> None:
    c, p, bn = u.consumer, u.producer, u.producer_bn
    if c.groups != 1 or c.padding_mode != "zeros" or isinstance(c.padding, str):
        raise ReproError(f"{u.name}: a consumer conv must have groups=1, zero padding and numeric padding "
                         f"(got groups={c.groups}, padding_mode={c.padding_mode!r}, padding={c.padding!r})")
    if p.groups != 1:
        raise ReproError(f"{u.block_name}.{u.spec.producer}: the producer conv must have groups=1")
    width = p.out_channels
    if bn.num_features != width:
        raise ReproError(f"{u.block_name}.{u.spec.producer_bn} has {bn.num_features} channels, producer {width}")
    if u.depthwise is not None:
        d = u.depthwise
        if not (d.groups == d.in_channels == d.out_channels == width) or u.depthwise_bn.num_features != width:
            raise ReproError(f"{u.block_name}.{u.spec.depthwise}: expected a depthwise conv of {width} channels")
    if c.in_channels != width:
        raise ReproError(f"{u.name} reads {c.in_channels} channels, the producer writes {width}")


# --------------------------------------------------------------------------- Gram of a conv

def unfold_inputs(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """The consumer's input patches, ``(N·L, C·k_h·k_w)`` in ``W.reshape(out, -1)``'s column order."""
    cols = F.unfold(x, conv.kernel_size, dilation=conv.dilation, padding=conv.padding, stride=conv.stride)
    return cols.transpose(1, 2).reshape(-1, cols.shape[1])


def conv_gram_accumulator(conv: nn.Conv2d, dtype: torch.dtype = torch.float64) -> GramAccumulator:
    kh, kw = conv.kernel_size
    return GramAccumulator(conv.in_channels * kh * kw, dtype=dtype)


class _Stop(Exception):
    """Raised by a hook to end a forward pass once the wanted input was seen."""


def _run_until(module: nn.Module, target: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``module(x)`` stopped at ``target``; returns ``target``'s first positional input."""
    seen: list[torch.Tensor] = []

    def hook(_m, args):
        seen.append(args[0].detach())
        raise _Stop

    h = target.register_forward_pre_hook(hook)
    try:
        module(x)
    except _Stop:
        pass
    finally:
        h.remove()
    if not seen:
        raise ReproError(f"{type(target).__name__} was not reached by the forward pass")
    return seen[0]


def _batches(x: torch.Tensor, batch_size: int) -> list[torch.Tensor]:
    return [x[i:i + batch_size] for i in range(0, len(x), batch_size)]


@torch.no_grad()
def _check_chain(model: nn.Module, blocks: list[tuple[str, nn.Module]], x: torch.Tensor) -> None:
    ins: dict[int, torch.Tensor] = {}
    outs: dict[int, torch.Tensor] = {}
    hooks = []
    for i, (_, b) in enumerate(blocks):
        hooks.append(b.register_forward_pre_hook(lambda _m, a, i=i: ins.setdefault(i, a[0])))
        hooks.append(b.register_forward_hook(lambda _m, _a, o, i=i: outs.setdefault(i, o)))
    try:
        model(x)
    finally:
        for h in hooks:
            h.remove()
    for i in range(len(blocks) - 1):
        if ins.get(i + 1) is None or outs.get(i) is None or not torch.equal(outs[i], ins[i + 1]):
            raise ReproError(f"{blocks[i][0]} does not feed {blocks[i + 1][0]} directly; block-sequential pruning "
                             f"needs the table's blocks to form a chain")


# --------------------------------------------------------------------------- pruning

@dataclass
class PruneResult:
    model: nn.Module  # the masked model (the input model, modified in place)
    arch: str
    method: str
    sparsity: float
    kept: dict[str, torch.Tensor]  # unit name (block.consumer) -> kept channel indices (int64, sorted)
    log: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0


@torch.no_grad()
def prune_channels(model: nn.Module, calib: torch.Tensor, method: str, sparsity: float, *,
                   arch: str | None = None, config: Mapping[str, Any] | None = None, batch_size: int = 64,
                   only: Iterable[str] | None = None, progress: bool = True) -> PruneResult:
    """Prune every unit of ``model`` to ``sparsity`` (the fraction of its channels removed) with
    ``method`` (``mp``, ``mp-plus``, ``osscar``, ``ziplm``), block-sequentially on the calibration
    images ``calib`` ``(N, C, H, W)``. The model is modified in place into the *masked* model;
    pass it to ``shrink_channels`` for the physically smaller one. ``config``: further solver
    settings (e.g. ``{"local_search": True}`` for OSSCAR); ``group_size`` and ``sparsity`` are set
    per unit. ``only``: prune just these units (names as ``units_of(model)[i].name``, e.g.
    ``"layer1.0.conv2"``), leaving the others dense."""
    if method not in STRUCTURED_METHODS:
        raise ReproError(f"vision channel pruning: method {method!r} is not a structured method; use one of "
                         f"{', '.join(STRUCTURED_METHODS)}")
    M = get_method(method)
    extra = dict(config or {})
    for k in ("group_size", "sparsity"):
        if k in extra:
            raise ReproError(f"vision channel pruning: {k} is set per unit; remove {k!r} from the method config")
    M.make_config({**extra, "sparsity": sparsity, "group_size": 1})  # bad keys fail before any work
    if not isinstance(calib, torch.Tensor) or calib.ndim != 4 or len(calib) == 0:
        raise ReproError("vision channel pruning: calib must be a non-empty (N, C, H, W) image tensor")
    arch = arch or arch_of(model)
    model.eval()
    t_start = time.perf_counter()
    blocks = blocks_of(model, arch)
    units = units_of(model, arch)
    if only is not None:
        wanted = list(only)
        unknown = sorted(set(wanted) - {u.name for u in units})
        if unknown:
            raise ReproError(f"vision channel pruning: no prunable unit {', '.join(map(repr, unknown))} in this "
                             f"{arch}; its units are {', '.join(u.name for u in units)}")
        units = [u for u in units if u.name in set(wanted)]
    by_block: dict[str, list[Unit]] = {}
    for u in units:
        by_block.setdefault(u.block_name, []).append(u)
    _check_chain(model, blocks, calib[: min(2, len(calib))])
    xs = [_run_until(model, blocks[0][1], xb) for xb in _batches(calib, batch_size)]
    kept: dict[str, torch.Tensor] = {}
    log: list[dict[str, Any]] = []
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(units), desc=f"{method} s={sparsity:g}", leave=False)
    for bname, block in blocks:
        for u in by_block.get(bname, []):
            t0 = time.perf_counter()
            acc = conv_gram_accumulator(u.consumer)
            for xb in xs:
                acc.add(unfold_inputs(u.consumer, _run_until(block, u.consumer, xb)))
            G = acc.gram()
            W = u.consumer.weight.detach().reshape(u.consumer.out_channels, -1)
            cfg = M.make_config({**extra, "sparsity": sparsity, "group_size": u.group_size})
            res = M.solve(W, G, cfg)
            keep = res.extras["kept_groups"].to(torch.long).sort().values
            if keep.numel() == 0:
                raise ReproError(f"{u.name}: sparsity {sparsity} leaves none of its {u.channels} channels; "
                                 f"use a lower sparsity")
            u.consumer.weight.copy_(res.weight.reshape_as(u.consumer.weight).to(u.consumer.weight.dtype))
            kept[u.name] = keep
            log.append({"layer": u.name, "method": method, "sparsity": sparsity, "group_size": u.group_size,
                        "channels": u.channels, "kept": int(keep.numel()), "objective": res.objective,
                        "rel_err": res.rel_err, "seconds": time.perf_counter() - t0})
            if bar is not None:
                bar.update(1)
                bar.set_postfix(layer=u.name, rel_err=f"{res.rel_err:.3g}")
        xs = [block(xb) for xb in xs]
    if bar is not None:
        bar.close()
    return PruneResult(model=model, arch=arch, method=method, sparsity=sparsity, kept=kept, log=log,
                       seconds=time.perf_counter() - t_start)


def _kept_for(u: Unit, kept: Mapping[str, torch.Tensor]) -> torch.Tensor | None:
    if u.name not in kept:
        return None
    idx = torch.as_tensor(kept[u.name], dtype=torch.long).flatten()
    if idx.numel() == 0 or len(set(idx.tolist())) != idx.numel() or int(idx.min()) < 0 or int(idx.max()) >= u.channels:
        raise ReproError(f"{u.name}: kept channels must be distinct indices in [0, {u.channels}), at least one")
    return idx.sort().values


@torch.no_grad()
def mask_channels(model: nn.Module, kept: Mapping[str, torch.Tensor], arch: str | None = None) -> nn.Module:
    """Zero, in place, the consumer columns of every channel not in ``kept`` (units absent from
    ``kept`` stay dense); shapes are unchanged. Returns ``model``."""
    for u in units_of(model, arch):
        idx = _kept_for(u, kept)
        if idx is None:
            continue
        drop = torch.ones(u.channels, dtype=torch.bool)
        drop[idx] = False
        u.consumer.weight[:, drop] = 0
    return model


def _slice_conv_out(conv: nn.Conv2d, idx: torch.Tensor) -> None:
    conv.weight = nn.Parameter(conv.weight.detach()[idx].clone(), requires_grad=conv.weight.requires_grad)
    if conv.bias is not None:
        conv.bias = nn.Parameter(conv.bias.detach()[idx].clone(), requires_grad=conv.bias.requires_grad)
    conv.out_channels = idx.numel()


def _slice_bn(bn: nn.BatchNorm2d, idx: torch.Tensor) -> None:
    if bn.affine:
        bn.weight = nn.Parameter(bn.weight.detach()[idx].clone(), requires_grad=bn.weight.requires_grad)
        bn.bias = nn.Parameter(bn.bias.detach()[idx].clone(), requires_grad=bn.bias.requires_grad)
    if bn.track_running_stats:
        bn.running_mean = bn.running_mean[idx].clone()
        bn.running_var = bn.running_var[idx].clone()
    bn.num_features = idx.numel()


@torch.no_grad()
def shrink_channels(model: nn.Module, kept: Mapping[str, torch.Tensor], arch: str | None = None) -> nn.Module:
    """Physically remove, **in place**, every channel not in ``kept``: the consumer's input
    channels, the producer conv's output channels and BN entries, and (MobileNetV2) the depthwise
    conv's channels and BN entries. Returns ``model`` (deep-copy first to keep the masked one)."""
    for u in units_of(model, arch):
        idx = _kept_for(u, kept)
        if idx is None or idx.numel() == u.channels:
            continue
        c = u.consumer
        c.weight = nn.Parameter(c.weight.detach()[:, idx].clone(), requires_grad=c.weight.requires_grad)
        c.in_channels = idx.numel()
        _slice_conv_out(u.producer, idx)
        _slice_bn(u.producer_bn, idx)
        if u.depthwise is not None:
            _slice_conv_out(u.depthwise, idx)
            u.depthwise.in_channels = u.depthwise.groups = idx.numel()
            _slice_bn(u.depthwise_bn, idx)
    return model


def expected_params(model: nn.Module, kept: Mapping[str, torch.Tensor | int], arch: str | None = None) -> int:
    """Parameters the shrunk model must have, from the layer shapes and the kept channel counts
    alone (``kept`` values: index tensors or counts): every conv's weight is
    ``out × in/groups × k_h × k_w`` (+ ``out`` bias) with the unit's count substituted for the
    channels it removes, every BN ``2 × channels``; other parameters are unchanged."""
    n_in: dict[int, int] = {}
    n_out: dict[int, int] = {}
    for u in units_of(model, arch):
        if u.name not in kept:
            continue
        v = kept[u.name]
        k = int(v) if isinstance(v, int) else int(torch.as_tensor(v).numel())
        n_in[id(u.consumer)] = k
        for m in (u.producer, u.producer_bn, u.depthwise, u.depthwise_bn):
            if m is not None:
                n_out[id(m)] = k
    total = 0
    for m in model.modules():
        own = dict(m.named_parameters(recurse=False))
        if isinstance(m, nn.Conv2d):
            out = n_out.get(id(m), m.out_channels)
            depthwise = m.groups == m.in_channels == m.out_channels and m.groups > 1
            per_out = 1 if depthwise else n_in.get(id(m), m.in_channels) // m.groups
            total += out * per_out * m.kernel_size[0] * m.kernel_size[1] + (out if m.bias is not None else 0)
        elif isinstance(m, nn.BatchNorm2d):
            total += 2 * n_out.get(id(m), m.num_features) if m.affine else 0
        else:
            total += sum(p.numel() for p in own.values())
    return total


def budget(channels: int, sparsity: float) -> int:
    """Channels a unit keeps at ``sparsity``: the solvers' own rule (``osscar.kept_count``)."""
    return kept_count(channels, sparsity)


# --------------------------------------------------------------------------- cost counters

def count_params(model: nn.Module) -> int:
    return parameter_count(model)


@torch.no_grad()
def count_flops(model: nn.Module, input_shape: Iterable[int]) -> int:
    """``2 ×`` multiply-accumulates of all Conv2d and Linear layers for one input of ``input_shape``
    ``(C, H, W)``."""
    macs = 0

    def conv_hook(m: nn.Conv2d, _a, out):
        nonlocal macs
        macs += out.numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]

    def lin_hook(m: nn.Linear, _a, out):
        nonlocal macs
        macs += out.numel() * m.in_features

    hooks = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            hooks.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            hooks.append(m.register_forward_hook(lin_hook))
    was_training = model.training
    model.eval()
    p = next(model.parameters())
    try:
        model(torch.zeros(1, *tuple(input_shape), dtype=p.dtype, device=p.device))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return 2 * macs


@torch.no_grad()
def measure_latency(model: nn.Module, input_shape: Iterable[int], *, batch: int = 1, threads: int | None = None,
                    repeats: int = 10, warmup: int = 2) -> dict[str, Any]:
    """CPU latency of one forward at ``batch``: median and minimum over ``repeats`` timed runs after
    ``warmup`` untimed ones, with ``threads`` intra-op threads (restored afterwards)."""
    old = torch.get_num_threads()
    if threads:
        torch.set_num_threads(int(threads))
    model.eval()
    p = next(model.parameters())
    x = torch.randn(batch, *tuple(input_shape), generator=torch.Generator().manual_seed(0)).to(p.dtype)
    try:
        for _ in range(warmup):
            model(x)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - t0)
    finally:
        torch.set_num_threads(old)
    times.sort()
    return {"latency_ms": 1e3 * times[len(times) // 2], "latency_min_ms": 1e3 * times[0], "batch": batch,
            "threads": int(threads or old), "repeats": repeats}
