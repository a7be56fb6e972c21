"""The GPU-hour budget of a study (`spec.budget.gpuHours`): which runs may start. Pure; the
operator and `ftscale run` call the same function with the same numbers.

The rule: runs start in grid order while the spent GPU-hours (measured: wall seconds × GPUs of
every finished run), plus the estimates of the runs under way, plus the estimate of the next run
stay within the budget. Estimates come from the cost plan (ftscale.costplan) and are corrected
by what finished runs really cost: the correction is the ratio of measured to estimated
GPU-hours over the finished runs that have both. The first run that would exceed the budget and
every run after it are not started (grid order keeps the design predictable: no small late run
slips in ahead of the larger ones the grid put first); the study then fits what finished.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

# A ratio outside this range means the estimate is broken, not merely off: keep it bounded so
# one odd run (a retry storm, a clock jump) cannot stop or unleash a whole study.
CORRECTION_BOUNDS = (0.1, 10.0)
SECONDS_PER_HOUR = 3600.0


@dataclass(frozen=True)
class BudgetDecision:
    budget_hours: float | None
    spent_hours: float  # measured, finished runs
    committed_hours: float  # corrected estimates of runs under way
    correction: float  # measured / estimated over finished runs (1.0 without data)
    admitted: tuple[str, ...]  # pending runs the budget allows, in grid order
    blocked: tuple[str, ...]  # pending runs it does not

    @property
    def exhausted(self) -> bool:
        return bool(self.blocked)

    def message(self) -> str:
        if self.budget_hours is None:
            return f"no budget; {self.spent_hours:.4g} GPU-hours spent"
        text = (f"{self.spent_hours:.4g} of {self.budget_hours:.4g} GPU-hours spent, "
                f"{self.committed_hours:.4g} under way (estimates × {self.correction:.3g}, the "
                "measured/estimated ratio of finished runs)")
        if self.blocked:
            text += (f"; {len(self.blocked)} run(s) not started: the next would exceed the "
                     "budget — raise spec.budget.gpuHours to run them")
        return text


def gpu_seconds(wall_seconds: float | None, gpus: int) -> float | None:
    """Measured GPU-seconds of a run: its wall time × the GPUs it held (0 for CPU runs)."""
    if wall_seconds is None:
        return None
    return float(wall_seconds) * max(0, int(gpus))


def decide(budget_hours: float | None, pending: Sequence[str],
           estimates: Mapping[str, float | None], finished: Mapping[str, float | None],
           running: Sequence[str]) -> BudgetDecision:
    """Which of `pending` (run ids, grid order) may start.

    estimates: run id → estimated GPU-hours (None: not priced — a CPU run or a model of unknown
        size; it costs no GPU-hours);
    finished: run id → measured GPU-hours of each terminal run (None: unknown, e.g. a run that
        never started a pod);
    running: run ids started and not yet terminal.
    """
    spent = sum(v for v in finished.values() if v is not None)
    pairs = [(finished[r], estimates.get(r)) for r in finished
             if finished[r] is not None and estimates.get(r)]
    correction = 1.0
    if pairs and sum(e for _, e in pairs) > 0:
        low, high = CORRECTION_BOUNDS
        correction = min(high, max(low, sum(m for m, _ in pairs) / sum(e for _, e in pairs)))

    def cost(run_id: str) -> float:
        return (estimates.get(run_id) or 0.0) * correction

    committed = sum(cost(r) for r in running)
    if budget_hours is None:
        return BudgetDecision(None, spent, committed, correction, tuple(pending), ())
    admitted: list[str] = []
    total = spent + committed
    for i, run_id in enumerate(pending):
        if total + cost(run_id) > budget_hours:
            return BudgetDecision(budget_hours, spent, committed, correction, tuple(admitted),
                                  tuple(pending[i:]))
        total += cost(run_id)
        admitted.append(run_id)
    return BudgetDecision(budget_hours, spent, committed, correction, tuple(admitted), ())
