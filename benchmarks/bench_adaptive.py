"""Adaptive design against the full grid (`make bench-adaptive`). Prints numbers; asserts
nothing.

Each simulated world draws one multiplicative law L = A·X^−α·D^−β + E per method (FMT, LoRA,
prompt tuning) around the paper's Table 4 model-size values (ftscale.law.synthetic.PAPER_EN_DE:
α, β and E each scaled by a log-normal factor of sd 0.1, A so that the loss at the grid's
smallest run is kept) and observes every run once with Gaussian noise σ = 0.01 nats.

Candidates are the paper's Table 1b grids without the held-out values: model sizes 1B–8B
(16B held out) × the data sizes below the largest (FMT 100K–4M, PET 8K–90K). The target is the
loss of each method at 16B and the largest data size (extrapolation); its error is
|L̂ − L_true| averaged over the three methods. Cost of a run ∝ training FLOPs
(ftscale.costplan.training_flops: 6·N·tokens for FMT, 4·N·tokens through the frozen base for
PET) with 128 tokens per example and one epoch, in GPU-hours at 400 TFLOP/s effective.

The full grid fits every candidate. The adaptive design (ftscale.design.next_runs, batches of
`--batch` runs, no stop rule) starts from its seed design and refits after each batch; its
GPU-hours to reach the full grid's error are those after the first batch from which its error
stays at or below the full grid's for every later batch (so a lucky early fit does not count;
once every candidate has run the two designs are the same, so the fraction is at most 1).

The last line is `adaptive_gpu_hour_fraction=F`, the median over worlds (goal F ≤ 0.4).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "operator"))

from ftscale.costplan import training_flops  # noqa: E402
from ftscale.design import EXTRAPOLATION, Candidate, Target, fit_method, next_runs  # noqa: E402
from ftscale.law.synthetic import D_FMT, D_PET, MODEL_SIZES, PAPER_EN_DE  # noqa: E402

METHODS = ("fmt", "lora", "prompt")
SIGMA = 0.01
SPREAD = 0.1  # log-normal sd of the drawn α, β, E around Table 4
TOKENS_PER_EXAMPLE = 128
EPOCHS = 1
FLOPS_PER_GPU_HOUR = 400e12 * 3600


def draw_world(rng: np.random.Generator) -> dict[str, tuple[float, float, float, float]]:
    """(A, α, β, E) per method around Table 4 (see the module docstring)."""
    world = {}
    for m in METHODS:
        p = PAPER_EN_DE[m]
        a0, al0 = p["model_size"]
        al, be, e = (v * float(np.exp(rng.normal(0, SPREAD)))
                     for v in (al0, p["beta"], p["E"]))
        ds = D_FMT if m == "fmt" else D_PET
        x0, d0 = MODEL_SIZES[0], ds[0]
        # keep the planted power term at the smallest run, so losses stay in Table 4's range
        power = a0 * x0 ** -al0 * d0 ** -p["beta"]
        world[m] = (power * x0 ** al * d0 ** be, al, be, e)
    return world


def loss(law, x, d) -> float:
    a, al, be, e = law
    return a * x ** -al * d ** -be + e


def grid() -> tuple[list[Candidate], dict[str, float], dict[str, float]]:
    """Candidates, their GPU-hours, and each method's largest D (the target's D)."""
    cands, cost, d_max = [], {}, {}
    for m in METHODS:
        ds = D_FMT if m == "fmt" else D_PET
        d_max[m] = ds[-1]
        for x in MODEL_SIZES[:-1]:
            for d in ds[:-1]:
                c = Candidate(f"{m}-{x:.0e}-{d:.0e}", m, x, d)
                cands.append(c)
                flops = training_flops(m, int(x), 0, d * TOKENS_PER_EXAMPLE * EPOCHS)
                cost[c.run_id] = flops / FLOPS_PER_GPU_HOUR
    return cands, cost, d_max


def target_error(world, cands, results, d_max) -> float:
    errs = []
    for m in METHODS:
        law = fit_method([c for c in cands if c.method == m], results)
        if law is None:
            return float("inf")
        x = MODEL_SIZES[-1]
        errs.append(abs(float(law.predict(x, d_max[m])) - loss(world[m], x, d_max[m])))
    return float(np.mean(errs))


def run_world(rng, cands, cost, d_max, batch: int):
    world = draw_world(rng)
    observed = {c.run_id: loss(world[c.method], c.x, c.d) + float(rng.normal(0, SIGMA))
                for c in cands}
    full_err = target_error(world, cands, observed, d_max)
    full_cost = sum(cost.values())
    target = Target(EXTRAPOLATION, METHODS, MODEL_SIZES[-1], dict(d_max))
    results: dict[str, float] = {}
    trace = []  # (GPU-hours spent, error) after each batch
    while True:
        plan = next_runs(cands, results, target, batch_size=batch, cost=cost, rng_seed=0,
                         sigma=SIGMA)
        if not plan.choices:
            break
        for ch in plan.choices:
            results[ch.run_id] = observed[ch.run_id]
        trace.append((sum(cost[r] for r in results), target_error(world, cands, results, d_max),
                      plan.half_width))
    reach = full_cost
    for i in range(len(trace)):
        if all(t[1] <= full_err for t in trace[i:]):
            reach = trace[i][0]
            break
    first = next((t[0] for t in trace if t[1] <= full_err), full_cost)
    return full_err, full_cost, reach, first


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--worlds", type=int, default=20)
    ap.add_argument("--batch", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    cands, cost, d_max = grid()
    t0, c0 = time.perf_counter(), time.process_time()
    print(f"{args.worlds} worlds; {len(cands)} candidates (FMT, LoRA, prompt: 4 model sizes x "
          f"9-10 data sizes), full grid {sum(cost.values()):.1f} GPU-h; batch {args.batch}; "
          f"sigma = {SIGMA} nats; load average "
          f"{' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    print("world  full_err  reach_GPU-h  fraction  first_reach_fraction")
    fractions, firsts = [], []
    for w in range(args.worlds):
        full_err, full_cost, reach, first = run_world(rng, cands, cost, d_max, args.batch)
        fractions.append(reach / full_cost)
        firsts.append(first / full_cost)
        print(f"{w:5d}  {full_err:.4f}    {reach:9.1f}  {reach / full_cost:.3f}     "
              f"{first / full_cost:.3f}")
    print(f"fraction quartiles: {np.percentile(fractions, 25):.3f} {np.median(fractions):.3f} "
          f"{np.percentile(fractions, 75):.3f}; first-reach median {np.median(firsts):.3f}")
    print(f"seconds: {time.perf_counter() - t0:.1f} wall, {time.process_time() - c0:.1f} CPU")
    print(f"adaptive_gpu_hour_fraction={np.median(fractions):.3f}")


if __name__ == "__main__":
    main()
