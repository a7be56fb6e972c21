"""Bad manifests are rejected by the API server itself (schema + CEL), with messages that say
what to fix — and changes that would mix incomparable results are refused (spec updates)."""

from __future__ import annotations

import copy

import pytest
from kubernetes.client.rest import ApiException

from ftscale.controller import names

from operator_testkit import create_study, crd, get_study, study_manifest  # noqa: F401

pytestmark = pytest.mark.cluster


def _rejected(api, namespace, manifest) -> str:
    with pytest.raises(ApiException) as info:
        create_study(api, namespace, manifest)
    assert info.value.status == 422, info.value.body
    return info.value.body


@pytest.mark.parametrize("mutate, expected", [
    (lambda m: m["spec"]["methods"].append({"name": "lora"}), "methods[].sizes is required"),
    (lambda m: m["spec"].update(dataSizes=[100, 100]), "spec.dataSizes[1]: Duplicate value: 100"),
    (lambda m: m["metadata"].update(name="x" * 53), "metadata.name must be at most 52"),
    (lambda m: m["spec"]["execution"].update(maxParallelRuns=0), "maxParallelRuns"),
    (lambda m: m["spec"]["models"].append({"name": "Bad_Name", "source": "toy:x"}), "name"),
])
def test_bad_manifests_are_rejected_with_clear_messages(crd, namespace, custom_objects_api, mutate, expected):
    manifest = study_manifest("bad", hold=False)
    mutate(manifest)
    body = _rejected(custom_objects_api, namespace, manifest)
    assert expected in body


def test_incomparable_spec_changes_are_refused_but_the_grid_may_grow(crd, namespace, custom_objects_api):
    create_study(custom_objects_api, namespace, study_manifest("upd", hold=False))
    study = get_study(custom_objects_api, namespace, "upd")
    # growing the grid is allowed (the operator adds runs and re-fits)
    grown = copy.deepcopy(study)
    grown["spec"]["dataSizes"] = [100, 200, 400]
    custom_objects_api.replace_namespaced_custom_object(names.GROUP, names.VERSION, namespace, names.PLURAL,
                                                        "upd", grown)
    # changing the task would mix results of different tasks into one law
    study = get_study(custom_objects_api, namespace, "upd")
    changed = copy.deepcopy(study)
    changed["spec"]["task"] = {"name": "toy-en-fr"}
    with pytest.raises(ApiException) as info:
        custom_objects_api.replace_namespaced_custom_object(names.GROUP, names.VERSION, namespace,
                                                            names.PLURAL, "upd", changed)
    assert info.value.status == 422 and "spec.task is immutable" in info.value.body
