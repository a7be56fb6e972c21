"""Loading and validating ScalingStudy manifests against the CRD's own schema.

The CRD in crds/scalingstudy.yaml is the one source of truth for the spec. This module reads its
openAPIV3Schema and does what the API server does with a manifest, in the same order and, as far
as the schema goes, with the same messages:

1. strict field validation: unknown fields are errors (`unknown field "spec.foo"`);
2. structural defaulting: `default:` values fill omitted fields;
3. OpenAPI validation (types, enums, bounds, patterns, required) — jsonschema does the checking,
   `_api_server_message` words each error the way the API server does;
4. the CEL rules (`x-kubernetes-validations`): each rule's exact text is mapped to a Python
   re-check in `CEL_RECHECKS`; a test fails when a rule of the CRD has none, so the two cannot
   drift apart silently. Transition rules (those using `oldSelf`) run when an old spec is given —
   `ftscale run` uses them to refuse resuming a workdir with an incompatibly edited study.

Entry points: `load_study(path_or_dict, old_spec=None) -> Study` (raises StudyValidationError
listing every problem) and `with_defaults(spec) -> dict`.
"""

from __future__ import annotations

import copy
import json
import os
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

import jsonschema
import yaml

from ftscale import spec_patterns as patterns
from ftscale.api.meta import API_VERSION, KIND, MAX_RUNS, MAX_STUDY_NAME


class StudyValidationError(ValueError):
    """The manifest is not a valid ScalingStudy. `.errors` lists one message per problem."""

    def __init__(self, source: str, errors: list[str]):
        self.source = source
        self.errors = errors
        lines = "\n".join(f"  - {e}" for e in errors)
        super().__init__(f"{source} is not a valid {KIND} ({len(errors)} problem"
                         f"{'s' if len(errors) != 1 else ''}):\n{lines}")


class StudySyntaxError(StudyValidationError):
    """The file is not YAML. One line, `FILE:LINE:COLUMN: problem`, as compilers print it."""

    def __init__(self, source: str, line: int | None, column: int | None, problem: str):
        where = f"{source}:{line}:{column}" if line is not None else source
        self.line, self.column = line, column
        ValueError.__init__(self, f"{where}: not valid YAML: {problem}")
        self.source, self.errors = source, [f"{where}: not valid YAML: {problem}"]


def _syntax_error(source: str, exc: yaml.YAMLError) -> StudySyntaxError:
    """The YAML error's first problem and where it is (1-based line and column)."""
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    context = getattr(exc, "context", None)
    text = f"{context}, {problem}" if context else problem
    if mark is None:
        return StudySyntaxError(source, None, None, text)
    return StudySyntaxError(source, mark.line + 1, mark.column + 1, text)


@dataclass(frozen=True)
class Study:
    """A validated study: its name, namespace and spec with every CRD default applied."""

    name: str
    namespace: str
    spec: dict[str, Any]
    manifest: dict[str, Any] = field(repr=False)


# ---- the CRD ------------------------------------------------------------------------------
def crd_path() -> Path:
    """Where the CRD YAML is: $FTSCALE_CRD, else crds/ of this checkout, else a packaged copy
    (container images copy crds/scalingstudy.yaml to ftscale/crds/ next to this module)."""
    env = os.environ.get("FTSCALE_CRD")
    if env:
        return Path(env)
    here = Path(__file__).resolve()
    for candidate in (here.parents[2] / "crds" / "scalingstudy.yaml",
                      here.parent / "crds" / "scalingstudy.yaml"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        "crds/scalingstudy.yaml not found next to the ftscale package; set FTSCALE_CRD to "
        "the CRD file")


@lru_cache(maxsize=4)
def _load_crd(path: str) -> dict[str, Any]:
    return yaml.safe_load(Path(path).read_text())


def crd() -> dict[str, Any]:
    return _load_crd(str(crd_path()))


def root_schema() -> dict[str, Any]:
    """The CRD's openAPIV3Schema (for the served version)."""
    return crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def spec_schema() -> dict[str, Any]:
    return root_schema()["properties"]["spec"]


# ---- defaulting and unknown fields ---------------------------------------------------------
def apply_defaults(schema: dict[str, Any], value: Any) -> Any:
    """Fill omitted fields with their `default:` (recursively, as the API server does: a
    defaulted object is itself defaulted). Returns a new value; the input is not changed."""
    value = copy.deepcopy(value)
    _default_in_place(schema, value)
    return value


