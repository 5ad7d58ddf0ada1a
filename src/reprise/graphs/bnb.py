"""Exact solver: nonlinear branch-and-bound over the pair indicators (specs/other-papers.md §2.4).

A node fixes pairs to ``z = 0`` or ``z = 1``. At each node:

1. the perspective relaxation (``relaxation.solve_relaxation``) gives a relaxed Θ and a **dual**
   bound ``D`` that is valid for every Θ of the node; the node's bound is ``max(D, parent's)``;
2. an upper bound: the heuristic (``cdpsi`` by default) restricted to the pairs whose relaxed
   ``z`` is nonzero (``upper_support='nonzeros'``), warm-started at the relaxed Θ; a better
   objective becomes the incumbent;
3. the node is closed when its bound is within ``rel_tol`` (relative) of the incumbent, or when
   the relaxed ``z`` is integral (within ``int_tol``); otherwise it branches on the most
   fractional ``z`` (``maxfrac``) into a ``z = 0`` and a ``z = 1`` child.

Branching: the most fractional ``z`` (``branching='maxfrac'``, the reference rule); or, additions,
pseudo-costs (``'pseudocost'``: the product of the predicted child bound gains from the gains seen
so far per pair and direction) and strong branching (``'strong'``: the ``strong_candidates`` most
fractional pairs have both children's relaxations solved, at most ``strong_itr`` sweeps each, and
the pair with the largest product of bound gains is taken; the children keep those bounds and warm
starts).

Relaxation: ``'perspective'`` (the reference one, relaxation.py) or ``'strengthened'`` (an
addition, strengthened.py: part of the loss's curvature moved into the indicators' convex hull,
valid because every optimum's diagonal lies in provable bounds; needs ``n > p``, else it falls
back to the perspective).

Search: breadth-first (``search='bfs'``, the reference default; ``dfs_levels`` > 0 dives that many
levels below the shallowest open level depth-first first, as the reference code's
``number_of_dfs_levels``), ``'dfs'``, or ``'best'`` (best bound first, an addition).

The global lower bound is ``min(incumbent, bounds of the open nodes, bounds of nodes closed with a
bound below the incumbent)`` — every term is a valid bound of a part of the tree and the parts
cover it, so it never exceeds the optimum. The gap is ``(UB − LB)/|UB|``; the search stops when it
is ≤ ``gap_tol`` or after ``time_limit`` seconds, and every processed node adds a row to the node
log (its own bound, the global lower bound, the incumbent, the gap, the time).
"""
from __future__ import annotations

import heapq
import itertools
import math
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from reprise.io import ReproError

from .heuristics import HEURISTICS, REL_TOL, SWAP_MAX_ITR, solve_heuristic
from .problem import GraphProblem
from .relaxation import FREE, ONE, ZERO, solve_relaxation
from .strengthened import diagonal_bounds, solve_strengthened

SEARCHES = ("bfs", "dfs", "best")
BRANCHINGS = ("maxfrac", "pseudocost", "strong")
RELAXATIONS = ("perspective", "strengthened")


@dataclass
class BnBResult:
    Theta: np.ndarray
    objective: float
    lower_bound: float
    gap: float
    n_nodes: int
    seconds: float
    status: str                   # "optimal" (gap ≤ gap_tol), "time_limit", "node_limit", "exhausted"
    log: list[dict] = field(default_factory=list)


@dataclass
class _Node:
    kinds: np.ndarray             # p × p int8: FREE / ONE / ZERO
    warm: np.ndarray              # relaxed Θ of the parent (shared by both children)
    drop: tuple[int, int] | None  # the pair to zero in ``warm`` (the z = 0 child)
    bound: float
    depth: int
    warm_z: np.ndarray | None = None  # relaxed z of the parent (strengthened relaxation)
    parent_dual: float = -math.inf                # the parent's own relaxation dual (pseudo-costs)
    branch: tuple[int, int, int, float] | None = None   # (i, j, kind, fractional distance moved)


