"""`ftscale run` as a function: validate, plan, execute, fit, report.

`run_study(...)` is what the command calls; it returns an exit code and prints what happened.
Steps:
1. load the study against the CRD (same messages as the API server, as far as the schema goes);
2. lock the workdir (a second `ftscale run` on it refuses with the first one's PID), then
   check it: a study edited in a way that would mix incomparable results (the CRD's
   immutability rules) is refused, with what to do instead;
3. expand the grid, write every trainer config up front (a config error stops before any run);
4. classify runs from disk and run what is missing (ftscale.local.executor);
5. fit the laws and write report.md, fit.json and plots (ftscale.local.report).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from tqdm import tqdm

from ftscale import design, grid
from ftscale.api import phases as ph
from ftscale.local import devices as devmod
from ftscale.local.executor import Executor, choose_launcher, describe, plan_resume
from ftscale.local.metrics import LocalMetrics
from ftscale.local.workdir import (CORRUPT, DONE, FAILED, INTERRUPTED, NEW, Workdir,
                                   WorkdirBusy)
from ftscale.results import RunResult
from ftscale.spec import (Study, StudySyntaxError, StudyValidationError, load_study,
                           validate_manifest)

EXIT_OK = 0
EXIT_RUNS_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
DESIGN_LOG = "design.jsonl"  # why each run was chosen (spec.design adaptive)  # SIGINT; in general 128 + the signal (143 for SIGTERM), as a shell


def interrupted_exit_code(signum: int | None) -> int:
    return 128 + signum if signum else EXIT_INTERRUPTED


def default_workdir(study: Study) -> Path:
    return Path("runs") / study.name


def _local_source(source: str, base: Path, models_root: Path | None,
                  revision: str | None = None) -> str:
    """Locally, a relative model source is a folder under --models-root (or next to the study
    file) when one exists; otherwise it is passed on unchanged (a Hugging Face id in the local
    cache, or toy:...). A model with a `revision` resolves only to that revision's folder
    (`revision_folder`); without one the source stays unchanged and preflight refuses it
    (`_revision_problems`): the trainer would load the hub's default revision instead."""
    roots = _model_roots(base, models_root)
    if revision:
        found = revision_folder(source, revision, roots)
        return str(found) if found is not None else source
    if source.startswith("toy:") or source.startswith("/"):
        return source
    for root in roots:
        candidate = root / source
        if candidate.exists():
            return str(candidate.resolve())
    return source


def _model_roots(base: Path, models_root: Path | None) -> list[Path]:
    """Where local model folders are looked up, first match wins: --models-root, then the
    study file's folder."""
    return ([models_root] if models_root else []) + [base]


def revision_folder(source: str, revision: str, roots: list[Path]) -> Path | None:
    """The folder of hub model `source` at `revision` under the first of `roots` that has it,
    laid out as the cluster's model cache: `<root>/<org>--<name>/<revision>` (revision
    percent-encoded; ftscale.controller.prefetch.cache_folder), which
    `python -m ftscale_trainer.prefetch --source S --revision R --local-dir <that folder>`
    fills. A folder without config.json does not count. None when no root has it, or when
    `source` is not a hub id (a path names one folder, whose revision cannot be chosen)."""
    from ftscale.controller import prefetch

    if not prefetch.is_hub_id(source):
        return None
    fetch = prefetch.Fetch(source, revision)
    for root in roots:
        folder = Path(prefetch.cache_folder(fetch, root=str(root)))
        if (folder / "config.json").is_file():
            return folder.resolve()
    return None


def local_configs(study: Study, runs: list[grid.PlannedRun], study_dir: Path,
                  data_root: Path | None, models_root: Path | None) -> dict[str, dict[str, Any]]:
    """Trainer configs of every run, with local paths (raises grid.GridError)."""
    data_root = (data_root or study_dir).resolve()
    configs = {}
    built = grid.trainer_configs(study.name, study.spec, runs, data_root=str(data_root), models_root=None)
    for run, cfg in zip(runs, built):
        cfg["model_source"] = _local_source(run.model["source"], study_dir, models_root,
                                            run.model.get("revision"))
        configs[run.run_id] = cfg
    return configs