def _default_in_place(schema: dict[str, Any], value: Any) -> None:
    if isinstance(value, dict):
        props = schema.get("properties")
        if props:
            for name, sub in props.items():
                if name not in value and "default" in sub:
                    value[name] = copy.deepcopy(sub["default"])
                if name in value:
                    _default_in_place(sub, value[name])
        elif isinstance(schema.get("additionalProperties"), dict):
            for item in value.values():
                _default_in_place(schema["additionalProperties"], item)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for item in value:
            _default_in_place(schema["items"], item)


def with_defaults(spec: dict[str, Any]) -> dict[str, Any]:
    """The spec with the CRD's defaults applied (idempotent; safe on API-server specs)."""
    return apply_defaults(spec_schema(), spec)


def unknown_fields(schema: dict[str, Any], value: Any, path: str) -> list[str]:
    """Paths of fields the schema does not declare (kubectl's strict field validation)."""
    out: list[str] = []
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return out
    if isinstance(value, dict):
        props = schema.get("properties")
        if props is not None:
            for name, item in value.items():
                sub_path = f"{path}.{name}" if path else name
                if name not in props:
                    out.append(sub_path)
                else:
                    out += unknown_fields(props[name], item, sub_path)
        elif isinstance(schema.get("additionalProperties"), dict):
            for name, item in value.items():
                out += unknown_fields(schema["additionalProperties"], item, f"{path}[{name}]")
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            out += unknown_fields(schema["items"], item, f"{path}[{i}]")
    return out


# ---- OpenAPI validation with the API server's wording --------------------------------------
def _field_path(error: jsonschema.ValidationError, prefix: str) -> str:
    path = prefix
    for part in error.absolute_path:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


def _go_value(value: Any) -> str:
    """How the API server prints an invalid value (Go's %#v-like quoting)."""
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return '"object"'
    if isinstance(value, list):
        return '"array"'
    if value is None:
        return "null"
    return str(value)


_TYPE_NAMES = {str: "string", bool: "boolean", int: "integer", float: "number",
               dict: "object", list: "array", type(None): "null"}


def _api_server_message(error: jsonschema.ValidationError, prefix: str) -> str:
    path = _field_path(error, prefix)
    v, inst = error.validator, error.instance
    if v == "required":
        missing = error.message.split("'")[1] if "'" in error.message else "?"
        return f"{path}.{missing}: Required value" if path else f"{missing}: Required value"
    if v == "enum":
        allowed = ", ".join(_go_value(x) for x in error.validator_value)
        return f"{path}: Unsupported value: {_go_value(inst)}: supported values: {allowed}"
    if v == "type":
        got = _TYPE_NAMES.get(type(inst), type(inst).__name__)
        return (f"{path}: Invalid value: \"{got}\": {path} in body must be of type "
                f"{error.validator_value}: \"{got}\"")
    if v in ("maxItems", "maxProperties"):
        return f"{path}: Too many: {len(inst)}: must have at most {error.validator_value} items"
    if v == "maxLength":
        return f"{path}: Too long: may not be more than {error.validator_value} bytes"
    bound = {
        "minimum": ("should be greater than{eq} {x}", "exclusiveMinimum"),
        "maximum": ("should be less than{eq} {x}", "exclusiveMaximum"),
    }
    if v in bound:
        text, exclusive_key = bound[v]
        exclusive = error.schema.get(exclusive_key) is True
        detail = text.format(eq="" if exclusive else " or equal to", x=error.validator_value)
    elif v == "minItems":
        detail = f"should have at least {error.validator_value} items"
    elif v == "minLength":
        detail = f"should be at least {error.validator_value} chars long"
    elif v == "pattern":
        # The API server's words, then ours: what the pattern means (ftscale.spec_patterns).
        detail = f"should match '{error.validator_value}'"
        words = patterns.WORDS.get(error.validator_value)
        if words:
            return (f"{path}: Invalid value: {_go_value(inst)}: {path} in body {detail}: "
                    f"{words}")
    else:
        detail = error.message
    return f"{path}: Invalid value: {_go_value(inst)}: {path} in body {detail}"


# Schema errors after which the API server does not evaluate CEL rules (apiextensions'
# hasBlockingErr): wrong types, missing required fields, enum misses, too long, too many. A
# bound, a pattern or a duplicate does not stop them.
_BLOCKING = {"type", "required", "enum", "maxLength", "maxItems", "maxProperties"}


