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
    (dict(spec__dataSizes=[]), "spec.dataSizes needs at least one data size"),
    (dict(spec__models=[]), "spec.models needs at least one model"),
    (dict(spec__methods=[]), "spec.methods needs at least one method"),
    (dict(spec__methods=[{"name": "fmt", "sizes": [4]}]), "methods[name=fmt].sizes is not allowed"),
    (dict(spec__methods=[{"name": "lora"}]), "methods[].sizes is required for lora and prompt"),
    (dict(spec__methods=[{"name": "lora", "sizes": [4], "defaultSize": 8}]),
     "spec.methods[0].defaultSize: Invalid value: methods[].defaultSize must be one of "
     "methods[].sizes"),
    (dict(spec__methods=[{"name": "fmt", "loraAlpha": 8}]), "apply only to lora"),
    (dict(spec__models__1__checkpointOf="nope"), "checkpointOf must name another model"),
    (dict(spec__models__1__checkpointOf="tiny-2"), "must name another model, not the model itself"),
    (dict(spec__models=[{"name": "a", "source": "org/a", "pretrainingTokens": 10},
                        {"name": "a-early", "source": "org/a-step1k", "checkpointOf": "a"}]),
     "pretrainingTokens is required for every model of a checkpointOf chain"),
    (dict(spec__methods=[{"name": "lora", "sizes": [4], "sizeSweepModels": ["big"]}]),
     "sizeSweepModels must name models of spec.models"),
    (dict(spec__task={"name": "x", "promptTemplate": "no placeholder"}),
     "spec.task.promptTemplate must be translate, summarize, plain, or contain {source}"),
    # 2 models × (fmt + lora at 6 sizes) × 60 data sizes × 16 seeds = 13,440 runs
    (dict(spec__dataSizes=list(range(1, 61)), spec__seeds=list(range(16)),
          spec__methods=[{"name": "fmt"}, {"name": "lora", "sizes": [4, 8, 16, 32, 64, 128]}]),
     "spec: Invalid value: spec: the grid has more than 10000 runs"),
    (dict(metadata={"name": "x" * 53}), "metadata.name must be at most 52 characters"),
])
def test_cel_rules_reject_with_the_crd_message(change, expected):
    errors = errors_of(manifest(**change))
    assert any(expected in e for e in errors), errors


def test_a_grid_of_nearly_ten_thousand_runs_is_accepted():
    """The cap is 10,000 runs a study (results live in sharded ConfigMaps, not the status):
    11 seeds instead of 16 give 9,240 runs, within it."""
    from ftscale import grid

    doc = manifest(spec__dataSizes=list(range(1, 61)), spec__seeds=list(range(11)),
                   spec__methods=[{"name": "fmt"},
                                  {"name": "lora", "sizes": [4, 8, 16, 32, 64, 128]}])
    assert not [e for e in errors_of(doc) if "runs" in e]
    assert len(grid.expand(with_defaults(doc["spec"]))) == 9240


def test_cel_messages_carry_the_field_path():
    errors = errors_of(manifest(spec__methods=[{"name": "fmt"}, {"name": "lora"}]))
    assert errors == ['spec.methods[1]: Invalid value: methods[].sizes is required for '
                      'lora and prompt: list LoRA ranks or prompt lengths, e.g. sizes: [4]']


