"""A cluster study's recorded results and fit input, read the way every consumer reads them
(ftscale.api.results_store, ftscale.api.fit_input): for the integration tests and benchmarks."""

from __future__ import annotations

from typing import Any

from ftscale.api import fit_input as fit_input_codec, results_store
from ftscale.controller import names
from ftscale.results import RunResult


def study_results(core_api, namespace: str, study: str, uid: str | None = None) -> dict[str, RunResult]:
    """Every result in the study's results ConfigMaps, by run id (only shards `uid` owns, when
    given)."""
    return read_shards(core_api, namespace, study, uid).results


def read_shards(core_api, namespace: str, study: str, uid: str | None = None) -> results_store.Recorded:
    items = core_api.list_namespaced_config_map(
        namespace, label_selector=results_store.label_selector(study)).items
    raw = [core_api.api_client.sanitize_for_serialization(cm) for cm in items]
    return results_store.read_results(study, uid, raw)


def fit_input(core_api, namespace: str, study: str) -> dict[str, Any]:
    """The document in `<study>-fit-input` (the fit Job's input)."""
    cm = core_api.read_namespaced_config_map(names.fit_input_configmap_name(study), namespace)
    return fit_input_codec.decode_b64(cm.binary_data[names.FIT_INPUT_FILE])