def _schema_errors(schema: dict[str, Any], value: Any, prefix: str) -> tuple[list[str], bool]:
    """(messages, whether any of them blocks the CEL rules)."""
    # OpenAPI v3.0 (what CRDs use) has boolean exclusiveMinimum/Maximum: JSON-Schema draft 4.
    validator = jsonschema.Draft4Validator(schema)
    errors = sorted(validator.iter_errors(value), key=lambda e: list(map(str, e.absolute_path)))
    out, blocking = [], False
    for error in errors:
        if error.validator == "anyOf" and isinstance(error.instance, (int, str)):
            continue  # int-or-string quantities: the pattern check speaks for them
        if error.validator == "minimum" and isinstance(error.instance, str):
            continue  # a typeless int-or-string node: minimum is for its integers only
        out.append(_api_server_message(error, prefix))
        blocking |= error.validator in _BLOCKING
    return out, blocking


def _go_map_literal(item: dict[str, Any], keys: list[str]) -> str:
    """How the API server prints a map-list item in a Duplicate error: its keys as JSON."""
    return json.dumps({k: item.get(k) for k in keys}, separators=(",", ":"))


def list_duplicates(schema: dict[str, Any], value: Any, path: str) -> list[str]:
    """Items repeated in `x-kubernetes-list-type: map` (by their keys) and `set` lists: the API
    server refuses them ("Duplicate value"), e.g. two models named alike — the grid would
    silently drop the second one."""
    out: list[str] = []
    if isinstance(value, dict):
        for name, sub in (schema.get("properties") or {}).items():
            if name in value:
                out += list_duplicates(sub, value[name], f"{path}.{name}" if path else name)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        kind = schema.get("x-kubernetes-list-type")
        seen: list[Any] = []
        for i, item in enumerate(value):
            if kind == "map" and isinstance(item, dict):
                keys = schema["x-kubernetes-list-map-keys"]
                key = tuple(item.get(k) for k in keys)
                if key in seen:
                    out.append(f"{path}[{i}]: Duplicate value: {_go_map_literal(item, keys)}")
                seen.append(key)
            elif kind == "set":
                if item in seen:
                    out.append(f"{path}[{i}]: Duplicate value: {_go_value(item)}")
                seen.append(item)
            out += list_duplicates(schema["items"], item, f"{path}[{i}]")
    return out


def name_errors(name: Any) -> list[str]:
    """metadata.name as the API server checks every object's name (an RFC 1123 subdomain),
    before the CRD's own rule (a DNS label, which keeps `.` out of Job names and the local
    workdir path too)."""
    if not isinstance(name, str) or not name:
        return ["metadata.name: Required value: name or generateName is required"]
    out = []
    if len(name) > 253:
        out.append(f"metadata.name: Invalid value: {_go_value(name)}: must be no more than 253 "
                   "characters")
    if not re.fullmatch(patterns.DNS_SUBDOMAIN.strip("^$"), name):
        out.append(
            f"metadata.name: Invalid value: {_go_value(name)}: a lowercase RFC 1123 subdomain "
            "must consist of lower case alphanumeric characters, '-' or '.', and must start "
            "and end with an alphanumeric character (e.g. 'example.com', regex used for "
            "validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')")
    return out


# ---- CEL rules, re-checked in Python -------------------------------------------------------
# Each entry maps a rule's exact text in the CRD to a function (self, old) -> bool. Transition
# rules (they mention oldSelf) get the old value; the others ignore it.
def _has(obj: dict, key: str) -> bool:
    return isinstance(obj, dict) and key in obj


def _unique(values: list) -> bool:
    return len(values) == len(set(values))


def _same_optional(new: dict, old: dict, key: str) -> bool:
    return _has(new, key) == _has(old, key) and new.get(key) == old.get(key)


def _grid_size(s: dict) -> int:
    total = 0
    n_models = len(s["models"])
    for m in s["methods"]:
        n_data = len(m["dataSizes"]) if _has(m, "dataSizes") else len(s["dataSizes"])
        if not _has(m, "sizes"):
            n_model_sizes = n_models
        elif _has(m, "sizeSweepModels"):
            n_model_sizes = n_models + (len(m["sizes"]) - 1) * len(m["sizeSweepModels"])
        else:
            n_model_sizes = n_models * len(m["sizes"])
        total += n_data * n_model_sizes
    return total * len(s["seeds"])


def _default_size(m: dict) -> int:
    return m["defaultSize"] if _has(m, "defaultSize") else (m["sizes"][0] if _has(m, "sizes")
                                                              else 0)


