"""Leader election over a coordination.k8s.io/v1 Lease, as client-go does it.

Every replica watches and caches; only the Lease holder reconciles. Expiry is judged on this
replica's own monotonic clock — "the record has not changed for leaseDurationSeconds since I
first saw it" — never by comparing another machine's renewTime with ours, so clock skew
between nodes cannot make two leaders. A leader that cannot renew within
(duration − renew interval) steps down before anyone else may take over.

`LeaseState` is the pure part (tested without a cluster); `LeaderElector` drives it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Awaitable, Callable, Mapping

from ftscale.controller.kube import Conflict, Kube

log = logging.getLogger("ftscale.operator.leader")


def micro_time(ts: float) -> str:
    """The Lease's MicroTime format."""
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class Decision:
    action: str  # "create" | "update" | "wait"
    spec: dict[str, Any] | None = None


@dataclass
class LeaseState:
    """What this replica has observed of the Lease (pure decisions)."""

    identity: str
    duration: float
    observed_record: tuple | None = None  # (holder, renewTime) last seen
    observed_at: float = 0.0  # monotonic time it was first seen

    def observe(self, lease: Mapping[str, Any] | None, mono: float) -> None:
        spec = (lease or {}).get("spec") or {}
        record = (spec.get("holderIdentity"), spec.get("renewTime"), spec.get("leaseDurationSeconds"))
        if record != self.observed_record:
            self.observed_record = record
            self.observed_at = mono

    def decide(self, lease: Mapping[str, Any] | None, mono: float, wall: float) -> Decision:
        """Given the current Lease (None: absent), what to do now."""
        self.observe(lease, mono)
        now = micro_time(wall)
        if lease is None:
            return Decision("create", {"holderIdentity": self.identity, "leaseDurationSeconds": int(self.duration),
                                       "acquireTime": now, "renewTime": now, "leaseTransitions": 0})
        spec = dict(lease.get("spec") or {})
        holder = spec.get("holderIdentity")
        duration = float(spec.get("leaseDurationSeconds") or self.duration)
        expired = mono - self.observed_at >= duration
        if holder == self.identity:
            spec.update(renewTime=now, leaseDurationSeconds=int(self.duration))
            return Decision("update", spec)
        if not holder or expired:
            spec.update(holderIdentity=self.identity, acquireTime=now, renewTime=now,
                        leaseDurationSeconds=int(self.duration),
                        leaseTransitions=int(spec.get("leaseTransitions") or 0) + (1 if holder else 0))
            return Decision("update", spec)
        return Decision("wait")


class LeaderElector:
    """Acquire and keep the Lease; `is_leader` says whether this replica may act now."""

    def __init__(self, kube: Kube, namespace: str, name: str, identity: str, duration: float,
                 renew: float, on_started_leading: Callable[[], Awaitable[None] | None] | None = None):
        self.kube = kube
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.duration = duration
        self.renew = renew
        self.state = LeaseState(identity, duration)
        self.on_started_leading = on_started_leading
        self._renewed_at: float | None = None  # monotonic time of the last successful renewal

    @property
    def is_leader(self) -> bool:
        # Step down before the Lease can expire for the others (renew deadline).
        return self._renewed_at is not None and time.monotonic() - self._renewed_at < self.duration - self.renew

    def try_once(self) -> bool:
        """One acquire/renew attempt (blocking API calls). True when we hold the Lease."""
        lease = self.kube.get_lease(self.namespace, self.name)
        mono = time.monotonic()
        decision = self.state.decide(lease, mono, time.time())
        try:
            if decision.action == "create":
                self.kube.create_lease(self.namespace, self.name, decision.spec)
            elif decision.action == "update":
                self.kube.update_lease({**lease, "spec": decision.spec})
            else:
                return False
        except Conflict:
            return False  # someone else wrote first; look again next round
        self._renewed_at = mono
        return True

    async def run(self) -> None:
        was_leader = False
        loop = asyncio.get_running_loop()
        while True:
            try:
                held = await loop.run_in_executor(None, self.try_once)
            except Exception as exc:  # noqa: BLE001 - API hiccups: keep trying, step down on deadline
                log.warning("lease %s/%s: %s", self.namespace, self.name, exc)
                held = False
            leader = self.is_leader
            if leader and not was_leader:
                log.info("became the leader (lease %s/%s, identity %s)", self.namespace, self.name, self.identity)
                if self.on_started_leading is not None:
                    result = self.on_started_leading()
                    if asyncio.iscoroutine(result):
                        await result
            elif was_leader and not leader:
                log.warning("lost the lease %s/%s: no longer acting", self.namespace, self.name)
            was_leader = leader
            await asyncio.sleep(self.renew if held or leader else max(1.0, self.renew / 2))

    def release(self) -> None:
        """On clean shutdown: hand the Lease over at once (others need not wait for expiry)."""
        if self._renewed_at is None:
            return
        try:
            lease = self.kube.get_lease(self.namespace, self.name)
            if lease and (lease.get("spec") or {}).get("holderIdentity") == self.identity:
                spec = dict(lease["spec"])
                spec.update(holderIdentity="", leaseDurationSeconds=1, renewTime=micro_time(time.time()))
                self.kube.update_lease({**lease, "spec": spec})
        except Exception as exc:  # noqa: BLE001 - best effort at shutdown
            log.warning("could not release the lease: %s", exc)
        self._renewed_at = None