def _pseudocost_pick(z, frac, pc_sum, pc_cnt):
    """The fractional pair with the largest product of predicted child gains (pseudo-costs: the
    mean bound gain per unit of ``z`` moved seen so far for that pair and direction, the mean over
    all pairs where it has no history yet); ties and an empty history fall back to ``maxfrac``."""
    cand = np.triu(frac > 0, 1)
    est = []
    for side in (0, 1):
        cnt, tot = pc_cnt[side], pc_sum[side]
        mean_all = tot.sum() / cnt.sum() if cnt.sum() > 0 else 1.0
        est.append(np.where(cnt > 0, tot / np.maximum(cnt, 1), mean_all))
    score = np.maximum(est[0] * z, 1e-6) * np.maximum(est[1] * (1.0 - z), 1e-6)
    score = np.where(cand, score + 1e-9 * frac, -1.0)
    k = int(np.argmax(score))
    i, j = divmod(k, z.shape[0])
    return min(i, j), max(i, j)


def _strong_branch(prob, node, relax, frac, node_lb, n_cand, rel_tol, itr, kkt_max_itr, stop_above):
    """Strong branching: among the ``n_cand`` most fractional pairs, solve both children's
    relaxations (``itr`` sweeps at most; any multiplier gives a valid bound) and take the pair with
    the largest product of bound gains. Returns the pair and its children
    ``(kind, bound, warm start, dropped pair)``."""
    p = prob.p
    flat = np.argsort(-frac, axis=None, kind="stable")
    cands = []
    for k in flat:
        i, j = divmod(int(k), p)
        if i < j and frac.flat[k] > 0:
            cands.append((i, j))
            if len(cands) >= n_cand:
                break
    best = None
    for i, j in cands:
        kids = []
        for val in (ZERO, ONE):
            kinds = node.kinds.copy()
            kinds[i, j] = kinds[j, i] = val
            warm = relax.Theta.copy()
            if val == ZERO:
                warm[i, j] = warm[j, i] = 0.0
            r = solve_relaxation(prob, kinds, warm, rel_tol=rel_tol, cd_max_itr=itr, kkt_max_itr=kkt_max_itr,
                                 stop_above=stop_above)
            kids.append((val, max(node_lb, r.dual), r.Theta, None))
        gain = max(kids[0][1] - node_lb, 1e-9) * max(kids[1][1] - node_lb, 1e-9)
        if best is None or gain > best[0]:
            best = (gain, i, j, kids)
    return best[1], best[2], best[3]


def gap_of(upper: float, lower: float) -> float:
    if not math.isfinite(upper):
        return math.inf
    if upper == lower:
        return 0.0
    return (upper - lower) / max(abs(upper), 1e-12)