def _first(values: list, bad: Callable[[Any], bool]) -> Any:
    """The first offending element (what a message expression's `.filter(...)[0]` picks)."""
    return next(v for v in values if bad(v))


def _repeated(values: list) -> Any:
    return _first(values, lambda v: values.count(v) != 1)


def _cel_str(value: Any) -> str:
    """CEL's string(): integers and strings as they are."""
    return str(value)


_BUILTIN_TEMPLATES = ("translate", "summarize", "plain")


def _template_ok(s: dict) -> bool:
    return (not _has(s, "promptTemplate") or s["promptTemplate"] in _BUILTIN_TEMPLATES
            or re.search(patterns.TEMPLATE, s["promptTemplate"]) is not None)


def _relative_inside(p: str) -> bool:
    return not (p.startswith("/") or p == ".." or p.startswith("../") or p.endswith("/..")
                or "/../" in p)


# ---- held-out data sizes that leave something to fit ---------------------------------------
# (CEL path of a held-out `d` setting, the field it is, whether only PET methods use it). The
# rule text is built here and written into the CRD by crds/generate.py, so both read one text.
HELD_OUT_D_SETTINGS = (
    ("self.law.heldOut.d", "spec.law.heldOut.d", False),
    ("self.law.heldOut.factors.modelSize.d", "spec.law.heldOut.factors.modelSize.d", False),
    ("self.law.heldOut.factors.pretrainingTokens.d",
     "spec.law.heldOut.factors.pretrainingTokens.d", False),
    ("self.law.heldOut.factors.petSize.d", "spec.law.heldOut.factors.petSize.d", True),
)
# The fit finds β from at least two data sizes (ftscale.law); fewer is not a scaling law.
MIN_FIT_DATA_SIZES = 2


def _held_out_parts(path: str, pet_only: bool) -> tuple[str, str]:
    """(guard, per-method condition) of the held-out rule for one `d` setting, in CEL."""
    parts = path.split(".")
    guard = " && ".join(f"has({'.'.join(parts[:i + 1])})" for i in range(1, len(parts)))
    sizes = "(has(m.dataSizes) ? m.dataSizes : self.dataSizes)"
    kept = f"{sizes}.filter(d, !{path}.split('/').exists(v, double(v) == double(d))).size()"
    need = (f"({sizes}.size() < {MIN_FIT_DATA_SIZES} ? {sizes}.size() : "
            f"{MIN_FIT_DATA_SIZES})")
    one = f"{kept} >= {need}"
    if pet_only:
        one = f"m.name == 'fmt' || {one}"
    return guard, one


def held_out_rules() -> list[tuple[str, str, str]]:
    """(rule, field, field path from spec) for each held-out `d` setting: listed held-out data
    sizes must leave each method two data sizes to fit (all of them when it has fewer). The
    message cannot name the value: a CEL message expression over these lists is more than
    the API server's cost estimate allows; the field path and the message say which setting."""
    out = []
    for path, field_name, pet_only in HELD_OUT_D_SETTINGS:
        guard, one = _held_out_parts(path, pet_only)
        text = (f"!({guard}) || {path} in ['largest', 'none'] || "
                f"self.methods.all(m, {one})")
        out.append((text, field_name, path[len("self"):]))
    return out


def _held_out_setting(s: dict, path: str) -> str | None:
    node: Any = s
    for part in path.split(".")[1:]:
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _held_out_method_ok(s: dict, m: dict, setting: str, pet_only: bool) -> bool:
    if pet_only and m["name"] == "fmt":
        return True
    sizes = m["dataSizes"] if _has(m, "dataSizes") else s["dataSizes"]
    held = [float(v) for v in setting.split("/")]
    kept = [d for d in sizes if not any(float(d) == v for v in held)]
    return len(kept) >= min(len(sizes), MIN_FIT_DATA_SIZES)


def _held_out_checks() -> dict[str, Recheck]:
    checks = {}
    for (text, _, _), (path, _, pet_only) in zip(held_out_rules(), HELD_OUT_D_SETTINGS):
        def ok(s, o, path=path, pet_only=pet_only):
            setting = _held_out_setting(s, path)
            return setting is None or setting in ("largest", "none") or all(
                _held_out_method_ok(s, m, setting, pet_only) for m in s["methods"])
        checks[text] = ok
    return checks


BUILTIN_TASKS = ("toy-en-de", "toy-en-fr", "toy-fr-de", "toy-sum")


