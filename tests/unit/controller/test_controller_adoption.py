"""A pod the Job controller adopted is not the Job's own run (issue 14, found by
`make bench-chaos`): the Job controller adopts any orphan pod whose labels match its selector,
so a rogue pod that copies a run pod's labels gets the Job as its controller owner. Its result
is taken only if it runs what the Job's template says (container, image, command, args, the
run's config)."""

from __future__ import annotations

import copy

from ftscale.controller.observe import format_time, job_view, pod_view, same_workload, Workload
from ftscale.controller.plan import plan
from ftscale.controller.templates import run_job

from controller_testkit import NOW, SETTINGS, STUDY, result, runs, spec, trainer_message


def _job_and_pod(run, message):
    """The Job the operator would create, Complete, and a pod made from its template."""
    manifest = run_job(STUDY, spec(), run, SETTINGS)
    job_body = copy.deepcopy(manifest)
    job_body["metadata"].update(uid=f"uid-{manifest['metadata']['name']}", ownerReferences=[
        {"kind": "ScalingStudy", "uid": STUDY.uid, "controller": True}],
        creationTimestamp=format_time(NOW - 100))
    job_body["status"] = {"conditions": [{"type": "Complete", "status": "True",
                                          "lastTransitionTime": format_time(NOW - 5)}]}
    template = manifest["spec"]["template"]
    pod_body = {
        "metadata": {"name": f"{manifest['metadata']['name']}-abcde",
                     "labels": {**template["metadata"]["labels"],
                                "batch.kubernetes.io/job-name": manifest["metadata"]["name"]},
                     "annotations": dict(template["metadata"].get("annotations") or {}),
                     "ownerReferences": [{"kind": "Job", "uid": job_body["metadata"]["uid"],
                                          "controller": True}]},
        "spec": copy.deepcopy(template["spec"]),
        "status": {"phase": "Succeeded", "containerStatuses": [{"name": "trainer", "state": {
            "terminated": {"exitCode": 0, "reason": "Completed", "message": message,
                           "finishedAt": format_time(NOW - 6)}}}]},
    }
    return job_body, pod_body


def test_an_adopted_pod_that_runs_something_else_is_not_harvested():
    run = runs()[0]
    job_body, pod_body = _job_and_pod(run, trainer_message(result(run, loss=0.456789)))
    rogue = copy.deepcopy(pod_body)
    rogue["spec"]["containers"][0].pop("command", None)  # the forger's own program
    rogue["metadata"]["annotations"] = {}
    p = plan(STUDY, spec(), None, runs(), [job_view(job_body)], [pod_view(rogue)], NOW, SETTINGS)
    assert run.run_id not in p.new_results  # waits for its own pod, then ResultMissing
    honest = plan(STUDY, spec(), None, runs(), [job_view(job_body)], [pod_view(pod_body)], NOW,
                  SETTINGS)
    assert honest.new_results[run.run_id].test_loss == 0.456789


def test_the_workload_match_allows_a_digest_pinned_image_and_nothing_else():
    t = Workload("trainer", "ghcr.io/acme/trainer:1.2", ("python", "-m", "x"), (), "abc")
    assert same_workload(t, t)
    assert same_workload(t, t._replace(image="ghcr.io/acme/trainer@sha256:" + "0" * 64))
    assert not same_workload(t, t._replace(image="ghcr.io/evil/trainer:1.2"))
    assert not same_workload(t, t._replace(command=("sh", "-c", "echo")))
    assert not same_workload(t, t._replace(config_digest="other"))
    assert not same_workload(t, None)
    assert same_workload(None, None)  # a template the view does not know: owner check only
