"""Hub models on a cluster (ftscale.controller.prefetch): which downloads a study needs, the
prefetch Job, the run pods that read the cache, and the gate that holds runs until their
download has succeeded. The download itself: tests/trainer/test_prefetch_hub.py."""

from __future__ import annotations

import copy
import json

import pytest
from controller_testkit import NOW, SETTINGS, STUDY, job, pod

from ftscale.api import meta, outcomes
from ftscale.controller import names, prefetch
from ftscale.controller.desired import desired_runs
from ftscale.controller.observe import job_view
from ftscale.controller.templates import run_job
from ftscale.spec import validate_manifest, with_defaults

CACHE = {"claimName": "hf-cache"}
HUB_SPEC = {
    "task": {"name": "toy-en-de"},
    "models": [
        {"name": "p160", "source": "EleutherAI/pythia-160m", "parameters": 85_000_000,
         "pretrainingTokens": 300_000_000_000},
        {"name": "p160-s1000", "source": "EleutherAI/pythia-160m", "revision": "step1000",
         "checkpointOf": "p160", "parameters": 85_000_000, "pretrainingTokens": 2_097_152_000},
        # the same download as p160: one Job for both
        {"name": "p160-main", "source": "EleutherAI/pythia-160m", "revision": "main",
         "parameters": 85_000_000},
        {"name": "tiny-1", "source": "toy:tiny-1", "parameters": 1000},
        {"name": "local", "source": "/models/acme/own-model", "parameters": 2000},
    ],
    "methods": [{"name": "fmt"}],
    "dataSizes": [100],
    "seeds": [0],
    "execution": {"image": "trainer:1", "maxParallelRuns": 8, "backoffLimit": 2,
                  "modelCache": CACHE, "hfTokenSecret": {"name": "hf", "key": "token"}},
}


def hub_spec(**execution):
    out = copy.deepcopy(HUB_SPEC)
    out["execution"].update(execution)
    return out


def by_model(runs):
    return {r.key.model: r for r in runs}


MAIN = prefetch.Fetch("EleutherAI/pythia-160m", "main")
STEP = prefetch.Fetch("EleutherAI/pythia-160m", "step1000")


# ---- which downloads ------------------------------------------------------------------------
@pytest.mark.parametrize("source, hub", [
    ("EleutherAI/pythia-160m", True), ("gpt2", True), ("meta-llama/Llama-3.1-8B", True),
    ("toy:tiny-1", False), ("/models/acme/x", False), ("acme/x/y", False), ("a--b/c", False),
    ("acme/../x", False), ("acme/x.git", False), ("", False)])
def test_hub_ids(source, hub):
    assert prefetch.is_hub_id(source) is hub


def test_one_download_per_source_and_revision_and_none_without_a_cache():
    got = prefetch.fetches(HUB_SPEC)
    assert got == {"p160": MAIN, "p160-s1000": STEP, "p160-main": MAIN}
    no_cache = hub_spec()
    del no_cache["execution"]["modelCache"]
    assert prefetch.fetches(no_cache) == {}


def test_cache_folders_are_one_to_one():
    assert prefetch.cache_folder(STEP) == "/models-cache/EleutherAI--pythia-160m/step1000"
    folders = {prefetch.cache_folder(f) for f in [
        prefetch.Fetch("gpt2", "a/b"), prefetch.Fetch("gpt2", "a%2Fb"), prefetch.Fetch("gpt2", "a"),
        prefetch.Fetch("a/b", "main"), prefetch.Fetch("a", "main"), prefetch.Fetch("a-b", "main")]}
    assert len(folders) == 6
    # a revision with "/" stays one folder level under its model's
    assert prefetch.cache_folder(prefetch.Fetch("gpt2", "refs/pr/1")).count("/") == 3


def test_revision_without_cache_or_hub_id_is_a_spec_problem():
    assert prefetch.spec_problems(HUB_SPEC) == []
    no_cache = hub_spec()
    del no_cache["execution"]["modelCache"]
    problems = prefetch.spec_problems(no_cache)
    assert [p.split(":")[0] for p in problems] == ["models[name=p160-s1000].revision step1000",
                                                   "models[name=p160-main].revision main"]
    assert all("execution.modelCache" in p for p in problems)
    on_path = hub_spec()
    on_path["models"][4]["revision"] = "v1"
    problems = prefetch.spec_problems(on_path)
    assert any("models[name=local]" in p and "not a Hugging Face id" in p for p in problems)


