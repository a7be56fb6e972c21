"""The reconcile decision, pure: (study, desired runs, observed Jobs and Pods, now) → Plan.

Level-based: nothing here remembers the previous pass. The state of every run is derived from
what exists — its Job (and that Job's pods) and, for runs whose Job is gone after its TTL, the
result already recorded in the study's results ConfigMaps (ftscale.api.results_store, the
durable record: the operator sets a Job's TTL only after the write that records its result has
succeeded). The status holds counts, the fit, conditions and the last few failures: its size
does not grow with the study.

Run phases: Pending (no Job yet) → Queued (Job suspended by Kueue, or its pod not running yet)
→ Running (its pod runs) → Succeeded | Failed (harvested).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from typing import Any, Collection, Iterable, Mapping

from ftscale import budget
from ftscale import results as rc
from ftscale.api import phases as ph
from ftscale.api.phases import (RUN_PHASES, STUDY_FAILED, STUDY_FITTED, STUDY_FITTING,
                                STUDY_PENDING, STUDY_RUNNING)
from ftscale.api import results_store
from ftscale.api.status import RECENT_FAILURES, entry_from_result as status_entry
from ftscale.grid import expand, fit_job_input
from ftscale.controller import conditions as cond
from ftscale.controller import names, prefetch
from ftscale.controller.harvest import harvest_fit, harvest_run, harvest_succeeded_pod
from ftscale.controller.observe import JobView, PodView, format_time, same_workload
from ftscale.controller.settings import OperatorSettings
from ftscale.controller.templates import (DesiredRun, StudyRef, fit_job, rendezvous_service,
                                          rendezvous_service_name, run_job)

PENDING, QUEUED, RUNNING = ph.RUN_PENDING, ph.RUN_QUEUED, ph.RUN_RUNNING
ADAPTIVE = "adaptive"  # spec.design.strategy (ftscale.design.ADAPTIVE; checked by a test)


@dataclass(frozen=True)
class Event:
    type: str  # Normal | Warning
    reason: str
    message: str


@dataclass(frozen=True)
class Harvested:
    """A run whose result this pass records for the first time."""

    run_id: str
    job: str
    result: rc.RunResult
    finished_at: float | None


@dataclass
class Plan:
    # Headless Services of new runs on several nodes: created before create_jobs (a pod's
    # name resolves only once its Service exists; AlreadyExists is success).
    create_services: list[dict[str, Any]] = field(default_factory=list)
    create_jobs: list[dict[str, Any]] = field(default_factory=list)
    # Services of multi-node runs whose result this pass records: deleted after the status
    # write, like TTLs (the study's owner reference collects any that a crash leaves behind).
    delete_services: list[str] = field(default_factory=list)
    delete_jobs: list[str] = field(default_factory=list)
    # Results harvested by this pass (run id → result): added to the results ConfigMaps
    # (ftscale.api.results_store) before any TTL lets their Jobs go.
    new_results: dict[str, rc.RunResult] = field(default_factory=dict)
    # Every terminal desired run's result, in grid order (recorded + new): metrics, the fit.
    results: list[rc.RunResult] = field(default_factory=list)
    status: dict[str, Any] = field(default_factory=dict)
    status_changed: bool = False
    # (Job name, ttlSecondsAfterFinished): applied only after the status write succeeded.
    ttl_patches: list[tuple[str, int]] = field(default_factory=list)
    # Fit: the input document (goes to the ConfigMap) and the Job, when one is due.
    fit_input: dict[str, Any] | None = None
    fit_job: dict[str, Any] | None = None
    events: list[Event] = field(default_factory=list)
    harvested: list[Harvested] = field(default_factory=list)
    fit_finished: dict[str, Any] | None = None  # status.fit just harvested (for metrics/events)
    # Phase of every desired run (for the per-phase gauge).
    run_phases: dict[str, str] = field(default_factory=dict)
    # A Job finished but its pod (with the result) is not cached yet: look again shortly.
    waiting: bool = False


# ---- fit input -----------------------------------------------------------------------------


def fit_input_digest(spec: Mapping[str, Any], results: Iterable[rc.RunResult]) -> str:
    """Digest of what a fit depends on: the law options and every run's outcome and loss.
    A grid extension or a law-option change gives a new digest, hence a new fit Job."""
    basis = {
        "law": spec.get("law") or {},
        # float(): JSON read back may give 2 for 2.0; the digest must not see the difference.
        "runs": sorted((r.run_id, r.outcome, None if r.test_loss is None else float(r.test_loss))
                       for r in results),
    }
    text = json.dumps(basis, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def fit_input_document(study: str, spec: Mapping[str, Any], results: Iterable[rc.RunResult],
                       digest: str) -> dict[str, Any]:
    """The document the fit Job reads (`python -m ftscale.law.job --input`), made by
    ftscale.grid.fit_job_input — the same builder `ftscale run` uses — from the recorded
    results, the durable record, so it is complete even when run Jobs are long gone.

    Results in grid order whatever order they come in: the fit's bootstrap resamples rows by
    position, so a reader that rebuilds a lost input from the results ConfigMaps (read in any
    order: ftscale.report.cluster) must get the very document, hence status.fit's numbers."""
    order = {p.run_id: i for i, p in enumerate(expand(dict(spec)))}
    results = sorted(results, key=lambda r: (order.get(r.run_id, len(order)), r.run_id))
    doc = fit_job_input(study, dict(spec), results)
    doc["results"] = [results_store.slim(r) for r in doc["results"]]  # compact documents already
    doc["inputDigest"] = digest
    return doc



