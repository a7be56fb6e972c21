"""The process kubelet's pure parts (tests/cluster/process_kubelet.py): which pods it takes,
how a container's paths, ports, env and termination message become a local process's — on
the operator's real run and fit pod templates (ftscale.controller.templates)."""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from cluster.kubelet import HOLD_KEY
from cluster.process_kubelet import (FALLBACK_LOG_BYTES, ProcessKubelet, StartError, exit_code_of,
                                     field_value, grace_seconds, is_ours, mount_map, remap_ports,
                                     resolve_argv, rewrite_path, termination_message)
from ftscale.api import fit_input as fit_input_codec
from ftscale.api.outcomes import TERMINATION_MESSAGE_ENV
from ftscale.controller import names, templates
from ftscale.controller.settings import OperatorSettings
from ftscale.identity import RunKey


def pod_from_job(job: dict, **status) -> dict:
    """The pod the Job controller would create from a Job (what the API then returns)."""
    template = job["spec"]["template"]
    meta = {**template["metadata"], "name": job["metadata"]["name"] + "-x1", "uid": "u-1234567890",
            "namespace": job["metadata"]["namespace"], "creationTimestamp": "2026-01-01T00:00:00Z"}
    return {"metadata": meta, "spec": {**template["spec"], "nodeName": "kwok-gpu-0"},
            "status": {"phase": "Running", **status}}


STUDY = templates.StudyRef("s", "ns", "uid-s")
SETTINGS = OperatorSettings(trainer_image="ftscale/trainer:test")


def run_pod(labels=None) -> dict:
    key = RunKey("tiny-1", "lora", 4, 50, 0)
    run = templates.DesiredRun(key=key, config={"study": "s", "model_source": "toy:tiny-1"},
                               job_name="s-abc")
    spec = {"execution": {"labels": labels if labels is not None else {HOLD_KEY: "process"}}}
    return pod_from_job(templates.run_job(STUDY, spec, run, SETTINGS))


def test_takes_held_running_ftscale_pods_only():
    pod = run_pod()
    assert is_ours(pod)
    assert is_ours(pod, hold_values={"process"}) and not is_ours(pod, hold_values={"true"})
    assert not is_ours(run_pod(labels={}))  # not held: KWOK completes it
    pending = {**pod, "status": {"phase": "Pending"}}
    assert not is_ours(pending)
    deleting = {**pod, "metadata": {**pod["metadata"], "deletionTimestamp": "2026-01-01T00:01:00Z"}}
    assert not is_ours(deleting)
    other = {**pod, "metadata": {**pod["metadata"], "labels": {HOLD_KEY: "x"}}}
    assert not is_ours(other)  # not an ftscale pod
    annotated = {**pod, "metadata": {**pod["metadata"], "labels": {names.LABEL_COMPONENT: "run"},
                                     "annotations": {HOLD_KEY: "1"}}}
    assert is_ours(annotated)


def test_rewrite_path_longest_prefix_boundaries_and_flag_values():
    prefixes = [("/etc/ftscale", "/l/cfg"), ("/tmp", "/l/tmp"), ("/dev/termination-log", "/l/term")]
    prefixes = sorted(prefixes, key=lambda p: len(p[0]), reverse=True)
    assert rewrite_path("/etc/ftscale/run.json", prefixes) == "/l/cfg/run.json"
    assert rewrite_path("/tmp", prefixes) == "/l/tmp"
    assert rewrite_path("/tmpfoo", prefixes) == "/tmpfoo"  # not a path boundary
    assert rewrite_path("--output=/tmp/fit", prefixes) == "--output=/l/tmp/fit"
    assert rewrite_path("relative/tmp", prefixes) == "relative/tmp"
    assert rewrite_path("/dev/termination-log", prefixes) == "/l/term"


def test_mount_map_with_subpath(tmp_path):
    container = {"volumeMounts": [{"name": "a", "mountPath": "/data"},
                                  {"name": "a", "mountPath": "/data/sub/", "subPath": "x/y"}]}
    out = mount_map(container, {"a": tmp_path})
    assert out == [("/data/sub", str(tmp_path / "x" / "y")), ("/data", str(tmp_path))]
    assert (tmp_path / "x" / "y").is_dir()
    with pytest.raises(StartError, match="names no volume"):
        mount_map({"volumeMounts": [{"name": "b", "mountPath": "/b"}]}, {})