def preflight(study: Study, configs: dict[str, dict[str, Any]],
              model_roots: list[Path]) -> list[str]:
    """Problems every run would hit, found before any starts: a model revision with no local
    folder (whatever the trainer: none is told the revision), toy models and tasks that the
    offline world does not have (not built yet, or a name it lacks), data files that are
    missing. Torch-free (ftscale_trainer.world reads the world's index only). `model_roots`
    are where model folders were looked up (named in messages). The checks after the
    revisions are skipped when $FTSCALE_TRAINER_CMD names another trainer: it may see another
    world and other files."""
    problems: list[str] = _revision_problems(study, configs, model_roots)
    if os.environ.get("FTSCALE_TRAINER_CMD"):
        return problems
    sources = {c["model_source"] for c in configs.values()}
    tasks = {c["task"] for c in configs.values() if c.get("task")}
    tasks |= {z["task"] for c in configs.values() for z in c.get("zero_shot", []) if z.get("task")}
    if any(s.startswith("toy:") for s in sources) or any(t.startswith("toy-") for t in tasks):
        try:
            from ftscale_trainer import world
        except ImportError:  # no trainer here: the runs will say what is missing
            return problems
        for source in sorted(s for s in sources if world.is_toy_source(s)):
            try:
                world.resolve_model(source)
            except world.WorldError as exc:
                problems.append(f"model source {source}: {exc}")
        for task in sorted(t for t in tasks if t in world.TASKS):
            try:
                world.task_files(task)
            except world.WorldError as exc:
                problems.append(f"task {task}: {exc}")
    problems += _lora_target_problems(configs)
    problems += _memory_problems(study)
    for key in ("train_path", "dev_path", "test_path"):
        for path in sorted({c[key] for c in configs.values() if c.get(key)}):
            if not Path(path).exists():
                problems.append(f"task.data: {path} does not exist (relative paths are read "
                                f"from the study file's folder, or --data-root)")
    return problems


def _lora_target_problems(configs: dict[str, dict[str, Any]]) -> list[str]:
    """LoRA target lists that match no linear layer of a local checkpoint (the trainer's own
    check, ftscale_trainer.peft_targets, on its config.json — no weights loaded)."""
    try:
        from ftscale_trainer.config import ConfigError
        from ftscale_trainer.peft_targets import check_targets
    except ImportError:  # no trainer here: the runs will say it
        return []
    problems, seen = [], set()
    for cfg in configs.values():
        source, targets = cfg.get("model_source", ""), cfg.get("lora_targets")
        key = (source, tuple(targets) if isinstance(targets, list) else targets)
        if cfg.get("method") != "lora" or key in seen or not Path(source, "config.json").is_file():
            continue
        seen.add(key)
        try:
            check_targets(source, targets)
        except ConfigError as exc:
            problems.append(f"methods[name=lora].loraTargets for model {cfg.get('model')}: {exc}")
    return problems


def _revision_problems(study: Study, configs: dict[str, dict[str, Any]],
                       roots: list[Path]) -> list[str]:
    """models[].revision that a local run cannot honour: `ftscale run` downloads nothing, and
    a trainer given the hub id would silently load the default revision (`main`). Each model
    with a revision needs its revision folder (revision_folder), which local_configs made its
    model_source; one message per model that has none, saying where to put it."""
    from ftscale.controller import prefetch

    used = {c.get("model"): c.get("model_source") for c in configs.values()}
    problems = []
    for model in study.spec.get("models") or ():
        revision, source = model.get("revision"), model.get("source", "")
        if not revision or model["name"] not in used:
            continue
        found = revision_folder(source, revision, roots)
        if found is not None and used[model["name"]] == str(found):
            continue
        where = f"models[name={model['name']}].revision {revision}"
        if not prefetch.is_hub_id(source):
            problems.append(f"{where}: source {source} is a path, which holds one revision: "
                            f"point source at the folder of revision {revision} and drop "
                            f"revision")
            continue
        fetch = prefetch.Fetch(source, revision)
        target = prefetch.cache_folder(fetch, root=str(roots[0]) if roots else "<models root>")
        looked = ", ".join(prefetch.cache_folder(fetch, root=str(r)) for r in roots)
        problems.append(
            f"{where}: ftscale run downloads no models and the trainer, given {source}, would "
            f"load its default revision; no folder of revision {revision} was found"
            f"{f' ({looked})' if looked else ''}. Fetch it: python -m ftscale_trainer.prefetch "
            f"--source {source} --revision {revision} --local-dir {target} — or point source "
            f"at a folder of that revision and drop revision")
    return problems


