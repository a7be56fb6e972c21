"""Adaptive study design: which runs of the candidate grid to start next (docs/law.md,
"Adaptive design"). One pure function, `next_runs`; nothing here starts a run or reads a
cluster.

Each method has its own multiplicative law L = A·X^−α·D^−β + E (docs/law.md), fitted by
`ftscale.law.fit.fit_law` to the method's finished runs. The user names a *target*:

- `extrapolation`: the loss of each method at one (X, D), usually the largest of the grid;
- `critical`: log of the critical data size D_c where two methods' laws cross at one X
  (ftscale.law.critical).

The criterion is c-optimality (the Fisher information of the law's parameters, projected on
the target): with J the Jacobian of the fitted law's predictions at a method's runs and
M = JᵀJ/σ² + a weak prior, the linearised variance of the target is Σ_m c_mᵀ M_m⁻¹ c_m, where
c_m is the target's gradient with respect to method m's parameters. One more run with
Jacobian row j lowers it by (cᵀM⁻¹j)² / (σ² + jᵀM⁻¹j) (Sherman–Morrison) — a closed form that
needs no refit and no observed loss, so every candidate is scored in microseconds and a batch
is chosen greedily: take the best reduction per estimated GPU-hour, add its row to M, rescore.
Runs already started but not finished (`pending`) are added to M the same way, since their
information does not depend on the loss they will report.

The stop rule: the target's 95 % interval half-width (1.96·√variance, for `extrapolation` the
widest over methods) is at most `stop_half_width`, or no candidate is left, or the next batch
would exceed `budget_gpu_hours`.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from ftscale.identity import RunKey
from ftscale.law.critical import crossings
from ftscale.law.errors import FitError, LawInputError
from ftscale.law.fit import LawParams, fit_law
from ftscale.law.model import MULTIPLICATIVE

EXTRAPOLATION = "extrapolation"
CRITICAL = "critical"
TARGETS = (EXTRAPOLATION, CRITICAL)
Z95 = 1.959963984540054
# Prior precision on each (centred) law parameter: a standard deviation of 10 in log A, α,
# β, log E is far wider than any real fit, so the prior only keeps M invertible while a
# method has fewer runs than parameters.
PRIOR_PRECISION = 1e-2
# The seed design: corners and centre of the method's log X × log D box.
SEED_POINTS = ((0.0, 0.0), (0.0, 1.0), (1.0, 0.0), (1.0, 1.0), (0.5, 0.5))
# A method needs this many finished runs (the law's 4 parameters + 1) before it is refitted.
MIN_RUNS_TO_FIT = 5


@dataclass(frozen=True)
class Candidate:
    """One run of the candidate grid: its id, method, X (model parameters) and D (examples)."""

    run_id: str
    method: str
    x: float
    d: float


@dataclass(frozen=True)
class Target:
    """What the user wants to know. extrapolation: loss of `methods` at (x, d), d one value
    or one per method (methods trained on different data ranges, e.g. FMT and PET);
    critical: log D_c between methods[0] and methods[1] at x (d unused)."""

    kind: str
    methods: tuple[str, ...]
    x: float
    d: float | Mapping[str, float] | None = None

    def d_for(self, method: str) -> float:
        return float(self.d[method] if isinstance(self.d, Mapping) else self.d)

    def __post_init__(self):
        if self.kind not in TARGETS:
            raise ValueError(f"unknown target {self.kind!r}; use one of {TARGETS}")
        if self.kind == CRITICAL and len(self.methods) != 2:
            raise ValueError("a critical-data-size target names exactly two methods")
        if self.kind == EXTRAPOLATION and self.d is None:
            raise ValueError("an extrapolation target needs d")


@dataclass(frozen=True)
class Choice:
    """One run to start next and why (a sentence with the numbers)."""

    run_id: str
    gpu_hours: float
    variance_reduction: float  # of the target, in its own units squared; nan for seed runs
    reason: str


@dataclass(frozen=True)
class Plan:
    """The planner's answer: runs to start (may be empty), the stop reason when it stops,
    and the target's current estimate and 95 % half-width (nan before every method has a fit)."""

    choices: tuple[Choice, ...]
    stopped: str | None
    estimate: dict[str, float]
    half_width: float


