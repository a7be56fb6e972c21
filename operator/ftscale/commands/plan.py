"""`ftscale plan STUDY.yaml`: what a study will cost before it runs (ftscale.costplan)."""

from __future__ import annotations

import argparse
import json
import sys

from ftscale.costplan import GIB, GPU_TYPES, StudyPlan

DESCRIPTION = """\
Print the cost plan of a ScalingStudy without running anything: per run and in total, the
training FLOPs (6·N·tokens for fmt; lora and prompt pay forward and backward through the frozen
base, 4·N·tokens, plus their adapter), evaluation FLOPs, GPU-hours at a per-GPU throughput
(peak × MFU) and the memory per GPU — weights, gradients, Adam state and activations, with
gradient checkpointing, a smaller micro-batch or FSDP sharding chosen where they are needed to
fit. The formulas, defaults and assumptions are in docs/study.md ("Cost plan").

The GPU comes from spec.execution.gpu ({type, peakTFLOPs, mfu}) and .gpuMemoryGiB; --gpu and
--mfu override them (and --gpu also prices the runs with gpus: 0, on one GPU each, as
`ftscale run` gives them on a GPU machine). Without either, GPU runs are priced on an h100.

Examples:
  ftscale plan examples/gpu-cluster-study.yaml
  ftscale plan study.yaml --gpu a100 --mfu 0.4
  ftscale plan study.yaml --runs          # one line per run as well
  ftscale plan study.yaml --json          # everything, per run, for scripts

Exit codes: 0 planned; 1 some run does not fit its GPUs' memory (each is named with what to
change); 2 the study is invalid or cannot be planned.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("study", metavar="STUDY.yaml", help="a ScalingStudy manifest")
    parser.add_argument("--gpu", choices=sorted(GPU_TYPES), type=str.lower,
                        help="price on this GPU (overrides spec.execution.gpu)")
    parser.add_argument("--mfu", type=float, metavar="F",
                        help="model FLOPs utilisation, 0 < F ≤ 1 (default: the spec's, else 0.35)")
    parser.add_argument("--json", action="store_true", help="print the full plan as JSON")
    parser.add_argument("--runs", action="store_true",
                        help="also list every run (the table shows model × method totals)")


def main(args: argparse.Namespace) -> int:
    from ftscale import costplan, grid
    from ftscale.spec import StudyValidationError, load_study

    try:
        study = load_study(args.study)
        plan = costplan.plan_study(study.spec, study.name, gpu_type=args.gpu, mfu=args.mfu)
        problems = costplan.fit_problems(study.spec, plan)
    except (OSError, StudyValidationError, costplan.CostPlanError, grid.GridError) as exc:
        print(f"ftscale plan: {exc}", file=sys.stderr)
        return 2
    if args.json:
        doc = plan.to_dict()
        doc["problems"] = problems
        print(json.dumps(doc, indent=2))
    else:
        print(render(plan, with_runs=args.runs))
        for problem in problems:
            print(f"\ndoes not fit: {problem}")
    return 1 if problems else 0


# ---- the table ----------------------------------------------------------------------------
def _flops(value: float | None) -> str:
    return "?" if value is None else f"{value:.3g}"


def _hours(value: float | None, gpus: int) -> str:
    if value is None:
        return "no GPU" if gpus == 0 else "?"
    if value < 0.01:
        return f"{value:.2g}"
    return f"{value:,.3f}" if value < 10 else f"{value:,.1f}"


def _gib(value: float | None) -> str:
    if value is None:
        return "?"
    return f"{value:.2f}" if value < 10 else f"{value:.1f}"


def _fits(value: bool | None) -> str:
    return {True: "yes", False: "NO", None: "-"}[value]


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
    numeric = [i >= 2 for i in range(len(header))]

    def line(cells):
        return "  ".join(c.rjust(w) if num else c.ljust(w)
                         for c, w, num in zip(cells, widths, numeric)).rstrip()
    return [line(header), line(["-" * w for w in widths])] + [line(r) for r in rows]


def render(plan: StudyPlan, with_runs: bool = False) -> str:
    """The plan as text: the GPU, a model × method table with the total, notes."""
    gpu = plan.gpu
    priced = len(plan.runs) - plan.unpriced_runs
    if priced:
        memory = "?" if gpu.memory_gib is None else f"{gpu.memory_gib:g}"
        gpu_line = (f"GPU: {gpu.type} ({gpu.peak_tflops:g} TFLOP/s bf16 peak, MFU {gpu.mfu:g}, "
                    f"{memory} GiB; from the {gpu.source})")
    else:
        gpu_line = ("GPU: none (every run has gpus: 0): FLOPs and memory (RAM) only; "
                    "--gpu TYPE prices each run on one GPU")
    out = [f"Cost plan of study {plan.study}: {len(plan.runs)} runs", gpu_line, ""]
    header = ["model", "method", "runs", "GPUs", "FLOPs", "GPU-hours", "GiB/GPU", "fits"]
    rows = [[g.model, g.method, str(g.runs), str(g.gpus), _flops(g.flops),
             _hours(g.gpu_hours, g.gpus), _gib(g.max_memory_gib), _fits(g.fits)]
            for g in plan.groups()]
    rows.append(["total", "", str(len(plan.runs)), "", _flops(plan.total_flops),
                 _hours(plan.total_gpu_hours if priced else None, priced), "", ""])
    out += _table(header, rows)
    if with_runs:
        out.append("")
        header = ["run", "model/method", "size", "D_f", "seed", "steps", "tokens", "FLOPs",
                  "GPU-hours", "GiB/GPU", "micro", "ckpt", "FSDP"]
        rows = []
        for r in plan.runs:
            m, w = r.memory, r.workload
            rows.append([r.run_id, f"{r.model}/{r.method}", str(r.pet_size or "-"),
                         str(r.data_size), str(r.seed), str(w.steps) if w else "?",
                         _flops(w.train_tokens) if w else "?", _flops(r.total_flops),
                         _hours(r.gpu_hours, r.priced_gpus), _gib(m.total / GIB if m else None),
                         str(m.micro_batch_size) if m else "?",
                         ("on" if m.gradient_checkpointing else "off") if m else "?",
                         ("on" if m.sharded else "off") if m else "?"])
        out += _table(header, rows)
    notes = list(plan.notes)
    counted: dict[str, int] = {}
    for r in plan.runs:
        for note in r.notes:
            counted[note] = counted.get(note, 0) + 1
    notes += [f"{note} ({n} run{'s' if n != 1 else ''})" for note, n in counted.items()]
    if plan.unpriced_runs and priced:
        notes.append(f"the total leaves out {plan.unpriced_runs} run(s) without a GPU price")
    if notes:
        out.append("")
        out += [f"note: {n}" for n in notes]
    return "\n".join(out)
