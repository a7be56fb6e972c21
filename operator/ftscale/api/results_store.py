"""Where a cluster study keeps its per-run results: sharded ConfigMaps (docs/operator.md,
"Where results live").

The study's status holds counts, the fit, conditions and the last few failures — it stays the
same size whether the study has 10 runs or 10,000. Every harvested run result is a key of one
of the study's results ConfigMaps, which are the durable record (a run's Job gets its TTL only
after its result is in one of them):

- name `<study>-results-<k>`, k = 0, 1, 2, …; labels `ftscale.io/study: <study>` and
  `ftscale.io/component: results`; owned by the study (its UID), so a study deleted and
  re-created under the same name never sees the old results;
- key `<run id>.json` → the run's compact result (ftscale.results, None fields left out);
- shards fill in harvest order: new results go to the open shard until it holds
  SHARD_MAX_BYTES, then shard k+1 opens. A harvest pass therefore merges its batch into one
  ConfigMap (two at a rollover) whatever the study's size, and a shard stays far below the
  API server's 1 MiB.

The operator writes (merge patches of `data`); the operator after a restart, `ftscale report
--study`, the study browser, the benchmarks and the tests read, all through `read_results`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ftscale.api.meta import LABEL_COMPONENT, LABEL_STUDY
from ftscale.results import ResultError, RunResult, parse_result

COMPONENT = "results"  # the ftscale.io/component label value of results ConfigMaps
KEY_SUFFIX = ".json"
# A shard takes new results until its data reach this size. Every merge patch makes the API
# server read, merge, validate and store the whole ConfigMap, and etcd keep a revision of it,
# so a patch costs in proportion to the shard's size: measured at 1,000 runs on a loaded
# 2-core control plane, patches of a ~300 KB shard took up to 2 s (docs/operator.md,
# "Benchmark"). 128 KiB keeps each patch cheap; one batch more (a pass harvests at most a few
# hundred runs, ~0.3 KB each) stays far below the 1 MiB limit. 10,000 runs take ~25 shards.
SHARD_MAX_BYTES = 128 * 1024


def shard_name(study: str, index: int) -> str:
    return f"{study}-results-{index}"


def shard_index(study: str, configmap_name: str) -> int | None:
    """k of `<study>-results-<k>`; None for any other name."""
    m = re.fullmatch(re.escape(study) + r"-results-(\d+)", configmap_name)
    return int(m.group(1)) if m else None


def label_selector(study: str) -> str:
    return f"{LABEL_STUDY}={study},{LABEL_COMPONENT}={COMPONENT}"


def key(run_id: str) -> str:
    return f"{run_id}{KEY_SUFFIX}"


# RunResult fields without a default: kept even when None (pet_size of fmt runs).
_KEEP = {"study", "run_id", "model", "method", "pet_size", "data_size", "seed"}


def slim(doc: dict[str, Any]) -> dict[str, Any]:
    """A compact result document without None/empty fields (the contract's parser fills them
    back)."""
    return {k: v for k, v in doc.items() if k in _KEEP or (v is not None and v != {})}


def encode(result: RunResult) -> str:
    """The ConfigMap value of a result: its slim compact JSON."""
    return json.dumps(slim(json.loads(result.to_compact_json())), sort_keys=True,
                      separators=(",", ":"), allow_nan=False)


@dataclass
class Recorded:
    """A study's results as read back from its ConfigMaps."""

    results: dict[str, RunResult] = field(default_factory=dict)  # by run id
    sizes: dict[int, int] = field(default_factory=dict)  # shard index → bytes of data
    notes: list[str] = field(default_factory=list)  # entries that could not be read, and why
    # Shard names that exist but are not this study's (a deleted namesake's, until the garbage
    # collector removes them): never to be written, or our results would go with them.
    foreign: set[int] = field(default_factory=set)


def read_results(study: str, study_uid: str | None, configmaps: Iterable[Mapping[str, Any]]) -> Recorded:
    """Every result in the study's shards. `configmaps` are ConfigMap objects (dicts as the API
    returns them, e.g. a list by `label_selector`); only shards owned by `study_uid` count
    (None: any owner — for a reader without the study's UID)."""
    out = Recorded()
    for cm in configmaps:
        meta = cm.get("metadata") or {}
        index = shard_index(study, meta.get("name") or "")
        if index is None:
            continue
        owners = {o.get("uid") for o in meta.get("ownerReferences") or ()}
        if study_uid is not None and study_uid not in owners:
            out.foreign.add(index)
            continue
        data = cm.get("data") or {}
        out.sizes[index] = data_bytes(data)
        for k, value in sorted(data.items()):
            if not k.endswith(KEY_SUFFIX):
                continue
            try:
                result = parse_result(value)
            except ResultError as exc:
                out.notes.append(f"{meta.get('name')}[{k}] is not a run result ({exc}); ignored")
                continue
            if key(result.run_id) != k or result.study != study:
                out.notes.append(f"{meta.get('name')}[{k}] holds run {result.run_id} of study "
                                 f"{result.study}; ignored")
                continue
            out.results[result.run_id] = result
    return out


def data_bytes(data: Mapping[str, str]) -> int:
    return sum(len(k.encode()) + len(v.encode()) for k, v in data.items())


def assign(pending: Mapping[str, str], sizes: Mapping[int, int], max_bytes: int | None = None,
           taken: Collection[int] = ()) -> dict[int, dict[str, str]]:
    """Which shard each pending `key → value` goes to: the open shard (the highest index) until
    it holds `max_bytes` (default: SHARD_MAX_BYTES as it is at the call, so a benchmark or a
    test may lower it), then the next. Pure; `sizes` are the shards' current sizes; `taken`
    are indices whose names another owner holds (Recorded.foreign): new shards open above
    them."""
    max_bytes = SHARD_MAX_BYTES if max_bytes is None else max_bytes
    index = max([*sizes, *taken], default=0)
    used = sizes.get(index, 0)
    if index in taken:
        index, used = index + 1, 0
    out: dict[int, dict[str, str]] = {}
    for k, value in pending.items():
        size = len(k.encode()) + len(value.encode())
        if used and used + size > max_bytes:
            index, used = index + 1, 0
        out.setdefault(index, {})[k] = value
        used += size
    return out
