"""Model selection from small subsets (`make bench-model-selection`). Prints numbers; asserts
nothing.

Simulated pools of 5–10 unrelated candidate models, each with a rectified-law curve
L(D) = (B / (D_l + D^β) + E)^α (Lin et al., ICML 2024). Each candidate is "finetuned" on
Lin et al.'s subsets 200·2^i up to 10 % of the target data size (target 1,638,400 = 200·2^13,
their full size; subsets 200 … 102,400), one run per subset with Gaussian noise σ = 0.01 nats.
`ftscale recommend --models` (ftscale.law.rectified.rank_models, the CLI's own function) picks
the candidate with the lowest extrapolated loss; we count how often that is the truly best
model at the target size, and how often picking by the plain power law L = B·D^−β + E or by
the loss at the largest subset would be.

How the curves are drawn (docs/law.md §10 says why): per candidate, the loss at D = 200 is
uniform in [2.0, 4.0] nats and at the full 1.6M uniform in [0.6, 1.8]; the knee D_l^(1/β)
(end of the pre-power phase) log-uniform in [500, 30,000]; β uniform in [0.5, 1.1]; α
log-uniform in [0.6, 1.6]; B and E follow from the two losses. These reproduce the curves of
Lin et al.'s Figures 1–2 (WMT19, Gigaword, FLAN: losses ~1.2–4.3 at 200 examples and
~0.55–2.1 at 1.6M, flat starts that bend into the power phase between ~10^3 and ~10^5, curves
that cross) — drawn independently, so the model best at small D is often not the best at the
target.

The last line is `model_selection_top1=P` (goal: P ≥ 0.8).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "operator"))

from ftscale.law.rectified import rank_models  # noqa: E402
from ftscale.law.threads import single_threaded_blas  # noqa: E402

TARGET = 200 * 2 ** 13  # 1,638,400
SUBSETS = np.array([200 * 2 ** i for i in range(14)], float)
FRACTION = 0.1
SIGMA = 0.01
LOSS_SMALL = (2.0, 4.0)
LOSS_FULL = (0.6, 1.8)
KNEE = (5e2, 3e4)
BETA = (0.5, 1.1)
ALPHA = (0.6, 1.6)
NEAR_TIE = 0.01  # nats: a pick within this of the best is as good as the noise can tell


def draw_curve(rng: np.random.Generator):
    """One candidate's rectified curve (see the module docstring); redrawn until E > 0."""
    while True:
        alpha = float(np.exp(rng.uniform(*np.log(ALPHA))))
        beta = float(rng.uniform(*BETA))
        knee = float(np.exp(rng.uniform(*np.log(KNEE))))
        l0, l1 = float(rng.uniform(*LOSS_SMALL)), float(rng.uniform(*LOSS_FULL))
        d_l = knee ** beta
        g0, g1 = 1 / (d_l + 200.0 ** beta), 1 / (d_l + TARGET ** beta)
        i0, i1 = l0 ** (1 / alpha), l1 ** (1 / alpha)
        b = (i0 - i1) / (g0 - g1)
        e = i1 - b * g1
        if e > 0:
            return lambda d, b=b, e=e, d_l=d_l, beta=beta, alpha=alpha: \
                (b / (d_l + np.asarray(d, float) ** beta) + e) ** alpha


def pool(rng: np.random.Generator):
    """(rows of every candidate's subset runs, true loss of each candidate at the target)."""
    n = int(rng.integers(5, 11))
    rows, truth = [], {}
    ds = SUBSETS[SUBSETS <= FRACTION * TARGET]
    for k in range(n):
        name = f"cand-{k}"
        curve = draw_curve(rng)
        truth[name] = float(curve(TARGET))
        for d in ds:
            rows.append({"model": name, "run_id": f"{name}-{int(d)}", "data_size": float(d),
                         "test_loss": float(curve(d) + rng.normal(0.0, SIGMA))})
    return rows, truth


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pools", type=int, default=24)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    hits = {"rectified": 0, "power": 0, "largest": 0}
    near = dict.fromkeys(hits, 0)
    regret = {k: [] for k in hits}
    t0, c0 = time.perf_counter(), time.process_time()
    print(f"{args.pools} pools of 5-10 candidates; subsets 200..{int(FRACTION * TARGET)} "
          f"(<= {FRACTION:.0%} of D = {TARGET}); sigma = {SIGMA} nats; "
          f"load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    print("pool  n  best     gap2   rectified  power    largest")
    with single_threaded_blas():
        for i in range(args.pools):
            rows, truth = pool(rng)
            doc = rank_models(rows, float(TARGET))
            order = sorted(truth, key=truth.get)
            best = order[0]
            picks = {"rectified": doc["ranking"][0]["model"], "power": doc["by_power_law"][0],
                     "largest": doc["by_largest_subset"][0]}
            for k, m in picks.items():
                hits[k] += m == best
                near[k] += truth[m] - truth[best] <= NEAR_TIE
                regret[k].append(truth[m] - truth[best])
            mark = {k: ("ok" if m == best else f"{truth[m] - truth[best]:+.3f}")
                    for k, m in picks.items()}
            print(f"{i:4d}  {len(truth):2d} {best:8s} {truth[order[1]] - truth[best]:.3f}  "
                  f"{mark['rectified']:10s} {mark['power']:8s} {mark['largest']}")
    n = args.pools
    print(f"\n{'picked by':12s} top-1  within {NEAR_TIE} nats  mean regret (nats)")
    for k, label in (("rectified", "rectified"), ("power", "power law"),
                     ("largest", "largest subset")):
        print(f"{label:12s} {hits[k] / n:.2f}   {near[k] / n:.2f}             "
              f"{np.mean(regret[k]):.4f}")
    print(f"seconds: {time.perf_counter() - t0:.1f} wall, {time.process_time() - c0:.1f} CPU")
    print(f"power_law_top1={hits['power'] / n:.3f}")
    print(f"largest_subset_top1={hits['largest'] / n:.3f}")
    print(f"model_selection_top1={hits['rectified'] / n:.3f}")


if __name__ == "__main__":
    main()
