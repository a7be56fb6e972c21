"""`ftscale run` validates a study with the CRD's own schema in Python (ftscale.spec); here the
real API server judges the same manifests, and the messages must agree — field path, wording
and all — for schema errors, CEL rules, immutable fields and unknown fields."""

from __future__ import annotations

import copy
import json

import pytest
from kubernetes.client.rest import ApiException

from ftscale.spec import validate_manifest

from operator_testkit import crd  # noqa: F401  (fixture: installs crds/scalingstudy.yaml)

GROUP, VERSION, PLURAL = "ftscale.io", "v1alpha1", "scalingstudies"

GOOD = {
    "apiVersion": "ftscale.io/v1alpha1", "kind": "ScalingStudy", "metadata": {"name": "parity"},
    "spec": {
        "task": {"name": "toy-en-de"},
        "models": [{"name": "tiny-1", "source": "toy:tiny-1"},
                   {"name": "tiny-2", "source": "toy:tiny-2"}],
        "methods": [{"name": "fmt"}, {"name": "lora", "sizes": [4, 8]}],
        "dataSizes": [100, 200],
    },
}


def bad(name=None, **spec_changes):
    doc = copy.deepcopy(GOOD)
    doc["spec"].update(spec_changes)
    if name is not None:
        doc["metadata"]["name"] = name
    return doc


def data_task(**paths):
    files = {"train": "mt/train.jsonl", "dev": "mt/dev.jsonl", "test": "mt/test.jsonl"}
    return {"name": "mine", "data": {**files, **paths}}