def _memory_problems(study: Study) -> list[str]:
    """Runs that cannot fit their GPUs' memory (ftscale.costplan.check_fits — the operator
    rejects the same study before any Job starts)."""
    from ftscale import costplan

    try:
        return costplan.check_fits(study.spec, study.name)
    except Exception:  # noqa: BLE001 - a study the cost plan cannot price still runs
        return []


def _budget(study: Study, runs: list[grid.PlannedRun]) -> dict[str, float | None]:
    """Estimated GPU-hours per run when the study has a budget (the operator's numbers)."""
    if not (study.spec.get("budget") or {}).get("gpuHours") and \
            (study.spec.get("budget") or {}).get("gpuHours") != 0:
        return {}
    from ftscale import costplan

    try:
        plan = costplan.plan_study(study.spec, study.name)
    except Exception:  # noqa: BLE001 - unpriced: only measured GPU-hours count
        return {}
    return {r.run_id: r.gpu_hours for r in plan.runs}


def check_resume(workdir: Workdir, study: Study) -> list[str]:
    """Problems that forbid running `study` in `workdir` (empty list: go ahead)."""
    old = workdir.recorded_manifest()
    if old is None:
        return []
    problems = []
    old_name = (old.get("metadata") or {}).get("name")
    if old_name != study.name:
        problems.append(f"{workdir.root} holds study {old_name!r}, not {study.name!r}: use "
                        f"another --workdir")
    _, errors = validate_manifest(study.manifest, old_spec=old.get("spec", {}))
    problems += errors
    return problems


class _DesignLog:
    """Why each run was chosen (spec.design adaptive): a console line per started run and a
    line of design.jsonl in the workdir (appended, so a resumed study keeps the history), and
    the design's final state when the session ends."""

    def __init__(self, wd: Workdir, write):
        self.path = wd.root / DESIGN_LOG
        self.write = write

    def _append(self, doc: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(doc, sort_keys=True) + "\n")

    def __call__(self, run: grid.PlannedRun, reason: str, decision: design.DesignDecision) -> None:
        self.write(f"  chose {describe(run)}: {reason}")
        self._append({"event": "chose", "run_id": run.run_id, "run": describe(run),
                      "reason": reason, "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
                      "half_width": _finite(decision.half_width),
                      "estimate": decision.estimate})

    def final(self, decision: design.DesignDecision, not_needed: list[str]) -> None:
        self._append({"event": "done" if decision.done else "session end",
                      "message": decision.message(), "stopped": decision.stopped,
                      "half_width": _finite(decision.half_width),
                      "estimate": decision.estimate, "not_needed": sorted(not_needed),
                      "time": time.strftime("%Y-%m-%dT%H:%M:%S")})


def _finite(value: float) -> float | None:
    return value if value == value and abs(value) != float("inf") else None


def design_lines(wd: Workdir) -> list[str]:
    """The report's section on the adaptive design, from design.jsonl (empty without one)."""
    path = wd.root / DESIGN_LOG
    if not path.is_file():
        return []
    chose, last = {}, None
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        if doc.get("event") == "chose":
            chose[doc["run_id"]] = doc
        else:
            last = doc
    lines = ["## Adaptive design", "",
             f"Runs were chosen by spec.design (docs/study.md, \"Adaptive design\"); "
             f"`{DESIGN_LOG}` has every decision.", ""]
    if last is not None:
        lines += [f"- {last['message']}", ""]
    lines += ["| run | why it was chosen |", "|---|---|"]
    lines += [f"| {doc['run']} | {doc['reason']} |" for doc in chose.values()]
    return lines + [""]