# ---- the law's Jacobian in centred coordinates ----------------------------------------------
# Parameters per method: (log A', α, β, log E) with log A' = log A − α·x0 − β·d0, where
# (x0, d0) is the centre of the method's log X × log D box; centring keeps M well conditioned
# (raw log X ≈ 21, log D ≈ 12 would make the log A column nearly collinear with α and β).

def _centre(cands: Sequence[Candidate]) -> tuple[float, float]:
    lx = np.log([c.x for c in cands])
    ld = np.log([c.d for c in cands])
    return 0.5 * (lx.min() + lx.max()), 0.5 * (ld.min() + ld.max())


def jacobian(law: LawParams, x, d, centre: tuple[float, float]) -> np.ndarray:
    """∂L/∂(log A', α, β, log E) at each (x, d): rows of shape (n, 4)."""
    u = np.log(np.asarray(x, float)) - centre[0]
    v = np.log(np.asarray(d, float)) - centre[1]
    power = np.exp(law.log_predict(x, d)) - law.E  # A·X^−α·D^−β
    return np.stack([power, -u * power, -v * power, np.full_like(power, law.E)], axis=-1)


def information(rows: np.ndarray, sigma: float) -> np.ndarray:
    """M = JᵀJ/σ² plus the weak prior (PRIOR_PRECISION on each parameter)."""
    return rows.T @ rows / sigma ** 2 + PRIOR_PRECISION * np.eye(rows.shape[1])


def variance_reductions(cov: np.ndarray, c: np.ndarray, rows: np.ndarray,
                        sigma: float) -> np.ndarray:
    """Drop of cᵀ·cov·c when each row of `rows` is observed once with noise σ
    (Sherman–Morrison): (cᵀ·cov·j)² / (σ² + jᵀ·cov·j)."""
    cj = rows @ (cov @ c)
    jj = np.einsum("ij,jk,ik->i", rows, cov, rows)
    return cj ** 2 / (sigma ** 2 + jj)


def add_observation(cov: np.ndarray, row: np.ndarray, sigma: float) -> np.ndarray:
    """cov after one more observation with Jacobian row `row` (Sherman–Morrison)."""
    cr = cov @ row
    return cov - np.outer(cr, cr) / (sigma ** 2 + row @ cr)


# ---- the target's gradient -------------------------------------------------------------------

def target_gradients(target: Target, laws: Mapping[str, LawParams],
                     centres: Mapping[str, tuple[float, float]]):
    """(estimate per name, gradient per method): for extrapolation one gradient per method
    (its loss at the target point); for critical, ∂ log D_c / ∂θ of both methods by the
    implicit function theorem on h(s) = L1(x, e^s) − L2(x, e^s) = 0. None when the two laws
    do not cross (log D_c undefined)."""
    if target.kind == EXTRAPOLATION:
        est = {m: float(laws[m].predict(target.x, target.d_for(m))) for m in target.methods}
        grads = {m: jacobian(laws[m], [target.x], [target.d_for(m)], centres[m])[0]
                 for m in target.methods}
        return est, grads
    m1, m2 = target.methods
    found = crossings(laws[m1], laws[m2], target.x)
    if not found:
        return None
    dc = found[0]
    g1 = jacobian(laws[m1], [target.x], [dc], centres[m1])[0]
    g2 = jacobian(laws[m2], [target.x], [dc], centres[m2])[0]
    # ∂h/∂s: ∂L/∂(log D) = −β·(power term A·X^−α·D^−β) for each law
    p1 = float(laws[m1].predict(target.x, dc)) - laws[m1].E
    p2 = float(laws[m2].predict(target.x, dc)) - laws[m2].E
    h_s = -laws[m1].beta * p1 + laws[m2].beta * p2
    if h_s == 0.0:
        return None
    return {"log_critical_data_size": math.log(dc)}, {m1: -g1 / h_s, m2: g2 / h_s}


# ---- the seed design -------------------------------------------------------------------------

def seed_design(candidates: Sequence[Candidate]) -> list[Candidate]:
    """Per method, the candidate nearest each SEED_POINTS corner/centre of its log X × log D
    box (distances in box-normalised units; ties to the cheaper, i.e. smaller X·D), without
    repeats. At most 5 runs per method."""
    out: list[Candidate] = []
    for method in sorted({c.method for c in candidates}):
        mine = [c for c in candidates if c.method == method]
        lx = np.log([c.x for c in mine])
        ld = np.log([c.d for c in mine])
        ux = (lx - lx.min()) / max(lx.max() - lx.min(), 1e-12)
        vd = (ld - ld.min()) / max(ld.max() - ld.min(), 1e-12)
        taken: set[int] = set()
        for px, pd in SEED_POINTS:
            dist = (ux - px) ** 2 + (vd - pd) ** 2
            order = sorted(range(len(mine)), key=lambda i: (round(dist[i], 12), lx[i] + ld[i]))
            for i in order:
                if i not in taken:
                    taken.add(i)
                    out.append(mine[i])
                    break
    return out


