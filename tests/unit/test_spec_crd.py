"""The CRD file itself: generated and committed copies agree, every field is documented, every
CEL rule has a Python re-check, and the schema is structural the way the API server wants."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import yaml

from ftscale import spec as specmod

ROOT = Path(__file__).resolve().parents[2]
CRD_FILE = ROOT / "crds" / "scalingstudy.yaml"


def _generator():
    loaded = importlib.util.spec_from_file_location("crd_generate", ROOT / "crds" / "generate.py")
    module = importlib.util.module_from_spec(loaded)
    loaded.loader.exec_module(module)
    return module


def _walk(schema, path="spec"):
    yield path, schema
    for name, sub in (schema.get("properties") or {}).items():
        yield from _walk(sub, f"{path}.{name}")
    if isinstance(schema.get("items"), dict):
        yield from _walk(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from _walk(schema["additionalProperties"], f"{path}{{}}")


def test_committed_crd_is_what_the_generator_writes():
    assert CRD_FILE.read_text() == _generator().render(), (
        "crds/scalingstudy.yaml is stale: run `$(scripts/python-env.sh) crds/generate.py`")


def test_crd_names_scope_and_subresources():
    crd = yaml.safe_load(CRD_FILE.read_text())
    assert crd["metadata"]["name"] == "scalingstudies.ftscale.io"
    names = crd["spec"]["names"]
    assert names["kind"] == "ScalingStudy" and names["shortNames"] == ["sst"]
    assert set(names["categories"]) == {"ftscale", "all"}
    assert crd["spec"]["scope"] == "Namespaced"
    version = crd["spec"]["versions"][0]
    assert version["name"] == "v1alpha1" and version["subresources"] == {"status": {}}
    columns = {c["name"]: c["jsonPath"] for c in version["additionalPrinterColumns"]}
    assert columns["Done"] == ".status.progress"
    assert columns["Running"] == ".status.runsRunning"
    assert columns["Failed"] == ".status.runsFailed"
    assert "Fitted" in columns["Fitted"] and columns["Age"] == ".metadata.creationTimestamp"


def test_every_field_under_spec_and_status_has_a_description():
    root = specmod.root_schema()
    missing = [p for part in ("spec", "status")
               for p, s in _walk(root["properties"][part], part)
               if not s.get("description") and not p.endswith("{}")]
    assert not missing, f"fields without description (kubectl explain shows nothing): {missing}"


def test_every_cel_rule_has_a_message_and_a_python_recheck():
    root = specmod.root_schema()
    rules = []
    for _, s in _walk(root, ""):
        rules += s.get("x-kubernetes-validations", [])
    assert len(rules) >= 20
    for r in rules:
        assert r.get("message"), f"rule without message: {r['rule']}"
        assert r["rule"] in specmod.CEL_RECHECKS, f"no Python re-check for CEL rule {r['rule']!r}"
    assert set(specmod.CEL_RECHECKS) == {r["rule"] for r in rules}, "stale re-checks"

    # A messageExpression is mirrored by a Python function, or ftscale.spec would fall back to
    # the static message where the API server says the value.
    with_expression = {r["rule"] for r in rules if r.get("messageExpression")}
    assert set(specmod.CEL_MESSAGES) == with_expression, "messageExpressions and CEL_MESSAGES"


def test_schema_is_structural():
    """Structural-schema rules the API server enforces: a type on every node (except
    int-or-string), no properties next to additionalProperties, map-list keys required."""
    for path, s in _walk(specmod.root_schema(), ""):
        if s.get("x-kubernetes-int-or-string"):
            continue
        assert "type" in s, f"{path} has no type"
        assert not (s.get("properties") and s.get("additionalProperties")), path
        if s.get("x-kubernetes-list-type") == "map":
            item = s["items"]
            for key in s["x-kubernetes-list-map-keys"]:
                assert key in item.get("required", []) or "default" in item["properties"][key], \
                    f"{path}: map-list key {key} must be required"


@pytest.mark.parametrize("path", sorted((ROOT / "examples").glob("*.yaml")))
def test_examples_are_valid_studies(path):
    study = specmod.load_study(path)
    assert study.name and study.spec["models"] and study.spec["methods"]
