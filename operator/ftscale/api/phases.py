"""Phases and conditions of a ScalingStudy: the values the CRD's enums, the operator's status,
`kubectl get sst` columns, the metrics' phase label and the docs share."""

from __future__ import annotations

from ftscale.api.outcomes import FAILED as RUN_FAILED, SUCCEEDED as RUN_SUCCEEDED  # noqa: F401

# ---- run phases (status counts, the ftscale_study_runs{phase} gauge) ----
RUN_PENDING = "Pending"  # no Job yet (parallelism limit, budget)
RUN_QUEUED = "Queued"  # Job created, suspended by Kueue or its pod not running yet
RUN_RUNNING = "Running"  # its pod runs
RUN_PHASES = (RUN_PENDING, RUN_QUEUED, RUN_RUNNING, RUN_SUCCEEDED, RUN_FAILED)
TERMINAL_RUN_PHASES = (RUN_SUCCEEDED, RUN_FAILED)

# ---- study phases (status.phase) ----
STUDY_PENDING = "Pending"
STUDY_RUNNING = "Running"
STUDY_FITTING = "Fitting"
STUDY_FITTED = "Fitted"
STUDY_FAILED = "Failed"
STUDY_PHASES = (STUDY_PENDING, STUDY_RUNNING, STUDY_FITTING, STUDY_FITTED, STUDY_FAILED)

# ---- fit phases (status.fit.phase) ----
FIT_SUCCEEDED_PHASE = "Succeeded"
FIT_FAILED_PHASE = "Failed"

# ---- condition types ----
PROGRESSING = "Progressing"  # True while runs or the fit are still to finish
SUCCEEDED = "Succeeded"  # every run terminal, failures within maxFailedRuns, the law fitted
FAILED = "Failed"  # too many failed runs once all are terminal, or the fit failed
FITTED = "Fitted"  # status.fit holds the fit of the current set of results
DEGRADED = "Degraded"  # failed runs exceed maxFailedRuns (no new runs start)
BUDGET_EXHAUSTED = "BudgetExhausted"  # the next run would exceed spec.budget.gpuHours
STALLED = "Stalled"  # created runs whose pods cannot be created, pulled or scheduled
CONDITION_TYPES = (PROGRESSING, SUCCEEDED, FAILED, FITTED, DEGRADED, BUDGET_EXHAUSTED, STALLED)

# ---- condition reasons (CamelCase) ----
RUNS_IN_PROGRESS = "RunsInProgress"
FIT_IN_PROGRESS = "FitInProgress"
COMPLETED = "Completed"  # every run terminal and the fit done (or impossible)
ALL_RUNS_SUCCEEDED = "AllRunsSucceeded"
WITHIN_FAILURE_BUDGET = "WithinFailureBudget"
TOO_MANY_FAILED_RUNS = "TooManyFailedRuns"
FIT_SUCCEEDED = "FitSucceeded"
FIT_FAILED = "FitFailed"
NO_SUCCESSFUL_RUNS = "NoSuccessfulRuns"
NOTHING_TO_FIT = "NothingToFit"  # no factor of any method can be fitted from the results
INVALID_SPEC = "InvalidSpec"
NOT_FINISHED = "NotFinished"
WITHIN_BUDGET = "WithinBudget"
PODS_CANNOT_START = "PodsCannotStart"
JOB_CREATE_REFUSED = "JobCreateRefused"  # the API server refuses to create a run's Job (4xx)
PREFETCH_FAILED = "PrefetchFailed"  # a model download Job failed; its runs cannot start
EVENT_RUN_CHOSEN = "RunChosen"  # the adaptive design chose a run (the Event says why)
NOT_STALLED = "RunsStarting"
WAITING_FOR_RUNS = "WaitingForRuns"
STUDY_TERMINAL_FAILED = "StudyFailed"  # Succeeded=False on a study that has ended Failed

# ---- Event reasons ----
EVENT_RUN_FAILED = "RunFailed"
EVENT_FITTED = "Fitted"
EVENT_FIT_FAILED = "FitFailed"
EVENT_FACTOR_SKIPPED = "FactorSkipped"