# ---- the plan ------------------------------------------------------------------------------


def _max_failed(spec: Mapping[str, Any]) -> int:
    value = (spec.get("execution") or {}).get("maxFailedRuns", -1)
    return -1 if value is None else int(value)


def _by_job(pods: Iterable[PodView]) -> dict[str, list[PodView]]:
    out: dict[str, list[PodView]] = {}
    for pod in pods:
        if pod.job:
            out.setdefault(pod.job, []).append(pod)
    return out


def plan(study: StudyRef, spec: Mapping[str, Any], status: Mapping[str, Any] | None,
         desired: list[DesiredRun] | None, jobs: Iterable[JobView], pods: Iterable[PodView],
         now: float, settings: OperatorSettings, *, recorded: Mapping[str, rc.RunResult] | None = None,
         recent_failures: list[Mapping[str, Any]] | None = None,
         pending_creates: Collection[str] = (), refused: Mapping[str, str] | None = None,
         backoff: Collection[str] = (), spec_error: str | None = None,
         deleting: bool = False) -> Plan:
    """Decide one reconcile pass.

    study/spec/status: the ScalingStudy (spec with the API server's defaults applied).
    recorded: the results already in the study's results ConfigMaps (and those this operator
        is writing there), by run id — also of runs no longer in the grid (a grid shrunk and
        grown again reuses them).
    recent_failures: status.recentFailures as the previous pass decided it (default: the
        status's own).
    desired: the grid's runs (ftscale.grid via controller.desired), or None with `spec_error`
        when the spec cannot be expanded (the status then says InvalidSpec).
    jobs, pods: the cached views of this study's Jobs and their pods.
    pending_creates: Job names created by an earlier pass that the cache has not shown yet
        (they count against maxParallelRuns, so a lagging cache never over-creates).
    refused: Job name → why the API server refused to create it (a 4xx other than
        AlreadyExists: an invalid label, a quota, an admission webhook), for the Stalled
        condition; backoff: Job names not to try again in this pass (the reconciler's backoff).
    deleting: the study has a deletionTimestamp: write nothing but status, create nothing.
    """
    status = status or {}
    execution = spec.get("execution") or {}
    out = Plan()
    recorded = recorded or {}
    jobs = list(jobs)
    pods = list(pods)
    # Only what this very study owns counts: Jobs whose controller is the study's uid (not a
    # deleted namesake's), and pods whose controller is their Job (a pod anyone else created
    # with a study's labels cannot forge a result).
    jobs = [j for j in jobs if j.owner_uid == study.uid]
    by_name = {j.name: j for j in jobs}
    cached_pods = _by_job(pods)
    checked: dict[str, list[PodView]] = {}

    def own_pods(name: str) -> list[PodView]:
        """The pods of Job `name` that count. Checked when asked for: most Jobs of a large
        study are finished and recorded, and nothing asks for their pods."""
        if name not in checked:
            job = by_name.get(name)
            # ... and that run what their Job's template says: the Job controller adopts any
            # orphan pod whose labels match its selector, so an owner reference alone proves nothing.
            checked[name] = [] if job is None else [
                p for p in cached_pods.get(name, ())
                if p.owner_uid is not None and p.owner_uid == job.uid
                and same_workload(job.workload, p.workload)]
        return checked[name]

    run_jobs = {j.name: j for j in jobs if j.component == names.COMPONENT_RUN}
    fit_jobs = {j.name: j for j in jobs if j.component == names.COMPONENT_FIT}
    now_text = format_time(now)
    generation = study.generation

    if desired is None:
        new_status = dict(status)
        new_status["observedGeneration"] = generation
        new_status["conditions"] = cond.merge_conditions(status.get("conditions"), [
            cond.condition(cond.PROGRESSING, False, cond.INVALID_SPEC, spec_error or "invalid spec", generation),
            cond.condition(cond.FAILED, True, cond.INVALID_SPEC, spec_error or "invalid spec", generation),
        ], now_text)
        new_status["phase"] = STUDY_FAILED
        out.status = new_status
        out.status_changed = _differs(status, new_status)
        out.events.append(Event("Warning", cond.INVALID_SPEC, spec_error or "invalid spec"))
        return out

    # ---- 1. every desired run: its phase, harvesting finished Jobs ----
    results: dict[str, rc.RunResult] = {}
    stuck: list[tuple[str, str]] = []  # (Job, why) of runs that cannot start
    active = 0
    ttl = execution.get("ttlSecondsAfterFinished")
    for run in desired:
        name = run.job_name
        job = run_jobs.get(name)
        known = recorded.get(run.run_id)
        if known is not None:
            results[run.run_id] = known
            out.run_phases[run.run_id] = known.outcome
            if job is not None and job.terminal and job.ttl is None and ttl is not None and not job.deleting:
                out.ttl_patches.append((name, int(ttl)))
            continue
        if job is None:
            out.run_phases[run.run_id] = PENDING
            if name in pending_creates:
                active += 1
                out.run_phases[run.run_id] = QUEUED
            continue
        if not job.terminal:
            early = harvest_succeeded_pod(study.name, run.key, name, own_pods(name))
            if early is not None:
                results[run.run_id] = _record(out, run, name, early, job, ttl)
                continue
            if not job.deleting:
                active += 1
            its_pods = own_pods(name)
            running = any(p.phase == "Running" for p in its_pods)
            out.run_phases[run.run_id] = RUNNING if running and not job.suspended else QUEUED
            if not running and not job.suspended and not job.deleting:
                why = _stuck(job, its_pods, now, settings.stuck_seconds)
                if why:
                    stuck.append((name, why))
            continue
        got = harvest_run(study.name, run.key, job, own_pods(name), now,
                          settings.result_grace_seconds, run.x_values, run.nodes)
        if got.result is None:  # finished, pod not cached yet: still "running" for a moment
            out.run_phases[run.run_id] = RUNNING
            out.waiting = True
            continue
        results[run.run_id] = _record(out, run, name, got, job, ttl)

    # Jobs of runs no longer in the grid: stop the unfinished ones (their GPUs are wasted).
    wanted = {r.job_name for r in desired}
    for job in run_jobs.values():
        if job.name not in wanted and not job.terminal and not job.deleting and not deleting:
            out.delete_jobs.append(job.name)

    # ---- 2. counts and the failure budget ----
    counts = {phase: 0 for phase in RUN_PHASES}
    for phase in out.run_phases.values():
        counts[phase] += 1
    total = len(desired)
    failed = counts[rc.FAILED]
    succeeded = counts[rc.SUCCEEDED]
    max_failed = _max_failed(spec)
    degraded = max_failed >= 0 and failed > max_failed

    # ---- 3. create missing Jobs, up to maxParallelRuns, chosen by spec.design, within the
    #         GPU-hour budget (none once the failure budget is spent) ----
    in_flight = {r.run_id for r in desired if out.run_phases.get(r.run_id) in (QUEUED, RUNNING)}
    chosen = None
    order = desired
    if (spec.get("design") or {}).get("strategy") == ADAPTIVE:
        # The adaptive design admits the runs that most narrow its target's interval, in the
        # order to start them; the same function decides under `ftscale run`. Imported here:
        # it brings the law engine (numpy, scipy), ~50 MB an operator of grid studies need not hold.
        from ftscale import design

        chosen = design.decide(spec, desired, results, in_flight)
        by_id = {r.run_id: r for r in desired}
        order = [by_id[rid] for rid in chosen.admitted if rid in by_id]
    spend = budget.decide(
        (spec.get("budget") or {}).get("gpuHours"),
        [r.run_id for r in order if out.run_phases.get(r.run_id) == PENDING],
        {r.run_id: r.gpu_hours for r in desired},
        {rid: (None if r.gpu_seconds is None else r.gpu_seconds / budget.SECONDS_PER_HOUR)
         for rid, r in results.items()},
        list(in_flight))
    allowed = set(spend.admitted)
    # Runs of hub models with spec.execution.modelCache start once their model's prefetch Job
    # has filled the cache (ftscale.controller.prefetch); the gate plans those Jobs.
    fetch_gate = prefetch.gate(
        study, spec, [r for r in order if out.run_phases.get(r.run_id) == PENDING
                      and r.run_id in allowed and r.job_name not in backoff],
        jobs, settings, pods=pods, pending_creates=pending_creates, backoff=backoff)
    startable = {r.run_id for r in fetch_gate.allowed}
    max_parallel = int(execution.get("maxParallelRuns", 8))
    slots = max(0, max_parallel - active)
    if not degraded and not deleting:
        out.create_jobs += fetch_gate.create_jobs  # no GPU: outside maxParallelRuns
        for run in order:
            if slots <= 0:
                break
            if run.run_id not in startable:
                continue  # not Pending, not admitted, backing off, or waiting for its model
            if run.nodes > 1:
                out.create_services.append(rendezvous_service(study, spec, run))
            manifest = run_job(study, spec, run, settings)
            why = chosen.reasons.get(run.run_id) if chosen is not None else None
            if why:
                manifest["metadata"].setdefault("annotations", {})[
                    names.ANNOTATION_DESIGN_REASON] = why[:1000]
                out.events.append(Event("Normal", ph.EVENT_RUN_CHOSEN, f"run {run.run_id} "
                                        f"({run.key.model} {run.key.method}, D={run.key.data_size}): {why}"))
            out.create_jobs.append(manifest)
            out.run_phases[run.run_id] = QUEUED
            counts[PENDING] -= 1
            counts[QUEUED] += 1
            slots -= 1

    terminal = succeeded + failed
    unfinished = counts[RUNNING] + counts[QUEUED]
    # Out of budget and nothing under way: the runs that will not start count as done, and the
    # study fits what finished.
    # The adaptive design stopped: the runs it left unstarted are not needed, not failed.
    not_needed = len(chosen.not_needed) if chosen is not None and chosen.done else 0
    all_terminal = terminal == total or (unfinished == 0 and (spend.exhausted or not_needed) and
                                         terminal + len(spend.blocked) + not_needed == total)

    # ---- 4. the fit ----
    ordered = [results[r.run_id] for r in desired if r.run_id in results]
    out.results = ordered
    fit_status = status.get("fit")
    fitted = False
    fit_failed = False
    fit_reason, fit_message = cond.FIT_PENDING, f"{terminal}/{total} runs terminal"
    digest = None
    if degraded:
        fit_reason, fit_message = cond.TOO_MANY_FAILED_RUNS, \
            f"{failed} runs failed (maxFailedRuns {max_failed}): no fit"
    elif all_terminal and succeeded == 0:
        fit_reason, fit_message = cond.NO_SUCCESSFUL_RUNS, "every run failed: nothing to fit"
        fit_failed = True
    elif all_terminal:
        digest = fit_input_digest(spec, ordered)
        job_name = names.fit_job_name(study.name, digest)
        if fit_status and fit_status.get("inputDigest") == digest and fit_status.get("phase"):
            fitted = fit_status.get("phase") == ph.FIT_SUCCEEDED_PHASE
            fit_failed = not fitted
            fit_reason = cond.FIT_SUCCEEDED if fitted else cond.FIT_FAILED
            fit_message = _fit_message(fit_status)
            job = fit_jobs.get(job_name)
            if job is not None and job.terminal and job.ttl is None and ttl is not None and not job.deleting:
                out.ttl_patches.append((job_name, int(ttl)))
        elif job_name in fit_jobs:
            job = fit_jobs[job_name]
            doc = harvest_fit(job, own_pods(job_name), now, settings.result_grace_seconds)
            if doc is None:
                out.waiting = job.terminal
                fit_reason, fit_message = cond.FIT_IN_PROGRESS, f"fit Job {job_name} is running"
            else:
                fit_status = doc
                out.fit_finished = doc
                fitted = doc.get("phase") == ph.FIT_SUCCEEDED_PHASE
                fit_failed = not fitted
                fit_reason = cond.FIT_SUCCEEDED if fitted else cond.FIT_FAILED
                fit_message = _fit_message(doc)
                out.events.append(Event("Normal" if fitted else "Warning",
                                        ph.EVENT_FITTED if fitted else ph.EVENT_FIT_FAILED,
                                        fit_message))
                for skipped in (doc.get("skipped") or ()) if fitted else ():
                    out.events.append(Event("Warning", ph.EVENT_FACTOR_SKIPPED,
                                            f"{skipped['method']}/{skipped['factor']} was not "
                                            f"fitted: {skipped['reason']}"))
                if ttl is not None and job.ttl is None and not job.deleting:
                    out.ttl_patches.append((job_name, int(ttl)))
        elif job_name in pending_creates:
            fit_reason, fit_message = cond.FIT_IN_PROGRESS, f"fit Job {job_name} is running"
        elif not deleting:
            out.fit_input = fit_input_document(study.name, spec, ordered, digest)
            out.fit_job = fit_job(study, spec, digest, settings)
            fit_reason, fit_message = cond.FIT_IN_PROGRESS, f"fit Job {job_name} created"

    # ---- 5. status ----
    progressing = not all_terminal and not (degraded and unfinished == 0)
    if fit_reason == cond.FIT_IN_PROGRESS:
        progressing = True
    failed_study = (degraded and unfinished == 0) or fit_failed
    succeeded_study = fitted and not degraded
    conditions = [
        cond.condition(cond.PROGRESSING, progressing,
                       cond.RUNS_IN_PROGRESS if not all_terminal and progressing else
                       (cond.FIT_IN_PROGRESS if progressing else cond.COMPLETED),
                       f"{terminal}/{total} runs terminal ({counts[RUNNING]} running, "
                       f"{counts[QUEUED]} queued, {counts[PENDING]} pending)", generation),
        cond.condition(cond.SUCCEEDED, succeeded_study,
                       (cond.ALL_RUNS_SUCCEEDED if failed == 0 else cond.WITHIN_FAILURE_BUDGET)
                       if succeeded_study else
                       (cond.STUDY_TERMINAL_FAILED if failed_study and not progressing
                        else cond.NOT_FINISHED),
                       f"{succeeded} runs succeeded, {failed} failed; law fitted" if succeeded_study
                       else (f"the study ended Failed ({succeeded} runs succeeded, {failed} "
                             "failed); see the Failed condition"
                             if failed_study and not progressing
                             else "the study has not finished"), generation),
        cond.condition(cond.FAILED, failed_study,
                       (cond.TOO_MANY_FAILED_RUNS if degraded else fit_reason) if failed_study
                       else cond.NOT_FINISHED,
                       fit_message if failed_study and not degraded else
                       (f"{failed} runs failed, more than maxFailedRuns={max_failed}; no new "
                        f"runs are started" if failed_study else "no failure"), generation),
        cond.condition(cond.FITTED, fitted, fit_reason, fit_message, generation),
    ]
    refused = {name: why for name, why in (refused or {}).items()
               if name in wanted and name not in run_jobs}
    stuck = ([(f.job, f.describe()) for f in fetch_gate.failures]
             + [(name, f"the API server refuses to create it: {why}") for name, why in
                sorted(refused.items())] + stuck)
    stalled_reason = (cond.PREFETCH_FAILED if fetch_gate.failures else
                      cond.JOB_CREATE_REFUSED if refused else cond.PODS_CANNOT_START)
    conditions.append(cond.condition(
        cond.STALLED, bool(stuck), stalled_reason if stuck else cond.NOT_STALLED,
        _stuck_message(stuck) if stuck else "every created run has a pod that runs or waits "
        "only for a node", generation))
    if stuck and not _condition_was(status, cond.STALLED, _stuck_message(stuck)):
        out.events.append(Event("Warning", stalled_reason, _stuck_message(stuck)))
    if spend.budget_hours is not None:
        conditions.append(cond.condition(
            cond.BUDGET_EXHAUSTED, spend.exhausted,
            cond.BUDGET_EXHAUSTED if spend.exhausted else cond.WITHIN_BUDGET,
            spend.message(), generation))
    conditions += [
        cond.condition(cond.DEGRADED, degraded,
                       cond.TOO_MANY_FAILED_RUNS if degraded else cond.WITHIN_FAILURE_BUDGET,
                       f"{failed} failed runs, maxFailedRuns={max_failed}"
                       + ("; no new runs are started" if degraded else ""), generation),
    ]
    if failed_study:
        phase = STUDY_FAILED
    elif fitted:
        phase = STUDY_FITTED
    elif all_terminal:
        phase = STUDY_FITTING
    elif counts[RUNNING] + counts[QUEUED] + terminal > 0:
        phase = STUDY_RUNNING
    else:
        phase = STUDY_PENDING
    new_status = {
        "observedGeneration": generation,
        "phase": phase,
        "progress": f"{terminal}/{total}",
        "runsTotal": total,
        "runsSucceeded": succeeded,
        "runsFailed": failed,
        "runsRunning": counts[RUNNING],
        "runsQueued": counts[QUEUED],
        "runsPending": counts[PENDING],
        "gpuHoursSpent": float(f"{spend.spent_hours:.6g}"),
        "plan": _plan_summary(desired, spend),
        "design": None if chosen is None else {
            "strategy": chosen.strategy, "done": chosen.done, "message": chosen.message()[:1000],
            "halfWidth": None if chosen.half_width != chosen.half_width else
            float(f"{chosen.half_width:.6g}"),
            "notNeeded": len(chosen.not_needed) if chosen.done else 0},
        "recentFailures": _recent_failures(
            status.get("recentFailures") if recent_failures is None else recent_failures,
            out.harvested, out.run_phases),
        "conditions": cond.merge_conditions(status.get("conditions"), conditions, now_text),
    }
    if fit_status:
        new_status["fit"] = fit_status
    out.status = new_status
    out.status_changed = _differs(status, new_status)
    return out