def _zero_shot_known(s: dict, z: str) -> bool:
    return z in BUILTIN_TASKS or any(x["name"] == z for x in s["task"].get("zeroShotSets", []))


def _checkpoint_of_ok(s: dict, m: dict) -> bool:
    return not _has(m, "checkpointOf") or any(b["name"] == m["checkpointOf"]
                                              and not _has(b, "checkpointOf")
                                              for b in s["models"])


def _chain_tokens_ok(s: dict, m: dict) -> bool:
    return (m["source"].startswith("toy:") or _has(m, "pretrainingTokens")
            or not (_has(m, "checkpointOf")
                    or any(c.get("checkpointOf") == m["name"] for c in s["models"])))


_RELATIVE_PATH_RULE = ("!self.startsWith('/') && self != '..' && !self.startsWith('../') && "
                       "!self.endsWith('/..') && !self.contains('/../')")
_LABEL_KEY_RULE = (f"self.all(k, k.size() <= {patterns.LABEL_KEY_MAX} && "
                   f"k.matches(r'{patterns.LABEL_KEY}'))")


def _label_key_ok(k: str) -> bool:
    return len(k) <= patterns.LABEL_KEY_MAX and re.search(patterns.LABEL_KEY, k) is not None


Recheck = Callable[[Any, Any], bool]
CEL_RECHECKS: dict[str, Recheck] = {
    # root
    f"self.metadata.name.size() <= {MAX_STUDY_NAME}":
        lambda s, o: len(s["metadata"].get("name", "")) <= MAX_STUDY_NAME,
    f"self.metadata.name.matches(r'{patterns.DNS_LABEL}')":
        lambda s, o: re.search(patterns.DNS_LABEL, s["metadata"].get("name", "")) is not None,
    # task
    "!has(self.promptTemplate) || self.promptTemplate in ['translate', 'summarize', 'plain'] || "
    "self.promptTemplate.contains('{source}')": lambda s, o: not _has(s, "promptTemplate")
    or s["promptTemplate"] in _BUILTIN_TEMPLATES or "{source}" in s["promptTemplate"],
    "!has(self.promptTemplate) || self.promptTemplate in ['translate', 'summarize', 'plain'] || "
    f"self.promptTemplate.matches(r'{patterns.TEMPLATE}')": lambda s, o: _template_ok(s),
    # task.data paths, zero-shot set paths
    _RELATIVE_PATH_RULE: lambda s, o: _relative_inside(s),
    # execution.labels, execution.nodeSelector
    _LABEL_KEY_RULE: lambda s, o: all(_label_key_ok(k) for k in s),
    # task / evaluation / spec.training
    "self == oldSelf": lambda s, o: s == o,
    "self.training == oldSelf.training": lambda s, o: s.get("training") == o.get("training"),
    # models[]
    "!has(self.checkpointOf) || self.checkpointOf != self.name":
        lambda s, o: s.get("checkpointOf") != s["name"],
    "self.source == oldSelf.source": lambda s, o: s["source"] == o["source"],
    "!has(self.revision) || !self.source.startsWith('toy:')":
        lambda s, o: not _has(s, "revision") or not s["source"].startswith("toy:"),
    "has(self.revision) == has(oldSelf.revision) && (!has(self.revision) || "
    "self.revision == oldSelf.revision)": lambda s, o: _same_optional(s, o, "revision"),
    "has(self.parameters) == has(oldSelf.parameters) && (!has(self.parameters) || "
    "self.parameters == oldSelf.parameters)": lambda s, o: _same_optional(s, o, "parameters"),
    "has(self.pretrainingTokens) == has(oldSelf.pretrainingTokens) && "
    "(!has(self.pretrainingTokens) || self.pretrainingTokens == oldSelf.pretrainingTokens)":
        lambda s, o: _same_optional(s, o, "pretrainingTokens"),
    "has(self.checkpointOf) == has(oldSelf.checkpointOf) && (!has(self.checkpointOf) || "
    "self.checkpointOf == oldSelf.checkpointOf)":
        lambda s, o: _same_optional(s, o, "checkpointOf"),
    "has(self.training) == has(oldSelf.training) && (!has(self.training) || self.training == "
    "oldSelf.training)": lambda s, o: _same_optional(s, o, "training"),
    # methods[]
    "self.name != 'fmt' || !has(self.sizes)":
        lambda s, o: s["name"] != "fmt" or not _has(s, "sizes"),
    "self.name == 'fmt' || has(self.sizes)": lambda s, o: s["name"] == "fmt" or _has(s, "sizes"),
    "!has(self.defaultSize) || (has(self.sizes) && self.defaultSize in self.sizes)":
        lambda s, o: not _has(s, "defaultSize") or s["defaultSize"] in s.get("sizes", []),
    "!has(self.sizeSweepModels) || self.name != 'fmt'":
        lambda s, o: not _has(s, "sizeSweepModels") or s["name"] != "fmt",
    "self.name == 'lora' || (!has(self.loraTargets) && !has(self.loraAlpha) && "
    "!has(self.loraDropout))": lambda s, o: s["name"] == "lora" or not any(
        _has(s, k) for k in ("loraTargets", "loraAlpha", "loraDropout")),
    "(has(self.defaultSize) ? self.defaultSize : (has(self.sizes) ? self.sizes[0] : 0)) == "
    "(has(oldSelf.defaultSize) ? oldSelf.defaultSize : (has(oldSelf.sizes) ? oldSelf.sizes[0] "
    ": 0))": lambda s, o: _default_size(s) == _default_size(o),
    # spec
    "self.models.size() > 0": lambda s, o: len(s["models"]) > 0,
    "self.methods.size() > 0": lambda s, o: len(s["methods"]) > 0,
    "self.dataSizes.size() > 0": lambda s, o: len(s["dataSizes"]) > 0,
    "self.models.all(m, !has(m.checkpointOf) || self.models.exists(b, b.name == m.checkpointOf "
    "&& !has(b.checkpointOf)))": lambda s, o: all(_checkpoint_of_ok(s, m) for m in s["models"]),
    "self.models.all(m, m.source.startsWith('toy:') || has(m.pretrainingTokens) || "
    "!(has(m.checkpointOf) || self.models.exists(c, has(c.checkpointOf) && c.checkpointOf == "
    "m.name)))": lambda s, o: all(_chain_tokens_ok(s, m) for m in s["models"]),
    "self.methods.all(m, !has(m.sizeSweepModels) || m.sizeSweepModels.all(n, "
    "self.models.exists(x, x.name == n)))": lambda s, o: all(
        n in {x["name"] for x in s["models"]}
        for m in s["methods"] for n in m.get("sizeSweepModels", [])),
    "self.methods.map(m, (has(m.dataSizes) ? m.dataSizes.size() : self.dataSizes.size()) * "
    "(!has(m.sizes) ? self.models.size() : (has(m.sizeSweepModels) ? self.models.size() + "
    "(m.sizes.size() - 1) * m.sizeSweepModels.size() : self.models.size() * "
    f"m.sizes.size()))).sum() * self.seeds.size() <= {MAX_RUNS}": lambda s, o: _grid_size(s) <= MAX_RUNS,
    "!has(self.evaluation) || !has(self.evaluation.zeroShot) || self.evaluation.zeroShot.all(z, "
    "z in ['toy-en-de', 'toy-en-fr', 'toy-fr-de', 'toy-sum'] || (has(self.task.zeroShotSets) && "
    "self.task.zeroShotSets.exists(s, s.name == z)))": lambda s, o: all(
        _zero_shot_known(s, z) for z in s.get("evaluation", {}).get("zeroShot", [])),
    # design.target (ftscale.design)
    "self.kind != 'critical' || (has(self.methods) && self.methods.size() == 2)":
        lambda s, o: s["kind"] != "critical" or len(s.get("methods", [])) == 2,
    "!has(self.model) || !has(self.parameters)":
        lambda s, o: not (_has(s, "model") and _has(s, "parameters")),
    "self.kind == 'extrapolation' || !has(self.dataSize)":
        lambda s, o: s["kind"] == "extrapolation" or not _has(s, "dataSize"),
    "!has(self.design) || !has(self.design.target) || !has(self.design.target.methods) || "
    "self.design.target.methods.all(n, self.methods.exists(m, m.name == n))":
        lambda s, o: all(n in {m["name"] for m in s["methods"]}
                         for n in s.get("design", {}).get("target", {}).get("methods", [])),
    "!has(self.design) || !has(self.design.target) || !has(self.design.target.model) || "
    "self.models.exists(m, m.name == self.design.target.model && !has(m.checkpointOf))":
        lambda s, o: "model" not in s.get("design", {}).get("target", {}) or any(
            m["name"] == s["design"]["target"]["model"] and not _has(m, "checkpointOf")
            for m in s["models"]),
    **_held_out_checks(),
}

