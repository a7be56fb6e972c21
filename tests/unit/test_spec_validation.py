"""Manifests accepted and rejected, validated against the CRD's own schema (ftscale.spec)."""

from __future__ import annotations

import copy

import pytest

from ftscale.spec import StudyValidationError, load_study, validate_manifest, with_defaults

BASE = {
    "apiVersion": "ftscale.io/v1alpha1",
    "kind": "ScalingStudy",
    "metadata": {"name": "s1"},
    "spec": {
        "task": {"name": "toy-en-de"},
        "models": [{"name": "tiny-1", "source": "toy:tiny-1"},
                   {"name": "tiny-2", "source": "toy:tiny-2"}],
        "methods": [{"name": "fmt"}, {"name": "lora", "sizes": [4, 8]}],
        "dataSizes": [100, 200],
    },
}


def manifest(**changes):
    doc = copy.deepcopy(BASE)
    for dotted, value in changes.items():
        node = doc
        *parents, last = dotted.split("__")
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        if value is DELETE:
            del node[last]
        else:
            node[last] = value
    return doc


DELETE = object()


def errors_of(doc, old_spec=None):
    _, errors = validate_manifest(doc, old_spec)
    return errors


def test_minimal_study_is_accepted_and_defaulted():
    study = load_study(manifest())
    spec = study.spec
    assert study.name == "s1" and study.namespace == "default"
    assert spec["seeds"] == [0]
    assert spec["law"]["huberDelta"] == 0.001 and spec["law"]["residual"] == "raw"
    assert spec["law"]["forms"] == ["multiplicative", "additive"]
    assert spec["law"]["heldOut"] == {"x": "largest", "d": "largest"}
    assert spec["execution"]["maxParallelRuns"] == 8 and spec["execution"]["gpusPerRun"] == 0
    assert spec["evaluation"]["generation"]["metrics"] == []
    assert spec["training"] == {}


def test_defaults_do_not_override_given_values_and_are_idempotent():
    doc = manifest(spec__seeds=[3, 4])
    doc["spec"]["law"] = {"bootstrap": 0}
    spec = load_study(doc).spec
    assert spec["seeds"] == [3, 4] and spec["law"]["bootstrap"] == 0
    assert with_defaults(spec) == spec


@pytest.mark.parametrize("change, expected", [
    (dict(spec__dataSizes=[100, 100]), "spec.dataSizes must be unique"),
    (dict(spec__dataSizes=[0, 100]), "spec.dataSizes must be positive"),
    (dict(spec__dataSizes=[]), "spec.dataSizes needs at least one data size"),
    (dict(spec__models=[]), "spec.models needs at least one model"),
    (dict(spec__methods=[]), "spec.methods needs at least one method"),
    (dict(spec__methods=[{"name": "fmt", "sizes": [4]}]), "methods[name=fmt].sizes is not allowed"),
    (dict(spec__methods=[{"name": "lora"}]), "methods[].sizes is required for lora and prompt"),
    (dict(spec__methods=[{"name": "prompt", "sizes": [8, 8]}]), "methods[].sizes must be unique"),
    (dict(spec__methods=[{"name": "lora", "sizes": [4], "defaultSize": 8}]),
     "defaultSize must be one of methods[].sizes"),
    (dict(spec__methods=[{"name": "fmt", "loraAlpha": 8}]), "apply only to lora"),
    (dict(spec__seeds=[1, 1]), "spec.seeds must be unique"),
    (dict(spec__models__1__checkpointOf="nope"), "checkpointOf must name another model"),
    (dict(spec__models__1__checkpointOf="tiny-2"), "must name another model, not the model itself"),
    (dict(spec__models=[{"name": "a", "source": "org/a", "pretrainingTokens": 10},
                        {"name": "a-early", "source": "org/a-step1k", "checkpointOf": "a"}]),
     "pretrainingTokens is required for every model of a checkpointOf chain"),
    (dict(spec__methods=[{"name": "lora", "sizes": [4], "sizeSweepModels": ["big"]}]),
     "sizeSweepModels must name models of spec.models"),
    (dict(spec__task={"name": "x", "promptTemplate": "no placeholder"}),
     "spec.task.promptTemplate must be translate, summarize, plain, or contain {source}"),
    (dict(spec__dataSizes=list(range(1, 61)), spec__seeds=list(range(16))),
     "the grid has more than 2000 runs"),
    (dict(metadata={"name": "x" * 53}), "metadata.name must be at most 52 characters"),
])
def test_cel_rules_reject_with_the_crd_message(change, expected):
    errors = errors_of(manifest(**change))
    assert any(expected in e for e in errors), errors


def test_cel_messages_carry_the_field_path():
    errors = errors_of(manifest(spec__methods=[{"name": "fmt"}, {"name": "lora"}]))
    assert errors == ['spec.methods[1]: Invalid value: methods[].sizes is required for '
                      'lora and prompt: list LoRA ranks or prompt lengths, e.g. sizes: [4]']