def _record(out: Plan, run: DesiredRun, name: str, got, job: JobView,
            ttl: int | None) -> rc.RunResult:
    """A newly harvested run: its ConfigMap entry, TTL and rendezvous Service deletion (applied
    after the status write), Event. Returns the result as recorded (with its GPU-seconds: wall
    time × the run's GPUs on all its nodes when the trainer did not say)."""
    result = got.result
    if result.gpu_seconds is None and result.wall_seconds is not None:
        result = replace(result, gpu_seconds=budget.gpu_seconds(result.wall_seconds,
                                                                run.gpus * run.nodes))
    if run.nodes > 1:
        out.delete_services.append(rendezvous_service_name(name))
    out.run_phases[run.run_id] = result.outcome
    out.new_results[run.run_id] = result
    out.harvested.append(Harvested(run.run_id, name, result, got.finished_at))
    if ttl is not None and job.ttl is None and not job.deleting:
        out.ttl_patches.append((name, int(ttl)))
    if not result.ok:
        out.events.append(Event("Warning", ph.EVENT_RUN_FAILED, _describe_failure(run, result)))
    return result


def _recent_failures(earlier: Iterable[Mapping[str, Any]] | None, harvested: list[Harvested],
                     run_phases: Mapping[str, str]) -> list[dict[str, Any]]:
    """status.recentFailures: this pass's failures first, then the earlier list, newest first;
    only runs of the current grid that are still Failed, at most RECENT_FAILURES."""
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    newest = [status_entry(h.result) for h in reversed(harvested) if not h.result.ok]
    for entry in newest + list(earlier or ()):
        rid = entry.get("runId")
        if rid in seen or run_phases.get(rid) != rc.FAILED:
            continue
        seen.add(rid)
        out.append(entry)
        if len(out) == RECENT_FAILURES:
            break
    return out