def space_filling(cands: Sequence[Candidate], busy: set[str] | frozenset[str]) -> Candidate | None:
    """The candidate not in `busy` farthest (box-normalised log X × log D) from every busy
    one of the same list; ties to the cheaper (smaller X·D). None when all are busy."""
    free = [c for c in cands if c.run_id not in busy]
    if not free:
        return None
    lx = np.log([c.x for c in cands])
    ld = np.log([c.d for c in cands])
    span_x, span_d = max(np.ptp(lx), 1e-12), max(np.ptp(ld), 1e-12)

    def point(c: Candidate) -> tuple[float, float]:
        return (math.log(c.x) - lx.min()) / span_x, (math.log(c.d) - ld.min()) / span_d

    taken = [point(c) for c in cands if c.run_id in busy]

    def key(c: Candidate):
        u, v = point(c)
        gap = min(((u - a) ** 2 + (v - b) ** 2 for a, b in taken), default=0.0)
        return (-round(gap, 12), math.log(c.x) + math.log(c.d), c.run_id)

    return min(free, key=key)


# ---- the planner -----------------------------------------------------------------------------

def fit_method(cands: Sequence[Candidate], results: Mapping[str, float]) -> LawParams | None:
    """The method's multiplicative law from its finished runs (no held-out split), or None
    when it cannot be fitted yet."""
    rows = [{"model_params": c.x, "data_size": c.d, "test_loss": results[c.run_id],
             "run_id": c.run_id} for c in cands if c.run_id in results]
    if len(rows) < MIN_RUNS_TO_FIT:
        return None
    try:
        return fit_law(rows, form=MULTIPLICATIVE, holdout="none")[0].params
    except (FitError, LawInputError):
        return None