# The rules' messageExpressions, in Python: rule text → (self) -> the message. Only evaluated
# on failure, as the API server does, so each may assume its rule failed. Only rules over
# short strings have one: the API server estimates a message expression over a list (a
# repeated value, the model a checkpointOf names) far above its cost budget, so those rules
# point at the field (fieldPath) and the value is named by an OpenAPI error instead where it
# can be (list-type set: Duplicate value; minimum).
CEL_MESSAGES: dict[str, Callable[[Any], str]] = {
    f"self.metadata.name.size() <= {MAX_STUDY_NAME}": lambda s: (
        f"metadata.name must be at most {MAX_STUDY_NAME} characters (run Job names are "
        f"<study>-<run id> and must fit in 63): got {s['metadata']['name']}"),
    f"self.metadata.name.matches(r'{patterns.DNS_LABEL}')": lambda s: (
        "metadata.name must be a DNS label (lower-case letters, digits and -): it names run "
        "Jobs and labels, and locally the workdir runs/<name>; got " + s["metadata"]["name"]),
    "!has(self.promptTemplate) || self.promptTemplate in ['translate', 'summarize', 'plain'] || "
    "self.promptTemplate.contains('{source}')": lambda s: (
        "spec.task.promptTemplate must be translate, summarize, plain, or contain {source} "
        "where the input goes: got " + s["promptTemplate"]),
    "!has(self.promptTemplate) || self.promptTemplate in ['translate', 'summarize', 'plain'] || "
    f"self.promptTemplate.matches(r'{patterns.TEMPLATE}')": lambda s: (
        "spec.task.promptTemplate may use only the placeholders {source}, {source_lang} and "
        "{target_lang} (other braces break every run): got " + s["promptTemplate"]),
    _LABEL_KEY_RULE: lambda s: (
        "key " + _first(list(s), lambda k: not _label_key_ok(k)) + " is not a label key: use "
        "[prefix/]name, the name at most 63 letters, digits, -, _ and . starting and ending "
        "with a letter or digit, the prefix a DNS subdomain"),
    "!has(self.checkpointOf) || self.checkpointOf != self.name": lambda s: (
        f"models[].checkpointOf must name another model, not the model itself ({s['name']})"),
    "!has(self.evaluation) || !has(self.evaluation.zeroShot) || self.evaluation.zeroShot.all(z, "
    "z in ['toy-en-de', 'toy-en-fr', 'toy-fr-de', 'toy-sum'] || (has(self.task.zeroShotSets) && "
    "self.task.zeroShotSets.exists(s, s.name == z)))": lambda s: (
        _first(s["evaluation"]["zeroShot"], lambda z: not _zero_shot_known(s, z))
        + " is neither a built-in task (toy-en-de, toy-en-fr, toy-fr-de, toy-sum) nor a set "
          "of spec.task.zeroShotSets: add it there with a path, or fix the name"),
}