# ---- issue 14: every message names the field and the offending value ----------------------
# Lists of distinct values are list-type sets, so the API server names the repeat itself; a
# CEL message expression that would pick it out of the list is over the API server's cost
# budget (docs/study.md, "What a bad study looks like").
@pytest.mark.parametrize("change, expected", [
    (dict(spec__dataSizes=[100, 200, 100]), "spec.dataSizes[2]: Duplicate value: 100"),
    (dict(spec__dataSizes=[100, -5]),
     "spec.dataSizes[1]: Invalid value: -5: spec.dataSizes[1] in body should be greater than "
     "or equal to 1"),
    (dict(spec__seeds=[0, 3, 3]), "spec.seeds[2]: Duplicate value: 3"),
    (dict(spec__methods=[{"name": "prompt", "sizes": [8, 16, 8]}]),
     "spec.methods[0].sizes[2]: Duplicate value: 8"),
    (dict(spec__methods=[{"name": "lora", "sizes": [4], "dataSizes": [10, 10]}]),
     "spec.methods[0].dataSizes[1]: Duplicate value: 10"),
    (dict(spec__methods=[{"name": "lora", "sizes": [4], "dataSizes": [0]}]),
     "spec.methods[0].dataSizes[0]: Invalid value: 0: spec.methods[0].dataSizes[0] in body "
     "should be greater than or equal to 1"),
    (dict(spec__models__1__checkpointOf="nope"),
     "spec.models: Invalid value: spec.models[].checkpointOf must name another model of "
     "spec.models that is not itself a checkpoint"),
    (dict(spec__models__1__checkpointOf="tiny-2"),
     "spec.models[1].checkpointOf: Invalid value: models[].checkpointOf must name another "
     "model, not the model itself (tiny-2)"),
    (dict(spec__methods=[{"name": "lora", "sizes": [4], "sizeSweepModels": ["tiny-1", "big"]}]),
     "spec.methods: Invalid value: spec.methods[].sizeSweepModels must name models of "
     "spec.models"),
    (dict(metadata={"name": "x" * 53}),
     "<nil>: Invalid value: metadata.name must be at most 52 characters (run Job names are "
     "<study>-<run id> and must fit in 63): got " + "x" * 53),
])
def test_list_and_name_messages_name_the_offending_value(change, expected):
    errors = errors_of(manifest(**change))
    assert any(e.startswith(expected) for e in errors), errors


