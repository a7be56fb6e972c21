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
    """One world: the full grid's error and 95 % half-width, and the adaptive trace."""
    world = draw_world(rng)
    observed = {c.run_id: loss(world[c.method], c.x, c.d) + float(rng.normal(0, SIGMA))
                for c in cands}
    target = Target(EXTRAPOLATION, METHODS, MODEL_SIZES[-1], dict(d_max))
    full = {"err": target_error(world, cands, observed, d_max), "gpu_h": sum(cost.values()),
            "half_width": next_runs(cands, observed, target, batch_size=1, cost=cost,
                                    sigma=SIGMA).half_width}
    results: dict[str, float] = {}
    trace = []  # (GPU-hours spent, error, 95 % half-width) before each batch and at the end
    while True:
        plan = next_runs(cands, results, target, batch_size=batch, cost=cost, rng_seed=0,
                         sigma=SIGMA)
        if results:
            trace.append((sum(cost[r] for r in results),
                          target_error(world, cands, results, d_max), plan.half_width))
        if not plan.choices:
            return full, trace
        for ch in plan.choices:
            results[ch.run_id] = observed[ch.run_id]


def reach(full, trace) -> dict[str, float]:
    """GPU-hour fractions: `width` — first point whose half-width is at most the full grid's
    (what the stop rule with that threshold would spend) and the error there; `stay` — first
    point from which the error stays at most the full grid's; `first` — first such point."""
    frac = lambda gpu_h: gpu_h / full["gpu_h"]  # noqa: E731
    w = next(t for t in trace if t[2] <= full["half_width"] * (1 + 1e-9))
    stay = next(t for i, t in enumerate(trace) if all(u[1] <= full["err"] for u in trace[i:]))
    first = next(t for t in trace if t[1] <= full["err"])
    return {"width": frac(w[0]), "width_err": w[1], "stay": frac(stay[0]),
            "first": frac(first[0])}


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
    print("world  full_err  full_hw  | width_frac  err_there | stay_frac  first_frac")
    rows = []
    for w in range(args.worlds):
        full, trace = run_world(rng, cands, cost, d_max, args.batch)
        r = reach(full, trace)
        r["full_err"] = full["err"]
        rows.append(r)
        print(f"{w:5d}  {full['err']:.4f}    {full['half_width']:.4f}  | {r['width']:.3f}       "
              f"{r['width_err']:.4f}    | {r['stay']:.3f}      {r['first']:.3f}")
    col = lambda k: np.array([r[k] for r in rows])  # noqa: E731
    print(f"median GPU-hour fraction: to the full grid's half-width {np.median(col('width')):.3f}"
          f" (quartiles {np.percentile(col('width'), 25):.3f}-"
          f"{np.percentile(col('width'), 75):.3f}); error there {np.mean(col('width_err')):.4f}"
          f" nats on average vs the full grid's {np.mean(col('full_err')):.4f}")
    print(f"median GPU-hour fraction to the full grid's error: and stay there "
          f"{np.median(col('stay')):.3f}; first reach {np.median(col('first')):.3f}")
    print(f"seconds: {time.perf_counter() - t0:.1f} wall, {time.process_time() - c0:.1f} CPU")
    print(f"adaptive_gpu_hour_fraction={np.median(col('stay')):.3f}")


if __name__ == "__main__":
    main()