def next_runs(candidates: Sequence[Candidate], results: Mapping[str, float], target: Target, *,
              batch_size: int, cost: Mapping[str, float], rng_seed: int = 0,
              sigma: float = 0.01, stop_half_width: float = 0.0,
              pending: Sequence[str] = (), budget_gpu_hours: float | None = None,
              spent_gpu_hours: float = 0.0, cost_unit: str = "GPU-h") -> Plan:
    """The next batch of runs to start (see the module docstring).

    candidates: the grid's runs; results: run id → test loss of the finished ones; cost: run
    id → estimated GPU-hours; sigma: run-to-run noise of the loss (nats); pending: ids started
    but not finished; rng_seed only breaks exact ties, so equal inputs give equal plans;
    cost_unit names the unit of `cost` in the reasons. While a method has no law and its seed
    runs are under way, the plan may be empty with `stopped` None: wait for them.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    methods = sorted(set(target.methods))
    cands = [c for c in candidates if c.method in methods]
    busy = set(results) | set(pending)
    left = [c for c in cands if c.run_id not in busy]
    # a fixed random order that sorting keeps among exact ties
    rank = {c.run_id: i for i, c in enumerate(
        np.random.default_rng(rng_seed).permutation(np.array(left, dtype=object)))}

    def budget_allows(extra: float) -> bool:
        return budget_gpu_hours is None or spent_gpu_hours + extra <= budget_gpu_hours

    # 1. the seed design, for every method that has no law yet
    by_method = {m: [c for c in cands if c.method == m] for m in methods}
    centres = {m: _centre(by_method[m]) for m in methods if by_method[m]}
    laws = {m: fit_method(by_method[m], results) for m in methods}
    unfitted = [m for m in methods if laws[m] is None]
    if unfitted:
        picks = [(c, "seed design for {m} (corner/centre of log X × log D: X={x:.3g}, "
                  "D={d:.3g})") for c in seed_design([c for c in cands if c.method in unfitted])
                 if c.run_id not in busy]
        for m in unfitted:
            # Its seed runs all finished (or failed and were replaced) and still no law: the
            # fit failed on them. Add the candidate farthest from what ran, once nothing of
            # the method is under way.
            if not any(c.method == m for c, _ in picks) and \
                    not any(c.run_id in pending for c in by_method[m]):
                extra = space_filling(by_method[m], busy)
                if extra is not None:
                    picks.append((extra, "space-filling for {m} (its law cannot be fitted yet "
                                  "from the runs so far; X={x:.3g}, D={d:.3g})"))
        choices, total = [], 0.0
        for c, why in picks:
            if not budget_allows(total + cost[c.run_id]):
                continue
            total += cost[c.run_id]
            choices.append(Choice(c.run_id, cost[c.run_id], math.nan,
                                  why.format(m=c.method, x=c.x, d=c.d)
                                  + f", {cost[c.run_id]:.3g} {cost_unit}"))
        stopped = None
        if not choices and not any(c.method in unfitted and c.run_id in pending for c in cands):
            stopped = "budget exhausted" if picks else "no candidate left"
        return Plan(tuple(choices), stopped, {}, math.nan)

    # 2. the target's linearised variance and the stop rule
    tg = target_gradients(target, laws, centres)
    covs = {}
    for m in methods:
        done = [c for c in by_method[m] if c.run_id in results or c.run_id in pending]
        rows = jacobian(laws[m], [c.x for c in done], [c.d for c in done], centres[m])
        covs[m] = np.linalg.inv(information(rows, sigma))
    if tg is None:  # no crossing: fall back to D-optimality (the law's parameters as a whole)
        estimate, grads = {}, None
        half = math.inf
    else:
        estimate, grads = tg
        half = _half_width(target, grads, covs)
    if half <= stop_half_width:
        return Plan((), f"target met: 95% half-width {half:.4g} <= {stop_half_width:.4g}",
                    estimate, half)
    if not left:
        return Plan((), "no candidate left", estimate, half)

    # 3. greedy batch: best variance reduction per GPU-hour, rescored after each pick
    choices, total = [], 0.0
    pool = list(left)
    for _ in range(batch_size):
        best = None
        for m in methods:
            mine = [c for c in pool if c.method == m]
            if not mine:
                continue
            rows = jacobian(laws[m], [c.x for c in mine], [c.d for c in mine], centres[m])
            if grads is not None:
                gain = variance_reductions(covs[m], grads[m], rows, sigma)
            else:  # log-det gain of M: log(1 + jᵀ·cov·j/σ²)
                gain = np.log1p(np.einsum("ij,jk,ik->i", rows, covs[m], rows) / sigma ** 2)
            for c, row, g in zip(mine, rows, gain):
                h = cost[c.run_id]
                if not budget_allows(total + h):
                    continue
                key = (-g / h, rank[c.run_id])
                if best is None or key < best[0]:
                    best = (key, c, row, float(g), m)
        if best is None:
            break
        _, c, row, g, m = best
        h = cost[c.run_id]
        before = _half_width(target, grads, covs) if grads is not None else math.inf
        covs[m] = add_observation(covs[m], row, sigma)
        total += h
        pool.remove(c)
        if grads is not None:
            after = _half_width(target, grads, covs)
            reason = (f"{c.method} X={c.x:.3g} D={c.d:.3g}: lowers the target's variance by "
                      f"{g:.3g} ({g / h:.3g} per {cost_unit}; 95% half-width {before:.4g} -> "
                      f"{after:.4g}) for {h:.3g} {cost_unit}")
        else:
            reason = (f"{c.method} X={c.x:.3g} D={c.d:.3g}: the laws do not cross yet, so the "
                      f"most parameter information per {cost_unit} (log-det gain {g:.3g}) "
                      f"for {h:.3g} {cost_unit}")
        choices.append(Choice(c.run_id, h, g, reason))
    stopped = None if choices else "budget exhausted"
    return Plan(tuple(choices), stopped, estimate, half)


def _half_width(target: Target, grads: Mapping[str, np.ndarray],
                covs: Mapping[str, np.ndarray]) -> float:
    """95 % half-width of the target: per method for extrapolation (the widest is reported),
    summed over both methods for the critical data size."""
    var = {m: float(g @ covs[m] @ g) for m, g in grads.items()}
    if target.kind == EXTRAPOLATION:
        return Z95 * math.sqrt(max(var.values()))
    return Z95 * math.sqrt(sum(var.values()))


# ---- the study adapter: spec.design → which runs start (both executors) ---------------------
# docs/study.md, "Adaptive design". The operator's pure plan (ftscale.controller.plan) and
# `ftscale run` (ftscale.local.executor) call `decide` with the same numbers, as they call
# ftscale.budget.decide; the budget then applies to the runs `decide` admits.

GRID, ADAPTIVE = "grid", "adaptive"
DEFAULT_BATCH_SIZE = 4
DEFAULT_LOSS_NOISE = 0.01  # nats; the paper-scale run-to-run σ (docs/law.md, "Adaptive design")
# Without GPU-hour estimates (CPU runs, unpriced models) runs are priced by training FLOPs per
# token of an example (ftscale.costplan.training_flops), in these units:
RELATIVE_COST_SCALE = 1e9
RELATIVE_COST_UNIT = "GFLOP/token"


class DesignRun(Protocol):
    """What `decide` reads of a run: ftscale.grid.PlannedRun (local) and
    ftscale.controller.templates.DesiredRun (operator) both are one. `gpu_hours`, the cost
    plan's estimate, is read when the object has it."""

    @property
    def run_id(self) -> str: ...

    @property
    def key(self) -> RunKey: ...