@pytest.mark.parametrize("change, expected", [
    (dict(spec__task=DELETE), "spec.task: Required value"),
    (dict(spec__methods=[{"name": "adapter"}]),
     'spec.methods[0].name: Unsupported value: "adapter": supported values: "fmt", "lora", '
     '"prompt"'),
    (dict(spec__seeds=["one"]),
     'spec.seeds[0]: Invalid value: "string": spec.seeds[0] in body must be of type integer: '
     '"string"'),
    (dict(spec__models__0__name="Tiny_1"),
     "spec.models[0].name: Invalid value: \"Tiny_1\": spec.models[0].name in body should match"),
    (dict(spec__law={"heldOut": {"x": "biggest"}}),
     "spec.law.heldOut.x: Invalid value: \"biggest\": spec.law.heldOut.x in body should match"),
    (dict(spec__law={"huberDelta": 0}),
     "spec.law.huberDelta: Invalid value: 0: spec.law.huberDelta in body should be greater "
     "than 0"),
    (dict(spec__execution={"backoffLimit": 50}),
     "spec.execution.backoffLimit: Invalid value: 50: spec.execution.backoffLimit in body "
     "should be less than or equal to 20"),
    (dict(spec__execution={"resources": {"limits": {"memory": "lots"}}}),
     "spec.execution.resources.limits.memory: Invalid value: \"lots\""),
])
def test_schema_errors_use_the_api_server_wording(change, expected):
    errors = errors_of(manifest(**change))
    assert any(e.startswith(expected) for e in errors), errors


def test_unknown_fields_are_rejected_like_strict_field_validation():
    doc = manifest(spec__dataSize=[1])
    doc["spec"]["models"][0]["gpu"] = 1
    errors = errors_of(doc)
    assert 'unknown field "spec.dataSize"' in errors
    assert 'unknown field "spec.models[0].gpu"' in errors


def test_quantities_and_free_maps_are_accepted():
    doc = manifest()
    doc["spec"]["execution"] = {
        "resources": {"requests": {"cpu": "500m", "memory": "2Gi"}, "limits": {"cpu": 2}},
        "nodeSelector": {"pool": "gpu"}, "labels": {"team": "mt"},
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        "volumes": {"models": {"claimName": "ckpts"}},
    }
    spec = load_study(doc).spec
    assert spec["execution"]["volumes"]["models"]["mountPath"] == "/models"


def test_wrong_kind_and_missing_name():
    doc = manifest(kind="Study", metadata={})
    errors = errors_of(doc)
    assert any(e.startswith("kind:") for e in errors)
    assert any(e.startswith("metadata.name: Required value") for e in errors)


def test_load_study_raises_with_every_problem(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("apiVersion: ftscale.io/v1alpha1\nkind: ScalingStudy\nmetadata: {name: s}\n"
                    "spec:\n  task: {name: t}\n  models: []\n  methods: [{name: fmt}]\n"
                    "  dataSizes: [5, 5]\n")
    with pytest.raises(StudyValidationError) as info:
        load_study(path)
    assert len(info.value.errors) == 2 and str(path) in str(info.value)


def test_schema_errors_stop_cel_rules_like_the_api_server():
    from ftscale.spec import CEL_SKIPPED
    errors = errors_of(manifest(spec__seeds=["x"], spec__dataSizes=[1, 1]))
    assert errors[-1] == CEL_SKIPPED
    assert not any("must be unique" in e for e in errors)


# ---- transition rules (immutability), checked when the old spec is given -------------------
@pytest.mark.parametrize("change, expected", [
    (dict(spec__task={"name": "toy-en-fr"}), "spec.task is immutable"),
    (dict(spec__models__0__source="toy:other"), "models[].source is immutable"),
    (dict(spec__models__0__parameters=5), "models[].parameters is immutable"),
    (dict(spec__training={"maxSteps": 9}), "spec.training is immutable"),
    (dict(spec__methods=[{"name": "fmt"}, {"name": "lora", "sizes": [8, 4]}]),
     "defaultSize (or the first of sizes) is immutable"),
])
def test_changes_that_would_mix_incomparable_results_are_rejected(change, expected):
    old = load_study(manifest()).spec
    errors = errors_of(manifest(**change), old_spec=old)
    assert any(expected in e for e in errors), errors


def test_growing_a_study_is_allowed():
    old = load_study(manifest()).spec
    grown = manifest(spec__dataSizes=[100, 200, 400], spec__seeds=[0, 1])
    grown["spec"]["models"].append({"name": "tiny-3", "source": "toy:tiny-3"})
    grown["spec"]["methods"][1]["sizes"] = [4, 8, 16]
    grown["spec"]["execution"] = {"maxParallelRuns": 1}
    grown["spec"]["law"] = {"bootstrap": 10}
    assert errors_of(grown, old_spec=old) == []
