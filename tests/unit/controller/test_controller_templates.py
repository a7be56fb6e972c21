"""Run and fit Job manifests: security, failure policy, GPUs, volumes, Kueue."""

from __future__ import annotations

import json

import pytest

from ftscale.api import outcomes
from ftscale.controller import names
from ftscale.controller.templates import fit_job, run_job

from controller_testkit import SETTINGS, STUDY, runs, spec


def pod_spec(job):
    return job["spec"]["template"]["spec"]


def test_run_job_identity_labels_owner_and_config():
    s = spec()
    run = runs(s)[0]
    job = run_job(STUDY, s, run, SETTINGS)
    meta = job["metadata"]
    assert meta["name"] == f"demo-{run.run_id}" and meta["namespace"] == "ns"
    labels = meta["labels"]
    assert labels[names.LABEL_STUDY] == "demo" and labels[names.LABEL_RUN] == run.run_id
    assert labels[names.LABEL_MODEL] == "tiny-1" and labels[names.LABEL_METHOD] == "fmt"
    assert labels[names.LABEL_DATA_SIZE] == "100" and labels[names.LABEL_PET_SIZE] == "none"
    owner = meta["ownerReferences"][0]
    assert owner["kind"] == "ScalingStudy" and owner["uid"] == "uid-1" and owner["controller"] is True
    template = job["spec"]["template"]
    assert template["metadata"]["labels"][names.LABEL_RUN] == run.run_id
    config = json.loads(template["metadata"]["annotations"][names.ANNOTATION_RUN_CONFIG])
    assert config["run_id"] == run.run_id and config["data_size"] == 100
    # the downward API turns that annotation into the file --config reads
    volume = next(v for v in pod_spec(job)["volumes"] if v["name"] == "run-config")
    assert names.ANNOTATION_RUN_CONFIG in volume["downwardAPI"]["items"][0]["fieldRef"]["fieldPath"]
    command = pod_spec(job)["containers"][0]["command"]
    assert command[:3] == ["python", "-m", "ftscale_trainer"]
    assert command[command.index("--config") + 1] == "/etc/ftscale/run.json"


def test_run_pods_are_locked_down():
    s = spec()
    ps = pod_spec(run_job(STUDY, s, runs(s)[0], SETTINGS))
    c = ps["containers"][0]
    assert ps["automountServiceAccountToken"] is False and ps["restartPolicy"] == "Never"
    assert ps["securityContext"]["runAsNonRoot"] is True
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert c["terminationMessagePolicy"] == "FallbackToLogsOnError"
    mounts = {m["mountPath"] for m in c["volumeMounts"]}
    assert {"/tmp", "/cache", "/dev/shm"} <= mounts
    shm = next(v for v in ps["volumes"] if v["name"] == "dshm")
    assert shm["emptyDir"]["medium"] == "Memory"


def test_failure_policy_deadline_backoff_and_no_ttl_or_suspend():
    s = spec(activeDeadlineSeconds=3600, ttlSecondsAfterFinished=10, backoffLimit=4)
    job = run_job(STUDY, s, runs(s)[0], SETTINGS)
    js = job["spec"]
    assert js["backoffLimit"] == 4 and js["activeDeadlineSeconds"] == 3600
    assert "ttlSecondsAfterFinished" not in js  # set only after harvest
    assert "suspend" not in js  # never written by the operator (Kueue's business)
    rules = js["podFailurePolicy"]["rules"]
    # every non-retriable trainer exit fails the Job at once: a bad config (2), a loss that
    # went NaN (3), CUDA out of memory (4) — never backoffLimit more GPU time
    assert rules[0]["action"] == "FailJob" and rules[0]["onExitCodes"]["values"] == [2, 3, 4]
    assert sorted(rules[0]["onExitCodes"]["values"]) == sorted(
        e.code for e in outcomes.EXIT_CODES if e.code and not e.retriable)
    assert rules[0]["onExitCodes"]["containerName"] == names.RUN_CONTAINER
    assert rules[1]["action"] == "Ignore" and rules[1]["onPodConditions"][0]["type"] == "DisruptionTarget"


def test_gpus_per_model_tolerations_selector_priority_and_kueue_label():
    s = spec(queueName="team-a", priorityClassName="research", nodeSelector={"pool": "gpu"},
             tolerations=[{"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"}],
             resources={"requests": {"cpu": "4", "memory": "16Gi"}})
    by_model = {r.key.model: r for r in runs(s)}
    gpu_job = run_job(STUDY, s, by_model["tiny-2"], SETTINGS)
    cpu_job = run_job(STUDY, s, by_model["tiny-1"], SETTINGS)
    res = pod_spec(gpu_job)["containers"][0]["resources"]
    assert res["limits"]["nvidia.com/gpu"] == 2 and res["requests"]["cpu"] == "4"
    assert "nvidia.com/gpu" not in pod_spec(cpu_job)["containers"][0]["resources"].get("limits", {})
    tol_keys = [t["key"] for t in pod_spec(gpu_job)["tolerations"]]
    assert tol_keys == ["dedicated", "nvidia.com/gpu"]
    assert [t["key"] for t in pod_spec(cpu_job)["tolerations"]] == ["dedicated"]
    assert pod_spec(gpu_job)["nodeSelector"] == {"pool": "gpu"}
    assert pod_spec(gpu_job)["priorityClassName"] == "research"
    assert gpu_job["metadata"]["labels"][names.LABEL_KUEUE_QUEUE] == "team-a"