def test_job_names_are_deterministic_distinct_and_follow_what_the_download_depends_on():
    a = prefetch.job_name("demo", HUB_SPEC, MAIN)
    assert a == prefetch.job_name("demo", copy.deepcopy(HUB_SPEC), MAIN)
    assert a != prefetch.job_name("demo", HUB_SPEC, STEP)
    assert a.startswith("demo-p") and len(a) == len("demo-") + meta.RUN_ID_LENGTH
    assert a != prefetch.job_name("demo", hub_spec(modelCache={"claimName": "other"}), MAIN)
    assert a != prefetch.job_name("demo", hub_spec(hfTokenSecret={"name": "hf2"}), MAIN)
    longest = "s" * meta.MAX_STUDY_NAME
    assert len(prefetch.job_name(longest, HUB_SPEC, MAIN)) <= meta.MAX_JOB_NAME


# ---- the prefetch Job -----------------------------------------------------------------------
def test_prefetch_job_downloads_into_the_cache_with_the_token_and_nothing_else():
    manifest = prefetch.prefetch_job(STUDY, HUB_SPEC, STEP, SETTINGS)
    meta_ = manifest["metadata"]
    assert meta_["name"] == prefetch.job_name(STUDY.name, HUB_SPEC, STEP)
    assert meta_["labels"][names.LABEL_COMPONENT] == names.COMPONENT_PREFETCH
    assert meta_["ownerReferences"][0]["uid"] == STUDY.uid
    pod_spec = manifest["spec"]["template"]["spec"]
    [container] = pod_spec["containers"]
    assert container["image"] == "trainer:1"
    assert container["command"] == ["python", "-m", "ftscale_trainer.prefetch", "--source",
                                    "EleutherAI/pythia-160m", "--revision", "step1000",
                                    "--local-dir", "/models-cache/EleutherAI--pythia-160m/step1000"]
    env = {e["name"]: e for e in container["env"]}
    assert env["HF_TOKEN"]["valueFrom"] == {"secretKeyRef": {"name": "hf", "key": "token"}}
    assert "HF_HUB_OFFLINE" not in env and "TRANSFORMERS_OFFLINE" not in env
    cache_mount = [m for m in container["volumeMounts"] if m["mountPath"] == names.MODEL_CACHE_DIR]
    assert cache_mount == [{"name": "model-cache", "mountPath": "/models-cache", "readOnly": False}]
    assert {"name": "model-cache", "persistentVolumeClaim": {"claimName": "hf-cache"}} in pod_spec["volumes"]
    assert pod_spec["automountServiceAccountToken"] is False
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    # exit 2 (the hub refuses: no such repo, revision or access) fails the Job at once
    [fail_rule] = [r for r in manifest["spec"]["podFailurePolicy"]["rules"] if r["action"] == "FailJob"]
    assert fail_rule["onExitCodes"]["containerName"] == names.PREFETCH_CONTAINER
    assert outcomes.EXIT_INVALID_CONFIG in fail_rule["onExitCodes"]["values"]
    # the operator's Job watch sees it as a prefetch Job of the study
    view = job_view(manifest)
    assert view.component == names.COMPONENT_PREFETCH
    assert manifest["metadata"]["labels"][names.LABEL_STUDY] == STUDY.name
    assert manifest["metadata"]["labels"][names.LABEL_MANAGED_BY] == names.MANAGED_BY


def test_prefetch_job_without_token_secret_and_with_sub_path():
    spec = hub_spec(modelCache={"claimName": "hf-cache", "subPath": "hub"})
    del spec["execution"]["hfTokenSecret"]
    manifest = prefetch.prefetch_job(STUDY, spec, MAIN, SETTINGS)
    [container] = manifest["spec"]["template"]["spec"]["containers"]
    assert "HF_TOKEN" not in {e["name"] for e in container["env"]}
    [mount] = [m for m in container["volumeMounts"] if m["name"] == "model-cache"]
    assert mount["subPath"] == "hub"


# ---- run pods --------------------------------------------------------------------------------
def test_run_pods_mount_the_cache_read_only_and_read_their_revision_there():
    runs = by_model(desired_runs(STUDY.name, HUB_SPEC))
    manifest = run_job(STUDY, HUB_SPEC, runs["p160-s1000"], SETTINGS)
    template = manifest["spec"]["template"]
    config = json.loads(template["metadata"]["annotations"][names.ANNOTATION_RUN_CONFIG])
    assert config["model_source"] == "/models-cache/EleutherAI--pythia-160m/step1000"
    [container] = template["spec"]["containers"]
    assert {"name": "model-cache", "mountPath": "/models-cache", "readOnly": True} \
        in container["volumeMounts"]
    assert {"name": "model-cache", "persistentVolumeClaim": {"claimName": "hf-cache", "readOnly": True}} \
        in template["spec"]["volumes"]
    env = {e["name"]: e for e in container["env"]}
    assert env["HF_HUB_OFFLINE"]["value"] == "1" and "HF_TOKEN" not in env
    # models that are not downloaded keep their source
    toy = json.loads(run_job(STUDY, HUB_SPEC, runs["tiny-1"], SETTINGS)["spec"]["template"]
                     ["metadata"]["annotations"][names.ANNOTATION_RUN_CONFIG])
    assert toy["model_source"] == "toy:tiny-1"