@pytest.mark.parametrize("change, expected", [
    # LoRA ranks and prompt lengths are bounded (ftscale: ≤ 4096, crds/generate.py)
    (dict(spec__methods=[{"name": "lora", "sizes": [10**9]}]),
     "spec.methods[0].sizes[0]: Invalid value: 1000000000: spec.methods[0].sizes[0] in body "
     "should be less than or equal to 4096"),
    (dict(spec__methods=[{"name": "lora", "sizes": [4], "defaultSize": 5000}]),
     "spec.methods[0].defaultSize: Invalid value: 5000: spec.methods[0].defaultSize in body "
     "should be less than or equal to 4096"),
    # names unique within lists: the grid would silently drop the second model
    (dict(spec__models=[{"name": "tiny-1", "source": "toy:tiny-1"},
                        {"name": "tiny-1", "source": "toy:tiny-2"}]),
     'spec.models[1]: Duplicate value: {"name":"tiny-1"}'),
    (dict(spec__methods=[{"name": "fmt"}, {"name": "lora", "sizes": [4]}, {"name": "fmt"}]),
     'spec.methods[2]: Duplicate value: {"name":"fmt"}'),
    (dict(spec__methods=[{"name": "lora", "sizes": [4, 8], "sizeSweepModels": ["tiny-1",
                                                                              "tiny-1"]}]),
     'spec.methods[0].sizeSweepModels[1]: Duplicate value: "tiny-1"'),
    (dict(spec__evaluation={"zeroShot": ["toy-fr-de", "toy-fr-de"]}),
     'spec.evaluation.zeroShot[1]: Duplicate value: "toy-fr-de"'),
    # study names: DNS labels (Job names, labels, the local workdir runs/<name>)
    (dict(metadata={"name": "../../x"}),
     'metadata.name: Invalid value: "../../x": a lowercase RFC 1123 subdomain must consist'),
    (dict(metadata={"name": "../../x"}),
     "metadata.name must be a DNS label (lower-case letters, digits and -): it names run Jobs "
     "and labels, and locally the workdir runs/<name>; got ../../x"),
    (dict(metadata={"name": "a.b"}), "metadata.name must be a DNS label"),
    # labels and node selectors as the API server checks them on Jobs and pods
    (dict(spec__execution={"labels": {"team": "x" * 300}}),
     "spec.execution.labels.team: Too long: may not be more than 63 bytes"),
    (dict(spec__execution={"labels": {"team": "m t"}}),
     'spec.execution.labels.team: Invalid value: "m t": spec.execution.labels.team in body '
     "should match"),
    (dict(spec__execution={"labels": {"bad key!": "x"}}),
     "spec.execution.labels: Invalid value: key bad key! is not a label key: use "
     "[prefix/]name"),
    (dict(spec__execution={"nodeSelector": {"x" * 64: "x"}}),
     "spec.execution.nodeSelector: Invalid value: key " + "x" * 64 + " is not a label key"),
    # quantities ≥ 0, with words for the pattern
    (dict(spec__execution={"resources": {"limits": {"cpu": -8}}}),
     "spec.execution.resources.limits.cpu: Invalid value: -8: spec.execution.resources.limits"
     ".cpu in body should be greater than or equal to 0"),
    (dict(spec__execution={"resources": {"limits": {"cpu": "-8"}}}),
     'spec.execution.resources.limits.cpu: Invalid value: "-8"'),
    # images and names of other objects
    (dict(spec__execution={"image": "ghcr.io/x/trainer :1"}),
     'spec.execution.image: Invalid value: "ghcr.io/x/trainer :1"'),
    (dict(spec__models__0__image="Trainer"), 'spec.models[0].image: Invalid value: "Trainer"'),
    (dict(spec__execution={"serviceAccountName": "Runs_SA"}),
     'spec.execution.serviceAccountName: Invalid value: "Runs_SA"'),
    (dict(spec__execution={"volumes": {"data": {"claimName": "My Data"}}}),
     'spec.execution.volumes.data.claimName: Invalid value: "My Data"'),
    # held-out settings that leave nothing to fit
    (dict(spec__law={"heldOut": {"d": "100/200"}}),
     "spec.law.heldOut.d: Invalid value: spec.law.heldOut.d leaves fewer than 2 data sizes of "
     "a method to fit"),
    (dict(spec__law={"heldOut": {"factors": {"modelSize": {"d": "2e2"}}}}),
     "spec.law.heldOut.factors.modelSize.d: Invalid value: spec.law.heldOut.factors.modelSize.d "
     "leaves fewer than 2 data sizes"),
    (dict(spec__law={"heldOut": {"factors": {"petSize": {"d": "100"}}}}),
     "spec.law.heldOut.factors.petSize.d: Invalid value: spec.law.heldOut.factors.petSize.d "
     "leaves fewer than 2 data sizes"),
    # paths stay inside the data volume
    (dict(spec__task={"name": "mine", "data": {"train": "/etc/passwd", "dev": "d", "test": "t"}}),
     'spec.task.data.train: Invalid value: "/etc/passwd": must be a path relative to the data '
     "volume, without '..'"),
    (dict(spec__task={"name": "mine", "data": {"train": "t", "dev": "a/../../d", "test": "t"}}),
     'spec.task.data.dev: Invalid value: "a/../../d": must be a path relative to the data '
     "volume, without '..'"),
    (dict(spec__task={"name": "toy-en-de", "zeroShotSets": [{"name": "z", "path": "../z"}]}),
     'spec.task.zeroShotSets[0].path: Invalid value: "../z": must be a path relative to the '
     "data volume, without '..'"),
    # templates: only the placeholders the trainer fills
    (dict(spec__task={"name": "toy-en-de", "promptTemplate": "{source} in {lang}"}),
     "spec.task.promptTemplate: Invalid value: spec.task.promptTemplate may use only the "
     "placeholders {source}, {source_lang} and {target_lang} (other braces break every run): "
     "got {source} in {lang}"),
    (dict(spec__task={"name": "toy-en-de", "promptTemplate": "{source} {0}"}),
     "spec.task.promptTemplate may use only the placeholders"),
    (dict(spec__task={"name": "toy-en-de", "promptTemplate": "{source} }"}),
     "spec.task.promptTemplate may use only the placeholders"),
    # zero-shot sets that exist
    (dict(spec__evaluation={"zeroShot": ["toy-fr-de", "fr-de-news"]}),
     "spec.evaluation.zeroShot: Invalid value: fr-de-news is neither a built-in task "
     "(toy-en-de, toy-en-fr, toy-fr-de, toy-sum) nor a set of spec.task.zeroShotSets"),
])
def test_bad_input_is_refused_naming_field_and_value(change, expected):
    errors = errors_of(manifest(**change))
    assert any(e.startswith(expected) or expected in e for e in errors), errors