@dataclass(frozen=True)
class DesignDecision:
    """Which runs may start now.

    admitted: run ids that may start now, in the order to start them (the budget, then
        maxParallelRuns, still apply);
    not_needed: once `done`, the design's runs left unstarted (not failed: the target is
        known well enough without them); they count as terminal for the study's progress;
    waiting: runs the design has not chosen yet (it may after the next harvest);
    reasons: run id → why each admitted run was chosen (a sentence with the numbers).
    """

    strategy: str
    admitted: tuple[str, ...]
    not_needed: tuple[str, ...] = ()
    waiting: tuple[str, ...] = ()
    done: bool = False
    reasons: dict[str, str] = field(default_factory=dict)
    stopped: str | None = None  # why the design stopped (when done)
    target: str = ""  # what the design estimates, in words
    estimate: dict[str, float] = field(default_factory=dict)
    half_width: float = math.nan  # the target's 95 % half-width now (nan before every law)
    stop_half_width: float | None = None
    cost_unit: str = "GPU-h"

    def message(self) -> str:
        if self.strategy == GRID:
            return f"grid: every run of the grid starts ({len(self.admitted)} to start)"
        width = ("no fit yet (seed design)" if math.isnan(self.half_width)
                 else f"95% half-width {self.half_width:.4g}")
        if self.stop_half_width is not None:
            width += f" (stop at {self.stop_half_width:.4g})"
        text = f"adaptive design of {self.target}: {width}"
        if self.done:
            text += f"; done — {self.stopped}; {len(self.not_needed)} run(s) not needed"
        else:
            text += (f"; {len(self.admitted)} run(s) to start, {len(self.waiting)} not chosen "
                     "yet")
        return text


@dataclass(frozen=True)
class DesignSettings:
    """spec.design with its defaults, resolved against the spec (names → numbers)."""

    strategy: str
    kind: str
    methods: tuple[str, ...]
    model: str | None
    parameters: float | None
    data_size: int | None
    stop_half_width: float | None
    max_runs: int | None
    batch_size: int
    noise: float

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> "DesignSettings":
        design = spec.get("design") or {}
        target = design.get("target") or {}
        stop = design.get("stopWhen") or {}
        kind = target.get("kind", EXTRAPOLATION)
        methods = tuple(target.get("methods") or [m["name"] for m in spec["methods"]])
        return cls(strategy=design.get("strategy", GRID), kind=kind, methods=methods,
                   model=target.get("model"), parameters=target.get("parameters"),
                   data_size=target.get("dataSize"),
                   stop_half_width=stop.get("halfWidth"), max_runs=stop.get("maxRuns"),
                   batch_size=int(design.get("batchSize", DEFAULT_BATCH_SIZE)),
                   noise=float(design.get("lossNoise", DEFAULT_LOSS_NOISE)))


def model_sizes(spec: Mapping[str, Any],
                finished: Mapping[str, Any] = {}) -> dict[str, float | None]:
    """X (non-embedding parameters) of each spec.models entry: `parameters`, else the exact
    shape of a toy model (ftscale.costplan), else what a finished run of it reported; None
    when nothing says."""
    from ftscale import costplan  # keeps this module import-light for the benchmark

    reported: dict[str, float] = {}
    for result in finished.values():
        if getattr(result, "model_params", None):
            reported.setdefault(result.model, float(result.model_params))
    out: dict[str, float | None] = {}
    for m in spec["models"]:
        if m.get("parameters"):
            out[m["name"]] = float(m["parameters"])
            continue
        shape = costplan.model_shape(dict(m))
        out[m["name"]] = float(shape.non_embedding_params) if shape else reported.get(m["name"])
    return out