class _Progress:
    """tqdm bar over the runs of this session, plus one line per finished run."""

    def __init__(self, total: int, already: int, grid_size: int, study: str, stream: TextIO,
                 metrics: LocalMetrics | None, counts: dict[str, int]):
        self.bar = tqdm(total=total, desc=f"{study}", unit="run", file=stream,
                        disable=total == 0,
                        dynamic_ncols=True, smoothing=0.1,
                        bar_format="{desc}: {n_fmt}/{total_fmt} runs |{bar}| "
                                   "[{elapsed}<{remaining}] {postfix}")
        self.running = 0
        self.failed = 0
        self.already = already
        self.grid_size = grid_size
        self.metrics = metrics
        self.counts = counts  # phase → runs (for metrics)
        self._postfix()

    def _postfix(self) -> None:
        self.bar.set_postfix_str(f"running {self.running}, failed {self.failed}, "
                                 f"done before {self.already}")
        if self.metrics:
            self.metrics.set_counts(self.counts, self.grid_size)

    def __call__(self, kind: str, run: grid.PlannedRun, result: RunResult | None) -> None:
        if kind == "start":
            self.running += 1
            self.counts[ph.RUN_PENDING] -= 1
            self.counts[ph.RUN_RUNNING] += 1
        elif kind == "retry":
            self.running -= 1
            self.counts[ph.RUN_RUNNING] -= 1
            self.counts[ph.RUN_PENDING] += 1
            self.bar.write(f"  retry  {describe(run)}: {result.reason}")
        elif kind == "finish":
            self.running -= 1
            self.counts[ph.RUN_RUNNING] -= 1
            if result.ok:
                self.counts[ph.RUN_SUCCEEDED] += 1
                extra = f"test loss {result.test_loss:.4f}"
            else:
                self.failed += 1
                self.counts[ph.RUN_FAILED] += 1
                extra = f"FAILED {result.reason}: {(result.message or '')[:160]}"
            secs = f" ({result.wall_seconds:.0f} s)" if result.wall_seconds else ""
            self.bar.write(f"  {'done ' if result.ok else 'fail '} {describe(run)}: {extra}{secs}")
            self.bar.update(1)
            if self.metrics:
                self.metrics.run_finished(result)
        self._postfix()

    def close(self) -> None:
        self.bar.close()


