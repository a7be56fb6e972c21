"""Scaling-law engine benchmark (`make bench-fit`). Prints numbers; asserts nothing.

1. Fit time of one multiplicative joint fit (`fit_law`, default held-out split) for tables of
   50 / 500 / 5,000 runs (one run per (X, D) point: the hardest case, nothing to average), with
   and without 1,000 bootstrap resamples.
2. Parameter error against noise level on the paper's FMT model-size grid (Table 4 values,
   3 seeds per point, held-out as the paper), averaged over noise draws.
3. Start strategies: variable projection vs a Chinchilla-style multi-start grid (time and the
   objective reached) on the paper's three methods.
Times are wall-clock seconds (what the goal is about) with the process's CPU seconds beside
them and the load average before and after: on a shared machine the CPU time is the fairer
comparison between runs. Bootstrap replicates are polished many at a time (batched
Levenberg–Marquardt, ftscale.law.solver.polish_many; docs/law.md §7).
The last line is `fit500_boot1000_seconds=S` (goal: S ≤ 3 on a 2-core machine).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "operator"))

from ftscale.law import fit_law  # noqa: E402
from ftscale.law.fit import d_reference, joint_points, make_factor  # noqa: E402
from ftscale.law.options import AxisHoldout  # noqa: E402
from ftscale.law.solver import minimise_one_factor  # noqa: E402
from ftscale.law.synthetic import PAPER_EN_DE, factor_rows, planted  # noqa: E402
from ftscale.law.threads import single_threaded_blas  # noqa: E402

SIZES = {50: (5, 10), 500: (20, 25), 5000: (50, 100)}


def table(n_runs: int, seed: int = 0) -> list[dict]:
    nx, nd = SIZES[n_runs]
    return factor_rows("fmt", "model_size", rng=np.random.default_rng(seed), seeds=1,
                       xs=np.geomspace(1e9, 16e9, nx), ds=np.geomspace(1e5, 4.5e6, nd))


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def timed_cpu(fn):
    """(wall seconds, CPU seconds of this process, result)."""
    c, t = time.process_time(), time.perf_counter()
    out = fn()
    return time.perf_counter() - t, time.process_time() - c, out


def load() -> str:
    return "load average " + " ".join(f"{v:.2f}" for v in os.getloadavg())


def bench_sizes(boot: int) -> dict:
    results = {}
    print(f"{load()} (2 cores shared: wall time grows with it)")
    print(f"{'runs':>6} {'bootstrap':>9} {'seconds':>9} {'cpu s':>7} {'converged':>9}  "
          "alpha     beta      E")
    for n in SIZES:
        rows = table(n)
        for b in (0, boot):
            secs, cpu, laws = timed_cpu(lambda: fit_law(rows, bootstrap=b, seed=0))
            law = laws[0]
            v = law.params.values()
            conv = f"{law.bootstrap.converged}/{b}" if b else str(law.convergence.converged)
            print(f"{n:>6} {b:>9} {secs:>9.3f} {cpu:>7.3f} {conv:>9}  {v['alpha']:.5f}  "
                  f"{v['beta']:.5f}  {v['E']:.5f}")
            results[(n, b)] = secs
    print(load())
    return results


def bench_noise(draws: int) -> None:
    truth = PAPER_EN_DE["fmt"]
    a_true, b_true, e_true = truth["model_size"][1], truth["beta"], truth["E"]
    print(f"\nparameter error vs noise (FMT model size, paper grid, 3 seeds/point, "
          f"{draws} draws; mean |error|, max Δ_held-out)")
    print(f"{'sigma':>7} {'|d alpha|':>10} {'|d beta|':>10} {'|d E|':>10} {'held-out MAD':>13}")
    for sigma in (0.001, 0.005, 0.01, 0.02):
        errs, held = [], []
        for draw in range(draws):
            rows = factor_rows("fmt", "model_size", sigma=sigma,
                               rng=np.random.default_rng(1000 + draw))
            law = fit_law(rows)[0]
            v = law.params.values()
            errs.append([abs(v["alpha"] - a_true), abs(v["beta"] - b_true), abs(v["E"] - e_true)])
            held.append(law.delta_heldout)
        m = np.mean(errs, axis=0)
        print(f"{sigma:>7.3f} {m[0]:>10.5f} {m[1]:>10.5f} {m[2]:>10.5f} {max(held):>13.5f}")


def bench_strategies() -> None:
    print("\nstart strategy (one-factor multiplicative fit, model size, paper grid):")
    print(f"{'method':>7} {'strategy':>8} {'seconds':>8} {'objective':>14} {'converged':>9} edge")
    for method in ("fmt", "prompt", "lora"):
        rows = factor_rows(method, "model_size", rng=np.random.default_rng(7))
        ids: dict = {}
        fac = make_factor("m", "model_params", rows, "data_size", "test_loss",
                          AxisHoldout("largest"), AxisHoldout("largest"), ids, "bench")
        pts = joint_points([fac], d_reference([fac]))
        for strategy in ("varpro", "grid"):
            with single_threaded_blas():
                secs, (theta, conv) = timed(lambda: minimise_one_factor(
                    pts, "multiplicative", "raw", 1e-3, {}, strategy))
            print(f"{method:>7} {strategy:>8} {secs:>8.2f} {conv.objective:>14.10g} "
                  f"{str(conv.converged):>9} {conv.start_on_grid_edge}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--draws", type=int, default=10, help="noise draws per sigma")
    parser.add_argument("--skip-strategies", action="store_true",
                        help="skip the (slow) multi-start grid comparison")
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, python "
          f"{platform.python_version()}, numpy {np.__version__}")
    results = bench_sizes(args.bootstrap)
    bench_noise(args.draws)
    if not args.skip_strategies:
        bench_strategies()
    print(f"fit500_boot{args.bootstrap}_seconds={results[(500, args.bootstrap)]:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