def _in_scope(spec: Mapping[str, Any], settings: DesignSettings):
    """key → whether the run belongs to the design: a target method at its default PET size on
    a model that is not a checkpoint (the model-size factor's runs, ftscale.grid)."""
    from ftscale.grid import default_size

    defaults = {m["name"]: default_size(m) for m in spec["methods"]}
    chained = {m["name"] for m in spec["models"] if "checkpointOf" in m}
    wanted = set(settings.methods)
    return lambda k: (k.method in wanted and k.pet_size == defaults.get(k.method)
                      and k.model not in chained)


def decide(spec: Mapping[str, Any], desired: Sequence[DesignRun],
           finished: Mapping[str, Any], in_flight: Collection[str]) -> DesignDecision:
    """Which of `desired` (the grid, in grid order) may start now under spec.design.

    finished: run id → ftscale.results.RunResult of each terminal run (failed ones included);
    in_flight: run ids started and not terminal. Pure and deterministic.

    grid (the default): every run neither finished nor in flight, in grid order.
    adaptive: runs outside the design (other methods, other PET sizes, checkpoints) start as in
    the grid; the design's runs start as ftscale.design.next_runs chooses them: the seed design
    at once, then at most spec.design.batchSize chosen runs under way, each chosen after the
    harvests before it, until spec.design.stopWhen holds — then the rest are not needed.
    """
    settings = DesignSettings.from_spec(spec)
    todo = [r for r in desired if r.run_id not in finished and r.run_id not in in_flight]
    if settings.strategy != ADAPTIVE:
        return DesignDecision(GRID, tuple(r.run_id for r in todo))
    scope = _in_scope(spec, settings)
    mine = [r for r in desired if scope(r.key)]
    outside = tuple(r.run_id for r in todo if not scope(r.key))
    reasons = {rid: "outside the adaptive design (not a target method at its default size on "
                    "a model of the model-size sweep): runs as in the grid" for rid in outside}
    sizes = model_sizes(spec, finished)

    # A model of unknown size: its cheapest run first, to learn X from its result.
    unknown = sorted({r.key.model for r in mine if sizes.get(r.key.model) is None})
    learn = []
    for name in unknown:
        runs = {r.run_id for r in mine if r.key.model == name}
        if not runs & set(in_flight):
            cheapest = min((r for r in todo if r.run_id in runs),
                           key=lambda r: (r.key.data_size, r.key.seed), default=None)
            if cheapest is not None:
                learn.append(cheapest.run_id)
                reasons[cheapest.run_id] = (f"to learn the size of model {name} (set "
                                            "models[].parameters to skip this run)")
    known = [r for r in mine if sizes.get(r.key.model) is not None]

    failed = {rid for rid, res in finished.items() if not res.ok}
    cands = [Candidate(r.run_id, r.key.method, sizes[r.key.model], float(r.key.data_size))
             for r in known if r.run_id not in failed]
    results = {rid: float(res.test_loss) for rid, res in finished.items()
               if res.ok and res.test_loss is not None}
    hours = {r.run_id: getattr(r, "gpu_hours", None) for r in known}
    if hours and all(h and h > 0 for h in hours.values()):
        cost, unit = {k: float(v) for k, v in hours.items()}, "GPU-h"
    else:
        from ftscale.costplan import training_flops

        cost = {c.run_id: training_flops(c.method, int(c.x), 0, c.d) / RELATIVE_COST_SCALE
                for c in cands}
        unit = RELATIVE_COST_UNIT
    target = _target(spec, settings, sizes, known)
    pending = [rid for rid in in_flight if rid in {c.run_id for c in cands}]
    # The stop rule waits until the report's fit can fit every law form of spec.law.forms.
    short = _short_of_fit_points(spec, cands, set(results) | set(pending))
    started = sum(1 for r in mine if r.run_id in finished or r.run_id in in_flight)

    stopped = None
    plan = None
    if target is None or not cands:
        choices: tuple[Choice, ...] = ()
    else:
        room = settings.batch_size - len(pending)
        stop_at = 0.0 if short else settings.stop_half_width or 0.0
        plan = next_runs(cands, results, target, batch_size=max(1, room), cost=cost,
                         sigma=settings.noise, stop_half_width=stop_at,
                         pending=pending, cost_unit=unit)
        seeding = math.isnan(plan.half_width) and not plan.estimate
        choices = plan.choices if seeding else plan.choices[:max(0, room)]
        stopped = plan.stopped
        if stopped and stopped.startswith("budget"):
            stopped = None  # next_runs got no budget: only "every candidate is too dear"
    if settings.max_runs is not None:
        left = max(0, settings.max_runs - started - len(learn))
        if choices and left < len(choices):
            choices = choices[:left]
        if left == 0 and not choices and stopped is None and not unknown:
            stopped = f"stopWhen.maxRuns={settings.max_runs} runs of the design started"
    done = stopped is not None and not learn and not unknown
    for c in choices:
        reasons[c.run_id] = c.reason
    admitted = tuple(learn) + tuple(c.run_id for c in choices) + outside
    chosen = set(admitted)
    rest = tuple(r.run_id for r in todo if r.run_id not in chosen)
    return DesignDecision(
        ADAPTIVE, admitted, not_needed=rest if done else (), waiting=() if done else rest,
        done=done, reasons={rid: reasons[rid] for rid in admitted}, stopped=stopped,
        target=_describe(settings, target), estimate=dict(plan.estimate) if plan else {},
        half_width=plan.half_width if plan else math.nan,
        stop_half_width=settings.stop_half_width, cost_unit=unit)