def test_ports_are_remapped_where_they_are_a_flags_value():
    argv, env = remap_ports(["python", "-m", "t", "--metrics-port", "9400", "--steps", "9400",
                             "--port=9400", "9400"], {"PORT": "9400", "N": "9401"}, {9400: 31000})
    assert argv == ["python", "-m", "t", "--metrics-port", "31000", "--steps", "31000",
                    "--port=31000", "9400"]
    assert env == {"PORT": "31000", "N": "9401"}


def test_termination_message_file_tail_and_fallback_to_logs():
    assert termination_message(b"x" * 5000 + b"END", b"log", 0, None).endswith("END")
    assert len(termination_message(b"y" * 5000, b"", 0, None).encode()) == 4096
    log = b"".join(f"line {i}\n".encode() for i in range(200))
    fallback = termination_message(b"", log, 1, "FallbackToLogsOnError")
    assert fallback.endswith("line 199\n") and len(fallback.encode()) <= FALLBACK_LOG_BYTES
    assert "line 119\n" not in fallback  # only the last 80 lines
    assert termination_message(b"", log, 0, "FallbackToLogsOnError") == ""  # success: no fallback
    assert termination_message(b"", log, 1, "File") == ""


def test_exit_codes_and_grace():
    assert exit_code_of(0) == 0 and exit_code_of(3) == 3
    assert exit_code_of(-signal.SIGKILL) == 137 and exit_code_of(-signal.SIGTERM) == 143
    assert grace_seconds({"metadata": {"deletionGracePeriodSeconds": 5},
                          "spec": {"terminationGracePeriodSeconds": 30}}) == 5
    assert grace_seconds({"metadata": {}, "spec": {"terminationGracePeriodSeconds": 12}}) == 12
    assert grace_seconds({"metadata": {}, "spec": {}}) == 30


def test_field_values():
    pod = {"metadata": {"name": "p", "namespace": "n", "uid": "u", "labels": {"b": "2", "a": "1"},
                        "annotations": {"k": 'say "hi"'}}, "spec": {"nodeName": "node"}}
    assert field_value(pod, "metadata.name") == "p"
    assert field_value(pod, "metadata.annotations['k']") == 'say "hi"'
    assert field_value(pod, "metadata.labels") == 'a="1"\nb="2"\n'
    assert field_value(pod, "spec.nodeName") == "node"
    with pytest.raises(StartError):
        field_value(pod, "status.containerStatuses")


def test_python_is_this_interpreter_and_other_commands_come_from_path(tmp_path):
    assert resolve_argv(["python", "-m", "x"], "") == [sys.executable, "-m", "x"]
    tool = tmp_path / "tool"
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o755)
    assert resolve_argv(["tool", "a"], str(tmp_path)) == [str(tool), "a"]
    with pytest.raises(StartError, match="not found"):
        resolve_argv(["nope"], str(tmp_path))
    with pytest.raises(StartError, match="no command"):
        resolve_argv([], "")


class FakeCore:
    """read_namespaced_config_map only: what _prepare reads through the API. `configmaps`:
    {(namespace, name): {"data": {...}, "binaryData": {key: base64}}}, returned as the
    kubernetes client's model (data, binary_data; None when absent)."""

    def __init__(self, configmaps):
        self.configmaps = configmaps

    def read_namespaced_config_map(self, name, namespace):
        from kubernetes.client.rest import ApiException

        if (namespace, name) not in self.configmaps:
            raise ApiException(status=404)
        cm = self.configmaps[(namespace, name)]
        return SimpleNamespace(data=cm.get("data"), binary_data=cm.get("binaryData"))