@pytest.mark.parametrize("change", [
    dict(spec__methods=[{"name": "lora", "sizes": [4096]}]),
    dict(spec__execution={"labels": {"ftscale.io/team": "mt", "cost-center": "",
                                     "a_b.c": "x-1"},
                          "nodeSelector": {"cloud.google.com/gke-accelerator": "nvidia-h100"}}),
    dict(spec__execution={"image": "localhost:5000/ftscale/trainer:0.1.0-rc1",
                          "serviceAccountName": "ftscale.runs"}),
    dict(spec__execution={"image": "trainer@sha256:" + "a" * 64}),
    dict(spec__execution={"resources": {"requests": {"cpu": "+1.5", "memory": "1e3"},
                                        "limits": {"cpu": 0, "memory": ".5Gi"}}}),
    dict(spec__law={"heldOut": {"d": "200", "x": "1e9/2e9"}}, spec__dataSizes=[100, 200, 400]),
    dict(spec__law={"heldOut": {"factors": {"petSize": {"d": "100/200"}}}},
         spec__methods=[{"name": "fmt"}, {"name": "lora", "sizes": [4], "dataSizes": [50, 60]}]),
    dict(spec__task={"name": "mine", "data": {"train": "a/..b/train.jsonl", "dev": "./dev",
                                              "test": "x..y"},
                     "promptTemplate": "Translate {source_lang} to {target_lang}: {source} ->",
                     "zeroShotSets": [{"name": "news", "path": "news.jsonl"}]},
         spec__evaluation={"zeroShot": ["news", "toy-fr-de"]}),
])
def test_values_near_the_bounds_are_accepted(change):
    assert errors_of(manifest(**change)) == []


def test_the_builtin_tasks_are_the_trainers():
    from ftscale.spec import BUILTIN_TASKS
    from ftscale_trainer import world
    assert set(BUILTIN_TASKS) == set(world.TASKS)


def test_a_schema_error_that_is_not_blocking_still_runs_the_rules():
    """As the API server (hasBlockingErr): a bound or a pattern does not stop the CEL rules;
    a wrong type, a missing field, an enum miss, too long or too many does."""
    from ftscale.spec import CEL_SKIPPED
    errors = errors_of(manifest(spec__law={"huberDelta": 0}, spec__seeds=[0, 0],
                                spec__evaluation={"zeroShot": ["nope"]}))
    assert any("huberDelta" in e for e in errors)
    assert "spec.seeds[1]: Duplicate value: 0" in errors
    assert any(e.startswith("spec.evaluation.zeroShot: Invalid value: nope is neither") for e in errors)
    assert CEL_SKIPPED not in errors


def test_yaml_syntax_errors_are_one_line_with_line_and_column(tmp_path):
    from ftscale.spec import StudySyntaxError
    path = tmp_path / "s.yaml"
    path.write_text("apiVersion: ftscale.io/v1alpha1\nkind: ScalingStudy\nmetadata:\n"
                    "  name: s\nspec:\n  models: [{name: a, source: toy:a}\n  methods: []\n")
    with pytest.raises(StudySyntaxError) as info:
        load_study(path)
    text = str(info.value)
    assert "\n" not in text and "Traceback" not in text
    assert text == (f"{path}:7:3: not valid YAML: while parsing a flow sequence, expected ',' "
                    "or ']', but got '<scalar>'")
    assert (info.value.line, info.value.column) == (7, 3)
    path.write_text("spec:\n\tmodels: []\n")
    with pytest.raises(StudySyntaxError) as info:
        load_study(path)
    assert str(info.value).startswith(f"{path}:2:1: not valid YAML: ")


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