# Free parameters of each law form (ftscale.law.fit): a fit needs one point more.
FORM_PARAMETERS = {"multiplicative": 4, "additive": 5, "single": 3}


def _short_of_fit_points(spec: Mapping[str, Any], cands: Sequence[Candidate],
                         ran: set[str]) -> list[str]:
    """Methods whose runs (finished or under way) give the report's fit fewer (X, D) points
    than its law forms need, not counting the held-out largest X and D (spec.law.heldOut)."""
    law = spec.get("law") or {}
    forms = law.get("forms") or ["multiplicative", "additive"]
    need = 1 + max(FORM_PARAMETERS.get(f, 4) for f in forms if f != "single") \
        if any(f != "single" for f in forms) else MIN_RUNS_TO_FIT
    held = law.get("heldOut") or {}
    out = []
    for method in sorted({c.method for c in cands}):
        mine = [c for c in cands if c.method == method]
        x_max, d_max = max(c.x for c in mine), max(c.d for c in mine)
        points = {(c.x, c.d) for c in mine if c.run_id in ran
                  and not (held.get("x", "largest") == "largest" and c.x == x_max)
                  and not (held.get("d", "largest") == "largest" and c.d == d_max)}
        if len(points) < need:
            out.append(method)
    return out


def _target(spec, settings: DesignSettings, sizes: Mapping[str, float | None],
            known: Sequence[DesignRun]) -> Target | None:
    """The Target of spec.design.target; None while an X it needs is unknown."""
    if settings.parameters is not None:
        x = float(settings.parameters)
    elif settings.model is not None:
        x = sizes.get(settings.model)
    else:
        xs = [sizes[m["name"]] for m in spec["models"] if "checkpointOf" not in m]
        x = None if any(v is None for v in xs) else max(xs)
    if x is None:
        return None
    methods = tuple(settings.methods)
    if settings.kind == CRITICAL:
        return Target(CRITICAL, methods, x)
    if settings.data_size is not None:
        return Target(EXTRAPOLATION, methods, x, float(settings.data_size))
    largest = {m: max((r.key.data_size for r in known if r.key.method == m), default=None)
               for m in methods}
    if any(v is None for v in largest.values()):
        return None
    return Target(EXTRAPOLATION, methods, x, {m: float(v) for m, v in largest.items()})


def _describe(settings: DesignSettings, target: Target | None) -> str:
    if target is None:
        return f"{settings.kind} of {', '.join(settings.methods)} (model sizes not known yet)"
    if target.kind == CRITICAL:
        return (f"the critical data size of {target.methods[0]} vs {target.methods[1]} at "
                f"X={target.x:.3g} (log D_c)")
    ds = ", ".join(f"{m} D={target.d_for(m):.3g}" for m in target.methods)
    return f"the test loss at X={target.x:.3g} ({ds}; nats)"