def test_the_operators_run_pod_becomes_a_trainer_process(tmp_path):
    pod = run_pod()
    kubelet = ProcessKubelet(FakeCore({}), workdir=tmp_path, node_env={"PATH": "/usr/bin"})
    container, argv, env, cwd, message = kubelet._prepare(pod, tmp_path / "sb")
    assert argv[:3] == [sys.executable, "-m", "ftscale_trainer"]
    config = Path(argv[argv.index("--config") + 1])
    assert config.is_relative_to(tmp_path / "sb") and json.loads(config.read_text())["model_source"] == "toy:tiny-1"
    port = argv[argv.index("--metrics-port") + 1]
    assert port != str(SETTINGS.trainer_metrics_port)  # a free local port instead of 9400
    assert env["HOME"] == str(tmp_path / "sb" / "volumes" / "tmp")
    assert env["HF_HOME"] == str(tmp_path / "sb" / "volumes" / "cache" / "huggingface")
    assert env["PATH"] == "/usr/bin"  # the node's env is not rewritten
    assert env[TERMINATION_MESSAGE_ENV] == str(message) and message.exists()
    assert Path(cwd) == tmp_path / "sb"


def test_the_operators_fit_pod_reads_its_input_configmap(tmp_path):
    job = templates.fit_job(STUDY, {"execution": {"labels": {HOLD_KEY: "process"}}}, "d1", SETTINGS)
    pod = pod_from_job(job)
    cm = names.fit_input_configmap_name("s")
    kubelet = ProcessKubelet(FakeCore({}), workdir=tmp_path, node_env={"PATH": "/usr/bin"})
    from cluster.process_kubelet import NotReadyYet
    with pytest.raises(NotReadyYet):  # the ConfigMap is not there yet: wait, as a kubelet does
        kubelet._prepare(pod, tmp_path / "sb")
    # what the reconciler writes: the gzip'd document in binaryData (ftscale.api.fit_input)
    doc = {"x": 1, "results": [{"run_id": "r"}]}
    kubelet.core_api = FakeCore({("ns", cm): {"binaryData": {names.FIT_INPUT_FILE: fit_input_codec.encode_b64(doc)},
                                              "data": {"other": "y"}}})
    _, argv, _, _, _ = kubelet._prepare(pod, tmp_path / "sb")
    assert argv[1:3] == ["-m", "ftscale.law.job"]
    fit_input = Path(argv[argv.index("--input") + 1])
    assert fit_input.name == names.FIT_INPUT_FILE
    assert fit_input.read_bytes() == fit_input_codec.encode(doc)  # the bytes, decoded once
    assert fit_input_codec.decode(fit_input.read_bytes()) == doc
    assert not (fit_input.parent / "other").exists()  # only the listed items
    assert argv[argv.index("--output") + 1] == str(tmp_path / "sb" / "volumes" / "tmp" / "fit")


def test_pvcs_persist_per_claim_and_unsupported_volumes_fail_to_start(tmp_path):
    pod = run_pod()
    pod["spec"]["volumes"].append({"name": "results", "persistentVolumeClaim": {"claimName": "c"}})
    pod["spec"]["containers"][0]["volumeMounts"].append({"name": "results", "mountPath": "/results"})
    pod["spec"]["containers"][0]["args"] = ["--output", "/results/s/r"]
    kubelet = ProcessKubelet(FakeCore({}), workdir=tmp_path, node_env={})
    _, argv, _, _, _ = kubelet._prepare(pod, tmp_path / "sb")
    assert argv[-1] == str(tmp_path / "pvcs" / "ns" / "c" / "s" / "r")
    pod["spec"]["volumes"].append({"name": "sec", "secret": {"secretName": "x"}})
    with pytest.raises(StartError, match="secret is not supported"):
        kubelet._prepare(pod, tmp_path / "sb2")


def test_the_nodes_env_is_this_checkout_with_absolute_paths(monkeypatch, tmp_path):
    from cluster.process_kubelet import default_node_env

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PYTHONPATH", "operator:/abs/trainer_image")
    monkeypatch.setenv("FTSCALE_CACHE", "/c")
    env = default_node_env()
    # processes start in their sandbox: a relative entry would point nowhere there
    assert env["PYTHONPATH"] == f"{tmp_path / 'operator'}:/abs/trainer_image"
    assert env["FTSCALE_CACHE"] == "/c" and env["OMP_NUM_THREADS"] == "1"
    assert env["PATH"].split(":")[0] == str(Path(sys.executable).parent)