def test_volumes_from_the_spec():
    s = spec(volumes={"models": {"claimName": "models-pvc", "mountPath": "/models"},
                      "results": {"claimName": "results-pvc", "mountPath": "/results"}})
    job = run_job(STUDY, s, runs(s)[0], SETTINGS)
    ps = pod_spec(job)
    claims = {v["name"]: v["persistentVolumeClaim"] for v in ps["volumes"] if "persistentVolumeClaim" in v}
    assert claims["models"] == {"claimName": "models-pvc", "readOnly": True}
    assert claims["results"] == {"claimName": "results-pvc", "readOnly": False}
    command = ps["containers"][0]["command"]
    assert command[command.index("--output") + 1] == f"/results/demo/{runs(s)[0].run_id}"


def test_image_is_required_somewhere():
    s = spec()
    s["execution"].pop("image")
    from dataclasses import replace
    with pytest.raises(ValueError, match="trainer image"):
        run_job(STUDY, s, runs(s)[0], replace(SETTINGS, trainer_image=""))
    assert pod_spec(run_job(STUDY, s, runs(s)[0], SETTINGS))["containers"][0]["image"] == "trainer:test"


def test_fit_job_reads_the_configmap_and_needs_no_api():
    s = spec()
    job = fit_job(STUDY, s, "abc123", SETTINGS)
    ps = pod_spec(job)
    assert job["metadata"]["name"] == names.fit_job_name("demo", "abc123")
    assert len(job["metadata"]["name"]) <= 63
    assert job["metadata"]["annotations"][names.ANNOTATION_FIT_DIGEST] == "abc123"
    assert ps["automountServiceAccountToken"] is False
    command = ps["containers"][0]["command"]
    assert command[:3] == ["python", "-m", "ftscale.law.job"]
    cm = next(v for v in ps["volumes"] if v["name"] == "fit-input")
    assert cm["configMap"]["name"] == "demo-fit-input"
    assert names.fit_job_name("demo", "abc123") != names.fit_job_name("demo", "abc124")


def test_a_trainer_of_your_own_runs_with_the_contracts_flags_and_a_model_can_bring_its_image():
    s = spec(command=["python", "/opt/my_trainer.py"])
    s["models"][1]["image"] = "registry.example/big-model-trainer:2"
    by_model = {r.key.model: r for r in runs(s)}
    own = run_job(STUDY, s, by_model["tiny-1"], SETTINGS)
    container = pod_spec(own)["containers"][0]
    assert container["command"][:2] == ["python", "/opt/my_trainer.py"]
    assert container["command"][2:4] == ["--config", f"{names.CONFIG_DIR}/{names.RUN_CONFIG_FILE}"]
    assert container["image"] == "trainer:1"
    other = pod_spec(run_job(STUDY, s, by_model["tiny-2"], SETTINGS))["containers"][0]
    assert other["image"] == "registry.example/big-model-trainer:2"
    default = pod_spec(run_job(STUDY, spec(), runs()[0], SETTINGS))["containers"][0]
    assert default["command"][:3] == ["python", "-m", "ftscale_trainer"]


def test_a_run_on_several_gpus_starts_one_trainer_process_per_gpu():
    """gpus: 2 → torchrun starts 2 ranks in the pod (no GPU sits idle); 1 GPU or CPU → one."""
    by_model = {r.key.model: r for r in runs()}
    two = pod_spec(run_job(STUDY, spec(), by_model["tiny-2"], SETTINGS))["containers"][0]
    # the wrapper gives the Job the run's exit code (torchrun alone exits 1 for any failure)
    assert two["command"][:8] == ["python", "-m", "ftscale_trainer.launch", "torchrun",
                                  "--standalone", "--nnodes=1", "--nproc_per_node=2", "-m"]
    assert two["command"][8] == "ftscale_trainer" and "--config" in two["command"]
    assert two["resources"]["limits"]["nvidia.com/gpu"] == 2
    one = pod_spec(run_job(STUDY, spec(), by_model["tiny-1"], SETTINGS))["containers"][0]
    assert one["command"][:3] == ["python", "-m", "ftscale_trainer"]