# The API server's line when schema errors kept it from evaluating the CEL rules.
CEL_SKIPPED = ("<nil>: Invalid value: null: some validation rules were not checked because the "
               "object was invalid; correct the existing errors to complete validation")


def is_transition_rule(text: str) -> bool:
    return "oldSelf" in text


def cel_rules(schema: dict[str, Any] | None = None) -> list[str]:
    """Every CEL rule text in the schema (for the test that keeps CEL_RECHECKS complete)."""
    schema = root_schema() if schema is None else schema
    out = [r["rule"] for r in schema.get("x-kubernetes-validations", [])]
    for sub in (schema.get("properties") or {}).values():
        out += cel_rules(sub)
    if isinstance(schema.get("items"), dict):
        out += cel_rules(schema["items"])
    if isinstance(schema.get("additionalProperties"), dict):
        out += cel_rules(schema["additionalProperties"])
    return out


def _cel_errors(schema: dict[str, Any], value: Any, old: Any, path: str) -> list[str]:
    """Evaluate the rules bottom-up like the API server; `old` is None on create. List items of
    map lists are matched to their old version by key, as the API server correlates them."""
    out: list[str] = []
    if isinstance(value, dict):
        for name, sub in (schema.get("properties") or {}).items():
            if name in value:
                old_sub = old.get(name) if isinstance(old, dict) else None
                out += _cel_errors(sub, value[name], old_sub, f"{path}.{name}" if path else name)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        keys = schema.get("x-kubernetes-list-map-keys")
        old_by_key = {}
        if keys and isinstance(old, list):
            old_by_key = {tuple(o.get(k) for k in keys): o for o in old if isinstance(o, dict)}
        for i, item in enumerate(value):
            old_item = (old_by_key.get(tuple(item.get(k) for k in keys))
                        if keys and isinstance(item, dict) else None)
            out += _cel_errors(schema["items"], item, old_item, f"{path}[{i}]")
    for r in schema.get("x-kubernetes-validations", []):
        text = r["rule"]
        if is_transition_rule(text) and old is None:
            continue
        check = CEL_RECHECKS.get(text)
        if check is None:
            # Kept honest by tests/unit/test_spec_crd.py; here only a forgotten re-check.
            continue
        if not check(value, old):
            # The API server words a failed rule as "<path>: Invalid value: <message>", at the
            # rule's fieldPath when it has one, with its messageExpression when it has one.
            where = path + r["fieldPath"] if r.get("fieldPath") else path
            message = r.get("message", "failed rule: " + text)
            if r.get("messageExpression") and text in CEL_MESSAGES:
                message = CEL_MESSAGES[text](value)
            # A rule on a scalar: the API server shows the value itself, as for schema errors.
            shown = (f"{_go_value(value)}: " if isinstance(value, (str, int, float))
                     and not r.get("fieldPath") else "")
            out.append(f"{where or '<nil>'}: Invalid value: {shown}{message}")
    return out