BAD = {
    "duplicate data sizes": bad(dataSizes=[100, 100]),
    "non-positive data size": bad(dataSizes=[0, 100]),
    "no models": bad(models=[]),
    "sizes on fmt": bad(methods=[{"name": "fmt", "sizes": [4]}]),
    "lora without sizes": bad(methods=[{"name": "lora"}]),
    "unknown method": bad(methods=[{"name": "adapter"}]),
    "seed of the wrong type": bad(seeds=["one"]),
    "bad model name": bad(models=[{"name": "Tiny_1", "source": "toy:x"}]),
    "huber delta zero": bad(law={"huberDelta": 0}),
    "too many retries": bad(execution={"backoffLimit": 50}),
    "bad held-out value": bad(law={"heldOut": {"x": "biggest"}}),
    "dangling checkpointOf": bad(models=[{"name": "a", "source": "toy:a", "checkpointOf": "b"}]),
    # 2 models × (fmt + 4 LoRA ranks) × 64 data sizes × 16 seeds = 10,240 > 10,000 runs
    "grid too large": bad(methods=[{"name": "fmt"}, {"name": "lora", "sizes": [4, 8, 16, 32]}],
                          dataSizes=list(range(1, 65)), seeds=list(range(16))),
    "missing task": {**GOOD, "spec": {k: v for k, v in GOOD["spec"].items() if k != "task"}},
    # issue 14: bounds and formats a user would expect, and what every run would trip over
    "LoRA rank of 10^9": bad(methods=[{"name": "lora", "sizes": [10**9]}]),
    "default size above the bound": bad(methods=[{"name": "lora", "sizes": [4],
                                                  "defaultSize": 5000}]),
    "two models with one name": bad(models=[{"name": "tiny-1", "source": "toy:tiny-1"},
                                            {"name": "tiny-1", "source": "toy:tiny-2"}]),
    "two methods with one name": bad(methods=[{"name": "fmt"}, {"name": "fmt"}]),
    "repeated sizeSweepModels": bad(methods=[{"name": "lora", "sizes": [4, 8],
                                              "sizeSweepModels": ["tiny-1", "tiny-1"]}]),
    "study name with a slash": bad(name="a/b"),
    "study name with dots": bad(name="a..b"),
    "study name not a DNS label": bad(name="a.b"),
    "study name too long": bad(name="x" * 53),
    "300-character label value": bad(execution={"labels": {"team": "x" * 300}}),
    "label value with a space": bad(execution={"labels": {"team": "m t"}}),
    "bad label key": bad(execution={"labels": {"bad key!": "x"}}),
    "bad node selector key": bad(execution={"nodeSelector": {"/pool": "gpu"}}),
    "negative CPU (integer)": bad(execution={"resources": {"limits": {"cpu": -8}}}),
    "negative CPU (string)": bad(execution={"resources": {"requests": {"cpu": "-8"}}}),
    "memory that is not a quantity": bad(execution={"resources": {"limits": {"memory": "lots"}}}),
    "negative model memory": bad(models=[{"name": "tiny-1", "source": "toy:tiny-1",
                                          "resources": {"requests": {"memory": "-1Gi"}}}]),
    "image with a space": bad(execution={"image": "ghcr.io/x/trainer :1"}),
    "model image with upper case": bad(models=[{"name": "tiny-1", "source": "toy:tiny-1",
                                                "image": "ghcr.io/X/Trainer"}]),
    "bad ServiceAccount": bad(execution={"serviceAccountName": "Runs_SA"}),
    "bad PVC name": bad(execution={"volumes": {"data": {"claimName": "My Data"}}}),
    "held-out data sizes hold out everything": bad(law={"heldOut": {"d": "100/200"}}),
    "held-out data sizes leave one": bad(law={"heldOut": {"d": "200"}}),
    "per-factor held-out data sizes": bad(law={"heldOut": {"factors": {
        "petSize": {"d": "100/200"}}}}),
    "absolute data path": bad(task=data_task(train="/etc/passwd")),
    "data path climbing out": bad(task=data_task(dev="mt/../../secrets.jsonl")),
    "zero-shot path '..'": bad(task={"name": "toy-en-de",
                                     "zeroShotSets": [{"name": "z", "path": ".."}]}),
    "template with an unknown placeholder": bad(task={"name": "toy-en-de",
                                                      "promptTemplate": "{source} in {lang}"}),
    "template with stray braces": bad(task={"name": "toy-en-de",
                                            "promptTemplate": "{source} -> {}"}),
    "template without {source}": bad(task={"name": "toy-en-de", "promptTemplate": "hello"}),
    "zero-shot set that does not exist": bad(evaluation={"zeroShot": ["toy-xx-yy"]}),
    "repeated seeds": bad(seeds=[1, 1]),
    "repeated method sizes": bad(methods=[{"name": "prompt", "sizes": [8, 8]}]),
    "default size not among sizes": bad(methods=[{"name": "lora", "sizes": [4],
                                                  "defaultSize": 8}]),
    "checkpointOf itself": bad(models=[{"name": "a", "source": "toy:a", "checkpointOf": "a"}]),
    "unknown sizeSweepModels": bad(methods=[{"name": "lora", "sizes": [4, 8],
                                             "sizeSweepModels": ["big"]}]),
    # spec.design (ftscale.design)
    "unknown design strategy": bad(design={"strategy": "smart"}),
    "critical target with one method": bad(design={"strategy": "adaptive", "target": {
        "kind": "critical", "methods": ["fmt"]}}),
    "target with model and parameters": bad(design={"target": {"model": "tiny-1",
                                                               "parameters": 7e9}}),
    "critical target with a data size": bad(design={"target": {
        "kind": "critical", "methods": ["fmt", "lora"], "dataSize": 100}}),
    "target method not in the study": bad(design={"target": {"methods": ["prompt"]}}),
    "target model not in the study": bad(design={"target": {"model": "big"}}),
    "zero half-width": bad(design={"stopWhen": {"halfWidth": 0}}),
    "zero batch size": bad(design={"batchSize": 0}),
    "checkpoint chain without tokens": bad(models=[
        {"name": "a", "source": "org/a", "pretrainingTokens": 10},
        {"name": "a-early", "source": "org/a-step1k", "checkpointOf": "a"}]),
}


