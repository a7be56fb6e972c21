"""A Job the API server refuses to create (issue 14): the run stays Pending, the study says so
(Stalled / JobCreateRefused, one Warning Event per change), and the reconciler backs off
instead of retrying every 2 s."""

from __future__ import annotations

import asyncio

from kubernetes.client.rest import ApiException

from ftscale.controller import conditions as cond
from ftscale.controller.plan import plan
from ftscale.controller.reconciler import _refusal

from controller_testkit import NOW, SETTINGS, STUDY, runs, spec


def test_a_refused_job_sets_stalled_with_the_api_servers_message_and_is_not_recreated_in_backoff():
    s = spec()
    grid = runs(s)
    first = grid[0].job_name
    why = "POST /apis/batch/v1/namespaces/ns/jobs: Job.batch is invalid: metadata.labels: Invalid value"
    p = plan(STUDY, s, None, grid, [], [], NOW, SETTINGS, refused={first: why}, backoff={first})
    created = [m["metadata"]["name"] for m in p.create_jobs]
    assert first not in created and len(created) == 3  # the slot goes to the next run
    stalled = {c["type"]: c for c in p.status["conditions"]}["Stalled"]
    assert stalled["status"] == "True" and stalled["reason"] == cond.JOB_CREATE_REFUSED
    assert first in stalled["message"] and "labels: Invalid value" in stalled["message"]
    assert [e.reason for e in p.events] == [cond.JOB_CREATE_REFUSED]
    # the next pass with the same refusal: no second Event; after the backoff it is tried again
    again = plan(STUDY, s, p.status, grid, [], [], NOW + 1, SETTINGS, refused={first: why})
    assert again.events == [] and first in [m["metadata"]["name"] for m in again.create_jobs]


def test_only_refusals_back_off():
    assert _refusal(ApiException(status=422, reason="Job.batch is invalid"))
    assert _refusal(ApiException(status=403, reason="exceeded quota"))
    for transient in (409, 429, 500, 503):
        assert not _refusal(ApiException(status=transient, reason="x"))
    assert not _refusal(ConnectionError("reset"))