def _stuck(job: JobView, pods, now: float, after: float) -> str | None:
    """Why a created run cannot start, once it has waited `after` seconds: its pod's blocking
    reason, or no pod at all (the Job controller cannot create it: a missing PriorityClass,
    a ResourceQuota, an admission webhook — `kubectl describe job` shows the Job's Events)."""
    if job.created_at is None or now - job.created_at < after:
        return None
    for p in pods:
        if p.blocked:
            return f"pod {p.name}: {p.blocked}"
    if not pods:
        return (f"no pod after {now - job.created_at:.0f} s — the Job controller cannot create "
                f"it (see `kubectl describe job {job.name}`: a missing PriorityClass, a "
                "ResourceQuota or an admission webhook)")
    return None


def _stuck_message(stuck: list[tuple[str, str]]) -> str:
    first_job, why = stuck[0]
    more = f" (and {len(stuck) - 1} more run(s))" if len(stuck) > 1 else ""
    return f"{len(stuck)} run(s) cannot start: Job {first_job}: {why}{more}"


def _condition_was(status: Mapping[str, Any], kind: str, message: str) -> bool:
    return any(c.get("type") == kind and c.get("status") == "True" and c.get("message") == message
               for c in status.get("conditions") or ())


def _plan_summary(desired: list[DesiredRun], spend: budget.BudgetDecision) -> dict[str, Any]:
    """status.plan: the cost plan's total before any Job starts, and the budget's verdict."""
    priced = [r.gpu_hours for r in desired if r.gpu_hours is not None]
    return {"gpuHours": float(f"{sum(priced):.6g}") if priced else None,
            "pricedRuns": len(priced), "unpricedRuns": len(desired) - len(priced),
            "budgetGpuHours": spend.budget_hours,
            "notStarted": len(spend.blocked) if spend.budget_hours is not None else None}


def _differs(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    """Whether writing `new` changes the stored status. A None in `new` is a key the merge
    patch removes, which the stored status does not have at all: the same thing."""
    return _without_none(old) != _without_none(new)


def _without_none(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _without_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_none(v) for v in value]
    return value


def _describe_failure(run: DesiredRun, result: rc.RunResult) -> str:
    key = run.key
    size = f" size {key.pet_size}" if key.pet_size is not None else ""
    return (f"run {run.run_id} ({key.model} {key.method}{size}, D={key.data_size}, seed {key.seed}) "
            f"failed: {result.reason}: {(result.message or '')[:300]}")


def _fit_message(doc: Mapping[str, Any]) -> str:
    """The Fitted condition's message, from status.fit (ftscale.api.fit_summary.fit_status)."""
    if doc.get("phase") == ph.FIT_SUCCEEDED_PHASE:
        return f"fit Job {doc.get('job')} succeeded: {doc.get('message')}"
    return f"fit Job {doc.get('job')} failed: {doc.get('reason')}: {doc.get('message')}"