def test_without_a_model_cache_run_pods_are_as_before():
    spec = hub_spec()
    del spec["execution"]["modelCache"]
    for model in spec["models"]:  # a revision needs the cache (desired_runs rejects it)
        model.pop("revision", None)
    run = by_model(desired_runs(STUDY.name, spec))["p160"]
    template = run_job(STUDY, spec, run, SETTINGS)["spec"]["template"]
    config = json.loads(template["metadata"]["annotations"][names.ANNOTATION_RUN_CONFIG])
    assert config == run.config
    assert not any(v["name"] == "model-cache" for v in template["spec"]["volumes"])


# ---- the gate --------------------------------------------------------------------------------
def prefetch_view(fetch, *, finished=None, reason=None, message=None, owner_uid=STUDY.uid,
                  spec=HUB_SPEC):
    return job(None, name=prefetch.job_name(STUDY.name, spec, fetch), finished=finished,
               reason=reason, message=message, component=names.COMPONENT_PREFETCH,
               owner_uid=owner_uid)


def test_gate_creates_one_job_per_download_and_holds_their_runs():
    runs = desired_runs(STUDY.name, HUB_SPEC)
    got = prefetch.gate(STUDY, HUB_SPEC, runs, [], SETTINGS)
    created = {j["metadata"]["name"] for j in got.create_jobs}
    assert created == {prefetch.job_name(STUDY.name, HUB_SPEC, f) for f in (MAIN, STEP)}
    assert len(got.create_jobs) == 2
    assert [r.key.model for r in got.allowed] == ["tiny-1", "local"]
    assert set(by_model(runs)) - {"tiny-1", "local"} == {
        r.key.model for r in runs if r.run_id in got.waiting}
    assert got.failures == []


def test_gate_lets_runs_through_once_their_download_succeeded():
    runs = desired_runs(STUDY.name, HUB_SPEC)
    jobs = [prefetch_view(MAIN, finished="Complete"), prefetch_view(STEP)]  # STEP still running
    got = prefetch.gate(STUDY, HUB_SPEC, runs, jobs, SETTINGS)
    assert got.create_jobs == []
    assert [r.key.model for r in got.allowed] == ["p160", "p160-main", "tiny-1", "local"]  # grid order
    assert list(got.waiting.values()) == [prefetch.job_name(STUDY.name, HUB_SPEC, STEP)]


def test_gate_waits_for_jobs_being_created_and_in_backoff_without_creating_them_again():
    runs = desired_runs(STUDY.name, HUB_SPEC)
    main_name = prefetch.job_name(STUDY.name, HUB_SPEC, MAIN)
    step_name = prefetch.job_name(STUDY.name, HUB_SPEC, STEP)
    got = prefetch.gate(STUDY, HUB_SPEC, runs, [], SETTINGS, pending_creates=[main_name],
                        backoff=[step_name])
    assert got.create_jobs == []
    assert set(got.waiting.values()) == {main_name, step_name}


def test_gate_ignores_jobs_the_study_does_not_control():
    runs = desired_runs(STUDY.name, HUB_SPEC)
    foreign = [prefetch_view(MAIN, finished="Complete", owner_uid="uid-old-namesake"),
               prefetch_view(STEP, finished="Complete", owner_uid="uid-old-namesake")]
    got = prefetch.gate(STUDY, HUB_SPEC, runs, foreign, SETTINGS)
    assert len(got.create_jobs) == 2
    assert {r.key.model for r in got.allowed} == {"tiny-1", "local"}


def test_a_failed_download_holds_its_runs_and_says_why_once():
    runs = desired_runs(STUDY.name, HUB_SPEC)
    step_job = prefetch_view(STEP, finished="Failed", reason="PodFailurePolicy",
                             message="Container prefetch for pod x failed with exit code 2")
    line = ("InvalidConfig: no such revision on the hub: 404 Client Error. Revision Not Found "
            "for url: .../revision/step1000")
    failed_pod = pod(step_job.name, phase="Failed", exit_code=2, message=line, at=NOW - 3)
    got = prefetch.gate(STUDY, HUB_SPEC, runs, [prefetch_view(MAIN, finished="Complete"), step_job],
                        SETTINGS, pods=[failed_pod])
    [failure] = got.failures
    assert failure.job == step_job.name and failure.reason == outcomes.INVALID_CONFIG
    assert failure.message == line and failure.models == ("p160-s1000",)
    assert "p160-s1000" in failure.describe() and "step1000" in failure.describe()
    held = by_model(runs)["p160-s1000"]
    assert held not in got.allowed and held.run_id not in got.waiting
    assert got.create_jobs == []
    # without a pod (gone), the Job controller's words
    got = prefetch.gate(STUDY, HUB_SPEC, runs, [step_job], SETTINGS)
    assert [f.reason for f in got.failures] == ["PodFailurePolicy"]