def run_study(study_file: str, *, workdir: str | None = None, parallel: int | None = None,
              retry_failed: bool = False, use_gpus: bool = True, dry_run: bool = False,
              fit: bool = True, metrics_port: int | None = None,
              data_root: str | None = None, models_root: str | None = None,
              out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    # 1. the study
    try:
        study = load_study(study_file)
    except StudySyntaxError as exc:
        print(f"error: {exc}", file=err)  # one line: FILE:LINE:COLUMN: what is wrong
        return EXIT_USAGE
    except StudyValidationError as exc:
        print(f"error: {exc}", file=err)
        print("Fix the fields above (`kubectl explain scalingstudy.spec` or docs/study.md "
              "describe each one) and run again.", file=err)
        return EXIT_USAGE
    except OSError as exc:
        print(f"error: cannot read {study_file}: {exc}", file=err)
        return EXIT_USAGE
    wd = Workdir(workdir or default_workdir(study))
    if dry_run:  # reads only: no lock needed, and it must not refuse while a run goes on
        return _run_locked(study, study_file, wd, parallel=parallel, retry_failed=retry_failed,
                           use_gpus=use_gpus, dry_run=True, fit=fit, metrics_port=metrics_port,
                           data_root=data_root, models_root=models_root, out=out, err=err)
    try:
        lock = wd.lock().acquire()
    except WorkdirBusy as exc:
        print(f"error: {exc}", file=err)
        return EXIT_USAGE
    try:
        return _run_locked(study, study_file, wd, parallel=parallel, retry_failed=retry_failed,
                           use_gpus=use_gpus, dry_run=False, fit=fit, metrics_port=metrics_port,
                           data_root=data_root, models_root=models_root, out=out, err=err)
    finally:
        lock.release()


def _run_locked(study: Study, study_file: str, wd: Workdir, *, parallel: int | None,
                retry_failed: bool, use_gpus: bool, dry_run: bool, fit: bool,
                metrics_port: int | None, data_root: str | None, models_root: str | None,
                out: TextIO, err: TextIO) -> int:
    """Steps 2-5 of run_study, with the workdir locked (unless dry_run)."""
    # 2. the workdir
    problems = check_resume(wd, study)
    if problems:
        print(f"error: {wd.root} was started with a different version of this study, and "
              f"these edits would mix incomparable results:", file=err)
        for p in problems:
            print(f"  - {p}", file=err)
        print(f"Undo the edits, or run the edited study in a new --workdir "
              f"(the recorded version is {wd.study_file}).", file=err)
        return EXIT_USAGE

    # 3. the grid and its configs
    runs = grid.expand(study.spec)
    study_dir = Path(study_file).resolve().parent
    try:
        configs = local_configs(study, runs, study_dir, Path(data_root) if data_root else None,
                                Path(models_root) if models_root else None)
    except grid.GridError as exc:
        print(f"error: {exc}", file=err)
        return EXIT_USAGE
    problems = preflight(study, configs, _model_roots(
        study_dir, Path(models_root).resolve() if models_root else None))
    if problems:
        print("error: the study cannot run as written:", file=err)
        for p in problems:
            print(f"  - {p}", file=err)
        return EXIT_USAGE
    execution = study.spec["execution"]
    devices = devmod.detect(use_gpus)
    n_parallel, threads = devmod.plan_parallelism(devices, parallel, execution["maxParallelRuns"])

    # 4. resume
    states = {r.run_id: wd.run_state(r.key, r.run_id) for r in runs}
    plan = plan_resume(runs, states, retry_failed)
    c = plan.counts
    print(f"study {study.name}: {len(runs)} runs — {c[DONE]} done, {c[FAILED]} failed, "
          f"{c[CORRUPT]} corrupt, {c[INTERRUPTED]} interrupted, {c[NEW]} new; "
          f"workdir {wd.root}", file=out)
    print(f"devices: {len(devices.gpus)} GPU(s) {','.join(devices.gpus)}" if devices.gpus else
          f"devices: CPU, {devices.cpus} core(s)", end="", file=out)
    print(f"; {n_parallel} run(s) at once, {threads} thread(s) each", file=out)
    for note in plan.notes:
        print(f"note: {note}", file=out)
    adaptive = design.DesignSettings.from_spec(study.spec).strategy == design.ADAPTIVE
    if dry_run:
        first = design.decide(study.spec, runs, plan.finished, ()) if adaptive else None
        for run in plan.todo:
            if first is None:
                print(f"  would run {run.run_id}  {describe(run)}", file=out)
            elif run.run_id in first.reasons:
                print(f"  would run {run.run_id}  {describe(run)}: {first.reasons[run.run_id]}",
                      file=out)
        if first is not None:
            print(f"design: {first.message()}", file=out)
        return EXIT_OK
    wd.record_manifest(study.manifest)
    for run in plan.todo:
        if states[run.run_id].state == CORRUPT:
            moved = wd.quarantine(run.run_id)
            print(f"note: kept the unusable result as {moved}", file=out)

    metrics = LocalMetrics(study.name, metrics_port) if metrics_port is not None else None
    if metrics:
        print(f"metrics: http://127.0.0.1:{metrics_port}/metrics", file=out)
        for result in plan.finished.values():
            metrics.run_finished(result, new=False)
    failed_before = sum(1 for r in plan.finished.values() if not r.ok)
    counts = {ph.RUN_PENDING: len(plan.todo), ph.RUN_QUEUED: 0, ph.RUN_RUNNING: 0,
              ph.RUN_SUCCEEDED: sum(1 for r in plan.finished.values() if r.ok),
              ph.RUN_FAILED: failed_before}
    progress = _Progress(len(plan.todo), len(plan.finished), len(runs), study.name, err,
                         metrics, counts)
    launcher = choose_launcher(execution.get("command")) if plan.todo else "subprocess"
    choices = _DesignLog(wd, progress.bar.write) if adaptive else None
    started = time.monotonic()
    executor = Executor(wd, study.name, plan.todo, configs, parallel=n_parallel,
                        threads=threads, gpus=devices.gpus,
                        backoff_limit=execution["backoffLimit"],
                        deadline_seconds=execution.get("activeDeadlineSeconds"),
                        max_failed_runs=execution["maxFailedRuns"], failed_before=failed_before,
                        launcher=launcher, command=execution.get("command"),
                        budget_hours=(study.spec.get("budget") or {}).get("gpuHours"),
                        estimates=_budget(study, runs),
                        spent={rid: (None if r.gpu_seconds is None else r.gpu_seconds / 3600)
                               for rid, r in plan.finished.items()},
                        on_event=progress,
                        design=((lambda done, active: design.decide(study.spec, runs, done,
                                                                    active))
                                if adaptive else None),
                        finished_before=plan.finished, on_choice=choices)
    try:
        outcome = executor.run()
    finally:
        progress.close()
    results = {**plan.finished, **outcome.results}
    wd.write_results_table(list(results.values()))
    if outcome.interrupted:
        by = signal.Signals(outcome.signal).name if outcome.signal else "SIGINT"
        print(f"\ninterrupted ({by}): {len(results)} of {len(runs)} runs are finished and "
              f"kept; run the same command again to resume:\n  ftscale run {study_file} "
              f"--workdir {wd.root}", file=out)
        for run_id, how in sorted(outcome.stopped.items()):
            print(f"  stopped {run_id}: {how}", file=out)
        if metrics:
            metrics.close()
        return interrupted_exit_code(outcome.signal)
    if outcome.stopped_early:
        print(f"stopped: {outcome.stopped_early}", file=out)
    n_failed = sum(1 for r in results.values() if not r.ok)
    print(f"runs finished in {time.monotonic() - started:.0f} s: "
          f"{len(results) - n_failed} succeeded, {n_failed} failed", file=out)

    # 5. fit and report
    if executor.not_started:
        print(f"budget: {len(executor.not_started)} run(s) not started (spec.budget.gpuHours); "
              "the fit uses the runs that finished", file=out)
    if adaptive:
        final = design.decide(study.spec, runs, results, ())
        choices.final(final, executor.not_needed)
        print(f"design: {final.message()}", file=out)
        if executor.not_needed:
            print(f"design: {len(executor.not_needed)} run(s) not needed (spec.design.stopWhen "
                  f"holds); why each run was chosen: {choices.path}", file=out)
    # A budget or design stop is the study's own rule, not a failure: exit 0 when nothing else
    # failed.
    code = EXIT_OK if n_failed == 0 and len(results) + len(executor.not_started) \
        + len(executor.not_needed) == len(runs) else EXIT_RUNS_FAILED
    if fit:
        from ftscale.local.report import write_report  # matplotlib/scipy only when needed
        report = write_report(wd, study, runs, results, metrics=metrics, out=out,
                              extra_sections=design_lines(wd))
        print(f"report: {report.resolve()}", file=out)
    if metrics:
        metrics.close()
    return code


def rerender(workdir: str, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """`ftscale report DIR`: fit and report again from what DIR holds (nothing is trained)."""
    wd = Workdir(workdir)
    if not wd.study_file.is_file():
        print(f"error: {wd.study_file} not found: {workdir} is not a workdir of `ftscale run` "
              f"(run `ftscale run STUDY.yaml --workdir {workdir}` first)", file=err)
        return EXIT_USAGE
    try:
        with wd.lock():
            return _rerender_locked(wd, workdir, out, err)
    except WorkdirBusy as exc:
        print(f"error: {exc}", file=err)
        return EXIT_USAGE


def _rerender_locked(wd: Workdir, workdir: str, out: TextIO, err: TextIO) -> int:
    manifest = wd.recorded_manifest()
    if manifest is None:
        print(f"error: {wd.study_file} not found: {workdir} is not a workdir of `ftscale run` "
              f"(run `ftscale run STUDY.yaml --workdir {workdir}` first)", file=err)
        return EXIT_USAGE
    try:
        study = load_study(manifest)
    except StudyValidationError as exc:
        print(f"error: {exc}", file=err)
        return EXIT_USAGE
    runs = grid.expand(study.spec)
    in_grid = {r.run_id for r in runs}
    on_disk = wd.all_results()
    results = {i: r for i, r in on_disk.items() if i in in_grid}
    if len(on_disk) > len(results):
        print(f"note: {len(on_disk) - len(results)} result(s) in {wd.runs_dir} are not in the "
              f"study's grid any more and are left out", file=out)
    if not results:
        print(f"error: no finished runs in {wd.runs_dir} yet: nothing to report", file=err)
        return EXIT_RUNS_FAILED
    wd.write_results_table(list(results.values()))
    from ftscale.local.report import write_report

    report = write_report(wd, study, runs, results, out=out, extra_sections=design_lines(wd))
    print(f"report: {report.resolve()}", file=out)
    return EXIT_OK