def branch_and_bound(prob: GraphProblem, warm_start: np.ndarray | None = None, gap_tol: float = 1e-2,
                     time_limit: float = 3600.0, search: str = "bfs", dfs_levels: int = 0,
                     upper_solver: str = "cdpsi", int_tol: float = 1e-4, rel_tol: float = REL_TOL,
                     cd_max_itr: int = 1000, kkt_max_itr: int = 100, swap_max_itr: int = SWAP_MAX_ITR,
                     max_nodes: int | None = None, log_every: int = 1, branching: str = "maxfrac",
                     strong_candidates: int = 8, strong_itr: int = 50,
                     relaxation: str = "perspective") -> BnBResult:
    """Solve ``prob`` to a relative gap ``gap_tol`` or until ``time_limit`` seconds (defaults of the
    reference code: gap 1e-2, 3600 s, int_tol 1e-4, rel_tol 1e-4, cd_max_itr 1000, kkt_max_itr 100,
    upper solver CDPSI)."""
    if search not in SEARCHES:
        raise ReproError(f"search={search!r} is unknown; use one of {', '.join(SEARCHES)}")
    if relaxation not in RELAXATIONS:
        raise ReproError(f"relaxation={relaxation!r} is unknown; use one of {', '.join(RELAXATIONS)}")
    if branching not in BRANCHINGS:
        raise ReproError(f"branching={branching!r} is unknown; use one of {', '.join(BRANCHINGS)}")
    if upper_solver not in HEURISTICS:
        raise ReproError(f"upper_solver={upper_solver!r} is unknown; use one of {', '.join(HEURISTICS)}")
    if not gap_tol >= 0 or not time_limit > 0:
        raise ReproError(f"gap_tol={gap_tol} must be ≥ 0 and time_limit={time_limit} > 0")
    if prob.lambda2 == 0 and math.isinf(prob.M):
        raise ReproError("branch-and-bound needs a finite M or lambda2 > 0: with neither the relaxation of "
                         "λ0·1[θ≠0] is zero and no node can be pruned; pass M (e.g. max |θ_ij| expected)")
    t0 = time.perf_counter()
    p = prob.p
    off = ~np.eye(p, dtype=bool)

    # incumbent: the heuristic (from the warm start if given)
    inc = solve_heuristic(prob, upper_solver, warm_start=warm_start, rel_tol=rel_tol, swap_max_itr=swap_max_itr)
    best_Theta, UB = inc.Theta.copy(), inc.objective

    bounds = diagonal_bounds(prob, UB) if relaxation == "strengthened" else None

    def relax_node(kinds, warm, warm_z, stop):
        if bounds is None:
            return solve_relaxation(prob, kinds, warm, rel_tol=rel_tol, cd_max_itr=cd_max_itr,
                                    kkt_max_itr=kkt_max_itr, stop_above=stop)
        return solve_strengthened(prob, kinds, bounds, warm, warm_z, rel_tol=rel_tol, max_sweeps=cd_max_itr,
                                  stop_above=stop)

    kinds0 = np.full((p, p), FREE, dtype=np.int8)
    root = _Node(kinds=kinds0, warm=inc.Theta.copy(), drop=None, bound=-math.inf, depth=0)
    counter = itertools.count()
    fifo: deque = deque()
    lifo: list = []
    heap: list = []
    open_bounds: list = []        # lazy heap of (bound, id) over every open node
    open_ids: set = set()

    def push(node: _Node) -> None:
        nid = next(counter)
        open_ids.add(nid)
        heapq.heappush(open_bounds, (node.bound, nid))
        if search == "best":
            heapq.heappush(heap, (node.bound, -node.depth, nid, node))
        elif search == "dfs" or node.depth <= dfs_front():
            lifo.append((nid, node))
        else:
            fifo.append((nid, node))

    def dfs_front() -> int:
        if dfs_levels <= 0:
            return -1
        depths = [n.depth for _, n in lifo] + ([fifo[0][1].depth] if fifo else [])
        return (min(depths) if depths else 0) + dfs_levels

    def pop():
        if heap:
            _, _, nid, node = heapq.heappop(heap)
        elif lifo:
            nid, node = lifo.pop()
        else:
            nid, node = fifo.popleft()
        open_ids.discard(nid)
        return node

    def open_min() -> float:
        while open_bounds and open_bounds[0][1] not in open_ids:
            heapq.heappop(open_bounds)
        return open_bounds[0][0] if open_bounds else math.inf

    pc_sum = [np.zeros((p, p)), np.zeros((p, p))]   # pseudo-costs: bound gain per unit of z moved,
    pc_cnt = [np.zeros((p, p)), np.zeros((p, p))]   # for the z = 0 and z = 1 children of each pair
    push(root)
    closed_lb = math.inf
    n_nodes = 0
    log: list[dict] = []
    status = "time_limit"
    LB = -math.inf

    def prune_level(ub: float) -> float:
        return ub - rel_tol * max(1.0, abs(ub))

    while open_ids:
        if time.perf_counter() - t0 >= time_limit:
            status = "time_limit"
            break
        if max_nodes is not None and n_nodes >= max_nodes:
            status = "node_limit"
            break
        node = pop()
        if node.bound >= prune_level(UB):         # pruned by a later incumbent, before solving
            if node.bound < UB:
                closed_lb = min(closed_lb, node.bound)
            continue
        warm = node.warm
        if node.drop is not None:
            warm = warm.copy()
            i, j = node.drop
            warm[i, j] = warm[j, i] = 0.0
        relax = relax_node(node.kinds, warm, node.warm_z, prune_level(UB))
        n_nodes += 1
        node_lb = max(node.bound, relax.dual)
        if node.branch is not None and math.isfinite(relax.dual) and math.isfinite(node.parent_dual):
            bi, bj, bkind, dist = node.branch
            gain = max(relax.dual - node.parent_dual, 0.0) / max(dist, 1e-6)
            side = 0 if bkind == ZERO else 1
            pc_sum[side][bi, bj] += gain
            pc_cnt[side][bi, bj] += 1
        action = "branched"
        if node_lb < prune_level(UB):
            allowed = ((relax.z > 0) | (node.kinds == ONE)) & (node.kinds != ZERO) & off
            up = solve_heuristic(prob, upper_solver, warm_start=relax.Theta, allowed=allowed, rel_tol=rel_tol,
                                 swap_max_itr=swap_max_itr)
            if up.objective < UB:
                UB, best_Theta = up.objective, up.Theta.copy()
        frac = np.where((node.kinds == FREE) & off, np.minimum(relax.z, 1.0 - relax.z), -1.0)
        k = int(np.argmax(frac))
        if node_lb >= prune_level(UB):
            action = "pruned"
            if node_lb < UB:
                closed_lb = min(closed_lb, node_lb)
        elif frac.flat[k] <= int_tol:
            action = "integral"
            cand = prob.objective(np.where(np.abs(relax.Theta) > 0, relax.Theta, 0.0))
            if cand < UB:
                UB, best_Theta = cand, relax.Theta.copy()
            if node_lb < UB:
                closed_lb = min(closed_lb, node_lb)
        else:
            if branching == "strong" and bounds is not None:
                raise ReproError("branching='strong' is implemented for relaxation='perspective' only")
            if branching == "pseudocost":
                i, j = _pseudocost_pick(relax.z, frac, pc_sum, pc_cnt)
                children = [(val, node_lb, relax.Theta, (i, j) if val == ZERO else None) for val in (ZERO, ONE)]
            elif branching == "strong":
                i, j, children = _strong_branch(prob, node, relax, frac, node_lb, strong_candidates, rel_tol,
                                                strong_itr, kkt_max_itr, prune_level(UB))
            else:
                i, j = divmod(k, p)
                i, j = min(i, j), max(i, j)
                children = [(val, node_lb, relax.Theta, (i, j) if val == ZERO else None) for val in (ZERO, ONE)]
            for val, bound, warm_child, drop in children:
                if bound >= prune_level(UB):       # a strong-branching child already beyond the incumbent
                    if bound < UB:
                        closed_lb = min(closed_lb, bound)
                    continue
                kinds = node.kinds.copy()
                kinds[i, j] = kinds[j, i] = val
                dist = relax.z[i, j] if val == ZERO else 1.0 - relax.z[i, j]
                push(_Node(kinds=kinds, warm=warm_child, drop=drop, bound=bound, depth=node.depth + 1,
                           parent_dual=relax.dual, branch=(i, j, val, float(dist)), warm_z=relax.z))
        LB = min(UB, closed_lb, open_min())
        gap = gap_of(UB, LB)
        if log_every and (n_nodes % log_every == 0 or gap <= gap_tol):
            log.append({"node": n_nodes, "depth": node.depth, "action": action, "node_lower_bound": node_lb,
                        "relaxation": relax.primal, "lower_bound": LB, "upper_bound": UB, "gap": gap,
                        "open": len(open_ids), "seconds": time.perf_counter() - t0})
        if gap <= gap_tol:
            status = "optimal"
            break
    else:
        status = "exhausted"          # every node closed; the gap is what the closed bounds leave
    LB = min(UB, closed_lb, open_min())
    gap = gap_of(UB, LB)
    if gap <= gap_tol:
        status = "optimal"
    return BnBResult(Theta=best_Theta, objective=UB, lower_bound=LB, gap=gap, n_nodes=n_nodes,
                     seconds=time.perf_counter() - t0, status=status, log=log)