def test_without_a_model_cache_the_gate_lets_every_run_through():
    spec = hub_spec()
    del spec["execution"]["modelCache"]
    for model in spec["models"]:  # a revision needs the cache (desired_runs rejects it)
        model.pop("revision", None)
    runs = desired_runs(STUDY.name, spec)
    got = prefetch.gate(STUDY, spec, runs, [], SETTINGS)
    assert got.allowed == runs and got.create_jobs == [] and got.waiting == {}


# ---- the CRD ---------------------------------------------------------------------------------
def manifest(spec):
    return {"apiVersion": meta.API_VERSION, "kind": meta.KIND, "metadata": {"name": "demo"},
            "spec": copy.deepcopy(spec)}


def test_crd_takes_revisions_a_model_cache_and_a_token_secret():
    doc = manifest(HUB_SPEC)
    del doc["spec"]["execution"]["hfTokenSecret"]["key"]
    defaulted, errors = validate_manifest(doc)
    assert errors == []
    assert defaulted["spec"]["execution"]["hfTokenSecret"]["key"] == prefetch.DEFAULT_TOKEN_KEY


def test_crd_refuses_a_revision_of_a_toy_model_and_a_changed_revision():
    doc = manifest(HUB_SPEC)
    doc["spec"]["models"][3]["revision"] = "main"
    _, errors = validate_manifest(doc)
    assert any("models[].revision is for Hugging Face model ids" in e for e in errors), errors
    changed = manifest(HUB_SPEC)
    changed["spec"]["models"][1]["revision"] = "step2000"
    _, errors = validate_manifest(changed, old_spec=copy.deepcopy(HUB_SPEC))
    assert any("models[].revision is immutable" in e for e in errors), errors
    bad = manifest(HUB_SPEC)
    bad["spec"]["models"][1]["revision"] = "step 1000"
    _, errors = validate_manifest(bad)
    assert any("revision" in e for e in errors), errors


def test_the_plan_starts_hub_runs_only_after_their_prefetch_job_and_reports_its_failure():
    """plan() wired to the gate: a study whose hub models need a download creates the prefetch
    Jobs first (outside maxParallelRuns) and no run Job of those models; a failed prefetch
    Job sets Stalled/PrefetchFailed with the hub's reason; a revision without a model cache
    is an InvalidSpec."""
    from ftscale.controller import conditions as cond
    from ftscale.controller.plan import plan

    spec = hub_spec()
    grid = desired_runs(STUDY.name, spec)
    p = plan(STUDY, spec, None, grid, [], [], NOW, SETTINGS)
    components = [m["metadata"]["labels"][names.LABEL_COMPONENT] for m in p.create_jobs]
    assert names.COMPONENT_PREFETCH in components
    needs_download = {m for m in prefetch.fetches(with_defaults(spec))}
    created_runs = [m for m in p.create_jobs if m["metadata"]["labels"][names.LABEL_COMPONENT] == names.COMPONENT_RUN]
    assert all(m["metadata"]["labels"][names.LABEL_MODEL] not in needs_download for m in created_runs)

    # the download of one revision failed: its runs stay Pending, the study says why
    runs = desired_runs(STUDY.name, HUB_SPEC)
    step_job = prefetch_view(STEP, finished="Failed", reason="PodFailurePolicy",
                             message="Container prefetch for pod x failed with exit code 2")
    line = "InvalidConfig: no such revision on the hub: 404 Client Error. Revision Not Found"
    failed_pod = pod(step_job.name, phase="Failed", exit_code=2, message=line, at=NOW - 3)
    p = plan(STUDY, HUB_SPEC, None, runs, [prefetch_view(MAIN, finished="Complete"), step_job],
             [failed_pod], NOW, SETTINGS)
    stalled = {c["type"]: c for c in p.status["conditions"]}["Stalled"]
    assert stalled["status"] == "True" and stalled["reason"] == cond.PREFETCH_FAILED
    assert "step1000" in stalled["message"] and "Revision Not Found" in stalled["message"]
    assert [e.reason for e in p.events] == [cond.PREFETCH_FAILED]
    held = by_model(runs)["p160-s1000"].run_id
    assert p.run_phases[held] == "Pending"
    assert held not in {m["metadata"]["labels"].get(names.LABEL_RUN) for m in p.create_jobs}

    no_cache = hub_spec()
    del no_cache["execution"]["modelCache"]
    with pytest.raises(Exception, match="modelCache"):
        desired_runs(STUDY.name, no_cache)
