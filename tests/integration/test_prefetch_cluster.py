"""Hub models on the real control plane (issue 13 item 6): with execution.modelCache, the
operator creates one prefetch Job per (source, revision) before any run Job of that model;
other models' runs start at once; once the download Job succeeds the model's runs start, with
the cache mounted read-only; a failed download sets Stalled/PrefetchFailed and holds its runs.

KWOK holds the pods Running and the test finishes them (the prefetch itself — snapshot_download
against a stand-in hub — is tested in tests/trainer/test_prefetch_hub.py: the real hub is
unreachable here)."""

from __future__ import annotations

import pytest

from cluster.waiting import wait_until
from ftscale.controller import names

from operator_testkit import (bound_claim, condition, create_study, crd, finish,  # noqa: F401
                              get_study, operators, run_jobs, running_pods, study_manifest)

pytestmark = pytest.mark.cluster


def test_hub_model_runs_wait_for_their_prefetch_job(crd, operators, namespace, core_api,  # noqa: F811
                                                   batch_api, custom_objects_api):
    pv = bound_claim(core_api, namespace, "hf-cache", access_mode="ReadWriteMany")
    manifest = study_manifest("hub", models=("tiny-1",), data_sizes=(100,), maxParallelRuns=8,
                              modelCache={"claimName": "hf-cache"})
    manifest["spec"]["models"] += [
        {"name": "p160", "source": "EleutherAI/pythia-160m", "parameters": 85_000_000},
        {"name": "p160-s1000", "source": "EleutherAI/pythia-160m", "revision": "step1000",
         "parameters": 85_000_000},
    ]
    operators.start()
    create_study(custom_objects_api, namespace, manifest)
    try:
        prefetch = wait_until(lambda: len(j := run_jobs(batch_api, namespace, "hub",
                                                        names.COMPONENT_PREFETCH)) == 2 and j,
                              60, "two prefetch Jobs (main, step1000)")
        runs = wait_until(lambda: run_jobs(batch_api, namespace, "hub"), 60, "the toy model's run")
        assert [j.metadata.labels[names.LABEL_MODEL] for j in runs] == ["tiny-1"]
        revisions = {j.metadata.annotations[names.ANNOTATION_PREFETCH_REVISION]: j for j in prefetch}
        assert set(revisions) == {"main", "step1000"}

        pods = wait_until(lambda: len(p := running_pods(core_api, namespace, "hub",
                                                        names.COMPONENT_PREFETCH)) == 2 and p,
                          60, "two prefetch pods")
        by_job = {p.metadata.labels["job-name"]: p for p in pods}
        finish(core_api, by_job[revisions["main"].metadata.name], "hub", message="fetched")
        finish(core_api, by_job[revisions["step1000"].metadata.name], "hub", exit_code=2,
               message="InvalidConfig: no such revision on the hub: step1000")

        # main is in the cache: p160's run starts, with the cache read-only; step1000 failed
        p160 = wait_until(lambda: [j for j in run_jobs(batch_api, namespace, "hub")
                                   if j.metadata.labels[names.LABEL_MODEL] == "p160"],
                          60, "p160's run after its download")[0]
        mounts = p160.spec.template.spec.containers[0].volume_mounts
        cache = [m for m in mounts if m.mount_path == names.MODEL_CACHE_DIR]
        assert cache and cache[0].read_only

        def stalled():
            s = get_study(custom_objects_api, namespace, "hub")
            c = condition(s, "Stalled") or {}
            return c.get("reason") == "PrefetchFailed" and c
        c = wait_until(stalled, 60, "Stalled/PrefetchFailed")
        assert "step1000" in c["message"]
        assert not [j for j in run_jobs(batch_api, namespace, "hub")
                    if j.metadata.labels[names.LABEL_MODEL] == "p160-s1000"]
    finally:
        core_api.delete_persistent_volume(pv)