# ---- entry points --------------------------------------------------------------------------
def validate_manifest(manifest: Any, old_spec: dict[str, Any] | None = None) \
        -> tuple[dict[str, Any], list[str]]:
    """Validate a whole ScalingStudy object. Returns (manifest with defaults, error messages).
    `old_spec`, when given, is the spec the object had before (transition rules run then)."""
    if not isinstance(manifest, dict):
        return {}, ["the document must be a YAML mapping (a ScalingStudy object)"]
    errors: list[str] = []
    if manifest.get("apiVersion") != API_VERSION:
        errors.append(f"apiVersion: Invalid value: {_go_value(manifest.get('apiVersion'))}: "
                      f"must be {API_VERSION}")
    if manifest.get("kind") != KIND:
        errors.append(f"kind: Invalid value: {_go_value(manifest.get('kind'))}: must be {KIND}")
    meta = manifest.get("metadata")
    name_problems = name_errors(meta.get("name") if isinstance(meta, dict) else None)
    if not isinstance(meta, dict) or not meta.get("name"):
        errors += name_problems
    schema = root_schema()
    # What kubectl sends never contains status; a study file with one is treated likewise.
    body = {k: v for k, v in manifest.items() if k != "status"}
    errors += [f'unknown field "{p}"' for p in unknown_fields(schema, body, "")
               if not p.startswith("metadata.")]
    if errors:
        return manifest, errors
    defaulted = apply_defaults(schema, body)
    errors += name_problems
    schema_errors, blocking = _schema_errors({k: v for k, v in schema.items()
                                              if k != "x-kubernetes-validations"}, defaulted, "")
    errors += schema_errors
    errors += list_duplicates(schema, defaulted, "")
    if blocking:
        # As the API server: CEL rules are not evaluated after a blocking schema error.
        errors.append(CEL_SKIPPED)
    else:
        old = None
        if old_spec is not None:
            old = {**defaulted, "spec": apply_defaults(spec_schema(), old_spec)}
        errors += _cel_errors(schema, defaulted, old, "")
    return defaulted, errors


def load_study(source: str | os.PathLike | dict[str, Any],
               old_spec: dict[str, Any] | None = None) -> Study:
    """Read (a path) or take (a dict) a ScalingStudy manifest, validate it against the CRD and
    return it with defaults applied. Raises StudyValidationError listing every problem
    (StudySyntaxError, one line with line and column, when the file is not YAML), or OSError
    when the file cannot be read."""
    if isinstance(source, dict):
        manifest, label = source, "the study"
    else:
        label = str(source)
        try:
            docs = [d for d in yaml.safe_load_all(Path(source).read_text()) if d is not None]
        except yaml.YAMLError as exc:
            raise _syntax_error(label, exc) from None
        if len(docs) != 1:
            raise StudyValidationError(label, [f"expected exactly one YAML document, found "
                                               f"{len(docs)}"])
        manifest = docs[0]
    defaulted, errors = validate_manifest(manifest, old_spec)
    if errors:
        raise StudyValidationError(label, errors)
    meta = defaulted["metadata"]
    return Study(name=meta["name"], namespace=meta.get("namespace", "default"),
                 spec=defaulted["spec"], manifest=defaulted)