def api_messages(exc: ApiException) -> list[str]:
    body = json.loads(exc.body)
    causes = (body.get("details") or {}).get("causes") or []
    if not causes:
        return [body.get("message", "")]
    return [f"{c['field']}: {c['message']}" if c.get("field") else c["message"] for c in causes]


def server_verdict(api, namespace, manifest, create=True) -> list[str]:
    try:
        if create:
            api.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, manifest,
                                                field_validation="Strict")
        else:
            api.replace_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL,
                                                 manifest["metadata"]["name"], manifest,
                                                 field_validation="Strict")
    except ApiException as exc:
        assert exc.status in (400, 422), exc.body
        return api_messages(exc)
    return []


@pytest.mark.parametrize("case", sorted(BAD))
def test_python_validation_gives_the_api_servers_messages(crd, namespace, custom_objects_api,
                                                          case):
    manifest = BAD[case]
    server = server_verdict(custom_objects_api, namespace, manifest)
    _, ours = validate_manifest(manifest)
    assert server, f"the API server accepted {case!r}"
    assert ours, f"ftscale.spec accepted {case!r}; the API server said {server}"
    for message in server:
        assert says(ours, message), f"{case}: API server said\n  {message}\nftscale.spec " \
                                    "said\n  " + "\n  ".join(ours)
    assert len(ours) == len(server), f"{case}: ftscale.spec said more:\n  " + "\n  ".join(ours)


def says(ours: list[str], message: str) -> bool:
    """`message` is one of ours — exactly, or followed by the words ftscale.spec adds to a
    pattern error (what the pattern means: ftscale.spec_patterns.WORDS)."""
    return any(o == message or o.startswith(message + ": ") for o in ours)


def test_both_accept_the_good_study_and_the_examples(crd, namespace, custom_objects_api):
    from pathlib import Path

    import yaml
    examples = Path(__file__).resolve().parents[2] / "examples"
    for path in [None, *sorted(examples.glob("*.yaml"))]:
        manifest = copy.deepcopy(GOOD) if path is None else yaml.safe_load(path.read_text())
        manifest["metadata"].pop("namespace", None)
        assert validate_manifest(manifest)[1] == []
        assert server_verdict(custom_objects_api, namespace, manifest) == [], path
        # the server's defaults are the CRD's defaults, as ftscale.spec applies them
        stored = custom_objects_api.get_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, manifest["metadata"]["name"])
        assert stored["spec"] == validate_manifest(manifest)[0]["spec"], path


def test_unknown_fields_are_refused_by_both(crd, namespace, custom_objects_api):
    manifest = bad(dataSize=[1])
    server = server_verdict(custom_objects_api, namespace, manifest)
    _, ours = validate_manifest(manifest)
    assert any('unknown field "spec.dataSize"' in m for m in server), server
    assert 'unknown field "spec.dataSize"' in ours


@pytest.mark.parametrize("change", ["task", "training", "model source", "default size"])
def test_immutable_fields_give_the_same_messages(crd, namespace, custom_objects_api, change):
    name = f"imm-{change.replace(' ', '-')}"
    manifest = copy.deepcopy(GOOD)
    manifest["metadata"]["name"] = name
    assert server_verdict(custom_objects_api, namespace, manifest) == []
    stored = custom_objects_api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL,
                                                             name)
    edited = copy.deepcopy(stored)
    if change == "task":
        edited["spec"]["task"] = {"name": "toy-en-fr"}
    elif change == "training":
        edited["spec"]["training"] = {"maxSteps": 3}
    elif change == "model source":
        edited["spec"]["models"][0]["source"] = "toy:other"
    else:
        edited["spec"]["methods"][1]["sizes"] = [8, 4]
    server = server_verdict(custom_objects_api, namespace, edited, create=False)
    ours = validate_manifest({k: edited[k] for k in ("apiVersion", "kind", "spec")}
                             | {"metadata": {"name": name}}, old_spec=stored["spec"])[1]
    assert server, f"the API server accepted the {change} change"
    for message in server:
        assert message in ours, f"{change}: API server said\n  {message}\nwe said\n  " \
                                + "\n  ".join(ours)
