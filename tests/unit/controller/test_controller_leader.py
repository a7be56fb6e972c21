"""Lease decisions: acquire when absent, free or expired (by our own clock), renew when ours."""

from __future__ import annotations

from ftscale.controller.leader import LeaseState


def lease(holder, renew="2026-01-01T00:00:00.000000Z", duration=15):
    return {"metadata": {"name": "l", "namespace": "ns", "resourceVersion": "1"},
            "spec": {"holderIdentity": holder, "renewTime": renew, "leaseDurationSeconds": duration,
                     "leaseTransitions": 3}}


def test_absent_lease_is_created():
    d = LeaseState("a", 15).decide(None, mono=0.0, wall=1e9)
    assert d.action == "create" and d.spec["holderIdentity"] == "a"


def test_held_by_other_waits_until_unchanged_for_a_full_duration_of_our_clock():
    s = LeaseState("a", 15)
    assert s.decide(lease("b"), mono=100.0, wall=1e9).action == "wait"
    assert s.decide(lease("b"), mono=110.0, wall=1e9).action == "wait"
    # b renews: the clock starts again
    assert s.decide(lease("b", renew="2026-01-01T00:00:10.000000Z"), mono=114.0, wall=1e9).action == "wait"
    assert s.decide(lease("b", renew="2026-01-01T00:00:10.000000Z"), mono=128.0, wall=1e9).action == "wait"
    d = s.decide(lease("b", renew="2026-01-01T00:00:10.000000Z"), mono=129.5, wall=1e9)
    assert d.action == "update" and d.spec["holderIdentity"] == "a" and d.spec["leaseTransitions"] == 4


def test_own_lease_is_renewed_and_released_lease_is_taken_at_once():
    s = LeaseState("a", 15)
    d = s.decide(lease("a"), mono=0.0, wall=1e9)
    assert d.action == "update" and d.spec["holderIdentity"] == "a"
    assert d.spec["renewTime"] != "2026-01-01T00:00:00.000000Z"
    assert LeaseState("a", 15).decide(lease(""), mono=0.0, wall=1e9).action == "update"
